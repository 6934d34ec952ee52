// B-spline layer: kernels against a long-double re-statement of the textbook Cox-de Boor
// recursion, gradients against finite differences, grid adaptation, losses, bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <cmath>
#include <random>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "kancore/bspline_layer.hpp"
#include "kancore/regularizers.hpp"
#include "cuda_test_util.hpp"

namespace {

using kancore::DType;
namespace bs = kancore::bspline;
using LD = long double;

// Textbook recursion over the whole knot array: order 0 indicators t_j <= x < t_{j+1}, then k
// levels; a 0/0 term counts as 0. Returns the G+k order-k values.
std::vector<LD> reference_basis(const std::vector<double>& t, int k, LD x) {
  const int n = static_cast<int>(t.size());
  std::vector<LD> B(n - 1);
  for (int j = 0; j + 1 < n; ++j) B[j] = (x >= t[j] && x < t[j + 1]) ? 1 : 0;
  for (int p = 1; p <= k; ++p) {
    std::vector<LD> nb(n - 1 - p);
    for (int j = 0; j + p + 1 < n; ++j) {
      const LD d1 = LD(t[j + p]) - t[j], d2 = LD(t[j + p + 1]) - t[j + 1];
      LD v = 0;
      if (d1 != 0) v += (x - t[j]) / d1 * B[j];
      if (d2 != 0) v += (LD(t[j + p + 1]) - x) / d2 * B[j + 1];
      nb[j] = v;
    }
    B = nb;
  }
  return B;
}

struct Layer {
  bs::Shape s;
  std::vector<double> x, knots, Wb, W, sc;
};

Layer random_layer(std::int64_t N, std::int64_t I, std::int64_t O, std::int64_t G, std::int64_t k,
                   unsigned seed, bool nonuniform) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> U(-1, 1);
  Layer L{bs::Shape{N, I, O, G, k}, {}, {}, {}, {}, {}};
  const std::int64_t nk = L.s.num_knots(), C = L.s.num_coefficients();
  for (std::int64_t i = 0; i < I; ++i) {
    std::vector<double> t(nk);
    for (std::int64_t j = 0; j < nk; ++j) t[j] = -1.0 + 2.0 * static_cast<double>(j - k) / G;
    if (nonuniform) {
      for (auto& v : t) v = 1.5 * U(rng);
      std::sort(t.begin(), t.end());
    }
    L.knots.insert(L.knots.end(), t.begin(), t.end());
  }
  L.x.resize(N * I);
  for (auto& v : L.x) v = 1.6 * U(rng);  // some beyond the extended knots
  L.Wb.resize(O * I);
  L.W.resize(O * I * C);
  L.sc.resize(O * I);
  for (auto* a : {&L.Wb, &L.W, &L.sc}) {
    for (auto& v : *a) v = U(rng);
  }
  return L;
}

std::vector<LD> reference_forward(const Layer& L) {
  const auto& s = L.s;
  const std::int64_t C = s.num_coefficients(), nk = s.num_knots();
  std::vector<LD> y(s.batch * s.out, 0);
  for (std::int64_t b = 0; b < s.batch; ++b) {
    for (std::int64_t i = 0; i < s.in; ++i) {
      const LD xv = L.x[b * s.in + i];
      const std::vector<double> t(L.knots.begin() + i * nk, L.knots.begin() + (i + 1) * nk);
      const auto B = reference_basis(t, static_cast<int>(s.order), xv);
      const LD silu = xv / (1 + std::exp(-xv));
      for (std::int64_t o = 0; o < s.out; ++o) {
        LD acc = L.Wb[o * s.in + i] * silu;
        for (std::int64_t c = 0; c < C; ++c) acc += B[c] * L.W[(o * s.in + i) * C + c] * L.sc[o * s.in + i];
        y[b * s.out + o] += acc;
      }
    }
  }
  return y;
}

std::vector<double> run_forward(const Layer& L) {
  std::vector<double> y(L.s.batch * L.s.out);
  std::vector<char> ws(bs::forward_workspace_bytes(L.s, DType::float64));
  bs::forward(L.s, DType::float64, L.x.data(),
              bs::Params{L.knots.data(), L.Wb.data(), L.W.data(), L.sc.data()}, y.data(), ws.data(),
              ws.size());
  return y;
}

struct Case {
  std::int64_t N, I, O, G, k;
  bool nonuniform;
};

class BsplineForward : public ::testing::TestWithParam<Case> {};

TEST_P(BsplineForward, MatchesLongDoubleRecursion) {
  const Case c = GetParam();
  const Layer L = random_layer(c.N, c.I, c.O, c.G, c.k, 7, c.nonuniform);
  const auto y = run_forward(L);
  const auto ref = reference_forward(L);
  for (std::size_t j = 0; j < y.size(); ++j) {
    ASSERT_NEAR(y[j], static_cast<double>(ref[j]), 1e-12 * (1 + std::abs(static_cast<double>(ref[j])))) << j;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, BsplineForward,
                         ::testing::Values(Case{37, 5, 3, 5, 3, false}, Case{70, 3, 70, 1, 1, false},
                                           Case{9, 17, 33, 3, 5, true}, Case{40, 4, 21, 4, 7, true},
                                           Case{65, 2, 130, 16, 2, false}, Case{3, 1, 1, 2, 9, true}));

TEST(Bspline, PartitionOfUnityInsideTheGrid) {
  const std::int64_t G = 6, k = 3;
  std::vector<double> t(G + 2 * k + 1);
  for (std::size_t j = 0; j < t.size(); ++j) t[j] = 0.3 * static_cast<double>(j) * (1 + 0.1 * static_cast<double>(j % 3));
  std::sort(t.begin(), t.end());
  double v[bs::kMaxOrder + 1];
  for (double x = t[k]; x < t[G + k]; x += 0.01) {
    bs::basis(t.data(), G, k, x, v);
    double sum = 0;
    for (int r = 0; r <= k; ++r) sum += v[r];
    ASSERT_NEAR(sum, 1.0, 1e-14) << x;
  }
  EXPECT_EQ(bs::basis(t.data(), G, k, t.back(), v), 0);  // right end is outside
  for (int r = 0; r <= k; ++r) EXPECT_EQ(v[r], 0.0);
  bs::basis(t.data(), G, k, std::nan(""), v);
  for (int r = 0; r <= k; ++r) EXPECT_EQ(v[r], 0.0);
}

TEST(Bspline, RepeatedKnotsGiveTheGuardedRecursion) {
  const std::int64_t G = 5, k = 3;
  std::vector<double> t = {-1, -1, -1, -0.5, 0, 0, 0, 0.5, 1, 1, 1, 2};
  ASSERT_EQ(static_cast<std::int64_t>(t.size()), G + 2 * k + 1);
  double v[bs::kMaxOrder + 1];
  for (double x = -1.2; x < 2.2; x += 0.0173) {
    const auto first = bs::basis(t.data(), G, k, x, v);
    const auto ref = reference_basis(t, k, x);
    for (std::int64_t c = 0; c < G + k; ++c) {
      const double got = (c >= first && c <= first + k) ? v[c - first] : 0.0;
      ASSERT_NEAR(got, static_cast<double>(ref[c]), 1e-13) << "x=" << x << " c=" << c;
      ASSERT_TRUE(std::isfinite(got));
    }
  }
}

// d/d(everything) of sum(gy * y) against central differences.
TEST(Bspline, BackwardMatchesFiniteDifferences) {
  for (const auto& c : {Case{13, 4, 5, 5, 3, false}, Case{11, 3, 6, 3, 7, true}, Case{8, 2, 3, 2, 1, false}}) {
    Layer L = random_layer(c.N, c.I, c.O, c.G, c.k, 11, c.nonuniform);
    const auto& s = L.s;
    std::mt19937 rng(3);
    std::uniform_real_distribution<double> U(-1, 1);
    std::vector<double> gy(s.batch * s.out);
    for (auto& v : gy) v = U(rng);
    std::vector<double> gx(L.x.size()), gWb(L.Wb.size()), gW(L.W.size()), gsc(L.sc.size());
    std::vector<char> ws(bs::backward_workspace_bytes(s, DType::float64));
    bs::backward(s, DType::float64, L.x.data(), bs::Params{L.knots.data(), L.Wb.data(), L.W.data(), L.sc.data()},
                 gy.data(), bs::Grads{gx.data(), gWb.data(), gW.data(), gsc.data()}, ws.data(), ws.size());
    auto objective = [&]() {
      const auto y = run_forward(L);
      double acc = 0;
      for (std::size_t j = 0; j < y.size(); ++j) acc += y[j] * gy[j];
      return acc;
    };
    auto check = [&](std::vector<double>& param, const std::vector<double>& grad, const char* name) {
      for (std::size_t j = 0; j < param.size(); ++j) {
        const double keep = param[j], h = 1e-6;
        param[j] = keep + h;
        const double up = objective();
        param[j] = keep - h;
        const double down = objective();
        param[j] = keep;
        ASSERT_NEAR(grad[j], (up - down) / (2 * h), 1e-6) << name << "[" << j << "]";
      }
    };
    check(L.x, gx, "x");
    check(L.Wb, gWb, "base_weight");
    check(L.W, gW, "spline_weight");
    check(L.sc, gsc, "spline_scaler");
  }
}

// The kernels evaluate the basis from a per-feature plan (uniform fast path, precomputed
// reciprocals, guessed-then-corrected interval). With one input and the identity as spline
// weights, y[b, c] = B_c(x_b) and grad_x = sum_c gy[b, c] B_c'(x_b): compare both with the
// recursion on every kind of knot vector, at every knot exactly and in between.
TEST(Bspline, KernelBasisOnEveryKindOfKnotVector) {
  const std::int64_t G = 6;
  for (const std::int64_t k : {1, 2, 3, 4, 5, 6, 9}) {
    const std::int64_t n = G + 2 * k + 1, C = G + k;
    std::vector<std::vector<double>> kinds(4, std::vector<double>(n));
    for (std::int64_t j = 0; j < n; ++j) {
      kinds[0][j] = -1.0 + 2.0 * static_cast<double>(j - k) / G;             // uniform
      kinds[1][j] = std::pow(1.6, static_cast<double>(j)) - 3.0;             // geometric
      kinds[2][j] = kinds[0][j] * (1 + 1e-7 * static_cast<double>(j % 3));   // near-uniform
      kinds[3][j] = std::floor(static_cast<double>(j) / 3.0);                // triple knots
    }
    for (const auto& t : kinds) {
      std::vector<double> xs;
      for (double v : t) xs.insert(xs.end(), {v, std::nextafter(v, -1e300), std::nextafter(v, 1e300)});
      for (std::int64_t j = 0; j <= 200; ++j) xs.push_back(t[0] - 0.5 + (t[n - 1] - t[0] + 1.0) * static_cast<double>(j) / 200);
      const std::int64_t N = static_cast<std::int64_t>(xs.size());
      const bs::Shape s{N, 1, C, G, k};
      std::vector<double> W(C * C, 0.0), sc(C, 1.0), y(N * C), gy(N * C), gx(N);
      for (std::int64_t c = 0; c < C; ++c) W[c * C + c] = 1.0;
      std::mt19937 rng(static_cast<unsigned>(k));
      std::uniform_real_distribution<double> U(-1, 1);
      for (auto& v : gy) v = U(rng);
      const bs::Params p{t.data(), nullptr, W.data(), sc.data()};
      std::vector<char> ws(bs::backward_workspace_bytes(s, DType::float64));
      bs::forward(s, DType::float64, xs.data(), p, y.data(), ws.data(), ws.size());
      bs::backward(s, DType::float64, xs.data(), p, gy.data(), bs::Grads{gx.data(), nullptr, nullptr, nullptr},
                   ws.data(), ws.size());
      for (std::int64_t b = 0; b < N; ++b) {
        const auto B = reference_basis(t, static_cast<int>(k), xs[b]);
        const auto Bm = reference_basis(t, static_cast<int>(k - 1), xs[b]);  // G + k + 1 values
        LD slope = 0;
        for (std::int64_t c = 0; c < C; ++c) {
          ASSERT_NEAR(y[b * C + c], static_cast<double>(B[c]), 1e-12) << "k=" << k << " x=" << xs[b] << " c=" << c;
          const LD d1 = LD(t[c + k]) - t[c], d2 = LD(t[c + k + 1]) - t[c + 1];
          const LD dB = k * ((d1 != 0 ? Bm[c] / d1 : 0) - (d2 != 0 ? Bm[c + 1] / d2 : 0));
          slope += gy[b * C + c] * dB;
        }
        ASSERT_NEAR(gx[b], static_cast<double>(slope), 1e-9 * (1 + std::abs(static_cast<double>(slope))))
            << "k=" << k << " x=" << xs[b];
      }
    }
  }
}

// float32 uniform grids go through the SIMD basis path, whose interval guess (x - t0) / h can
// round to either side of a knot: inputs a few ulps around every knot of awkward grids must
// still land in the interval the recursion picks (for k = 1 the slope jumps at each knot).
TEST(Bspline, Float32UniformGridIntervalsAtEveryKnot) {
  for (const std::int64_t k : {1, 2, 3}) {
    for (const auto& [lo, hi, G] : {std::tuple{-1.1f, 1.3f, std::int64_t{7}}, std::tuple{0.3f, 9.7f, std::int64_t{13}},
                                   std::tuple{-100.0f, 100.3f, std::int64_t{31}}}) {
      const std::int64_t n = G + 2 * k + 1, C = G + k;
      std::vector<float> t(n);
      const float h = (hi - lo) / static_cast<float>(G);
      for (std::int64_t j = 0; j < n; ++j) t[j] = lo + static_cast<float>(j - k) * h;
      std::vector<float> xs;
      for (float v : t) {
        float a = v, b = v;
        for (int u = 0; u < 4; ++u) {
          xs.push_back(a);
          xs.push_back(b);
          a = std::nextafter(a, -1e30f);
          b = std::nextafter(b, 1e30f);
        }
      }
      const std::int64_t N = static_cast<std::int64_t>(xs.size());
      const bs::Shape s{N, 1, C, G, k};
      std::vector<float> W(C * C, 0.0f), y(N * C), gy(N * C, 0.0f), gx(N);
      for (std::int64_t c = 0; c < C; ++c) W[c * C + c] = 1.0f;
      std::vector<char> ws(bs::backward_workspace_bytes(s, DType::float32));
      const bs::Params p{t.data(), nullptr, W.data(), nullptr};
      bs::forward(s, DType::float32, xs.data(), p, y.data(), ws.data(), ws.size());
      const std::vector<double> td(t.begin(), t.end());
      for (std::int64_t b = 0; b < N; ++b) {
        const auto B = reference_basis(td, static_cast<int>(k), xs[b]);
        for (std::int64_t c = 0; c < C; ++c) {
          ASSERT_NEAR(y[b * C + c], static_cast<double>(B[c]), 2e-5) << "k=" << k << " x=" << xs[b] << " c=" << c;
        }
      }
      // Slopes: grad_x with gy = e_c is dB_c/dx of the chosen interval.
      for (std::int64_t c = 0; c < C; ++c) {
        for (std::int64_t b = 0; b < N; ++b) gy[b * C + c] = 1.0f;
        bs::backward(s, DType::float32, xs.data(), p, gy.data(), bs::Grads{gx.data(), nullptr, nullptr, nullptr},
                     ws.data(), ws.size());
        for (std::int64_t b = 0; b < N; ++b) {
          const auto Bm = reference_basis(td, static_cast<int>(k - 1), xs[b]);
          const LD d1 = LD(td[c + k]) - td[c], d2 = LD(td[c + k + 1]) - td[c + 1];
          const LD dB = k * ((d1 != 0 ? Bm[c] / d1 : 0) - (d2 != 0 ? Bm[c + 1] / d2 : 0));
          ASSERT_NEAR(gx[b], static_cast<double>(dB), 1e-3 * (1 + std::abs(static_cast<double>(dB)))) << "k=" << k << " x=" << xs[b];
          gy[b * C + c] = 0.0f;
        }
      }
    }
  }
}

TEST(Bspline, Float32AgreesWithFloat64) {
  const Layer L = random_layer(300, 19, 70, 5, 3, 5, false);
  const auto y64 = run_forward(L);
  auto f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  const auto x = f(L.x), knots = f(L.knots), Wb = f(L.Wb), W = f(L.W), sc = f(L.sc);
  std::vector<float> y(y64.size());
  std::vector<char> ws(bs::forward_workspace_bytes(L.s, DType::float32));
  bs::forward<float>(L.s, x.data(), knots.data(), Wb.data(), W.data(), sc.data(), y.data(), ws.data(), ws.size());
  for (std::size_t j = 0; j < y.size(); ++j) ASSERT_NEAR(y[j], y64[j], 1e-5 * 19) << j;
}

TEST(BsplineGrid, UpdateGridPreservesACubicWhateverTheScaler) {
  // Each edge's spline is the cubic p(x) = a + b x + c x^2 + d x^3 on the core interval [-1, 1]
  // (set by fitting at many points); the new grid can represent it exactly.
  const std::int64_t N = 500, I = 3, O = 4, G = 5, k = 3;
  Layer L = random_layer(N, I, O, G, k, 21, false);
  const std::int64_t C = G + k, nk = L.s.num_knots();
  std::mt19937 rng(4);
  std::uniform_real_distribution<double> U(-1, 1);
  for (std::int64_t i = 0; i < I; ++i) {
    for (std::int64_t o = 0; o < O; ++o) {
      const double a = U(rng), b = U(rng), c = U(rng), d = U(rng);
      // Collocation at C points inside the core interval fixes the C coefficients.
      std::vector<double> A(C * C), rhs(C);
      double v[bs::kMaxOrder + 1];
      for (std::int64_t p = 0; p < C; ++p) {
        const double xp = -0.99 + 1.98 * static_cast<double>(p) / static_cast<double>(C - 1);
        const auto f = bs::basis(L.knots.data() + i * nk, G, k, xp, v);
        for (std::int64_t r = 0; r <= k; ++r) A[p * C + f + r] = v[r];
        rhs[p] = a + xp * (b + xp * (c + xp * d));
      }
      // Gaussian elimination with partial pivoting (C is small).
      for (std::int64_t col = 0; col < C; ++col) {
        std::int64_t piv = col;
        for (std::int64_t r = col + 1; r < C; ++r) if (std::abs(A[r * C + col]) > std::abs(A[piv * C + col])) piv = r;
        for (std::int64_t j = 0; j < C; ++j) std::swap(A[col * C + j], A[piv * C + j]);
        std::swap(rhs[col], rhs[piv]);
        for (std::int64_t r = col + 1; r < C; ++r) {
          const double m = A[r * C + col] / A[col * C + col];
          for (std::int64_t j = col; j < C; ++j) A[r * C + j] -= m * A[col * C + j];
          rhs[r] -= m * rhs[col];
        }
      }
      for (std::int64_t r = C - 1; r >= 0; --r) {
        double acc = rhs[r];
        for (std::int64_t j = r + 1; j < C; ++j) acc -= A[r * C + j] * L.W[(o * I + i) * C + j];
        L.W[(o * I + i) * C + r] = acc / A[r * C + r];
      }
    }
  }
  for (auto& v : L.x) v = 0.95 * v / 1.6;  // samples inside the old core interval
  for (auto& v : L.sc) v = 3.0 * v;        // efficient-kan would multiply by these again
  const auto before = run_forward(L);
  std::vector<double> new_knots(L.knots.size()), new_W(L.W.size());
  const auto report = bs::update_grid(L.s, DType::float64, L.x.data(), L.knots.data(), L.W.data(),
                                      new_knots.data(), new_W.data());
  EXPECT_EQ(report.features_kept, 0);
  EXPECT_NE(new_knots, L.knots);
  L.knots = new_knots;
  L.W = new_W;
  const auto after = run_forward(L);
  double scale = 0, change = 0;
  for (std::size_t j = 0; j < after.size(); ++j) {
    scale = std::max(scale, std::abs(before[j]));
    change = std::max(change, std::abs(after[j] - before[j]));
  }
  EXPECT_LE(change / scale, 1e-6) << "max relative change " << change / scale;
}

TEST(BsplineGrid, UpdateGridSurvivesConstantFeaturesAndNaN) {
  Layer L = random_layer(6, 3, 2, 5, 3, 8, false);
  for (std::int64_t b = 0; b < 6; ++b) {
    L.x[b * 3 + 0] = 0.25;                      // constant feature
    L.x[b * 3 + 1] = std::nan("");              // no finite sample: kept as is
  }
  L.x[2 * 3 + 2] = std::numeric_limits<double>::infinity();
  std::vector<double> new_knots(L.knots.size()), new_W(L.W.size());
  const auto report = bs::update_grid(L.s, DType::float64, L.x.data(), L.knots.data(), L.W.data(),
                                      new_knots.data(), new_W.data());
  EXPECT_EQ(report.features_kept, 1);
  EXPECT_EQ(report.samples_skipped, 7);
  for (double v : new_knots) ASSERT_TRUE(std::isfinite(v));
  for (double v : new_W) ASSERT_TRUE(std::isfinite(v));
  const std::int64_t nk = L.s.num_knots();
  for (std::int64_t j = 1; j < nk; ++j) ASSERT_GE(new_knots[j], new_knots[j - 1]);
  for (std::int64_t j = 0; j < nk; ++j) EXPECT_EQ(new_knots[nk + j], L.knots[nk + j]);  // feature 1 kept
}

TEST(BsplineGrid, UpdateGridRefusesKnotsBeyondTheDtype) {
  // Finite float32 samples near its largest value: the extension knots would be +-inf.
  Layer L = random_layer(6, 2, 2, 5, 3, 9, false);
  std::vector<float> x(L.x.size()), knots(L.knots.begin(), L.knots.end()), W(L.W.begin(), L.W.end());
  for (std::int64_t b = 0; b < 6; ++b) {
    for (std::int64_t i = 0; i < 2; ++i) x[b * 2 + i] = (b % 2) ? 3.0e38f : -3.0e38f;
  }
  std::vector<float> new_knots(knots.size()), new_W(W.size());
  EXPECT_THROW(bs::update_grid(L.s, DType::float32, x.data(), knots.data(), W.data(), new_knots.data(),
                               new_W.data()),
               std::invalid_argument);
  // The same through a huge margin: past float's range, and past double's (2 * margin = inf).
  bs::GridUpdateOptions opt;
  opt.margin = 3e38;
  std::vector<float> x32(L.x.begin(), L.x.end());
  EXPECT_THROW(bs::update_grid(L.s, DType::float32, x32.data(), knots.data(), W.data(), new_knots.data(),
                               new_W.data(), opt),
               std::invalid_argument);
  opt.margin = 1e308;
  std::vector<double> nk64(L.knots.size()), nw64(L.W.size());
  EXPECT_THROW(bs::update_grid(L.s, DType::float64, L.x.data(), L.knots.data(), L.W.data(), nk64.data(),
                               nw64.data(), opt),
               std::invalid_argument);
  opt.margin = 0.01;  // ordinary data still updates
  EXPECT_NO_THROW(bs::update_grid(L.s, DType::float64, L.x.data(), L.knots.data(), L.W.data(), nk64.data(),
                                  nw64.data(), opt));
}

TEST(BsplineGrid, AbsurdGridsAreRefusedBeforeAllocating) {
  // G = 2^16: the dense cross matrix alone would take 34 GB per thread.
  Layer L = random_layer(4, 1, 1, 1 << 16, 3, 10, false);
  std::vector<double> new_knots(L.knots.size()), new_W(L.W.size());
  EXPECT_THROW(bs::update_grid(L.s, DType::float64, L.x.data(), L.knots.data(), L.W.data(), new_knots.data(),
                               new_W.data()),
               std::invalid_argument);
}

TEST(BsplineGrid, RefineToAMultipleIsExactOnTheGrid) {
  Layer L = random_layer(200, 4, 3, 5, 3, 9, true);
  for (auto& v : L.sc) v = 1.0;
  std::vector<double> new_knots(4 * (15 + 7)), new_W(3 * 4 * 18);
  bs::refine(L.s, DType::float64, L.knots.data(), L.W.data(), 15, new_knots.data(), new_W.data());
  // Compare the spline part at points inside each feature's grid range [t_k, t_{G+k}].
  const std::int64_t nk = L.s.num_knots(), nk2 = 22;
  double v[bs::kMaxOrder + 1];
  double worst = 0;
  for (std::int64_t i = 0; i < 4; ++i) {
    const double lo = L.knots[i * nk + 3], hi = L.knots[i * nk + 8];
    for (int q = 0; q < 200; ++q) {
      const double x = lo + (hi - lo) * (q + 0.5) / 200;
      for (std::int64_t o = 0; o < 3; ++o) {
        double a = 0, b = 0;
        auto f = bs::basis(L.knots.data() + i * nk, 5, 3, x, v);
        for (int r = 0; r <= 3; ++r) a += v[r] * L.W[(o * 4 + i) * 8 + f + r];
        f = bs::basis(new_knots.data() + i * nk2, 15, 3, x, v);
        for (int r = 0; r <= 3; ++r) b += v[r] * new_W[(o * 4 + i) * 18 + f + r];
        worst = std::max(worst, std::abs(a - b));
      }
    }
  }
  EXPECT_LE(worst, 1e-9);
}

// The whole old support [t_0, t_last] and beyond: refine keeps the extension knots, so the
// spline part is unchanged outside the grid range too (it used to shrink the support).
TEST(BsplineGrid, RefineKeepsTheFunctionOutsideTheGridRange) {
  Layer L = random_layer(200, 4, 3, 5, 3, 9, true);
  const std::int64_t nk = L.s.num_knots();
  for (const std::int64_t G2 : {10, 15, 7}) {
    const std::int64_t nk2 = G2 + 7, C2 = G2 + 3;
    std::vector<double> new_knots(4 * nk2), new_W(3 * 4 * C2);
    bs::refine(L.s, DType::float64, L.knots.data(), L.W.data(), G2, new_knots.data(), new_W.data());
    double v[bs::kMaxOrder + 1], worst = 0, scale = 0;
    for (std::int64_t i = 0; i < 4; ++i) {
      const double lo = L.knots[i * nk], hi = L.knots[i * nk + nk - 1], w = hi - lo;
      EXPECT_EQ(new_knots[i * nk2], lo);
      EXPECT_EQ(new_knots[i * nk2 + nk2 - 1], hi);
      for (int q = 0; q < 400; ++q) {
        const double x = lo - 0.1 * w + 1.2 * w * (q + 0.5) / 400;  // the support and beyond
        for (std::int64_t o = 0; o < 3; ++o) {
          double a = 0, b = 0;
          auto f = bs::basis(L.knots.data() + i * nk, 5, 3, x, v);
          for (int r = 0; r <= 3; ++r) a += v[r] * L.W[(o * 4 + i) * 8 + f + r];
          f = bs::basis(new_knots.data() + i * nk2, G2, 3, x, v);
          for (int r = 0; r <= 3; ++r) b += v[r] * new_W[(o * 4 + i) * C2 + f + r];
          worst = std::max(worst, std::abs(a - b));
          scale = std::max(scale, std::abs(a));
        }
      }
    }
    // Multiples of G keep every old knot: exact. G2 = 7 is a least-squares fit over the support.
    EXPECT_LE(worst, (G2 % 5 == 0 ? 1e-9 : 0.1) * scale) << G2;
  }
}

TEST(BsplineValidation, RejectsBadInput) {
  Layer L = random_layer(4, 2, 3, 5, 3, 1, false);
  std::vector<double> y(12);
  std::vector<char> ws(bs::forward_workspace_bytes(L.s, DType::float64));
  const bs::Params p{L.knots.data(), L.Wb.data(), L.W.data(), L.sc.data()};
  EXPECT_THROW(bs::forward(L.s, DType::float64, L.x.data(), p, y.data(), nullptr, 0), std::invalid_argument);
  auto bad = L;
  bad.knots[4] = bad.knots[2];  // decreasing
  EXPECT_THROW(bs::forward(L.s, DType::float64, L.x.data(), bs::Params{bad.knots.data(), L.Wb.data(), L.W.data(), nullptr},
                           y.data(), ws.data(), ws.size()), std::invalid_argument);
  bad.knots = L.knots;
  bad.knots[0] = std::nan("");
  EXPECT_THROW(bs::forward(L.s, DType::float64, L.x.data(), bs::Params{bad.knots.data(), L.Wb.data(), L.W.data(), nullptr},
                           y.data(), ws.data(), ws.size()), std::invalid_argument);
  for (auto s : {bs::Shape{4, 2, 3, 0, 3}, bs::Shape{4, 2, 3, 5, 0}, bs::Shape{4, 0, 3, 5, 3},
                 bs::Shape{-1, 2, 3, 5, 3}, bs::Shape{4, 2, 3, 5, 65},
                 bs::Shape{1 << 30, 1 << 30, 1 << 30, 5, 3}}) {
    EXPECT_THROW(bs::validate(s), std::invalid_argument);
  }
  // Host pointers with a CUDA context: with a device, a bad argument (std::invalid_argument, the
  // documented contract); without a CUDA backend or device, std::runtime_error (the first H200 run
  // found this test asserting the latter everywhere).
  kancore::ExecContext cuda;
  cuda.device.type = kancore::DeviceType::cuda;
  auto on_cuda = [&] { bs::forward(L.s, DType::float64, L.x.data(), p, y.data(), ws.data(), ws.size(), cuda); };
#if KANCORE_TEST_CUDA
  if (kctest::cuda_skip_reason().empty()) {
    EXPECT_THROW(on_cuda(), std::invalid_argument);
  } else {
    EXPECT_THROW(on_cuda(), std::runtime_error);
  }
#else
  EXPECT_THROW(on_cuda(), std::runtime_error);
#endif
  std::vector<double> nk(L.knots.size()), nw(L.W.size());
  EXPECT_THROW(bs::update_grid(L.s, DType::float64, L.x.data(), L.knots.data(), L.W.data(), nk.data(), nw.data(),
                               bs::GridUpdateOptions{-1.0, 0.02, 1e-10}), std::invalid_argument);
}

TEST(Regularizers, CoefficientL1EntropyValueGradientAndZeros) {
  std::vector<double> w = {0.5, -1.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.25, -0.75};  // 3 edges x 3, edge 1 all zero
  std::vector<double> g(w.size());
  const double loss = kancore::reg::coefficient_l1_entropy(DType::float64, w.data(), 3, 3, 0.7, 1.3, g.data());
  const double l1[3] = {0.5, 0.0, 1.0};
  const double S = 1.5;
  double H = 0;
  for (double v : l1) if (v > 0) H -= v / S * std::log(v / S);
  EXPECT_NEAR(loss, 0.7 * S + 1.3 * H, 1e-14);
  for (double v : g) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(g[3], 0.0);
  for (std::size_t j : {0u, 1u, 6u, 7u, 8u}) {
    auto wp = w, wm = w;
    wp[j] += 1e-7;
    wm[j] -= 1e-7;
    const double fd = (kancore::reg::coefficient_l1_entropy(DType::float64, wp.data(), 3, 3, 0.7, 1.3) -
                       kancore::reg::coefficient_l1_entropy(DType::float64, wm.data(), 3, 3, 0.7, 1.3)) / 2e-7;
    EXPECT_NEAR(g[j], fd, 1e-6) << j;
  }
  std::vector<double> zeros(6, 0.0), gz(6);
  EXPECT_EQ(kancore::reg::coefficient_l1_entropy(DType::float64, zeros.data(), 2, 3, 1, 1, gz.data()), 0.0);
}

TEST(Regularizers, SmoothnessValueAndGradient) {
  // (outer=2, K=4, inner=3)
  std::vector<double> c(24);
  std::mt19937 rng(2);
  std::uniform_real_distribution<double> U(-1, 1);
  for (auto& v : c) v = U(rng);
  std::vector<double> g(c.size());
  const double loss = kancore::reg::smoothness(DType::float64, c.data(), 2, 4, 3, g.data());
  double ref = 0;
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 3; ++b)
      for (int k = 1; k < 3; ++k) {
        const double d2 = c[(a * 4 + k + 1) * 3 + b] - 2 * c[(a * 4 + k) * 3 + b] + c[(a * 4 + k - 1) * 3 + b];
        ref += d2 * d2;
      }
  EXPECT_NEAR(loss, ref / 6, 1e-14);
  for (std::size_t j = 0; j < c.size(); ++j) {
    auto cp = c, cm = c;
    cp[j] += 1e-6;
    cm[j] -= 1e-6;
    const double fd = (kancore::reg::smoothness(DType::float64, cp.data(), 2, 4, 3) -
                       kancore::reg::smoothness(DType::float64, cm.data(), 2, 4, 3)) / 2e-6;
    ASSERT_NEAR(g[j], fd, 1e-8) << j;
  }
  // A straight line has no curvature.
  std::vector<double> line = {0, 1, 2, 3, 4};
  EXPECT_EQ(kancore::reg::smoothness(DType::float64, line.data(), 1, 5, 1), 0.0);
}

}  // namespace

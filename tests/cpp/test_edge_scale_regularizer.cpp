// Edge-scale regulariser (pykan's sample-based loss): the native two-pass kernels against a
// long-double re-statement that materialises every edge output, gradients against central
// finite differences of that re-statement, the std = 0 subgradient, NaN, determinism, bad input.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "kancore/regularizers.hpp"

namespace {

using kancore::DType;
namespace reg = kancore::reg;
using LD = long double;

// ---- reference ---------------------------------------------------------------------------------

// The loss from edge outputs phi[b][o][i] and inputs x[b][i], written directly from the
// definition (two-pass std, then A, then the pykan terms). Coefficient terms are added by callers.
LD reference_scale_loss(const std::vector<LD>& phi, const std::vector<LD>& x, int B, int I, int O,
                        const reg::EdgeScaleOptions& opt, std::vector<LD>* A_out = nullptr) {
  auto stdev = [B](auto get) {
    LD m = 0;
    for (int b = 0; b < B; ++b) m += get(b);
    m /= B;
    LD v = 0;
    for (int b = 0; b < B; ++b) v += (get(b) - m) * (get(b) - m);
    return std::sqrt(v / (B - 1));
  };
  std::vector<LD> A(O * I);
  for (int i = 0; i < I; ++i) {
    const LD sx = stdev([&](int b) { return x[b * I + i]; });
    for (int o = 0; o < O; ++o) {
      A[o * I + i] = stdev([&](int b) { return phi[(b * O + o) * I + i]; }) / (sx + LD(0.1));
    }
  }
  LD l1 = 0, er = 0, ec = 0;
  for (LD a : A) l1 += a;
  for (int o = 0; o < O; ++o) {
    LD r = 0;
    for (int i = 0; i < I; ++i) r += A[o * I + i];
    for (int i = 0; i < I; ++i) {
      const LD p = A[o * I + i] / (r + 1);
      er -= p * std::log2(p + LD(1e-4));
    }
  }
  for (int i = 0; i < I; ++i) {
    LD c = 0;
    for (int o = 0; o < O; ++o) c += A[o * I + i];
    for (int o = 0; o < O; ++o) {
      const LD p = A[o * I + i] / (c + 1);
      ec -= p * std::log2(p + LD(1e-4));
    }
  }
  if (A_out) *A_out = A;
  return opt.lamb_l1 * l1 + opt.lamb_entropy * (er / O + ec / I);
}

// pykan's coefficient terms: (lamb_coef sum |c| + lamb_coefdiff sum |diff c|) / out, over edges
// given as a list of coefficient vectors (pykan 0.2.8 averages over the out axis).
LD reference_coef(const std::vector<std::vector<LD>>& edges, int out, const reg::EdgeScaleOptions& opt) {
  LD a = 0, d = 0;
  for (const auto& e : edges) {
    for (std::size_t c = 0; c < e.size(); ++c) a += std::fabs(e[c]);
    for (std::size_t c = 0; c + 1 < e.size(); ++c) d += std::fabs(e[c + 1] - e[c]);
  }
  return (opt.lamb_coef * a + opt.lamb_coefdiff * d) / out;
}

struct C0Case {
  int B, I, O, K;
  double W;
};

// C0 loss in long double: x (B, I), table (I, K, O).
LD reference_c0(const C0Case& s, const std::vector<LD>& x, const std::vector<LD>& C,
                const reg::EdgeScaleOptions& opt, std::vector<LD>* A = nullptr) {
  std::vector<LD> phi(s.B * s.O * s.I);
  for (int b = 0; b < s.B; ++b) {
    for (int i = 0; i < s.I; ++i) {
      const LD u = (x[b * s.I + i] + LD(s.W) / 2) * (s.K - 1) / LD(s.W);
      const int k = static_cast<int>(std::min<LD>(std::max<LD>(std::floor(u), 0), s.K - 2));
      const LD t = u - k;
      for (int o = 0; o < s.O; ++o) {
        phi[(b * s.O + o) * s.I + i] = (1 - t) * C[(i * s.K + k) * s.O + o] + t * C[(i * s.K + k + 1) * s.O + o];
      }
    }
  }
  std::vector<std::vector<LD>> edges;
  for (int i = 0; i < s.I; ++i) {
    for (int o = 0; o < s.O; ++o) {
      std::vector<LD> e(s.K);
      for (int k = 0; k < s.K; ++k) e[k] = C[(i * s.K + k) * s.O + o];
      edges.push_back(e);
    }
  }
  return reference_scale_loss(phi, x, s.B, s.I, s.O, opt, A) + reference_coef(edges, s.O, opt);
}

// Textbook Cox-de Boor over the whole knot array (0/0 = 0), G+k values of order k at x.
std::vector<LD> reference_basis(const LD* t, int n, int k, LD x) {
  std::vector<LD> Bv(n - 1);
  for (int j = 0; j + 1 < n; ++j) Bv[j] = (x >= t[j] && x < t[j + 1]) ? 1 : 0;
  for (int p = 1; p <= k; ++p) {
    std::vector<LD> nb(n - 1 - p);
    for (int j = 0; j + p + 1 < n; ++j) {
      const LD d1 = t[j + p] - t[j], d2 = t[j + p + 1] - t[j + 1];
      LD v = 0;
      if (d1 != 0) v += (x - t[j]) / d1 * Bv[j];
      if (d2 != 0) v += (t[j + p + 1] - x) / d2 * Bv[j + 1];
      nb[j] = v;
    }
    Bv = nb;
  }
  return Bv;
}

struct BsCase {
  int B, I, O, G, k;
  bool base = true, scaler = true;
};

// B-spline loss in long double: knots (I, G+2k+1), base (O, I), weight (O, I, G+k), scaler (O, I).
LD reference_bspline(const BsCase& s, const std::vector<LD>& x, const std::vector<LD>& knots,
                     const std::vector<LD>& base, const std::vector<LD>& w, const std::vector<LD>& sc,
                     const reg::EdgeScaleOptions& opt, std::vector<LD>* A = nullptr) {
  const int n = s.G + 2 * s.k + 1, C = s.G + s.k;
  std::vector<LD> phi(s.B * s.O * s.I);
  for (int b = 0; b < s.B; ++b) {
    for (int i = 0; i < s.I; ++i) {
      const LD xv = x[b * s.I + i];
      const auto basis = reference_basis(knots.data() + i * n, n, s.k, xv);
      const LD act = xv / (1 + std::exp(-xv));
      for (int o = 0; o < s.O; ++o) {
        LD spl = 0;
        for (int c = 0; c < C; ++c) spl += w[(o * s.I + i) * C + c] * basis[c];
        phi[(b * s.O + o) * s.I + i] = (s.base ? base[o * s.I + i] * act : 0) + (s.scaler ? sc[o * s.I + i] : 1) * spl;
      }
    }
  }
  std::vector<std::vector<LD>> edges;
  for (int e = 0; e < s.O * s.I; ++e) edges.emplace_back(w.begin() + e * C, w.begin() + (e + 1) * C);
  return reference_scale_loss(phi, x, s.B, s.I, s.O, opt, A) + reference_coef(edges, s.O, opt);
}

// Central finite difference of f wrt every entry of v (long double, step h).
template <class F>
std::vector<LD> finite_diff(std::vector<LD>& v, F f, LD h = 1e-6L) {
  std::vector<LD> g(v.size());
  for (std::size_t j = 0; j < v.size(); ++j) {
    const LD keep = v[j];
    v[j] = keep + h;
    const LD up = f();
    v[j] = keep - h;
    const LD dn = f();
    v[j] = keep;
    g[j] = (up - dn) / (2 * h);
  }
  return g;
}

template <class T, class U>
std::vector<T> cast(const std::vector<U>& v) {
  return std::vector<T>(v.begin(), v.end());
}

std::vector<LD> randn(std::mt19937& rng, std::size_t n, double scale = 1.0) {
  std::normal_distribution<double> d(0.0, scale);
  std::vector<LD> v(n);
  for (auto& e : v) e = d(rng);
  return v;
}

std::vector<LD> uniform_knots(int I, int G, int k, double lo, double hi) {
  const int n = G + 2 * k + 1;
  std::vector<LD> t(I * n);
  const double h = (hi - lo) / G;
  for (int i = 0; i < I; ++i) {
    for (int j = 0; j < n; ++j) t[i * n + j] = lo + (j - k) * h;
  }
  return t;
}

void expect_close(const std::vector<double>& got, const std::vector<LD>& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t j = 0; j < got.size(); ++j) {
    EXPECT_NEAR(got[j], static_cast<double>(want[j]), tol * (1 + std::fabs(static_cast<double>(want[j]))))
        << what << "[" << j << "]";
  }
}

const reg::EdgeScaleOptions kAll{0.7, 1.3, 0.4, 0.25};

// ---- C0 ----------------------------------------------------------------------------------------

class EdgeScaleC0 : public ::testing::TestWithParam<C0Case> {};

TEST_P(EdgeScaleC0, LossScalesAndGradientsMatchReference) {
  const C0Case s = GetParam();
  std::mt19937 rng(17 + s.B * 31 + s.I);
  auto x = randn(rng, s.B * s.I, 1.5);  // some samples fall outside [-W/2, W/2]: extension
  auto C = randn(rng, s.I * s.K * s.O);
  const kancore::c0::Shape shape{s.B, s.I, s.O, s.K, s.W};
  auto xd = cast<double>(x), Cd = cast<double>(C);
  std::vector<double> gx(xd.size()), gt(Cd.size()), A(s.O * s.I);
  const double loss = reg::edge_scale_c0(shape, DType::float64, xd.data(), Cd.data(), kAll,
                                         {gx.data(), gt.data(), A.data()});
  // The reference sees the double-rounded values, so the comparison is of the math only.
  x = cast<LD>(xd);
  C = cast<LD>(Cd);
  std::vector<LD> Aref;
  const LD ref = reference_c0(s, x, C, kAll, &Aref);
  EXPECT_NEAR(loss, static_cast<double>(ref), 1e-12 * (1 + std::fabs(static_cast<double>(ref))));
  expect_close(A, Aref, 1e-12, "A");

  auto f = [&] { return reference_c0(s, x, C, kAll); };
  expect_close(gx, finite_diff(x, f), 1e-7, "grad_x");
  expect_close(gt, finite_diff(C, f), 1e-7, "grad_table");

  // The value alone, and one gradient alone, agree with the full call (up to contraction order).
  EXPECT_EQ(reg::edge_scale_c0(shape, DType::float64, xd.data(), Cd.data(), kAll), loss);
  std::vector<double> gx_only(xd.size());
  reg::edge_scale_c0(shape, DType::float64, xd.data(), Cd.data(), kAll, {gx_only.data(), nullptr, nullptr});
  for (std::size_t j = 0; j < gx.size(); ++j) EXPECT_NEAR(gx_only[j], gx[j], 1e-14 * (1 + std::fabs(gx[j])));
}

TEST_P(EdgeScaleC0, Float32AgreesWithFloat64) {
  const C0Case s = GetParam();
  std::mt19937 rng(5);
  const auto x = randn(rng, s.B * s.I), C = randn(rng, s.I * s.K * s.O);
  const kancore::c0::Shape shape{s.B, s.I, s.O, s.K, s.W};
  auto xf = cast<float>(x), Cf = cast<float>(C);
  std::vector<double> xd(xf.begin(), xf.end()), Cd(Cf.begin(), Cf.end());
  std::vector<float> gxf(xf.size()), gtf(Cf.size());
  std::vector<double> gxd(xd.size()), gtd(Cd.size());
  const double lf = reg::edge_scale_c0(shape, DType::float32, xf.data(), Cf.data(), kAll, {gxf.data(), gtf.data()});
  const double ld = reg::edge_scale_c0(shape, DType::float64, xd.data(), Cd.data(), kAll, {gxd.data(), gtd.data()});
  EXPECT_NEAR(lf, ld, 1e-5 * (1 + std::fabs(ld)));
  for (std::size_t j = 0; j < gxd.size(); ++j) EXPECT_NEAR(gxf[j], gxd[j], 1e-4 * (1 + std::fabs(gxd[j])));
  for (std::size_t j = 0; j < gtd.size(); ++j) EXPECT_NEAR(gtf[j], gtd[j], 1e-4 * (1 + std::fabs(gtd[j])));
}

INSTANTIATE_TEST_SUITE_P(Shapes, EdgeScaleC0,
                         ::testing::Values(C0Case{2, 1, 1, 2, 4.0}, C0Case{2, 3, 2, 5, 2.0},
                                           C0Case{7, 3, 4, 6, 4.0}, C0Case{16, 2, 5, 9, 3.0},
                                           C0Case{40, 5, 3, 4, 6.0}));

// ---- B-spline ------------------------------------------------------------------------------------

class EdgeScaleBspline : public ::testing::TestWithParam<BsCase> {};

TEST_P(EdgeScaleBspline, LossScalesAndGradientsMatchReference) {
  const BsCase s = GetParam();
  std::mt19937 rng(23 + s.B + s.k);
  const int C = s.G + s.k;
  auto x = randn(rng, s.B * s.I, 0.8);  // a few samples fall outside the knots (basis 0 there)
  auto knots = uniform_knots(s.I, s.G, s.k, -1.0, 1.0);
  auto base = randn(rng, s.O * s.I), w = randn(rng, s.O * s.I * C), sc = randn(rng, s.O * s.I);
  const kancore::bspline::Shape shape{s.B, s.I, s.O, s.G, s.k};
  auto xd = cast<double>(x), td = cast<double>(knots), bd = cast<double>(base), wd = cast<double>(w),
       sd = cast<double>(sc);
  std::vector<double> gx(xd.size()), gb(bd.size()), gw(wd.size()), gs(sd.size()), A(s.O * s.I);
  const kancore::bspline::Params p{td.data(), s.base ? bd.data() : nullptr, wd.data(), s.scaler ? sd.data() : nullptr};
  const kancore::bspline::Grads g{gx.data(), s.base ? gb.data() : nullptr, gw.data(), s.scaler ? gs.data() : nullptr};
  const double loss = reg::edge_scale_bspline(shape, DType::float64, xd.data(), p, kAll, g, A.data());
  x = cast<LD>(xd);
  base = cast<LD>(bd);
  w = cast<LD>(wd);
  sc = cast<LD>(sd);
  std::vector<LD> Aref;
  const LD ref = reference_bspline(s, x, knots, base, w, sc, kAll, &Aref);
  EXPECT_NEAR(loss, static_cast<double>(ref), 1e-12 * (1 + std::fabs(static_cast<double>(ref))));
  expect_close(A, Aref, 1e-12, "A");
  auto f = [&] { return reference_bspline(s, x, knots, base, w, sc, kAll); };
  expect_close(gx, finite_diff(x, f), 1e-7, "grad_x");
  expect_close(gw, finite_diff(w, f), 1e-7, "grad_spline_weight");
  if (s.base) expect_close(gb, finite_diff(base, f), 1e-7, "grad_base_weight");
  if (s.scaler) expect_close(gs, finite_diff(sc, f), 1e-7, "grad_spline_scaler");
}

INSTANTIATE_TEST_SUITE_P(Shapes, EdgeScaleBspline,
                         ::testing::Values(BsCase{2, 2, 3, 3, 1}, BsCase{9, 3, 2, 5, 3},
                                           BsCase{12, 2, 4, 4, 2, false, true},
                                           BsCase{6, 3, 3, 5, 3, true, false},
                                           BsCase{30, 4, 2, 7, 4}));

// ---- std = 0: constant inputs and zero edges ------------------------------------------------------

TEST(EdgeScale, ConstantInputAndZeroEdgesGiveFiniteSubgradients) {
  const int B = 8, I = 3, O = 2, K = 5;
  std::mt19937 rng(3);
  auto x = cast<double>(randn(rng, B * I));
  for (int b = 0; b < B; ++b) x[b * I + 1] = 0.37;  // input 1 constant: s_x = 0 and every s_phi = 0
  auto C = cast<double>(randn(rng, I * K * O));
  for (int k = 0; k < K; ++k) C[(2 * K + k) * O + 0] = 0.0;  // edge (i=2, o=0) is identically 0
  const kancore::c0::Shape shape{B, I, O, K, 4.0};
  const reg::EdgeScaleOptions opt{1.0, 2.0, 0.0, 0.0};
  std::vector<double> gx(B * I), gt(I * K * O), A(O * I);
  const double loss = reg::edge_scale_c0(shape, DType::float64, x.data(), C.data(), opt, {gx.data(), gt.data(), A.data()});
  EXPECT_TRUE(std::isfinite(loss));
  for (double v : gx) EXPECT_TRUE(std::isfinite(v));
  for (double v : gt) EXPECT_TRUE(std::isfinite(v));
  EXPECT_EQ(A[0 * I + 1], 0.0);
  EXPECT_EQ(A[1 * I + 1], 0.0);
  EXPECT_EQ(A[0 * I + 2], 0.0);
  for (int b = 0; b < B; ++b) EXPECT_EQ(gx[b * I + 1], 0.0);  // subgradient 0 through both stds
  for (int k = 0; k < K; ++k) {
    for (int o = 0; o < O; ++o) EXPECT_EQ(gt[(1 * K + k) * O + o], 0.0);
    EXPECT_EQ(gt[(2 * K + k) * O + 0], 0.0);
  }
  // The loss equals the reference (which has 0 for those edges too).
  EXPECT_NEAR(loss, static_cast<double>(reference_c0({B, I, O, K, 4.0}, cast<LD>(x), cast<LD>(C), opt)), 1e-12);

  // Everything constant: A = 0, loss = 0, all gradients 0.
  std::vector<double> xc(B * I, -0.5);
  EXPECT_EQ(reg::edge_scale_c0(shape, DType::float64, xc.data(), C.data(), opt, {gx.data(), gt.data()}), 0.0);
  for (double v : gx) EXPECT_EQ(v, 0.0);
  for (double v : gt) EXPECT_EQ(v, 0.0);
}

TEST(EdgeScale, BsplineZeroWeightsAndConstantFeature) {
  const int B = 5, I = 2, O = 2, G = 4, k = 3, C = G + k;
  std::vector<double> x = {0.1, 0.3, -0.2, 0.3, 0.5, 0.3, -0.7, 0.3, 0.9, 0.3};  // feature 1 constant
  const auto knots = cast<double>(uniform_knots(I, G, k, -1, 1));
  std::vector<double> base(O * I, 0.0), w(O * I * C, 0.0), sc(O * I, 1.0);
  std::vector<double> gx(B * I), gb(O * I), gw(O * I * C), gs(O * I);
  const kancore::bspline::Shape shape{B, I, O, G, k};
  const double loss = reg::edge_scale_bspline(shape, DType::float64, x.data(), {knots.data(), base.data(), w.data(), sc.data()},
                                              kAll, {gx.data(), gb.data(), gw.data(), gs.data()});
  EXPECT_EQ(loss, 0.0);  // all edges zero: A = 0 and every coefficient 0
  for (auto* v : {&gx, &gb, &gw, &gs}) {
    for (double e : *v) EXPECT_EQ(e, 0.0);
  }
}

// ---- non-finite input, determinism ---------------------------------------------------------------

TEST(EdgeScale, NonFiniteInputGivesNaNEverywhere) {
  const int B = 4, I = 2, O = 3, K = 4;
  std::vector<double> C(I * K * O, 0.5);
  C[3] = -1.0;
  const kancore::c0::Shape shape{B, I, O, K, 4.0};
  for (double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                     -std::numeric_limits<double>::infinity()}) {
    std::vector<double> x = {0.1, 0.2, bad, 0.4, 0.5, 0.6, 0.7, 0.8};
    std::vector<double> gx(B * I, 0.0), gt(I * K * O, 0.0), A(O * I, 0.0);
    EXPECT_TRUE(std::isnan(reg::edge_scale_c0(shape, DType::float64, x.data(), C.data(), kAll,
                                              {gx.data(), gt.data(), A.data()})));
    for (double v : gx) EXPECT_TRUE(std::isnan(v));
    for (double v : gt) EXPECT_TRUE(std::isnan(v));
    for (double v : A) EXPECT_TRUE(std::isnan(v));
  }
  const int G = 3, k = 2, Cn = G + k;
  const auto knots = cast<float>(uniform_knots(I, G, k, -1, 1));
  std::vector<float> w(O * I * Cn, 0.25f), x = {0.1f, std::nanf(""), 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
  std::vector<float> gw(w.size(), 0.0f);
  EXPECT_TRUE(std::isnan(reg::edge_scale_bspline({B, I, O, G, k}, DType::float32, x.data(),
                                                 {knots.data(), nullptr, w.data(), nullptr}, kAll,
                                                 {nullptr, nullptr, gw.data(), nullptr})));
  for (float v : gw) EXPECT_TRUE(std::isnan(v));
}

TEST(EdgeScale, DeterministicAcrossThreadCounts) {
  const int B = 300, I = 9, O = 17, K = 12;
  std::mt19937 rng(11);
  const auto x = cast<float>(randn(rng, B * I, 2.0)), C = cast<float>(randn(rng, I * K * O));
  const kancore::c0::Shape shape{B, I, O, K, 4.0};
  auto run = [&](int threads) {
    omp_set_num_threads(threads);
    std::vector<float> gx(B * I), gt(I * K * O);
    const double v = reg::edge_scale_c0(shape, DType::float32, x.data(), C.data(), kAll, {gx.data(), gt.data()});
    return std::make_tuple(v, gx, gt);
  };
  const int before = omp_get_max_threads();
  const auto one = run(1);
  const auto many = run(4);
  omp_set_num_threads(before);
  EXPECT_EQ(std::get<0>(one), std::get<0>(many));
  EXPECT_EQ(std::get<1>(one), std::get<1>(many));
  EXPECT_EQ(std::get<2>(one), std::get<2>(many));
}

TEST(EdgeScale, HugeInputsStayInBounds) {
  const int B = 4, I = 1, O = 2, K = 3;
  std::vector<double> x = {1e300, -1e300, 1e-300, 0.0}, C = {1, 2, 3, 4, 5, 6};
  std::vector<double> gx(B * I), gt(C.size());
  const kancore::c0::Shape shape{B, I, O, K, 4.0};
  // Only checks that nothing crashes or reads out of bounds; the value overflows to inf/NaN.
  (void)reg::edge_scale_c0(shape, DType::float64, x.data(), C.data(), kAll, {gx.data(), gt.data()});
  const int G = 2, k = 1;
  const auto knots = cast<double>(uniform_knots(I, G, k, -1, 1));
  std::vector<double> w(O * I * (G + k), 1.0);
  (void)reg::edge_scale_bspline({B, I, O, G, k}, DType::float64, x.data(), {knots.data(), nullptr, w.data(), nullptr},
                                kAll, {gx.data(), nullptr, nullptr, nullptr});
  SUCCEED();
}

// ---- validation -----------------------------------------------------------------------------------

TEST(EdgeScale, RejectsBadInput) {
  std::vector<double> x(8, 0.1), C(2 * 4 * 3, 0.0);
  const kancore::c0::Shape ok{4, 2, 3, 4, 4.0};
  for (std::int64_t b : {0, 1}) {
    kancore::c0::Shape s = ok;
    s.batch = b;
    try {
      reg::edge_scale_c0(s, DType::float64, x.data(), C.data(), kAll);
      ADD_FAILURE() << "batch " << b << " accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("expected batch >= 2"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(reg::edge_scale_c0(ok, DType::float64, nullptr, C.data(), kAll), std::invalid_argument);
  EXPECT_THROW(reg::edge_scale_c0(ok, DType::float64, x.data(), nullptr, kAll), std::invalid_argument);
  EXPECT_THROW(reg::edge_scale_c0(ok, static_cast<DType>(7), x.data(), C.data(), kAll), std::invalid_argument);
  EXPECT_THROW(reg::edge_scale_c0(ok, DType::float64, x.data(), C.data(),
                                  {std::numeric_limits<double>::quiet_NaN(), 1, 0, 0}),
               std::invalid_argument);
  kancore::c0::Shape k1 = ok;
  k1.num_control_points = 1;
  EXPECT_THROW(reg::edge_scale_c0(k1, DType::float64, x.data(), C.data(), kAll), std::invalid_argument);
  const kancore::ExecContext cuda{{kancore::DeviceType::cuda, 0}, nullptr};
  try {
    reg::edge_scale_c0(ok, DType::float64, x.data(), C.data(), kAll, {}, cuda);
    ADD_FAILURE() << "CUDA accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("not yet on CUDA"), std::string::npos);
  }

  const int G = 2, k = 1;
  auto knots = cast<double>(uniform_knots(2, G, k, -1, 1));
  std::vector<double> w(3 * 2 * (G + k), 1.0), gb(6);
  const kancore::bspline::Shape bs{4, 2, 3, G, k};
  EXPECT_THROW(reg::edge_scale_bspline(bs, DType::float64, x.data(), {knots.data(), nullptr, w.data(), nullptr}, kAll,
                                       {nullptr, gb.data(), nullptr, nullptr}),
               std::invalid_argument);  // base gradient without a base weight
  knots[2] = -5.0;  // decreasing
  EXPECT_THROW(reg::edge_scale_bspline(bs, DType::float64, x.data(), {knots.data(), nullptr, w.data(), nullptr}, kAll),
               std::invalid_argument);
  knots[2] = std::numeric_limits<double>::infinity();
  EXPECT_THROW(reg::edge_scale_bspline(bs, DType::float64, x.data(), {knots.data(), nullptr, w.data(), nullptr}, kAll),
               std::invalid_argument);
  EXPECT_THROW(reg::edge_scale_bspline(bs, DType::float64, x.data(), {nullptr, nullptr, w.data(), nullptr}, kAll),
               std::invalid_argument);
  kancore::bspline::Shape b1 = bs;
  b1.batch = 1;
  EXPECT_THROW(reg::edge_scale_bspline(b1, DType::float64, x.data(), {knots.data(), nullptr, w.data(), nullptr}, kAll),
               std::invalid_argument);
}

}  // namespace

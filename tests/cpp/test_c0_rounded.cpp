// The rounded GEMM paths (ExecContext::precision tf32 / bf16) of the C0 layer and (CPU only so
// far) the B-spline layer: the CPU oracle against an independent float64 restatement (operands rounded by nearbyint on the format's spacing,
// sums in float64), its error against the exact layer, chunking, non-finite inputs, workspace
// and validation; and, with a CUDA device, the tensor-core path against the CPU oracle.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "cuda_test_util.hpp"
#include "kancore/bspline_layer.hpp"
#include "kancore/c0_layer.hpp"
#include "../../cpp/src/rounding.hpp"  // internal: the rounding both backends share

namespace {

using kancore::DType;
using kancore::ExecContext;
using kancore::MatmulPrecision;
using kancore::c0::Impl;
using kancore::c0::Shape;

// Independent rounding: nearest multiple of the format's spacing at v's binade, ties to even
// (nearbyint in the default rounding mode), computed in double.
double round_oracle(float v, MatmulPrecision p) {
  if (p == MatmulPrecision::highest || !std::isfinite(v) || v == 0.0f) return v;
  const int kept = p == MatmulPrecision::bf16 ? 7 : 10;
  int e;
  std::frexp(static_cast<double>(v), &e);  // |v| in [2^(e-1), 2^e)
  const double spacing = std::ldexp(1.0, std::max(e - 1, -126) - kept);
  return std::nearbyint(static_cast<double>(v) / spacing) * spacing;
}

struct Case {
  Shape s;
  std::vector<float> x, table;
};

Case make_case(std::int64_t N, std::int64_t I, std::int64_t O, std::int64_t K, double W, unsigned seed) {
  Case c{Shape{N, I, O, K, W}, std::vector<float>(N * I), std::vector<float>(I * K * O)};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> ux(static_cast<float>(-0.7 * W), static_cast<float>(0.7 * W));
  std::normal_distribution<float> nc(0.0f, 1.0f);
  for (auto& v : c.x) v = ux(rng);
  for (auto& v : c.table) v = nc(rng);
  // Exactly on control points, and on the ends.
  for (std::int64_t b = 0; b < std::min<std::int64_t>(N, 4); ++b) {
    c.x[b * I] = static_cast<float>(-W / 2 + b * W / (K - 1));
  }
  return c;
}

// (k, t) as kanditioned computes them, in float.
void locate_ref(const Shape& s, float x, std::int64_t& k, float& t) {
  const float u = ((x + static_cast<float>(s.spline_width / 2)) * static_cast<float>(s.num_control_points - 1)) /
                  static_cast<float>(s.spline_width);
  const float kf = std::clamp(std::floor(u), 0.0f, static_cast<float>(s.num_control_points - 2));
  k = static_cast<std::int64_t>(kf);
  t = u - kf;
}

std::vector<double> forward_oracle(const Case& c, MatmulPrecision p, std::vector<double>* scale = nullptr) {
  const auto& s = c.s;
  const std::int64_t I = s.in, O = s.out, K = s.num_control_points;
  std::vector<double> y(s.batch * O, 0.0);
  if (scale) scale->assign(s.batch * O, 0.0);
  for (std::int64_t b = 0; b < s.batch; ++b) {
    for (std::int64_t i = 0; i < I; ++i) {
      std::int64_t k;
      float t;
      locate_ref(s, c.x[b * I + i], k, t);
      const double w0 = round_oracle(1.0f - t, p), w1 = round_oracle(t, p);
      for (std::int64_t o = 0; o < O; ++o) {
        const double a = w0 * round_oracle(c.table[(i * K + k) * O + o], p);
        const double d = w1 * round_oracle(c.table[(i * K + k + 1) * O + o], p);
        y[b * O + o] += a + d;
        if (scale) (*scale)[b * O + o] += std::abs(a) + std::abs(d);
      }
    }
  }
  return y;
}

ExecContext cpu_ctx(MatmulPrecision p, std::size_t limit = std::size_t{256} << 20) {
  ExecContext ctx;
  ctx.precision = p;
  ctx.workspace_limit = limit;
  return ctx;
}

std::vector<float> run_forward(const Case& c, const ExecContext& ctx) {
  std::vector<float> y(c.s.batch * c.s.out, std::numeric_limits<float>::quiet_NaN());
  std::vector<char> ws(kancore::c0::forward_workspace_bytes(c.s, DType::float32, Impl::gather, ctx));
  kancore::c0::forward(c.s, DType::float32, Impl::gather, c.x.data(), c.table.data(), y.data(), ws.data(),
                       ws.size(), ctx);
  return y;
}

std::vector<float> run_backward_table(const Case& c, const std::vector<float>& g, const ExecContext& ctx) {
  std::vector<float> dc(c.table.size(), std::numeric_limits<float>::quiet_NaN());
  std::vector<char> ws(kancore::c0::backward_workspace_bytes(c.s, DType::float32, Impl::gather, ctx));
  kancore::c0::backward_table(c.s, DType::float32, Impl::gather, c.x.data(), g.data(), dc.data(), ws.data(),
                              ws.size(), ctx);
  return dc;
}

const MatmulPrecision kModes[] = {MatmulPrecision::tf32, MatmulPrecision::bf16};

TEST(C0Rounded, RoundingMatchesTheSpacingOracle) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::uint32_t> bits;
  for (MatmulPrecision p : kModes) {
    for (int j = 0; j < 200000; ++j) {
      std::uint32_t b = bits(rng);
      float v;
      std::memcpy(&v, &b, sizeof v);
      if (!std::isfinite(v) || std::fpclassify(v) == FP_SUBNORMAL) continue;
      const double want = round_oracle(v, p);
      const float got = kancore::detail::round_to(v, p);
      if (std::abs(want) > std::numeric_limits<float>::max()) {
        EXPECT_TRUE(std::isinf(got)) << v;
      } else {
        ASSERT_EQ(static_cast<double>(got), want) << "v=" << v << " mode=" << kancore::to_string(p);
      }
    }
    // Ties go to even: 1 + half a spacing rounds down to 1, 1 + 3 half-spacings up to 1 + 2 spacings.
    const float half = p == MatmulPrecision::bf16 ? 0x1p-8f : 0x1p-11f;
    EXPECT_EQ(kancore::detail::round_to(1.0f + half, p), 1.0f);
    EXPECT_EQ(kancore::detail::round_to(1.0f + 3 * half, p), 1.0f + 4 * half);
    EXPECT_TRUE(std::isnan(kancore::detail::round_to(std::numeric_limits<float>::quiet_NaN(), p)));
    EXPECT_EQ(kancore::detail::round_to(-std::numeric_limits<float>::infinity(), p),
              -std::numeric_limits<float>::infinity());
  }
}

TEST(C0Rounded, ForwardMatchesTheFloat64RestatementAndIsCloseToExact) {
  const Case c = make_case(70, 9, 13, 17, 4.0, 1);
  const std::vector<float> exact = run_forward(c, cpu_ctx(MatmulPrecision::highest));
  double out_scale = 0;
  for (float v : exact) out_scale = std::max(out_scale, std::abs(static_cast<double>(v)));
  for (MatmulPrecision p : kModes) {
    std::vector<double> scale;
    const std::vector<double> want = forward_oracle(c, p, &scale);
    const std::vector<float> got = run_forward(c, cpu_ctx(p));
    double worst_vs_exact = 0;
    for (std::size_t j = 0; j < got.size(); ++j) {
      // float32 accumulation of 2*in products: a few ulps of the sum of magnitudes.
      ASSERT_NEAR(got[j], want[j], 4 * c.s.in * 6e-8 * scale[j] + 1e-30) << j << " " << kancore::to_string(p);
      worst_vs_exact = std::max(worst_vs_exact, std::abs(static_cast<double>(got[j]) - exact[j]));
    }
    // Operand rounding: 2^-8 (bf16) or 2^-11 (tf32) relative per operand.
    const double bound = (p == MatmulPrecision::bf16 ? 2e-2 : 3e-3) * out_scale;
    EXPECT_LE(worst_vs_exact, bound) << kancore::to_string(p);
    EXPECT_GT(worst_vs_exact, 0.0) << "rounding changed nothing: the mode was ignored";
  }
}

TEST(C0Rounded, ChunkedForwardAndBackwardEqualOneChunk) {
  const Case c = make_case(41, 5, 7, 8, 3.0, 2);
  std::vector<float> g(c.s.batch * c.s.out);
  std::mt19937 rng(3);
  std::normal_distribution<float> n01;
  for (auto& v : g) v = n01(rng);
  for (MatmulPrecision p : kModes) {
    const auto y_big = run_forward(c, cpu_ctx(p));
    const auto dc_big = run_backward_table(c, g, cpu_ctx(p));
    for (std::size_t limit : {std::size_t{0}, std::size_t{4096}, std::size_t{20000}}) {
      const auto y = run_forward(c, cpu_ctx(p, limit));
      const auto dc = run_backward_table(c, g, cpu_ctx(p, limit));
      for (std::size_t j = 0; j < y.size(); ++j) ASSERT_NEAR(y[j], y_big[j], 1e-5 * (1 + std::abs(y_big[j])));
      for (std::size_t j = 0; j < dc.size(); ++j) ASSERT_NEAR(dc[j], dc_big[j], 1e-5 * (1 + std::abs(dc_big[j])));
    }
    // The workspace query honours the limit: one row of Phi when the limit is 0.
    const std::size_t one_row = kancore::c0::forward_workspace_bytes(c.s, DType::float32, Impl::gather, cpu_ctx(p, 0));
    const std::size_t full = kancore::c0::forward_workspace_bytes(c.s, DType::float32, Impl::gather, cpu_ctx(p));
    EXPECT_LT(one_row, full);
  }
}

TEST(C0Rounded, BackwardTableMatchesTheFloat64Restatement) {
  const Case c = make_case(33, 4, 6, 9, 4.0, 4);
  const std::int64_t I = c.s.in, O = c.s.out, K = c.s.num_control_points;
  std::vector<float> g(c.s.batch * O);
  std::mt19937 rng(5);
  std::normal_distribution<float> n01;
  for (auto& v : g) v = n01(rng);
  for (MatmulPrecision p : kModes) {
    std::vector<double> want(c.table.size(), 0.0), mag(c.table.size(), 0.0);
    for (std::int64_t b = 0; b < c.s.batch; ++b) {
      for (std::int64_t i = 0; i < I; ++i) {
        std::int64_t k;
        float t;
        locate_ref(c.s, c.x[b * I + i], k, t);
        const double w0 = round_oracle(1.0f - t, p), w1 = round_oracle(t, p);
        for (std::int64_t o = 0; o < O; ++o) {
          const double go = round_oracle(g[b * O + o], p);
          want[(i * K + k) * O + o] += w0 * go;
          want[(i * K + k + 1) * O + o] += w1 * go;
          mag[(i * K + k) * O + o] += std::abs(w0 * go);
          mag[(i * K + k + 1) * O + o] += std::abs(w1 * go);
        }
      }
    }
    const auto got = run_backward_table(c, g, cpu_ctx(p));
    for (std::size_t j = 0; j < got.size(); ++j) {
      ASSERT_NEAR(got[j], want[j], 4 * c.s.batch * 6e-8 * mag[j] + 1e-30) << j;
    }
  }
}

TEST(C0Rounded, NonFiniteInputsGiveTheExactLimitsAndNaNRows) {
  Case c = make_case(6, 3, 4, 5, 2.0, 6);
  c.x[1 * 3 + 0] = std::numeric_limits<float>::infinity();
  c.x[2 * 3 + 1] = -std::numeric_limits<float>::infinity();
  c.x[3 * 3 + 2] = std::numeric_limits<float>::quiet_NaN();
  const auto exact = run_forward(c, cpu_ctx(MatmulPrecision::highest));
  for (MatmulPrecision p : kModes) {
    const auto got = run_forward(c, cpu_ctx(p));
    for (std::int64_t o = 0; o < c.s.out; ++o) {
      EXPECT_TRUE(std::isnan(got[3 * c.s.out + o]));
      for (std::int64_t b : {1, 2}) {
        const float e = exact[b * c.s.out + o], r = got[b * c.s.out + o];
        EXPECT_EQ(std::isinf(e), std::isinf(r));
        if (std::isinf(e)) EXPECT_EQ(e, r);
      }
    }
  }
}

TEST(C0Rounded, Float64LayersIgnoreThePrecision) {
  const Shape s{5, 3, 2, 6, 4.0};
  std::vector<double> x = {-2.1, -1, 0, 0.3, 1.9, 2.5, -0.2, 0.8, 1.1, -1.7, 0.05, 3.0, -3.1, 0.6, 0.9};
  std::vector<double> table(3 * 6 * 2);
  for (std::size_t j = 0; j < table.size(); ++j) table[j] = std::sin(0.7 * j);
  std::vector<double> a(10), b(10);
  kancore::c0::forward(s, DType::float64, Impl::gather, x.data(), table.data(), a.data());
  kancore::c0::forward(s, DType::float64, Impl::gather, x.data(), table.data(), b.data(), nullptr, 0,
                       cpu_ctx(MatmulPrecision::bf16));
  EXPECT_EQ(a, b);
}

TEST(C0Rounded, RejectsSmallWorkspacesAndUnknownModes) {
  const Case c = make_case(8, 3, 4, 5, 2.0, 8);
  std::vector<float> y(c.s.batch * c.s.out);
  const ExecContext ctx = cpu_ctx(MatmulPrecision::bf16);
  std::vector<char> ws(16);
  EXPECT_THROW(kancore::c0::forward(c.s, DType::float32, Impl::gather, c.x.data(), c.table.data(), y.data(),
                                    ws.data(), ws.size(), ctx),
               std::invalid_argument);
  ExecContext bad = ctx;
  bad.precision = static_cast<MatmulPrecision>(9);
  EXPECT_THROW(kancore::c0::forward_workspace_bytes(c.s, DType::float32, Impl::gather, bad), std::invalid_argument);
  EXPECT_EQ(kancore::matmul_precision_from_name("tf32"), MatmulPrecision::tf32);
  EXPECT_THROW(kancore::matmul_precision_from_name("fp8"), std::invalid_argument);
}

// ---- B-spline layer -------------------------------------------------------------------------

struct BsCase {
  kancore::bspline::Shape s;
  std::vector<float> x, knots, Wb, W, sc;
};

BsCase make_bs_case(std::int64_t N, std::int64_t I, std::int64_t O, std::int64_t G, std::int64_t k, unsigned seed) {
  BsCase c{{N, I, O, G, k}, std::vector<float>(N * I), {}, std::vector<float>(O * I), std::vector<float>(O * I * (G + k)),
           std::vector<float>(O * I)};
  std::mt19937 rng(seed);
  std::normal_distribution<float> n01;
  std::uniform_real_distribution<float> ux(-1.3f, 1.3f);
  for (auto& v : c.x) v = ux(rng);
  const double h = 2.0 / G;
  for (std::int64_t i = 0; i < I; ++i) {
    for (std::int64_t j = 0; j < G + 2 * k + 1; ++j) c.knots.push_back(static_cast<float>(-1 + (j - k) * h + 0.01 * i));
  }
  for (auto& v : c.Wb) v = n01(rng);
  for (auto& v : c.W) v = n01(rng);
  for (auto& v : c.sc) v = n01(rng);
  return c;
}

// Row b of [round(B_c(x_i)) | round(silu(x_i))] in float64; the basis from bspline::basis.
std::vector<double> bs_phi_row(const BsCase& c, std::int64_t b, MatmulPrecision p) {
  const auto& s = c.s;
  const std::int64_t I = s.in, C = s.num_coefficients(), k = s.order;
  std::vector<double> row(I * C + I, 0.0), knots(s.num_knots()), v(k + 1);
  for (std::int64_t i = 0; i < I; ++i) {
    for (std::int64_t j = 0; j < s.num_knots(); ++j) knots[j] = c.knots[i * s.num_knots() + j];
    const float xv = c.x[b * I + i];
    const std::int64_t first = kancore::bspline::basis(knots.data(), s.grid_size, k, xv, v.data());
    for (std::int64_t r = 0; r <= k; ++r) row[i * C + first + r] = round_oracle(static_cast<float>(v[r]), p);
    row[I * C + i] = round_oracle(static_cast<float>(xv / (1.0 + std::exp(-static_cast<double>(xv)))), p);
  }
  return row;
}

double bs_weight(const BsCase& c, std::int64_t j, std::int64_t o, MatmulPrecision p) {
  const std::int64_t I = c.s.in, C = c.s.num_coefficients();
  if (j >= I * C) return round_oracle(c.Wb[o * I + (j - I * C)], p);
  const std::int64_t i = j / C, cc = j % C;
  return round_oracle(c.W[(o * I + i) * C + cc] * c.sc[o * I + i], p);
}

TEST(BsplineRounded, ForwardAndWeightGradientsMatchTheFloat64Restatement) {
  const BsCase c = make_bs_case(37, 4, 6, 5, 3, 11);
  const auto& s = c.s;
  const std::int64_t I = s.in, O = s.out, C = s.num_coefficients(), J = I * C + I;
  const kancore::bspline::Params prm{c.knots.data(), c.Wb.data(), c.W.data(), c.sc.data()};
  std::vector<float> g(s.batch * O);
  std::mt19937 rng(12);
  std::normal_distribution<float> n01;
  for (auto& v : g) v = n01(rng);
  std::vector<float> y_exact(s.batch * O), gx_exact(s.batch * I);
  {
    std::vector<char> ws(std::max(kancore::bspline::forward_workspace_bytes(s, DType::float32),
                                  kancore::bspline::backward_workspace_bytes(s, DType::float32)));
    kancore::bspline::forward(s, DType::float32, c.x.data(), prm, y_exact.data(), ws.data(), ws.size());
    kancore::bspline::backward(s, DType::float32, c.x.data(), prm, g.data(), {gx_exact.data()}, ws.data(), ws.size());
  }
  double out_scale = 0;
  for (float v : y_exact) out_scale = std::max(out_scale, std::abs(static_cast<double>(v)));
  for (MatmulPrecision p : kModes) {
    for (std::size_t limit : {std::size_t{256} << 20, std::size_t{0}}) {
      const ExecContext ctx = cpu_ctx(p, limit);
      std::vector<char> ws(std::max(kancore::bspline::forward_workspace_bytes(s, DType::float32, ctx),
                                    kancore::bspline::backward_workspace_bytes(s, DType::float32, ctx)));
      std::vector<float> y(s.batch * O), gx(s.batch * I), gWb(O * I), gW(O * I * C), gsc(O * I);
      kancore::bspline::forward(s, DType::float32, c.x.data(), prm, y.data(), ws.data(), ws.size(), ctx);
      kancore::bspline::backward(s, DType::float32, c.x.data(), prm, g.data(),
                                 {gx.data(), gWb.data(), gW.data(), gsc.data()}, ws.data(), ws.size(), ctx);
      const double unit = p == MatmulPrecision::bf16 ? 0x1p-8 : 0x1p-11;
      std::vector<double> dW(J * O, 0.0), dWmag(J * O, 0.0);
      double worst = 0;
      for (std::int64_t b = 0; b < s.batch; ++b) {
        const auto row = bs_phi_row(c, b, p);
        for (std::int64_t o = 0; o < O; ++o) {
          double want = 0, mag = 0;
          for (std::int64_t j = 0; j < J; ++j) {
            const double term = row[j] * bs_weight(c, j, o, p);
            want += term;
            mag += std::abs(term);
            const double gt = row[j] * round_oracle(g[b * O + o], p);
            dW[j * O + o] += gt;
            dWmag[j * O + o] += std::abs(gt);
          }
          // float32 sums, plus a rare tie decided differently by the float basis: one unit of a term
          ASSERT_NEAR(y[b * O + o], want, 4 * J * 6e-8 * mag + unit * mag / J + 1e-30) << b << "," << o;
          worst = std::max(worst, std::abs(static_cast<double>(y[b * O + o]) - y_exact[b * O + o]));
        }
      }
      EXPECT_GT(worst, 0.0);
      EXPECT_LE(worst, (p == MatmulPrecision::bf16 ? 3e-2 : 4e-3) * out_scale);
      for (std::int64_t o = 0; o < O; ++o) {
        for (std::int64_t i = 0; i < I; ++i) {
          double dsc = 0;
          for (std::int64_t cc = 0; cc < C; ++cc) {
            const std::int64_t j = i * C + cc;
            const double tol = 4 * s.batch * 6e-8 * dWmag[j * O + o] + unit * dWmag[j * O + o] / s.batch + 1e-30;
            ASSERT_NEAR(gW[(o * I + i) * C + cc], dW[j * O + o] * c.sc[o * I + i], tol * std::abs(c.sc[o * I + i]));
            dsc += dW[j * O + o] * c.W[(o * I + i) * C + cc];
          }
          EXPECT_NEAR(gsc[o * I + i], dsc, 1e-3 * (1 + std::abs(dsc)));
          const std::int64_t jb = I * C + i;
          EXPECT_NEAR(gWb[o * I + i], dW[jb * O + o], 4 * s.batch * 6e-8 * dWmag[jb * O + o] + unit * dWmag[jb * O + o]);
        }
      }
      for (std::size_t j = 0; j < gx.size(); ++j) ASSERT_NEAR(gx[j], gx_exact[j], 1e-5 * (1 + std::abs(gx_exact[j])));
    }
  }
}

TEST(BsplineRounded, CudaContextsAndFloat64RunExactly) {
  // No rounded B-spline path on CUDA yet; float64 ignores the precision on either device.
  const BsCase c = make_bs_case(5, 2, 3, 4, 2, 13);
  ExecContext cuda = cpu_ctx(MatmulPrecision::bf16);
  cuda.device.type = kancore::DeviceType::cuda;
  EXPECT_EQ(kancore::bspline::forward_workspace_bytes(c.s, DType::float64, cpu_ctx(MatmulPrecision::bf16)),
            kancore::bspline::forward_workspace_bytes(c.s, DType::float64));
  if (!kancore::built_with_cuda()) {
    EXPECT_THROW(kancore::bspline::forward_workspace_bytes(c.s, DType::float32, cuda), std::runtime_error);
  }
}

#if KANCORE_TEST_CUDA
using kctest::cuda_skip_reason;

TEST(C0RoundedCuda, TensorCorePathMatchesTheCpuOracle) {
  KCTEST_REQUIRE_CUDA();
  for (MatmulPrecision p : kModes) {
    for (std::size_t limit : {std::size_t{256} << 20, std::size_t{0}}) {
      Case c = make_case(300, 24, 70, 32, 4.0, 9);
      c.x[5 * 24 + 3] = std::numeric_limits<float>::infinity();
      c.x[6 * 24 + 1] = std::numeric_limits<float>::quiet_NaN();
      std::vector<float> g(c.s.batch * c.s.out);
      std::mt19937 rng(10);
      std::normal_distribution<float> n01;
      for (auto& v : g) v = n01(rng);
      const auto y_cpu = run_forward(c, cpu_ctx(p));
      std::vector<float> gfin = g;
      Case cfin = c;
      cfin.x[5 * 24 + 3] = 0.5f;
      cfin.x[6 * 24 + 1] = 0.25f;
      const auto dc_cpu = run_backward_table(cfin, gfin, cpu_ctx(p));

      ExecContext ctx = kctest::cuda_ctx();
      ctx.precision = p;
      ctx.workspace_limit = limit;
      auto dx = kctest::device_copy(c.x), dt = kctest::device_copy(c.table), dxf = kctest::device_copy(cfin.x),
           dg = kctest::device_copy(g);
      kctest::DeviceBuffer dy(y_cpu.size() * sizeof(float)), ddc(c.table.size() * sizeof(float));
      kctest::DeviceBuffer wf(kancore::c0::forward_workspace_bytes(c.s, DType::float32, Impl::gather, ctx));
      kctest::DeviceBuffer wb(kancore::c0::backward_workspace_bytes(c.s, DType::float32, Impl::gather, ctx));
      kancore::c0::forward(c.s, DType::float32, Impl::gather, dx.data(), dt.data(), dy.data(), wf.data(), wf.bytes(), ctx);
      kancore::c0::backward_table(c.s, DType::float32, Impl::gather, dxf.data(), dg.data(), ddc.data(), wb.data(),
                                  wb.bytes(), ctx);
      CUDA_OK(cudaDeviceSynchronize());
      const auto y = dy.download<float>();
      const auto dc = ddc.download<float>();
      EXPECT_TRUE(dy.guards_intact() && ddc.guards_intact() && wf.guards_intact() && wb.guards_intact());
      for (std::size_t j = 0; j < y.size(); ++j) {
        if (std::isnan(y_cpu[j])) {
          ASSERT_TRUE(std::isnan(y[j])) << j;
          continue;
        }
        ASSERT_NEAR(y[j], y_cpu[j], 1e-5 * (1 + std::abs(y_cpu[j])) * c.s.in) << j << " " << kancore::to_string(p);
      }
      for (std::size_t j = 0; j < dc.size(); ++j) {
        ASSERT_NEAR(dc[j], dc_cpu[j], 1e-5 * (1 + std::abs(dc_cpu[j])) * 16) << j << " " << kancore::to_string(p);
      }
    }
  }
}
#endif

}  // namespace

// Edge cases of the C0 layer: kanditioned's worked example, exact control points, far
// extrapolation, NaN and ±inf inputs, batch == 0, and extreme inputs that must never index out
// of range.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "c0_param.hpp"
#include "c0_reference.hpp"
#include "kancore/c0_layer.hpp"

namespace kctest {
namespace {

class C0Edge : public DtypeImplTest {};

// K=5, W=2, C=[1,3,2,0,5], in=out=1: control points at x = -1, -0.5, 0, 0.5, 1.
TEST_P(C0Edge, KanditionedWorkedExample) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    const std::vector<T> x = {-3, 2, -1, -0.75, 0, 0.25, 1, -2};
    // y(-3): u=-4, k=0, t=-4: 5*1 - 4*3 = -7.  y(2): u=6, k=3, t=3: -2*0 + 3*5 = 15.
    // y(-0.75): u=0.5 -> (1+3)/2.  y(0.25): u=2.5 -> (2+0)/2.  y(-2): u=-2 -> 3*1 - 2*3 = -3.
    const std::vector<T> expect_y = {-7, 15, 1, 2, 2, 1, 5, -3};
    // Slopes dy/dx = (C[k+1]-C[k]) * (K-1)/W = 2 * diff.
    const std::vector<T> expect_gx = {4, 10, 4, 4, -4, -4, 10, 4};
    const Shape s{static_cast<std::int64_t>(x.size()), 1, 1, 5, 2.0};
    const std::vector<T> C = {1, 3, 2, 0, 5};
    std::vector<T> y(x.size(), T(-99));
    run_forward<T>(s, impl(), x.data(), C.data(), y.data());
    EXPECT_EQ(y, expect_y);

    const std::vector<T> g(x.size(), T(1));
    std::vector<T> gx(x.size(), T(-99));
    run_backward_input<T>(s, impl(), x.data(), C.data(), g.data(), gx.data());
    EXPECT_EQ(gx, expect_gx);

    // grad_table for x = -3 and x = 2 only (g = 1 and 2).
    const Shape s2{2, 1, 1, 5, 2.0};
    const std::vector<T> x2 = {-3, 2}, g2 = {1, 2};
    std::vector<T> gC(5, T(-99));
    run_backward_table<T>(s2, impl(), x2.data(), g2.data(), gC.data());
    // x=-3: row0 += 5*1, row1 += -4*1.  x=2: row3 += (1-3)*2, row4 += 3*2.
    EXPECT_EQ(gC, (std::vector<T>{5, -4, 0, -4, 6}));
  });
}

// On an exactly representable grid, a control point gives exactly its table value.
TEST_P(C0Edge, ExactControlPointsGiveTableValues) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    for (const auto& [K, W] : {std::pair<std::int64_t, double>{5, 2.0}, {9, 4.0}, {2, 1.0}, {3, 8.0}}) {
      SCOPED_TRACE(::testing::Message() << "K=" << K << " W=" << W);
      const Shape s{K, 1, 3, K, W};
      Rng rng(static_cast<std::uint64_t>(K));
      const auto C = random_table<T>(s, rng);
      std::vector<T> x(idx(K));
      for (std::int64_t k = 0; k < K; ++k) x[idx(k)] = static_cast<T>(-W / 2 + k * W / (K - 1));
      std::vector<T> y(idx(K * 3), T(-99));
      run_forward<T>(s, impl(), x.data(), C.data(), y.data());
      for (std::int64_t k = 0; k < K; ++k)
        for (std::int64_t o = 0; o < 3; ++o)
          EXPECT_EQ(y[idx(k * 3 + o)], C[idx(k * 3 + o)]) << "control point " << k << " out " << o;
    }
  });
}

// For arbitrary K and W the control points are not exactly representable; u may land a hair
// below k (then t ~ 1 in segment k-1). Either way y ~ sum_i C[i,k_i,o], and the reference (which
// picks the same segment) must match.
TEST_P(C0Edge, RandomControlPointsAreContinuous) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    for (const std::int64_t K : {2, 3, 31, 256}) {
      Rng rng(static_cast<std::uint64_t>(K) * 7);
      const Shape s{23, 6, 11, K, rng.log_uniform(0.1, 10)};
      SCOPED_TRACE(describe(s));
      const auto C = random_table<T>(s, rng);
      std::vector<std::int64_t> kk(idx(s.batch * s.in));
      std::vector<T> x(kk.size());
      for (std::size_t j = 0; j < x.size(); ++j) {
        kk[j] = rng.integer(0, K - 1);
        x[j] = static_cast<T>(-s.spline_width / 2 + kk[j] * s.spline_width / (K - 1));
      }
      std::vector<T> y(idx(s.batch * s.out));
      run_forward<T>(s, impl(), x.data(), C.data(), y.data());
      const Ref ref = forward_ref<T>(s, x.data(), C.data());
      EXPECT_TRUE(matches_ref(y.data(), ref, Tol<T>::rel));
      for (std::int64_t b = 0; b < s.batch; ++b) {
        for (std::int64_t o = 0; o < s.out; ++o) {
          double at_points = 0, scale = 0;
          for (std::int64_t i = 0; i < s.in; ++i) {
            const double c = C[idx((i * K + kk[idx(b * s.in + i)]) * s.out + o)];
            at_points += c;
            scale += std::fabs(c) + 2.0;  // |C| <= 2: neighbours bound the interpolation error
          }
          // x is within one rounding of the control point: |dy| <= |dx| * slope ~ eps * K.
          const double tol = 64 * std::numeric_limits<T>::epsilon() * static_cast<double>(K) * scale;
          EXPECT_NEAR(y[idx(b * s.out + o)], at_points, tol) << "b=" << b << " o=" << o;
        }
      }
    }
  });
}

// |x| = 1e3 W: far on the linear extensions of the end segments, y = C[0] + u (C[1] - C[0]) on
// the left and C[K-2] + (u - (K-2)) (C[K-1] - C[K-2]) on the right (in = 1: no sums).
TEST_P(C0Edge, FarExtrapolationFollowsEndSegments) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    for (const std::int64_t K : {2, 3, 31, 256}) {
      const double W = 2.5;
      const Shape s{4, 1, 3, K, W};
      SCOPED_TRACE(describe(s));
      Rng rng(static_cast<std::uint64_t>(K) + 11);
      const auto C = random_table<T>(s, rng);
      const std::vector<T> x = {static_cast<T>(-1e3 * W), static_cast<T>(1e3 * W),
                                static_cast<T>(-3e2 * W), static_cast<T>(7e2 * W)};
      std::vector<T> y(idx(s.batch * s.out));
      run_forward<T>(s, impl(), x.data(), C.data(), y.data());
      const Ref ref = forward_ref<T>(s, x.data(), C.data());
      EXPECT_TRUE(matches_ref(y.data(), ref, Tol<T>::rel));
      for (std::int64_t b = 0; b < s.batch; ++b) {
        const long double xv = x[idx(b)];
        const long double u = (xv + W / 2) * (K - 1) / W;
        const bool left = xv < 0;
        const std::int64_t k = left ? 0 : K - 2;
        for (std::int64_t o = 0; o < s.out; ++o) {
          const long double c0 = C[idx(k * s.out + o)], c1 = C[idx((k + 1) * s.out + o)];
          const long double expect = c0 + (u - k) * (c1 - c0);
          const long double scale = std::fabs(u) * (std::fabs(c0) + std::fabs(c1)) + 1;
          EXPECT_NEAR(static_cast<double>(y[idx(b * s.out + o)]), static_cast<double>(expect),
                      static_cast<double>(4 * Tol<T>::rel * scale))
              << "x=" << static_cast<double>(xv) << " o=" << o;
        }
      }
      // The gradient far out is the end segment's slope.
      const std::vector<T> g(idx(s.batch * s.out), T(1));
      std::vector<T> gx(idx(s.batch));
      run_backward_input<T>(s, impl(), x.data(), C.data(), g.data(), gx.data());
      EXPECT_TRUE(matches_ref(gx.data(), backward_input_ref<T>(s, x.data(), C.data(), g.data()),
                              Tol<T>::rel));
    }
  });
}

// A NaN in x[b,i] makes row b of y NaN and grad_x[b,i] NaN; every other row of y and every other
// entry of grad_x is unaffected. grad_table follows the plain math (NaN spreads only into the rows
// edge i's NaN sample touches).
TEST_P(C0Edge, NanInputPoisonsOnlyItsRow) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    const Shape s{6, 5, 7, 6, 3.0};
    Rng rng(8);
    auto xv = random_x<T>(s, rng);
    xv[idx(2 * s.in + 3)] = nan_v<T>();
    xv[idx(5 * s.in + 0)] = -nan_v<T>();  // sign of the NaN must not matter
    const auto x = input_buffer(xv);
    const auto C = input_buffer(random_table<T>(s, rng));
    const auto g = input_buffer(random_vec<T>(idx(s.batch * s.out), rng));

    auto y = output_buffer<T>(idx(s.batch * s.out));
    run_forward<T>(s, impl(), x.data(), C.data(), y.data());
    EXPECT_TRUE(y.guards_intact());
    for (std::int64_t b = 0; b < s.batch; ++b) {
      for (std::int64_t o = 0; o < s.out; ++o) {
        const T v = y[idx(b * s.out + o)];
        if (b == 2 || b == 5) {
          EXPECT_TRUE(std::isnan(v)) << "y[" << b << "," << o << "] = " << v;
        } else {
          EXPECT_TRUE(std::isfinite(v)) << "y[" << b << "," << o << "] = " << v;
        }
      }
    }
    EXPECT_TRUE(matches_ref(y.data(), forward_ref<T>(s, x.data(), C.data()), Tol<T>::rel));

    auto gx = output_buffer<T>(idx(s.batch * s.in));
    run_backward_input<T>(s, impl(), x.data(), C.data(), g.data(), gx.data());
    EXPECT_TRUE(gx.guards_intact());
    for (std::int64_t j = 0; j < s.batch * s.in; ++j) {
      const bool is_nan_input = (j == 2 * s.in + 3) || (j == 5 * s.in);
      EXPECT_EQ(std::isnan(gx[idx(j)]), is_nan_input) << "grad_x[" << j << "] = " << gx[idx(j)];
    }
    EXPECT_TRUE(matches_ref(gx.data(), backward_input_ref<T>(s, x.data(), C.data(), g.data()),
                            Tol<T>::rel));

    auto gC = output_buffer<T>(idx(s.in * s.num_control_points * s.out));
    run_backward_table<T>(s, impl(), x.data(), g.data(), gC.data());
    EXPECT_TRUE(gC.guards_intact());
    const Ref gref = backward_table_ref<T>(s, x.data(), g.data());
    EXPECT_TRUE(matches_ref(gC.data(), gref, Tol<T>::rel));
    // Edges 1, 2 and 4 saw no NaN: their gradients are all finite.
    for (const std::int64_t i : {1, 2, 4})
      for (std::int64_t j = i * s.num_control_points * s.out; j < (i + 1) * s.num_control_points * s.out; ++j)
        EXPECT_TRUE(std::isfinite(gC[idx(j)])) << "edge " << i << " entry " << j;
  });
}

// x = ±inf: each such edge contributes the limit of its end segment's linear extension.
TEST_P(C0Edge, InfiniteInputsGiveEndSegmentLimits) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    const T inf = inf_v<T>();
    // One edge, K = 5, W = 2, four outputs with different end segments:
    //   o0: [1,3,2,0,5]  left rising, right rising    -> y(-inf) = -inf, y(+inf) = +inf
    //   o1: [3,1,2,5,0]  left falling, right falling  -> y(-inf) = +inf, y(+inf) = -inf
    //   o2: [2,2,7,4,4]  flat ends                    -> y(-inf) = 2,    y(+inf) = 4
    //   o3: [-1,-1,0,0,0] flat ends, negative value   -> y(-inf) = -1,   y(+inf) = 0
    const Shape s{2, 1, 4, 5, 2.0};
    const T rows[5][4] = {{1, 3, 2, -1}, {3, 1, 2, -1}, {2, 2, 7, 0}, {0, 5, 4, 0}, {5, 0, 4, 0}};
    std::vector<T> C;
    for (const auto& r : rows) C.insert(C.end(), r, r + 4);
    const std::vector<T> x = {-inf, inf};
    std::vector<T> y(8, T(-99));
    run_forward<T>(s, impl(), x.data(), C.data(), y.data());
    EXPECT_EQ(y, (std::vector<T>{-inf, inf, 2, -1, inf, -inf, 4, 0}));

    // The gradient at ±inf is the (finite) end slope, (K-1)/W = 2 times
    // sum_o g[o] (C[1,o]-C[0,o]) on the left and sum_o g[o] (C[4,o]-C[3,o]) on the right.
    const std::vector<T> g = {1, 2, 3, 4, 1, 2, 3, 4};
    std::vector<T> gx(2, T(-99));
    run_backward_input<T>(s, impl(), x.data(), C.data(), g.data(), gx.data());
    EXPECT_EQ(gx[0], T(2 * (1 * (3 - 1) + 2 * (1 - 3) + 3 * 0 + 4 * 0)));  // -4
    EXPECT_EQ(gx[1], T(2 * (1 * (5 - 0) + 2 * (0 - 5) + 3 * 0 + 4 * 0)));  // -10
  });
}

// Limits add with IEEE rules, and finite edges of the same row still count: a flat end adds its
// value, +inf + -inf gives NaN, +inf + finite stays +inf. Rows without infinities are untouched.
TEST_P(C0Edge, InfiniteLimitsSumWithOtherEdges) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    const T inf = inf_v<T>();
    // Two edges, K = 3, W = 2 (control points -1, 0, 1), one output.
    //   edge 0: [4, 4, 6]  (flat left end, rising right end)
    //   edge 1: [0, 1, -1] (rising left end, falling right end)
    const Shape s{5, 2, 1, 3, 2.0};
    const std::vector<T> C = {4, 4, 6, 0, 1, -1};
    const std::vector<T> x = {
        -inf, 0.5,   // flat left end 4, plus edge 1 at u=1.5 (halfway from 1 to -1): 4 + 0
        -inf, -inf,  // 4 + (-inf) = -inf
        inf, inf,    // +inf + (-inf) = NaN
        inf, 0,      // +inf + 1 = +inf
        0.5, -1,     // finite row: (4+6)/2 + 0 = 5
    };
    std::vector<T> y(5, T(-99));
    run_forward<T>(s, impl(), x.data(), C.data(), y.data());
    EXPECT_EQ(y[0], T(4));
    EXPECT_EQ(y[1], -inf);
    EXPECT_TRUE(std::isnan(y[2])) << y[2];
    EXPECT_EQ(y[3], inf);
    EXPECT_EQ(y[4], T(5));
  });
}

// Random data with scattered ±inf: every element (NaN / ±inf / finite) matches the reference and
// rows without non-finite inputs are unaffected.
TEST_P(C0Edge, ScatteredInfinitiesMatchReference) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    const Shape s{30, 9, 13, 8, 1.5};
    Rng rng(64);
    auto xv = random_x<T>(s, rng);
    for (std::size_t j = 0; j < xv.size(); j += 7) xv[j] = (j % 2) ? inf_v<T>() : -inf_v<T>();
    const auto x = input_buffer(xv);
    const auto C = input_buffer(random_table<T>(s, rng));
    const auto g = input_buffer(random_vec<T>(idx(s.batch * s.out), rng));
    auto y = output_buffer<T>(idx(s.batch * s.out));
    run_forward<T>(s, impl(), x.data(), C.data(), y.data());
    EXPECT_TRUE(y.guards_intact());
    EXPECT_TRUE(matches_ref(y.data(), forward_ref<T>(s, x.data(), C.data()), Tol<T>::rel));
    auto gx = output_buffer<T>(idx(s.batch * s.in));
    run_backward_input<T>(s, impl(), x.data(), C.data(), g.data(), gx.data());
    EXPECT_TRUE(gx.guards_intact());
    EXPECT_TRUE(matches_ref(gx.data(), backward_input_ref<T>(s, x.data(), C.data(), g.data()),
                            Tol<T>::rel));
    for (std::size_t j = 0; j < gx.size(); ++j) EXPECT_TRUE(std::isfinite(gx[j])) << j;
  });
}

// Extreme finite and non-finite inputs never index outside the table: the table is surrounded by
// NaN (an out-of-range read would show up as NaN), the outputs by sentinels (an out-of-range
// write would change them), and every result matches the reference.
TEST_P(C0Edge, ExtremeInputsStayInBounds) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    using L = std::numeric_limits<T>;
    for (const std::int64_t K : {2, 3, 31}) {
      // W < 1 so that x = ±max overflows u to ±inf even for K = 2 (a huge finite u would
      // overflow the float products instead, which is ordinary IEEE overflow, not a kernel bug).
      const Shape s0{0, 1, 5, K, 0.75};
      const T hw = static_cast<T>(s0.spline_width / 2);
      const T big = static_cast<T>(std::is_same_v<T, float> ? 1e30 : 1e200);
      std::vector<T> xv = {nan_v<T>(), inf_v<T>(), -inf_v<T>(), L::max(), L::lowest(),
                           big, -big, L::denorm_min(), -L::denorm_min(), T(-0.0), T(0.0),
                           hw, -hw, std::nextafter(hw, T(0)), std::nextafter(hw, inf_v<T>()),
                           std::nextafter(-hw, T(0)), std::nextafter(-hw, -inf_v<T>()),
                           L::min(), T(1e-3) * hw};
      // Two layouts: one input (the kernels' scalar code) and the values side by side as the
      // inputs of 3 rows, rotated per row (the kernels' vector lanes, 16 floats / 8 doubles).
      for (const bool side_by_side : {false, true}) {
      Shape s = s0;
      const auto n = static_cast<std::int64_t>(xv.size());
      std::vector<T> xs = xv;
      if (side_by_side) {
        s.batch = 3;
        s.in = n;
        xs.clear();
        for (std::int64_t b = 0; b < s.batch; ++b) {
          for (std::int64_t i = 0; i < n; ++i) xs.push_back(xv[idx((i + 5 * b) % n)]);
        }
      } else {
        s.batch = n;
      }
      SCOPED_TRACE(describe(s));
      Rng rng(static_cast<std::uint64_t>(K) + 500);
      const auto x = input_buffer(xs);
      const auto C = input_buffer(random_table<T>(s, rng));
      const auto g = input_buffer(random_vec<T>(idx(s.batch * s.out), rng));
      auto y = output_buffer<T>(idx(s.batch * s.out));
      run_forward<T>(s, impl(), x.data(), C.data(), y.data());
      EXPECT_TRUE(y.guards_intact());
      EXPECT_TRUE(matches_ref(y.data(), forward_ref<T>(s, x.data(), C.data()), Tol<T>::rel));
      auto gx = output_buffer<T>(idx(s.batch * s.in));
      run_backward_input<T>(s, impl(), x.data(), C.data(), g.data(), gx.data());
      EXPECT_TRUE(gx.guards_intact());
      EXPECT_TRUE(matches_ref(gx.data(), backward_input_ref<T>(s, x.data(), C.data(), g.data()),
                              Tol<T>::rel));
      // backward_table with these inputs produces non-finite entries (t = ±inf, NaN); the writes
      // must stay inside grad_table and follow the plain math (IEEE) of the reference.
      auto gC = output_buffer<T>(idx(s.in * s.num_control_points * s.out));
      run_backward_table<T>(s, impl(), x.data(), g.data(), gC.data());
      EXPECT_TRUE(gC.guards_intact()) << "backward_table wrote outside grad_table";
      EXPECT_TRUE(matches_ref(gC.data(), backward_table_ref<T>(s, x.data(), g.data()), Tol<T>::rel));
      // Both gradients in one call (the CPU's fused pass) agree with the references too.
      auto gx2 = output_buffer<T>(idx(s.batch * s.in));
      auto gC2 = output_buffer<T>(idx(s.in * s.num_control_points * s.out));
      std::vector<std::byte> ws(kancore::c0::backward_workspace_bytes(s, kancore::dtype_of<T>::value, impl()) + 1);
      kancore::c0::backward<T>(s, impl(), x.data(), C.data(), g.data(), gx2.data(), gC2.data(),
                               ws.data(), ws.size());
      EXPECT_TRUE(gx2.guards_intact() && gC2.guards_intact());
      EXPECT_TRUE(matches_ref(gx2.data(), backward_input_ref<T>(s, x.data(), C.data(), g.data()),
                              Tol<T>::rel));
      EXPECT_TRUE(matches_ref(gC2.data(), backward_table_ref<T>(s, x.data(), g.data()), Tol<T>::rel));
      }
    }
  });
}

// batch == 0: forward and backward_input touch nothing (null x / y allowed); backward_table
// writes zeros over the whole grad_table.
TEST_P(C0Edge, EmptyBatch) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    const Shape s{0, 3, 4, 5, 2.0};
    Rng rng(1);
    const auto C = random_table<T>(s, rng);
    const DType dt = kancore::dtype_of<T>::value;
    std::vector<std::byte> fws(kancore::c0::forward_workspace_bytes(s, dt, impl()) + 1);
    std::vector<std::byte> bws(kancore::c0::backward_workspace_bytes(s, dt, impl()) + 1);

    EXPECT_NO_THROW(kancore::c0::forward(s, dt, impl(), nullptr, C.data(), nullptr, fws.data(),
                                         fws.size()));
    auto y = output_buffer<T>(0);
    EXPECT_NO_THROW(run_forward<T>(s, impl(), y.data(), C.data(), y.data()));
    EXPECT_TRUE(y.guards_intact());

    auto gx = output_buffer<T>(0);
    EXPECT_NO_THROW(kancore::c0::backward_input(s, dt, impl(), nullptr, C.data(), nullptr, nullptr,
                                                bws.data(), bws.size()));
    EXPECT_NO_THROW(run_backward_input<T>(s, impl(), gx.data(), C.data(), gx.data(), gx.data()));
    EXPECT_TRUE(gx.guards_intact());

    // Pre-filled with NaN; also with outputs that fill whole vector tiles (a regression: the
    // CPU gather path once zeroed only a ragged last tile when there were no rows).
    for (const Shape& sz : {s, Shape{0, 3, 40, 5, 2.0}}) {
      auto gC = output_buffer<T>(idx(sz.in * sz.num_control_points * sz.out));
      run_backward_table<T>(sz, impl(), nullptr, nullptr, gC.data());
      EXPECT_TRUE(gC.guards_intact());
      for (std::size_t j = 0; j < gC.size(); ++j) EXPECT_EQ(gC[j], T(0)) << "grad_table[" << j << "]";
    }
  });
}

KCTEST_INSTANTIATE_DTYPE_IMPL(C0Edge);

// float32 with K - 2 > 2^24: float(K - 2) rounds up to K - 1 for this K, and a left index of
// K - 1 would read (and, backward, write) row K, past the table. The largest left index must
// stay <= K - 2 (here K - 3, the float below): then both rows a sample touches are in the
// table and its two weights (1 - t) + t = 1 all land inside it.
TEST(C0Edge32, HugeKKeepsTheLeftIndexInsideTheTable) {
  const std::int64_t K = 16777221;  // K - 2 = 16777219 rounds to 16777220 in float
  const kancore::c0::Shape s{1, 1, 1, K, 4.0};
  std::vector<float> C(K);
  for (std::int64_t k = 0; k < K; ++k) C[k] = static_cast<float>(k);
  const std::vector<float> x = {2.5f};  // right of the domain: the end segment extends
  std::vector<float> y(1), gC(K, 0.0f), gy = {1.0f};
  kancore::c0::forward<float>(s, kancore::c0::Impl::gather, x.data(), C.data(), y.data());
  EXPECT_TRUE(std::isfinite(y[0]));
  EXPECT_GT(y[0], C[K - 3]);
  kancore::c0::backward_table(s, kancore::DType::float32, kancore::c0::Impl::gather, x.data(), gy.data(),
                              gC.data());
  double total = 0;
  for (float v : gC) total += v;
  EXPECT_EQ(total, 1.0);  // without the rounding fix the weight t went to row K, outside
}

}  // namespace
}  // namespace kctest

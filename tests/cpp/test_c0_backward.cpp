// Backward passes of the C0 layer: against the long double reference on many shapes, against
// central finite differences of the forward, and backward_table's run-to-run determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "c0_param.hpp"
#include "c0_reference.hpp"
#include "kancore/c0_layer.hpp"

namespace kctest {
namespace {

class C0Backward : public DtypeImplTest {};

TEST_P(C0Backward, InputGradMatchesReferenceOnRandomShapes) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    const auto shapes = test_shapes();
    for (std::size_t n = 0; n < shapes.size(); ++n) {
      const Shape& s = shapes[n];
      SCOPED_TRACE(describe(s));
      Rng rng(2000 + n);
      const auto x = input_buffer(random_x<T>(s, rng));
      const auto C = input_buffer(random_table<T>(s, rng));
      const auto g = input_buffer(random_vec<T>(idx(s.batch * s.out), rng));
      auto gx = output_buffer<T>(idx(s.batch * s.in));
      run_backward_input<T>(s, impl(), x.data(), C.data(), g.data(), gx.data());
      EXPECT_TRUE(gx.guards_intact()) << "backward_input wrote outside grad_x";
      EXPECT_TRUE(matches_ref(gx.data(), backward_input_ref<T>(s, x.data(), C.data(), g.data()),
                              Tol<T>::rel));
    }
  });
}

TEST_P(C0Backward, TableGradMatchesReferenceOnRandomShapes) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    const auto shapes = test_shapes();
    for (std::size_t n = 0; n < shapes.size(); ++n) {
      const Shape& s = shapes[n];
      SCOPED_TRACE(describe(s));
      Rng rng(4000 + n);
      const auto x = input_buffer(random_x<T>(s, rng));
      const auto g = input_buffer(random_vec<T>(idx(s.batch * s.out), rng));
      // Pre-filled with NaN: the kernel must overwrite every entry, including untouched rows.
      auto gC = output_buffer<T>(idx(s.in * s.num_control_points * s.out));
      run_backward_table<T>(s, impl(), x.data(), g.data(), gC.data());
      EXPECT_TRUE(gC.guards_intact()) << "backward_table wrote outside grad_table";
      EXPECT_TRUE(matches_ref(gC.data(), backward_table_ref<T>(s, x.data(), g.data()), Tol<T>::rel));
    }
  });
}

// Meant to cross the kernels' blocking boundaries: more than 1024 batch rows, more than 128
// inputs, more than 256 outputs with a ragged last tile.
TEST_P(C0Backward, BothGradsMatchReferenceAcrossBlockBoundaries) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    const Shape s{1100, 20, 260, 9, 1.7};
    Rng rng(99);
    const auto x = input_buffer(random_x<T>(s, rng));
    const auto C = input_buffer(random_table<T>(s, rng));
    const auto g = input_buffer(random_vec<T>(idx(s.batch * s.out), rng));
    auto gx = output_buffer<T>(idx(s.batch * s.in));
    run_backward_input<T>(s, impl(), x.data(), C.data(), g.data(), gx.data());
    EXPECT_TRUE(gx.guards_intact());
    EXPECT_TRUE(matches_ref(gx.data(), backward_input_ref<T>(s, x.data(), C.data(), g.data()),
                            Tol<T>::rel));
    auto gC = output_buffer<T>(idx(s.in * s.num_control_points * s.out));
    run_backward_table<T>(s, impl(), x.data(), g.data(), gC.data());
    EXPECT_TRUE(gC.guards_intact());
    EXPECT_TRUE(matches_ref(gC.data(), backward_table_ref<T>(s, x.data(), g.data()), Tol<T>::rel));
  });
}

// backward_table on the CPU is documented as deterministic: two runs give identical bits.
// Many rows hit the same few table rows (small K, large batch), so an unordered parallel
// accumulation would almost surely show up as a difference in the last bits.
TEST_P(C0Backward, TableGradIsBitwiseDeterministic) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    const Shape s{2100, 12, 70, 3, 2.0};
    Rng rng(123);
    const auto x = random_x<T>(s, rng);
    const auto g = random_vec<T>(idx(s.batch * s.out), rng, -1e3, 1e3);
    std::vector<T> first(idx(s.in * s.num_control_points * s.out));
    run_backward_table<T>(s, impl(), x.data(), g.data(), first.data());
    for (int run = 0; run < 4; ++run) {
      std::vector<T> again(first.size(), T(7));
      run_backward_table<T>(s, impl(), x.data(), g.data(), again.data());
      ASSERT_EQ(std::memcmp(first.data(), again.data(), first.size() * sizeof(T)), 0)
          << "run " << run << " differs from the first";
    }
  });
}

// c0::backward computes both gradients (on the CPU gather path in one fused pass); it must agree
// with the references, write only inside its outputs, be deterministic, and honour a null output.
TEST_P(C0Backward, CombinedBackwardMatchesReference) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    auto shapes = test_shapes();
    shapes.push_back(Shape{1100, 20, 260, 9, 1.7});  // > 512-row chunks, ragged output tile
    for (std::size_t n = 0; n < shapes.size(); ++n) {
      const Shape& s = shapes[n];
      SCOPED_TRACE(describe(s));
      Rng rng(6000 + n);
      const auto x = input_buffer(random_x<T>(s, rng));
      const auto C = input_buffer(random_table<T>(s, rng));
      const auto g = input_buffer(random_vec<T>(idx(s.batch * s.out), rng));
      auto gx = output_buffer<T>(idx(s.batch * s.in));
      auto gC = output_buffer<T>(idx(s.in * s.num_control_points * s.out));
      std::vector<std::byte> ws(kancore::c0::backward_workspace_bytes(s, kancore::dtype_of<T>::value, impl()) + 1);
      kancore::c0::backward<T>(s, impl(), x.data(), C.data(), g.data(), gx.data(), gC.data(),
                               ws.data(), ws.size());
      EXPECT_TRUE(gx.guards_intact() && gC.guards_intact()) << "backward wrote outside its outputs";
      EXPECT_TRUE(matches_ref(gx.data(), backward_input_ref<T>(s, x.data(), C.data(), g.data()),
                              Tol<T>::rel));
      EXPECT_TRUE(matches_ref(gC.data(), backward_table_ref<T>(s, x.data(), g.data()), Tol<T>::rel));
      // Deterministic: a second run gives the same bits.
      auto gx2 = output_buffer<T>(idx(s.batch * s.in));
      auto gC2 = output_buffer<T>(idx(s.in * s.num_control_points * s.out));
      kancore::c0::backward<T>(s, impl(), x.data(), C.data(), g.data(), gx2.data(), gC2.data(),
                               ws.data(), ws.size());
      EXPECT_EQ(std::memcmp(gx.data(), gx2.data(), sizeof(T) * idx(s.batch * s.in)), 0);
      EXPECT_EQ(std::memcmp(gC.data(), gC2.data(), sizeof(T) * idx(s.in * s.num_control_points * s.out)), 0);
      // A null grad_x skips it; the table gradient is still right.
      auto gC3 = output_buffer<T>(idx(s.in * s.num_control_points * s.out));
      kancore::c0::backward<T>(s, impl(), x.data(), C.data(), g.data(), nullptr, gC3.data(),
                               ws.data(), ws.size());
      EXPECT_TRUE(matches_ref(gC3.data(), backward_table_ref<T>(s, x.data(), g.data()), Tol<T>::rel));
    }
  });
}

// The fused CPU backward streams grad_table past the caches when the batch is one chunk and the
// output is 64-byte aligned, and stores it normally otherwise: both must give the same bits and
// match the reference, and a batch in several sorted chunks (> 2048 rows) must too.
TEST_P(C0Backward, AlignedAndUnalignedOutputsAgree) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    for (const Shape& s : {Shape{700, 24, 96, 12, 2.0}, Shape{2300, 5, 32, 7, 2.0}}) {
      SCOPED_TRACE(describe(s));
      Rng rng(321);
      const auto x = input_buffer(random_x<T>(s, rng));
      const auto C = input_buffer(random_table<T>(s, rng));
      const auto g = input_buffer(random_vec<T>(idx(s.batch * s.out), rng));
      const std::size_t n_table = idx(s.in * s.num_control_points * s.out);
      const auto ref_gx = backward_input_ref<T>(s, x.data(), C.data(), g.data());
      const auto ref_gC = backward_table_ref<T>(s, x.data(), g.data());
      std::vector<T> store(n_table + 64 / sizeof(T) + 1);
      T* aligned = store.data();
      while (reinterpret_cast<std::uintptr_t>(aligned) % 64 != 0) ++aligned;
      std::vector<std::vector<T>> results;
      for (T* gC : {aligned, aligned + 1}) {
        std::vector<T> gx(idx(s.batch * s.in));
        std::vector<std::byte> ws(kancore::c0::backward_workspace_bytes(s, kancore::dtype_of<T>::value, impl()) + 1);
        kancore::c0::backward<T>(s, impl(), x.data(), C.data(), g.data(), gx.data(), gC, ws.data(),
                                 ws.size());
        EXPECT_TRUE(matches_ref(gx.data(), ref_gx, Tol<T>::rel));
        EXPECT_TRUE(matches_ref(gC, ref_gC, Tol<T>::rel));
        results.emplace_back(gC, gC + n_table);
      }
      EXPECT_EQ(std::memcmp(results[0].data(), results[1].data(), n_table * sizeof(T)), 0);
    }
  });
}

KCTEST_INSTANTIATE_DTYPE_IMPL(C0Backward);

// ---- finite differences (double) ---------------------------------------------------------------
// L(x, C) = sum_{b,o} g[b,o] y[b,o]. The layer is linear inside a segment, so central differences
// with a step that stays inside the segment are exact up to rounding; the analytic gradients of
// both impls must match them.
class C0FiniteDifference : public ::testing::TestWithParam<Impl> {};

}  // namespace
}  // namespace kctest

namespace kancore::c0 {
// Readable parameter in ctest names ("# GetParam() = csr").
inline void PrintTo(Impl impl, std::ostream* os) { *os << kctest::impl_label(impl); }
}  // namespace kancore::c0

namespace kctest {
namespace {

double loss(const Shape& s, Impl impl, const std::vector<double>& x, const std::vector<double>& C,
            const std::vector<double>& g) {
  std::vector<double> y(idx(s.batch * s.out));
  run_forward<double>(s, impl, x.data(), C.data(), y.data());
  double acc = 0;
  for (std::size_t j = 0; j < y.size(); ++j) acc += g[j] * y[j];
  return acc;
}

TEST_P(C0FiniteDifference, GradientsMatchCentralDifferences) {
  const Impl impl = GetParam();
  const Shape s{4, 3, 5, 6, 3.0};
  const double W = s.spline_width, hstep = W / (s.num_control_points - 1);  // segment length
  Rng rng(31337);
  std::vector<double> x(idx(s.batch * s.in));
  for (auto& v : x) {
    // The middle of a random segment, including the two virtual segments beyond each end
    // (extrapolation), offset by up to +-30% of a segment.
    const double seg = static_cast<double>(rng.integer(-2, s.num_control_points));
    v = -W / 2 + (seg - 0.5 + rng.uniform(-0.3, 0.3)) * hstep;
  }
  const auto C = random_table<double>(s, rng);
  const auto g = random_vec<double>(idx(s.batch * s.out), rng);

  std::vector<double> gx(x.size()), gC(C.size());
  run_backward_input<double>(s, impl, x.data(), C.data(), g.data(), gx.data());
  run_backward_table<double>(s, impl, x.data(), g.data(), gC.data());

  const double h = 1e-6 * hstep;
  for (std::size_t j = 0; j < x.size(); ++j) {
    auto xp = x, xm = x;
    xp[j] += h;
    xm[j] -= h;
    const double fd = (loss(s, impl, xp, C, g) - loss(s, impl, xm, C, g)) / (2 * h);
    EXPECT_NEAR(gx[j], fd, 1e-6 * (1 + std::fabs(fd))) << "d loss / d x[" << j << "]";
  }
  // The loss is linear in C: a unit step gives the exact derivative up to rounding.
  for (std::size_t j = 0; j < C.size(); ++j) {
    auto Cp = C, Cm = C;
    Cp[j] += 0.5;
    Cm[j] -= 0.5;
    const double fd = loss(s, impl, x, Cp, g) - loss(s, impl, x, Cm, g);
    EXPECT_NEAR(gC[j], fd, 1e-10 * (1 + std::fabs(fd))) << "d loss / d C[" << j << "]";
  }
}

INSTANTIATE_TEST_SUITE_P(All, C0FiniteDifference, ::testing::Values(Impl::gather, Impl::csr),
                         [](const ::testing::TestParamInfo<Impl>& info) {
                           return std::string(impl_label(info.param));
                         });

}  // namespace
}  // namespace kctest

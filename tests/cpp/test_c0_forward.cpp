// Forward pass of the C0 layer against the long double reference, on many shapes, for float and
// double and both impls; gather and csr agree; the typed overloads route correctly.
#include <gtest/gtest.h>

#include <vector>

#include "c0_param.hpp"
#include "c0_reference.hpp"
#include "kancore/c0_layer.hpp"

namespace kctest {
namespace {

class C0Forward : public DtypeImplTest {};

TEST_P(C0Forward, MatchesReferenceOnRandomShapes) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    const auto shapes = test_shapes();
    for (std::size_t n = 0; n < shapes.size(); ++n) {
      const Shape& s = shapes[n];
      SCOPED_TRACE(describe(s));
      Rng rng(1000 + n);
      const auto x = input_buffer(random_x<T>(s, rng));
      const auto C = input_buffer(random_table<T>(s, rng));
      auto y = output_buffer<T>(idx(s.batch * s.out));
      run_forward<T>(s, impl(), x.data(), C.data(), y.data());
      EXPECT_TRUE(y.guards_intact()) << "forward wrote outside y";
      EXPECT_TRUE(matches_ref(y.data(), forward_ref<T>(s, x.data(), C.data()), Tol<T>::rel));
    }
  });
}

// A larger case meant to cross the kernels' blocking boundaries at once: more than 256 batch
// rows, more than 128 inputs, more than 256 outputs with a ragged last tile.
TEST_P(C0Forward, MatchesReferenceAcrossBlockBoundaries) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    const Shape s{300, 130, 300, 7, 3.0};
    Rng rng(77);
    const auto x = input_buffer(random_x<T>(s, rng));
    const auto C = input_buffer(random_table<T>(s, rng));
    auto y = output_buffer<T>(idx(s.batch * s.out));
    run_forward<T>(s, impl(), x.data(), C.data(), y.data());
    EXPECT_TRUE(y.guards_intact());
    EXPECT_TRUE(matches_ref(y.data(), forward_ref<T>(s, x.data(), C.data()), Tol<T>::rel));
  });
}

// The output depends on every input: perturbing one x or one table entry moves exactly the
// outputs the reference says it should (guards against a kernel ignoring a block of inputs).
TEST_P(C0Forward, EachInputAffectsItsOwnRowOnly) {
  with_type([&](auto zero) {
    using T = decltype(zero);
    const Shape s{11, 9, 5, 4, 2.0};
    Rng rng(5);
    auto xv = random_x<T>(s, rng);
    const auto C = input_buffer(random_table<T>(s, rng));
    for (auto& v : xv) v = static_cast<T>(rng.uniform(-0.9, 0.9));  // interior, so slopes matter
    auto x = input_buffer(xv);
    std::vector<T> y0(idx(s.batch * s.out)), y1(y0.size());
    run_forward<T>(s, impl(), x.data(), C.data(), y0.data());
    x[idx(3 * s.in + 8)] += static_cast<T>(0.05);
    run_forward<T>(s, impl(), x.data(), C.data(), y1.data());
    const auto ref = forward_ref<T>(s, x.data(), C.data());
    EXPECT_TRUE(matches_ref(y1.data(), ref, Tol<T>::rel));
    for (std::int64_t b = 0; b < s.batch; ++b) {
      for (std::int64_t o = 0; o < s.out; ++o) {
        const std::size_t j = idx(b * s.out + o);
        if (b == 3) continue;
        EXPECT_EQ(y0[j], y1[j]) << "row " << b << " changed although only row 3 of x did";
      }
    }
  });
}

KCTEST_INSTANTIATE_DTYPE_IMPL(C0Forward);

// Both impls compute the same function (compared with each other, not only with the reference).
template <class T>
void check_impls_agree() {
  const auto shapes = test_shapes();
  for (std::size_t n = 0; n < shapes.size(); ++n) {
    const Shape& s = shapes[n];
    SCOPED_TRACE(describe(s));
    Rng rng(3000 + n);
    const auto x = random_x<T>(s, rng);
    const auto C = random_table<T>(s, rng);
    std::vector<T> yg(idx(s.batch * s.out)), yc(yg.size());
    run_forward<T>(s, Impl::gather, x.data(), C.data(), yg.data());
    run_forward<T>(s, Impl::csr, x.data(), C.data(), yc.data());
    // Compare against a Ref built from the gather result, with the reference's magnitudes.
    Ref as_ref = forward_ref<T>(s, x.data(), C.data());
    for (std::size_t j = 0; j < yg.size(); ++j) as_ref.val[j] = yg[j];
    EXPECT_TRUE(matches_ref(yc.data(), as_ref, 2 * Tol<T>::rel));
  }
}

TEST(C0ForwardImpls, GatherAndCsrAgreeFloat) { check_impls_agree<float>(); }
TEST(C0ForwardImpls, GatherAndCsrAgreeDouble) { check_impls_agree<double>(); }

// The typed template overloads (forward<T>, backward_input<T>, backward_table<T>) reach the same
// kernels as the type-erased entry points, for both types.
TEST(C0TypedOverloads, ForwardFloatAndBackwardDouble) {
  using kancore::c0::backward_input;
  using kancore::c0::backward_table;
  using kancore::c0::forward;
  const Shape s{2, 1, 1, 5, 2.0};
  const std::vector<float> Cf = {1, 3, 2, 0, 5};
  const std::vector<float> xf = {-3, 2};
  std::vector<float> yf(2, -1);
  forward<float>(s, Impl::gather, xf.data(), Cf.data(), yf.data());
  EXPECT_EQ(yf[0], -7.0f);
  EXPECT_EQ(yf[1], 15.0f);

  const std::vector<double> Cd = {1, 3, 2, 0, 5};
  const std::vector<double> xd = {-3, 2};
  const std::vector<double> gd = {1, 1};
  const DType dt = DType::float64;
  std::vector<std::byte> ws(kancore::c0::backward_workspace_bytes(s, dt, Impl::csr));
  std::vector<double> gx(2, -1);
  backward_input<double>(s, Impl::csr, xd.data(), Cd.data(), gd.data(), gx.data(), ws.data(),
                         ws.size());
  EXPECT_DOUBLE_EQ(gx[0], 4.0);   // (3 - 1) * (K-1)/W = 2 * 2
  EXPECT_DOUBLE_EQ(gx[1], 10.0);  // (5 - 0) * 2
  std::vector<double> gC(5, -1);
  backward_table<double>(s, Impl::csr, xd.data(), gd.data(), gC.data(), ws.data(), ws.size());
  // x=-3: u=-4, k=0, t=-4 -> row0 += 5, row1 += -4. x=2: u=6, k=3, t=3 -> row3 += -2, row4 += 3.
  EXPECT_EQ(gC, (std::vector<double>{5, -4, 0, -2, 3}));

  std::vector<std::byte> wsf(kancore::c0::forward_workspace_bytes(s, DType::float32, Impl::csr));
  std::vector<float> yc(2, -1);
  forward<float>(s, Impl::csr, xf.data(), Cf.data(), yc.data(), wsf.data(), wsf.size());
  EXPECT_EQ(yc, yf);
}

}  // namespace
}  // namespace kctest

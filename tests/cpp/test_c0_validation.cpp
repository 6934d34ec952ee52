// Argument validation of the C0 entry points: shapes, buffers, workspace, dtype/device codes,
// impl names, and the CUDA-less build's behaviour for CUDA contexts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "c0_reference.hpp"
#include "kancore/c0_layer.hpp"
#include "kancore/threading.hpp"
#include "kancore/types.hpp"

namespace kctest {
namespace {

using kancore::Device;
using kancore::DeviceType;
using kancore::ExecContext;
namespace c0 = kancore::c0;

Shape good_shape() { return Shape{3, 2, 4, 5, 2.0}; }

// Every entry point (validate, both workspace queries, the three ops with real buffers) must
// reject the shape with std::invalid_argument before touching memory.
void expect_rejected(const Shape& s) {
  SCOPED_TRACE(describe(s));
  // Buffers big enough for good_shape(); the call must throw before any kernel runs.
  std::vector<double> buf(4096, 0.0);
  std::vector<std::byte> ws(1 << 16);
  double* p = buf.data();
  // If validate() let it through, the kernels below would run on a bogus shape: stop here.
  ASSERT_THROW(c0::validate(s), std::invalid_argument);
  for (const Impl impl : {Impl::gather, Impl::csr}) {
    EXPECT_THROW(c0::forward_workspace_bytes(s, DType::float64, impl), std::invalid_argument);
    EXPECT_THROW(c0::backward_workspace_bytes(s, DType::float64, impl), std::invalid_argument);
    EXPECT_THROW(c0::forward(s, DType::float64, impl, p, p, p, ws.data(), ws.size()),
                 std::invalid_argument);
    EXPECT_THROW(c0::backward_input(s, DType::float64, impl, p, p, p, p, ws.data(), ws.size()),
                 std::invalid_argument);
    EXPECT_THROW(c0::backward_table(s, DType::float64, impl, p, p, p, ws.data(), ws.size()),
                 std::invalid_argument);
  }
}

TEST(C0Validation, AcceptsUsableShapes) {
  EXPECT_NO_THROW(c0::validate(good_shape()));
  EXPECT_NO_THROW(c0::validate(Shape{0, 1, 1, 2, 1e-3}));  // batch 0, K 2, tiny W
  EXPECT_NO_THROW(c0::validate(Shape{1, 1, 1, 2, 1e6}));
}

TEST(C0Validation, RejectsTooFewControlPoints) {
  for (const std::int64_t K : {1, 0, -3}) {
    Shape s = good_shape();
    s.num_control_points = K;
    expect_rejected(s);
  }
}

TEST(C0Validation, RejectsEmptyOrNegativeFeatures) {
  for (const std::int64_t n : {0, -1}) {
    Shape s = good_shape();
    s.in = n;
    expect_rejected(s);
    s = good_shape();
    s.out = n;
    expect_rejected(s);
  }
}

TEST(C0Validation, RejectsNegativeBatch) {
  Shape s = good_shape();
  s.batch = -1;
  expect_rejected(s);
}

TEST(C0Validation, RejectsBadSplineWidth) {
  for (const double W : {0.0, -0.0, -1.0, std::numeric_limits<double>::quiet_NaN(),
                         std::numeric_limits<double>::infinity(),
                         -std::numeric_limits<double>::infinity()}) {
    Shape s = good_shape();
    s.spline_width = W;
    expect_rejected(s);
  }
}

TEST(C0Validation, RejectsWidthsWhoseArithmeticOverflowsTheDtype) {
  using kancore::DType;
  Shape s = good_shape();
  auto rejected = [&](double W, DType dt) {
    s.spline_width = W;
    EXPECT_THROW(c0::validate(s, dt), std::invalid_argument) << W;
  };
  rejected(1e-320, DType::float64);  // subnormal: (K-1)/W is inf
  rejected(1e-40, DType::float32);
  rejected(1e38, DType::float32);    // W/(K-1) fine, but x + W/2 near float's max
  rejected(1e308, DType::float64);
  for (const double W : {1e-30, 1.0, 4.0, 1e30}) {
    s.spline_width = W;
    EXPECT_NO_THROW(c0::validate(s, DType::float32)) << W;
    EXPECT_NO_THROW(c0::validate(s, DType::float64)) << W;
  }
  // The dtype-aware check runs at every call: a float32 forward with W = 1e38 throws.
  s = good_shape();
  s.spline_width = 1e38;
  std::vector<float> x(s.batch * s.in), t(s.in * s.num_control_points * s.out), y(s.batch * s.out);
  EXPECT_THROW(c0::forward(s, c0::Impl::gather, x.data(), t.data(), y.data()), std::invalid_argument);
}

TEST(C0Validation, RejectsAbsurdSizes) {
  const std::int64_t huge = std::int64_t{1} << 40;
  expect_rejected(Shape{1, huge, huge, huge, 2.0});
  expect_rejected(Shape{1, 1, huge, huge, 2.0});       // in*K*out overflows
  expect_rejected(Shape{huge, huge, 1, 2, 2.0});       // batch*in overflows
  expect_rejected(Shape{std::int64_t{1} << 62, 1, 1, 2, 2.0});
  expect_rejected(Shape{1, std::numeric_limits<std::int64_t>::max(), 1, 2, 2.0});
}

// Regression: the CSR backward workspace is the sum of about 5 arrays of 2*batch*in entries.
// An earlier validate() bounded element counts only by INT64_MAX/16, and layout() in
// cpp/src/cpu/c0_csr_cpu.cpp adds the parts in std::size_t, so for the first shape below
// backward_workspace_bytes wrapped around (float32: 64 bytes; float64: 2^62 + 64 instead of about
// 5 * 2^62). Every shape validate() accepts must give a workspace size that does not wrap; a
// shape may instead be rejected with std::invalid_argument.
TEST(C0Validation, CsrWorkspaceSizeDoesNotWrapAround) {
  const std::int64_t one = 1;
  const Shape shapes[] = {
      {1, (one << 58) - 1, 1, 2, 1.0},  {one << 23, (one << 24) - 1, 1, 2, 1.0},
      {1, (one << 47) - 1, 1, 2, 1.0},  {1, one << 47, 1, 2, 1.0},
      {one << 20, one << 20, 1, 2, 1.0}, {one << 27, one << 20, 3, 2, 1.0},
  };
  for (const Shape& s : shapes) {
    for (const DType dt : {DType::float32, DType::float64}) {
      SCOPED_TRACE(describe(s) + " " + kancore::to_string(dt));
      const long double nnz = 2.0L * static_cast<long double>(s.batch) * static_cast<long double>(s.in);
      const long double elem = dt == DType::float32 ? 4 : 8;
      try {
        const std::size_t fwd = c0::forward_workspace_bytes(s, dt, Impl::csr);
        const std::size_t bwd = c0::backward_workspace_bytes(s, dt, Impl::csr);
        // forward: column indices + values; backward: both index arrays + both value arrays.
        EXPECT_GE(static_cast<long double>(fwd), nnz * (8 + elem)) << "forward: " << fwd;
        EXPECT_GE(static_cast<long double>(bwd), nnz * (2 * 8 + 2 * elem)) << "backward: " << bwd;
      } catch (const std::invalid_argument&) {
        // Rejecting the shape is a correct answer too.
      }
    }
  }
}

TEST(C0Validation, RejectsNullBuffers) {
  const Shape s = good_shape();
  std::vector<double> x(6), C(40), y(12), g(12), gx(6), gC(40);
  for (const Impl impl : {Impl::gather, Impl::csr}) {
    SCOPED_TRACE(impl_label(impl));
    std::vector<std::byte> ws(c0::backward_workspace_bytes(s, DType::float64, impl) + 64);
    void* w = ws.data();
    const std::size_t wb = ws.size();
    const DType dt = DType::float64;
    EXPECT_NO_THROW(c0::forward(s, dt, impl, x.data(), C.data(), y.data(), w, wb));
    EXPECT_THROW(c0::forward(s, dt, impl, nullptr, C.data(), y.data(), w, wb), std::invalid_argument);
    EXPECT_THROW(c0::forward(s, dt, impl, x.data(), nullptr, y.data(), w, wb), std::invalid_argument);
    EXPECT_THROW(c0::forward(s, dt, impl, x.data(), C.data(), nullptr, w, wb), std::invalid_argument);

    EXPECT_NO_THROW(c0::backward_input(s, dt, impl, x.data(), C.data(), g.data(), gx.data(), w, wb));
    EXPECT_THROW(c0::backward_input(s, dt, impl, nullptr, C.data(), g.data(), gx.data(), w, wb),
                 std::invalid_argument);
    EXPECT_THROW(c0::backward_input(s, dt, impl, x.data(), nullptr, g.data(), gx.data(), w, wb),
                 std::invalid_argument);
    EXPECT_THROW(c0::backward_input(s, dt, impl, x.data(), C.data(), nullptr, gx.data(), w, wb),
                 std::invalid_argument);
    EXPECT_THROW(c0::backward_input(s, dt, impl, x.data(), C.data(), g.data(), nullptr, w, wb),
                 std::invalid_argument);

    EXPECT_NO_THROW(c0::backward_table(s, dt, impl, x.data(), g.data(), gC.data(), w, wb));
    EXPECT_THROW(c0::backward_table(s, dt, impl, nullptr, g.data(), gC.data(), w, wb),
                 std::invalid_argument);
    EXPECT_THROW(c0::backward_table(s, dt, impl, x.data(), nullptr, gC.data(), w, wb),
                 std::invalid_argument);
    EXPECT_THROW(c0::backward_table(s, dt, impl, x.data(), g.data(), nullptr, w, wb),
                 std::invalid_argument);
  }
}

TEST(C0Validation, GatherForwardNeedsNoWorkspaceCsrDoes) {
  const Shape s = good_shape();
  for (const DType dt : {DType::float32, DType::float64}) {
    EXPECT_EQ(c0::forward_workspace_bytes(s, dt, Impl::gather), 0u);
    // The gather backward sorts rows in scratch: keys, order, t, dots per (row, input block).
    const std::size_t elem = dt == DType::float32 ? 4 : 8;
    EXPECT_GE(c0::backward_workspace_bytes(s, dt, Impl::gather),
              static_cast<std::size_t>(s.batch) * 16 * (8 + 3 * elem));
    // CSR needs at least the column indices and values of the 2*batch*in stored entries.
    const std::size_t nnz = static_cast<std::size_t>(2 * s.batch * s.in);
    EXPECT_GE(c0::forward_workspace_bytes(s, dt, Impl::csr), nnz * (8 + elem));
    EXPECT_GE(c0::backward_workspace_bytes(s, dt, Impl::csr), nnz * (8 + elem));
  }
  // The gather forward and input gradient run with a null workspace.
  std::vector<float> x(6, 0.1f), C(40, 1.0f), y(12), g(12, 1.0f), gx(6);
  EXPECT_NO_THROW(c0::forward(s, DType::float32, Impl::gather, x.data(), C.data(), y.data()));
  EXPECT_NO_THROW(c0::backward_input(s, DType::float32, Impl::gather, x.data(), C.data(), g.data(),
                                     gx.data()));
}

// The gather backward's table gradient needs one thread's sort scratch (plus alignment slack);
// less is refused, and any amount from there up runs (on as many threads as fit) with the same
// bits as the full workspace, from any alignment of the workspace pointer.
TEST(C0Validation, GatherBackwardWorkspaceFromOneThreadUp) {
  // Two threads (kancore/threading.hpp): the work, 2.3M multiply-adds, is over two 2^20 grains.
  struct Restore {
    int n;
    ~Restore() { kancore::set_num_threads(n); }
  } restore{kancore::get_num_threads()};
  kancore::set_num_threads(2);
  const Shape s{1200, 40, 48, 7, 2.0};
  Rng rng(17);
  const auto x = random_x<float>(s, rng);
  const auto C = random_table<float>(s, rng);
  const auto g = random_vec<float>(idx(s.batch * s.out), rng);
  const std::size_t full = c0::backward_workspace_bytes(s, DType::float32, Impl::gather);
  ASSERT_GT(full, 64u);
  std::vector<std::byte> ws(full + 64);
  std::vector<float> gx(idx(s.batch * s.in)), gC(idx(s.in * s.num_control_points * s.out));
  EXPECT_THROW(c0::backward<float>(s, Impl::gather, x.data(), C.data(), g.data(), gx.data(),
                                   gC.data()),
               std::invalid_argument);
  EXPECT_THROW(c0::backward_table<float>(s, Impl::gather, x.data(), g.data(), gC.data(), ws.data(), 64),
               std::invalid_argument);
  c0::backward<float>(s, Impl::gather, x.data(), C.data(), g.data(), gx.data(), gC.data(), ws.data(),
                      full);
  const std::vector<float> gx_full = gx, gC_full = gC;
  EXPECT_TRUE(matches_ref(gC.data(), backward_table_ref<float>(s, x.data(), g.data()), Tol<float>::rel));
  // 64 bytes of slack + one thread's share, from every alignment of the pointer (the share is
  // the full size's per-thread part: full = 64 + threads * share).
  const std::size_t share = (full - 64) / 2;
  for (const std::size_t offset : {0, 4, 8, 60}) {
    SCOPED_TRACE(offset);
    std::fill(gx.begin(), gx.end(), -1.0f);
    std::fill(gC.begin(), gC.end(), -1.0f);
    c0::backward<float>(s, Impl::gather, x.data(), C.data(), g.data(), gx.data(), gC.data(),
                        ws.data() + offset, 64 + share);
    EXPECT_EQ(std::memcmp(gx.data(), gx_full.data(), gx.size() * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(gC.data(), gC_full.data(), gC.size() * sizeof(float)), 0);
  }
}

TEST(C0Validation, RejectsTooSmallCsrWorkspace) {
  const Shape s = good_shape();
  const DType dt = DType::float32;
  std::vector<float> x(6, 0.25f), C(40, 1.0f), y(12), g(12, 1.0f), gx(6), gC(40);
  const std::size_t fneed = c0::forward_workspace_bytes(s, dt, Impl::csr);
  const std::size_t bneed = c0::backward_workspace_bytes(s, dt, Impl::csr);
  ASSERT_GT(fneed, 0u);
  ASSERT_GT(bneed, 0u);
  std::vector<std::byte> ws(bneed);

  EXPECT_THROW(c0::forward(s, dt, Impl::csr, x.data(), C.data(), y.data()), std::invalid_argument);
  EXPECT_THROW(c0::forward(s, dt, Impl::csr, x.data(), C.data(), y.data(), ws.data(), fneed - 1),
               std::invalid_argument);
  EXPECT_THROW(c0::forward(s, dt, Impl::csr, x.data(), C.data(), y.data(), nullptr, fneed),
               std::invalid_argument);
  EXPECT_NO_THROW(c0::forward(s, dt, Impl::csr, x.data(), C.data(), y.data(), ws.data(), fneed));

  EXPECT_THROW(c0::backward_input(s, dt, Impl::csr, x.data(), C.data(), g.data(), gx.data(),
                                  ws.data(), bneed - 1),
               std::invalid_argument);
  EXPECT_THROW(c0::backward_input(s, dt, Impl::csr, x.data(), C.data(), g.data(), gx.data()),
               std::invalid_argument);
  EXPECT_NO_THROW(c0::backward_input(s, dt, Impl::csr, x.data(), C.data(), g.data(), gx.data(),
                                     ws.data(), bneed));

  EXPECT_THROW(c0::backward_table(s, dt, Impl::csr, x.data(), g.data(), gC.data(), ws.data(),
                                  bneed - 1),
               std::invalid_argument);
  EXPECT_THROW(c0::backward_table(s, dt, Impl::csr, x.data(), g.data(), gC.data()),
               std::invalid_argument);
  EXPECT_NO_THROW(c0::backward_table(s, dt, Impl::csr, x.data(), g.data(), gC.data(), ws.data(),
                                    bneed));
}

TEST(C0Validation, RejectsUnknownDtypeAndDeviceCodes) {
  const Shape s = good_shape();
  std::vector<double> buf(64);
  double* p = buf.data();
  const auto bad_dtype = static_cast<DType>(7);
  EXPECT_THROW(c0::forward(s, bad_dtype, Impl::gather, p, p, p), std::invalid_argument);
  EXPECT_THROW(c0::backward_input(s, bad_dtype, Impl::gather, p, p, p, p), std::invalid_argument);
  EXPECT_THROW(c0::backward_table(s, bad_dtype, Impl::gather, p, p, p), std::invalid_argument);
  EXPECT_THROW(c0::forward_workspace_bytes(s, bad_dtype, Impl::csr), std::invalid_argument);
  const ExecContext bad_device{Device{static_cast<DeviceType>(9), 0}, nullptr};
  EXPECT_THROW(c0::forward(s, DType::float64, Impl::gather, p, p, p, nullptr, 0, bad_device),
               std::invalid_argument);
}

TEST(C0ImplNames, MapsKanditionedNames) {
  EXPECT_EQ(c0::impl_from_name("embedding_bag"), Impl::gather);
  EXPECT_EQ(c0::impl_from_name("embedding"), Impl::gather);
  EXPECT_EQ(c0::impl_from_name("sparse_matmul_csr"), Impl::csr);
  EXPECT_EQ(c0::impl_from_name(c0::impl_name(Impl::gather)), Impl::gather);
  EXPECT_EQ(c0::impl_from_name(c0::impl_name(Impl::csr)), Impl::csr);
  for (const char* bad : {"", "csr", "gather", "Embedding_bag", "embedding_bag ", "sparse_matmul",
                          "sparse_matmul_csr\n", "dense"}) {
    EXPECT_THROW(c0::impl_from_name(bad), std::invalid_argument) << "'" << bad << "'";
  }
}

TEST(C0Types, ToStringAndDtypeOf) {
  EXPECT_EQ(kancore::to_string(DType::float32), "float32");
  EXPECT_EQ(kancore::to_string(DType::float64), "float64");
  EXPECT_EQ(kancore::to_string(DeviceType::cpu), "cpu");
  EXPECT_EQ(kancore::to_string(DeviceType::cuda), "cuda");
  static_assert(kancore::dtype_of<float>::value == DType::float32);
  static_assert(kancore::dtype_of<double>::value == DType::float64);
}

// A build without the CUDA backend answers a CUDA context with std::runtime_error (after the
// usual argument validation), for every op and workspace query.
TEST(C0Cuda, CudaContextThrowsWithoutCudaBackend) {
  if (kancore::built_with_cuda()) {
    GTEST_SKIP() << "this build has the CUDA backend; the CPU-only test suite runs no GPU kernels";
  }
  const Shape s = good_shape();
  std::vector<float> buf(64, 0.5f);
  float* p = buf.data();
  const ExecContext cuda{Device{DeviceType::cuda, 0}, nullptr};
  for (const Impl impl : {Impl::gather, Impl::csr}) {
    EXPECT_THROW(c0::forward(s, DType::float32, impl, p, p, p, nullptr, 0, cuda), std::runtime_error);
    EXPECT_THROW(c0::backward_input(s, DType::float32, impl, p, p, p, p, nullptr, 0, cuda),
                 std::runtime_error);
    EXPECT_THROW(c0::backward_table(s, DType::float32, impl, p, p, p, nullptr, 0, cuda),
                 std::runtime_error);
    EXPECT_THROW(c0::forward_workspace_bytes(s, DType::float32, impl, cuda.device), std::runtime_error);
    EXPECT_THROW(c0::backward_workspace_bytes(s, DType::float32, impl, cuda.device),
                 std::runtime_error);
  }
  // Invalid arguments are still reported as such, not as a missing backend.
  Shape bad = s;
  bad.num_control_points = 1;
  try {
    c0::forward(bad, DType::float32, Impl::gather, p, p, p, nullptr, 0, cuda);
    ADD_FAILURE() << "expected an exception";
  } catch (const std::invalid_argument&) {
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected std::invalid_argument, got: " << e.what();
  }
}

}  // namespace
}  // namespace kctest

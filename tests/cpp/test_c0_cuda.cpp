// The C0 layer on CUDA, with the CPU kernels (and the long double reference) as the oracle:
// random shapes whose sizes are not multiples of the kernels' tiles, K from 2 to 600 (past the
// shared-memory tile limits, so the global-memory variants run too), extrapolation, NaN and ±inf
// rows, both dtypes and both impls; poisoned outputs with guard zones; the deterministic control
// point gradient (bitwise equal run to run); a user stream; and clear errors for host pointers,
// bad device indices and short workspaces.
//
// Skips (with the reason) when this build has no CUDA backend or no CUDA device is present.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <tuple>
#include <string>
#include <vector>

#include "c0_reference.hpp"
#include "cuda_test_util.hpp"
#include "kancore/c0_layer.hpp"

#if KANCORE_TEST_CUDA
#include <cuda_runtime.h>
#endif

namespace kctest {
namespace {

using kancore::Device;
using kancore::DeviceType;
using kancore::ExecContext;

#if KANCORE_TEST_CUDA

// The CUDA result must be the CPU's: the same NaN / ±inf pattern, finite values within the
// reference's rounding bound (both sides may round by rel * mag).
template <class T>
::testing::AssertionResult matches_cpu(const std::vector<T>& gpu, const std::vector<T>& cpu,
                                       const Ref& ref, double rel) {
  std::size_t bad = 0;
  std::ostringstream msg;
  msg.precision(10);
  for (std::size_t j = 0; j < cpu.size(); ++j) {
    const T a = gpu[j], c = cpu[j];
    bool ok;
    if (std::isnan(c)) {
      ok = std::isnan(a);
    } else if (std::isinf(c)) {
      ok = (a == c);
    } else {
      ok = std::isfinite(a) && std::fabs(static_cast<Real>(a) - c) <= 2 * rel * ref.mag[j] + Real(0);
    }
    if (!ok) {
      if (bad < 5) msg << "\n  [" << j << "] cuda " << a << ", cpu " << c;
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << cpu.size() << " elements differ:" << msg.str();
}

// Shapes for the CUDA kernels: sizes on both sides of their tiles (64/32 outputs, 128/64 rows,
// 8 inputs per stage, 32 rows per step), K from 2 to 600 (K > 256 skips the forward's shared
// tile for float, K > 512 the gradient's), and zero batch.
std::vector<Shape> cuda_shapes() {
  std::vector<Shape> v = {
      {1, 1, 1, 2, 2.0},     {5, 3, 7, 2, 0.5},      {129, 9, 65, 3, 4.0},   {130, 33, 63, 32, 1.0},
      {257, 17, 129, 8, 3.0}, {0, 4, 5, 6, 4.0},      {70, 1, 70, 31, 7.5},   {33, 129, 31, 5, 2.5},
      {65, 8, 64, 33, 1.25},  {7, 2, 1, 256, 0.1},   {300, 70, 33, 128, 4.0}, {40, 5, 3, 300, 4.0},
      {31, 3, 40, 600, 0.7},  {2000, 3, 5, 16, 4.0},
  };
  append_random_shapes(v, 424242, 10, 300, 100, 140);
  return v;
}

// x with some rows made of NaN, +inf and -inf entries (every third row of a 7-row pattern).
template <class T>
std::vector<T> x_with_nonfinite_rows(const Shape& s, Rng& rng) {
  auto x = random_x<T>(s, rng);
  for (std::int64_t b = 0; b < s.batch; ++b) {
    if (b % 7 != 3) continue;
    const std::int64_t i = rng.integer(0, s.in - 1);
    const int kind = static_cast<int>(b % 3);
    x[idx(b * s.in + i)] = kind == 0 ? nan_v<T>() : (kind == 1 ? inf_v<T>() : -inf_v<T>());
  }
  return x;
}

template <class T>
void check_against_cpu(Impl impl, bool deterministic) {
  const DType dt = kancore::dtype_of<T>::value;
  const auto shapes = cuda_shapes();
  for (std::size_t n = 0; n < shapes.size(); ++n) {
    const Shape& s = shapes[n];
    SCOPED_TRACE(describe(s));
    Rng rng(9000 + n);
    const auto x = x_with_nonfinite_rows<T>(s, rng);
    const auto C = random_table<T>(s, rng);
    const auto g = random_vec<T>(idx(s.batch * s.out), rng);

    // CPU oracle.
    std::vector<T> y_cpu(idx(s.batch * s.out)), gx_cpu(idx(s.batch * s.in)),
        gC_cpu(idx(s.in * s.num_control_points * s.out));
    run_forward<T>(s, impl, x.data(), C.data(), y_cpu.data());
    run_backward_input<T>(s, impl, x.data(), C.data(), g.data(), gx_cpu.data());
    run_backward_table<T>(s, impl, x.data(), g.data(), gC_cpu.data());

    // CUDA.
    DeviceBuffer dx = device_copy(x), dC = device_copy(C), dg = device_copy(g);
    DeviceBuffer dy(y_cpu.size() * sizeof(T)), dgx(gx_cpu.size() * sizeof(T)),
        dgC(gC_cpu.size() * sizeof(T));
    const ExecContext ctx = cuda_ctx(nullptr, deterministic);
    const std::size_t fws = kancore::c0::forward_workspace_bytes(s, dt, impl, ctx.device);
    const std::size_t bws = kancore::c0::backward_workspace_bytes(s, dt, impl, ctx.device);
    DeviceBuffer ws(std::max(fws, bws));
    kancore::c0::forward(s, dt, impl, dx.data(), dC.data(), dy.data(), fws ? ws.data() : nullptr, fws, ctx);
    kancore::c0::backward(s, dt, impl, dx.data(), dC.data(), dg.data(), dgx.data(), dgC.data(),
                          bws ? ws.data() : nullptr, bws, ctx);
    CUDA_OK(cudaDeviceSynchronize());
    EXPECT_TRUE(dy.guards_intact() && dgx.guards_intact() && dgC.guards_intact() && ws.guards_intact())
        << "a kernel wrote outside its buffer";

    const auto y = dy.download<T>(), gx = dgx.download<T>(), gC = dgC.download<T>();
    EXPECT_TRUE(matches_cpu(y, y_cpu, forward_ref<T>(s, x.data(), C.data()), Tol<T>::rel)) << "forward";
    EXPECT_TRUE(matches_cpu(gx, gx_cpu, backward_input_ref<T>(s, x.data(), C.data(), g.data()), Tol<T>::rel))
        << "backward_input";
    EXPECT_TRUE(matches_cpu(gC, gC_cpu, backward_table_ref<T>(s, x.data(), g.data()), Tol<T>::rel))
        << "backward_table";
  }
}

class C0CudaParam : public ::testing::TestWithParam<std::tuple<bool, int, bool>> {};

TEST_P(C0CudaParam, MatchesCpuOnRandomShapesWithNonFiniteRows) {
  KCTEST_REQUIRE_CUDA();
  const auto [is_double, impl_code, deterministic] = GetParam();
  const Impl impl = impl_code == 0 ? Impl::gather : Impl::csr;
  if (is_double) {
    check_against_cpu<double>(impl, deterministic);
  } else {
    check_against_cpu<float>(impl, deterministic);
  }
}

INSTANTIATE_TEST_SUITE_P(All, C0CudaParam,
                         ::testing::Combine(::testing::Bool(), ::testing::Values(0, 1), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "double" : "float") +
                                  (std::get<1>(info.param) == 0 ? "_gather" : "_csr") +
                                  (std::get<2>(info.param) ? "_deterministic" : "_fast");
                         });

// kanditioned's worked example (K=5, W=2, C=[1,3,2,0,5]) gives exact values on the GPU too.
TEST(C0Cuda, KanditionedWorkedExampleIsExact) {
  KCTEST_REQUIRE_CUDA();
  const std::vector<float> x = {-3, 2, -1, -0.75f, 0, 0.25f, 1, -2};
  const std::vector<float> C = {1, 3, 2, 0, 5};
  const Shape s{static_cast<std::int64_t>(x.size()), 1, 1, 5, 2.0};
  DeviceBuffer dx = device_copy(x), dC = device_copy(C), dy(x.size() * sizeof(float));
  kancore::c0::forward(s, Impl::gather, dx.as<float>(), dC.as<float>(), dy.as<float>(), nullptr, 0, cuda_ctx());
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT_EQ(dy.download<float>(), (std::vector<float>{-7, 15, 1, 2, 2, 1, 5, -3}));
}

// Deterministic mode: the control-point gradient is bitwise identical across runs, also on a
// shape where the fast path would split the batch over many blocks (small layer, big batch).
TEST(C0Cuda, DeterministicTableGradIsBitwiseRepeatable) {
  KCTEST_REQUIRE_CUDA();
  for (const Shape& s : {Shape{20000, 3, 5, 16, 4.0}, Shape{777, 70, 130, 32, 2.0}}) {
    SCOPED_TRACE(describe(s));
    Rng rng(5);
    const auto x = random_x<float>(s, rng);
    const auto g = random_vec<float>(idx(s.batch * s.out), rng, -1e3, 1e3);
    DeviceBuffer dx = device_copy(x), dg = device_copy(g);
    const std::size_t n = idx(s.in * s.num_control_points * s.out);
    std::vector<std::vector<float>> runs;
    for (int r = 0; r < 3; ++r) {
      DeviceBuffer dgC(n * sizeof(float));
      kancore::c0::backward_table(s, Impl::gather, dx.as<float>(), dg.as<float>(), dgC.as<float>(),
                                  nullptr, 0, cuda_ctx(nullptr, true));
      CUDA_OK(cudaDeviceSynchronize());
      runs.push_back(dgC.download<float>());
    }
    EXPECT_EQ(std::memcmp(runs[0].data(), runs[1].data(), n * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(runs[0].data(), runs[2].data(), n * sizeof(float)), 0);
    // The fast path computes the same gradient (to rounding).
    DeviceBuffer fast(n * sizeof(float));
    kancore::c0::backward_table(s, Impl::gather, dx.as<float>(), dg.as<float>(), fast.as<float>(),
                                nullptr, 0, cuda_ctx(nullptr, false));
    CUDA_OK(cudaDeviceSynchronize());
    const auto f = fast.download<float>();
    const Ref ref = backward_table_ref<float>(s, x.data(), g.data());
    EXPECT_TRUE(matches_ref(f.data(), ref, Tol<float>::rel));
    EXPECT_TRUE(matches_ref(runs[0].data(), ref, Tol<float>::rel));
  }
}

// Work is queued on the caller's stream: results read after synchronising only that stream.
TEST(C0Cuda, RunsOnTheCallersStream) {
  KCTEST_REQUIRE_CUDA();
  const Shape s{513, 40, 70, 32, 4.0};
  Rng rng(11);
  const auto x = random_x<double>(s, rng);
  const auto C = random_table<double>(s, rng);
  DeviceBuffer dx = device_copy(x), dC = device_copy(C), dy(idx(s.batch * s.out) * sizeof(double));
  cudaStream_t stream = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  kancore::c0::forward(s, Impl::gather, dx.as<double>(), dC.as<double>(), dy.as<double>(), nullptr, 0,
                       cuda_ctx(stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  CUDA_OK(cudaStreamDestroy(stream));
  const auto y = dy.download<double>();
  EXPECT_TRUE(matches_ref(y.data(), forward_ref<double>(s, x.data(), C.data()), Tol<double>::rel));
}

TEST(C0Cuda, RejectsHostPointersBadDevicesAndShortWorkspaces) {
  KCTEST_REQUIRE_CUDA();
  const Shape s{4, 3, 2, 5, 4.0};
  std::vector<float> host(64, 0.5f);
  DeviceBuffer dev(64 * sizeof(float));
  float* d = dev.as<float>();
  // A host buffer with a CUDA context: a clear error naming the buffer, not a crash.
  try {
    kancore::c0::forward(s, Impl::gather, host.data(), d, d, nullptr, 0, cuda_ctx());
    ADD_FAILURE() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("x"), std::string::npos) << e.what();
  }
  int count = 0;
  CUDA_OK(cudaGetDeviceCount(&count));
  ExecContext bad = cuda_ctx();
  bad.device.index = count;  // one past the last device
  EXPECT_THROW(kancore::c0::forward(s, Impl::gather, d, d, d, nullptr, 0, bad), std::invalid_argument);
  bad.device.index = -1;
  EXPECT_THROW(kancore::c0::backward_input(s, Impl::gather, d, d, d, d, nullptr, 0, bad), std::invalid_argument);
  // The CSR path needs the workspace it reports.
  const std::size_t need = kancore::c0::forward_workspace_bytes(s, DType::float32, Impl::csr, cuda_ctx().device);
  EXPECT_GT(need, 0u);
  EXPECT_THROW(kancore::c0::forward(s, Impl::csr, d, d, d, nullptr, 0, cuda_ctx()), std::invalid_argument);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << "an error path left the device in a failed state";
}

// batch == 0: forward writes nothing, grad_table is all zeros.
TEST(C0Cuda, EmptyBatchZeroesTableGrad) {
  KCTEST_REQUIRE_CUDA();
  const Shape s{0, 3, 4, 5, 4.0};
  DeviceBuffer dx(0 + 16), dg(16), dgC(idx(3 * 5 * 4) * sizeof(double));
  kancore::c0::backward_table(s, Impl::gather, dx.as<double>(), dg.as<double>(), dgC.as<double>(),
                              nullptr, 0, cuda_ctx());
  CUDA_OK(cudaDeviceSynchronize());
  for (double v : dgC.download<double>()) EXPECT_EQ(v, 0.0);
  EXPECT_TRUE(dgC.guards_intact());
}

#else  // built without the CUDA backend

TEST(C0Cuda, SkippedWithoutCudaBackend) {
  GTEST_SKIP() << "this build has no CUDA backend (KANCORE_CUDA=OFF or no nvcc): CUDA tests not built";
}

#endif

}  // namespace
}  // namespace kctest

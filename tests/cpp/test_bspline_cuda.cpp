// The B-spline layer on CUDA with the CPU kernels as the oracle: random shapes (uniform,
// non-uniform and repeated knots, orders 1 to 16, sizes off the kernels' tiles), NaN and ±inf
// inputs, inputs beyond the knots, empty batches, every gradient, bitwise repeatability, a user
// stream, and clear errors for host pointers and orders above the CUDA limit.
//
// Skips (with the reason) when this build has no CUDA backend or no CUDA device is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "cuda_test_util.hpp"
#include "kancore/bspline_layer.hpp"

namespace kctest {
namespace {

namespace bs = kancore::bspline;
using kancore::DType;

#if KANCORE_TEST_CUDA

struct Case {
  std::int64_t N, I, O, G, k;
  int knots;  // 0 uniform, 1 random non-uniform, 2 with repeated knots
};

template <class T>
struct Host {
  bs::Shape s;
  std::vector<T> x, knots, Wb, W, sc, gy;
};

template <class T>
Host<T> make(const Case& c, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> U(-1, 1);
  Host<T> h{bs::Shape{c.N, c.I, c.O, c.G, c.k}, {}, {}, {}, {}, {}, {}};
  const std::int64_t nk = h.s.num_knots(), C = h.s.num_coefficients();
  for (std::int64_t i = 0; i < c.I; ++i) {
    std::vector<double> t(nk);
    for (std::int64_t j = 0; j < nk; ++j) t[j] = -1.0 + 2.0 * static_cast<double>(j - c.k) / c.G;
    if (c.knots >= 1) {
      for (auto& v : t) v = 1.5 * U(rng);
      std::sort(t.begin(), t.end());
    }
    if (c.knots == 2) {
      for (std::int64_t j = 1; j < nk; j += 3) t[j] = t[j - 1];
    }
    h.knots.insert(h.knots.end(), t.begin(), t.end());
  }
  h.x.resize(c.N * c.I);
  for (auto& v : h.x) v = static_cast<T>(1.7 * U(rng));  // some beyond the knots
  for (std::int64_t b = 3; b < c.N; b += 7) {
    h.x[b * c.I + (b % c.I)] = (b % 3 == 0) ? NAN : ((b % 3 == 1) ? INFINITY : -INFINITY);
  }
  auto fill = [&](std::vector<T>& a, std::int64_t n) {
    a.resize(n);
    for (auto& v : a) v = static_cast<T>(U(rng));
  };
  fill(h.Wb, c.O * c.I);
  fill(h.W, c.O * c.I * C);
  fill(h.sc, c.O * c.I);
  fill(h.gy, c.N * c.O);
  return h;
}

// Same NaN/inf pattern; finite values within rel of the larger magnitude of the row's terms.
template <class T>
::testing::AssertionResult close(const std::vector<T>& gpu, const std::vector<T>& cpu, double tol) {
  for (std::size_t j = 0; j < cpu.size(); ++j) {
    const T a = gpu[j], c = cpu[j];
    const bool ok = std::isnan(c) ? std::isnan(a)
                    : std::isinf(c) ? a == c
                                    : std::abs(static_cast<double>(a) - c) <= tol * (1 + std::abs(static_cast<double>(c)));
    if (!ok) return ::testing::AssertionFailure() << "element " << j << ": cuda " << a << " vs cpu " << c;
  }
  return ::testing::AssertionSuccess();
}

template <class T>
void check_case(const Case& c, double tol) {
  const DType dt = kancore::dtype_of<T>::value;
  Host<T> h = make<T>(c, static_cast<unsigned>(c.N * 131 + c.k));
  const bs::Shape& s = h.s;
  // CPU oracle.
  std::vector<T> y(s.batch * s.out), gx(h.x.size()), gWb(h.Wb.size()), gW(h.W.size()), gsc(h.sc.size());
  std::vector<char> ws(std::max(bs::forward_workspace_bytes(s, dt), bs::backward_workspace_bytes(s, dt)));
  const bs::Params hp{h.knots.data(), h.Wb.data(), h.W.data(), h.sc.data()};
  bs::forward(s, dt, h.x.data(), hp, y.data(), ws.data(), ws.size());
  bs::backward(s, dt, h.x.data(), hp, h.gy.data(), bs::Grads{gx.data(), gWb.data(), gW.data(), gsc.data()},
               ws.data(), ws.size());
  // CUDA.
  auto dx = device_copy(h.x), dk = device_copy(h.knots), dWb = device_copy(h.Wb), dW = device_copy(h.W),
       dsc = device_copy(h.sc), dgy = device_copy(h.gy);
  DeviceBuffer dy(y.size() * sizeof(T)), dgx(gx.size() * sizeof(T)), dgWb(gWb.size() * sizeof(T)),
      dgW(gW.size() * sizeof(T)), dgsc(gsc.size() * sizeof(T));
  const Device dev{DeviceType::cuda, 0};
  DeviceBuffer dws(std::max(bs::forward_workspace_bytes(s, dt, dev), bs::backward_workspace_bytes(s, dt, dev)));
  const bs::Params dp{dk.data(), dWb.data(), dW.data(), dsc.data()};
  bs::forward(s, dt, dx.data(), dp, dy.data(), dws.data(), dws.bytes(), cuda_ctx());
  bs::backward(s, dt, dx.data(), dp, dgy.data(), bs::Grads{dgx.data(), dgWb.data(), dgW.data(), dgsc.data()},
               dws.data(), dws.bytes(), cuda_ctx());
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT_TRUE(close(dy.download<T>(), y, tol)) << "y";
  EXPECT_TRUE(close(dgx.download<T>(), gx, tol)) << "grad_x";
  EXPECT_TRUE(close(dgWb.download<T>(), gWb, tol * s.batch)) << "grad_base_weight";
  EXPECT_TRUE(close(dgW.download<T>(), gW, tol * s.batch)) << "grad_spline_weight";
  EXPECT_TRUE(close(dgsc.download<T>(), gsc, tol * s.batch)) << "grad_spline_scaler";
  EXPECT_TRUE(dy.guards_intact() && dgx.guards_intact() && dgW.guards_intact() && dws.guards_intact());
}

const std::vector<Case> kCases = {
    {37, 5, 3, 5, 3, 0},   {70, 3, 70, 1, 1, 0},  {9, 17, 33, 3, 5, 1},  {40, 4, 130, 4, 7, 1},
    {65, 2, 129, 16, 2, 2}, {3, 1, 1, 2, 16, 1},  {0, 4, 5, 5, 3, 0},    {300, 19, 65, 8, 3, 1},
};

TEST(BsplineCuda, Float64MatchesCpu) {
  KCTEST_REQUIRE_CUDA();
  for (const Case& c : kCases) check_case<double>(c, 1e-11);
}

TEST(BsplineCuda, Float32MatchesCpu) {
  KCTEST_REQUIRE_CUDA();
  for (const Case& c : kCases) check_case<float>(c, 2e-4);
}

TEST(BsplineCuda, GradientsAreBitwiseRepeatableOnAUserStream) {
  KCTEST_REQUIRE_CUDA();
  Host<float> h = make<float>(Case{513, 33, 70, 5, 3, 1}, 9);
  const bs::Shape& s = h.s;
  auto dx = device_copy(h.x), dk = device_copy(h.knots), dWb = device_copy(h.Wb), dW = device_copy(h.W),
       dsc = device_copy(h.sc), dgy = device_copy(h.gy);
  const Device dev{DeviceType::cuda, 0};
  DeviceBuffer dws(bs::backward_workspace_bytes(s, DType::float32, dev));
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreate(&stream));
  std::vector<std::vector<float>> runs;
  for (int r = 0; r < 2; ++r) {
    DeviceBuffer dgx(h.x.size() * 4), dgW(h.W.size() * 4);
    bs::backward(s, DType::float32, dx.data(), bs::Params{dk.data(), dWb.data(), dW.data(), dsc.data()},
                 dgy.data(), bs::Grads{dgx.data(), nullptr, dgW.data(), nullptr}, dws.data(), dws.bytes(),
                 cuda_ctx(stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    auto a = dgx.download<float>(), b = dgW.download<float>();
    a.insert(a.end(), b.begin(), b.end());
    runs.push_back(a);
  }
  CUDA_OK(cudaStreamDestroy(stream));
  EXPECT_EQ(0, std::memcmp(runs[0].data(), runs[1].data(), runs[0].size() * sizeof(float)));
}

TEST(BsplineCuda, RejectsHostPointersAndHighOrders) {
  KCTEST_REQUIRE_CUDA();
  Host<double> h = make<double>(Case{4, 2, 3, 5, 3, 0}, 1);
  const Device dev{DeviceType::cuda, 0};
  DeviceBuffer dws(bs::forward_workspace_bytes(h.s, DType::float64, dev)), dy(4 * 3 * 8);
  auto dk = device_copy(h.knots), dW = device_copy(h.W);
  EXPECT_THROW(bs::forward(h.s, DType::float64, h.x.data(), bs::Params{dk.data(), nullptr, dW.data(), nullptr},
                           dy.data(), dws.data(), dws.bytes(), cuda_ctx()),
               std::invalid_argument);  // x in host memory
  const bs::Shape high{4, 2, 3, 5, 17};
  EXPECT_THROW(bs::forward_workspace_bytes(high, DType::float64, dev), std::invalid_argument);
}

#else  // built without the CUDA backend

TEST(BsplineCuda, SkippedWithoutCudaBackend) { GTEST_SKIP() << "this build has no CUDA backend"; }

#endif

}  // namespace
}  // namespace kctest

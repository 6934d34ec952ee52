// kancore/threading.hpp: the thread count is what was set, bad counts throw, and the C0 and
// B-spline kernels give bitwise identical results for every count (each output is owned by one
// work item and summed in a fixed order, whichever thread runs it).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "kancore/kancore.hpp"

namespace {

using kancore::DType;
namespace bs = kancore::bspline;
namespace c0 = kancore::c0;

// Restores the thread count a test found, whatever the test does.
struct KeepThreads {
  int saved = kancore::get_num_threads();
  ~KeepThreads() { kancore::set_num_threads(saved); }
};

std::vector<float> uniform(std::size_t n, float lo, float hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> U(lo, hi);
  std::vector<float> v(n);
  for (auto& e : v) e = U(rng);
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(Threads, GetReturnsWhatWasSet) {
  KeepThreads keep;
  EXPECT_GE(kancore::get_num_threads(), 1);
  for (int n : {1, 2, 7, 1}) {
    kancore::set_num_threads(n);
    EXPECT_EQ(kancore::get_num_threads(), n);
  }
}

TEST(Threads, CountsBelowOneThrowAndKeepTheCount) {
  KeepThreads keep;
  kancore::set_num_threads(3);
  EXPECT_THROW(kancore::set_num_threads(0), std::invalid_argument);
  EXPECT_THROW(kancore::set_num_threads(-1), std::invalid_argument);
  EXPECT_THROW(kancore::set_num_threads(-1000000), std::invalid_argument);
  EXPECT_EQ(kancore::get_num_threads(), 3);
}

struct C0Result {
  std::vector<float> y, gx, gt;
};

// Shapes large enough that 2 and 3 threads are used (several 2^20 multiply-add grains).
C0Result run_c0(const c0::Shape& s, c0::Impl impl, int threads) {
  kancore::set_num_threads(threads);
  const auto x = uniform(s.batch * s.in, -2.5f, 2.5f, 1);
  const auto table = uniform(s.in * s.num_control_points * s.out, -1, 1, 2);
  const auto gy = uniform(s.batch * s.out, -1, 1, 3);
  C0Result r{std::vector<float>(s.batch * s.out), std::vector<float>(s.batch * s.in),
             std::vector<float>(s.in * s.num_control_points * s.out)};
  std::vector<char> ws(std::max(c0::forward_workspace_bytes(s, DType::float32, impl),
                                c0::backward_workspace_bytes(s, DType::float32, impl)));
  c0::forward(s, impl, x.data(), table.data(), r.y.data(), ws.data(), ws.size());
  c0::backward(s, impl, x.data(), table.data(), gy.data(), r.gx.data(), r.gt.data(), ws.data(),
               ws.size());
  return r;
}

TEST(Threads, C0ForwardAndBackwardAreBitwiseIdenticalForAnyCount) {
  KeepThreads keep;
  for (const c0::Shape s : {c0::Shape{2048, 32, 64, 16, 4.0}, c0::Shape{3001, 33, 70, 9, 3.0}}) {
    for (const c0::Impl impl : {c0::Impl::gather, c0::Impl::csr}) {
      const C0Result one = run_c0(s, impl, 1);
      for (int n : {2, 3}) {
        const C0Result many = run_c0(s, impl, n);
        EXPECT_TRUE(same_bits(one.y, many.y)) << "y, threads " << n << ", impl " << c0::impl_name(impl);
        EXPECT_TRUE(same_bits(one.gx, many.gx)) << "grad_x, threads " << n;
        EXPECT_TRUE(same_bits(one.gt, many.gt)) << "grad_table, threads " << n;
      }
    }
  }
}

struct BsResult {
  std::vector<float> y, gx, gWb, gW, gsc;
};

BsResult run_bspline(const bs::Shape& s, int threads) {
  kancore::set_num_threads(threads);
  const std::int64_t C = s.num_coefficients(), nk = s.num_knots();
  std::vector<float> knots(s.in * nk);
  for (std::int64_t i = 0; i < s.in; ++i) {
    for (std::int64_t j = 0; j < nk; ++j) {
      knots[i * nk + j] = -1.0f + 2.0f * static_cast<float>(j - s.order) / static_cast<float>(s.grid_size);
    }
  }
  const auto x = uniform(s.batch * s.in, -1.3f, 1.3f, 4);
  const auto Wb = uniform(s.out * s.in, -1, 1, 5);
  const auto W = uniform(s.out * s.in * C, -1, 1, 6);
  const auto sc = uniform(s.out * s.in, 0.5f, 1.5f, 7);
  const auto gy = uniform(s.batch * s.out, -1, 1, 8);
  BsResult r{std::vector<float>(s.batch * s.out), std::vector<float>(x.size()),
             std::vector<float>(Wb.size()), std::vector<float>(W.size()), std::vector<float>(sc.size())};
  std::vector<char> ws(std::max(bs::forward_workspace_bytes(s, DType::float32),
                                bs::backward_workspace_bytes(s, DType::float32)));
  const bs::Params p{knots.data(), Wb.data(), W.data(), sc.data()};
  bs::forward(s, DType::float32, x.data(), p, r.y.data(), ws.data(), ws.size());
  bs::backward(s, DType::float32, x.data(), p, gy.data(),
               bs::Grads{r.gx.data(), r.gWb.data(), r.gW.data(), r.gsc.data()}, ws.data(), ws.size());
  return r;
}

TEST(Threads, BsplineForwardAndBackwardAreBitwiseIdenticalForAnyCount) {
  KeepThreads keep;
  // The second shape also splits the base-weight GEMMs over rows (n * work >= 2 grains x 4).
  for (const bs::Shape s : {bs::Shape{1024, 32, 40, 5, 3}, bs::Shape{2050, 64, 81, 7, 2}}) {
    const BsResult one = run_bspline(s, 1);
    for (int n : {2, 3}) {
      const BsResult many = run_bspline(s, n);
      EXPECT_TRUE(same_bits(one.y, many.y)) << "y, threads " << n;
      EXPECT_TRUE(same_bits(one.gx, many.gx)) << "grad_x, threads " << n;
      EXPECT_TRUE(same_bits(one.gWb, many.gWb)) << "grad base_weight, threads " << n;
      EXPECT_TRUE(same_bits(one.gW, many.gW)) << "grad spline_weight, threads " << n;
      EXPECT_TRUE(same_bits(one.gsc, many.gsc)) << "grad spline_scaler, threads " << n;
    }
  }
}

}  // namespace

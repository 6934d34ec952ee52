// The C++ example in README.md, compiled and run as written (keep the two in step).
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <vector>

#include "kancore/kancore.hpp"

TEST(ReadmeExample, ForwardAndBackwardRunAsDocumented) {
  namespace c0 = kancore::c0;

  c0::Shape s{/*batch*/ 1024, /*in*/ 256, /*out*/ 256, /*K*/ 32, /*spline_width*/ 4.0};
  std::vector<float> x(s.batch * s.in), table(s.in * s.num_control_points * s.out),
      y(s.batch * s.out), grad_y(y.size()), grad_x(x.size()), grad_table(table.size());
  // (The README leaves the data to the reader: identity-like lines and a unit output gradient.)
  for (std::size_t j = 0; j < x.size(); ++j) x[j] = -1.5f + 3.0f * static_cast<float>(j % 97) / 96.0f;
  for (std::int64_t i = 0; i < s.in; ++i)
    for (std::int64_t k = 0; k < s.num_control_points; ++k)
      for (std::int64_t o = 0; o < s.out; ++o)
        table[(i * s.num_control_points + k) * s.out + o] = (o == i) ? static_cast<float>(k) : 0.0f;
  for (auto& g : grad_y) g = 1.0f;

  c0::forward(s, c0::Impl::gather, x.data(), table.data(), y.data());
  // The backward sorts rows in caller-supplied scratch (the kernels allocate nothing):
  std::vector<std::byte> ws(c0::backward_workspace_bytes(s, kancore::DType::float32, c0::Impl::gather));
  c0::backward(s, c0::Impl::gather, x.data(), table.data(), grad_y.data(), grad_x.data(),
               grad_table.data(), ws.data(), ws.size());

  // Edge i -> i is the line u = (x + 2) * 31 / 4 (the control-point index), others are zero.
  const double slope = 31.0 / 4.0;
  for (std::int64_t b = 0; b < s.batch; b += 101) {
    for (std::int64_t o = 0; o < s.out; o += 37) {
      const double expect = (x[b * s.in + o] + 2.0) * slope;
      EXPECT_NEAR(y[b * s.out + o], expect, 1e-4) << "b=" << b << " o=" << o;
      EXPECT_NEAR(grad_x[b * s.in + o], slope, 1e-4);
    }
  }
  // With grad_y = 1, each input's table gradient sums to batch * out over (k, o): the weights
  // (1-t) and t of every sample add up to one, for every output.
  double total = 0;
  for (std::int64_t k = 0; k < s.num_control_points * s.out; ++k) total += grad_table[k];
  EXPECT_NEAR(total, static_cast<double>(s.batch * s.out), 1.0);
}

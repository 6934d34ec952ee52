// MSE and cross-entropy losses with their gradients (see kancore/training.hpp).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "dispatch_common.hpp"
#include "kancore/training.hpp"

namespace kancore {
namespace {

using dispatch::fail;

void check(std::int64_t batch, std::int64_t width, const void* a, const void* b) {
  if (batch < 1) fail("expected a non-empty batch, got " + std::to_string(batch) + " rows");
  if (width < 1) fail("expected at least one output, got " + std::to_string(width));
  if (batch > (std::int64_t{1} << 40) / width) fail("expected batch * outputs < 2^40");
  if (!a || !b) fail("expected prediction and target buffers, got null");
}

template <class Fn>
double typed(DType dtype, Fn&& fn) {
  if (dtype == DType::float32) return fn(float{});
  if (dtype == DType::float64) return fn(double{});
  fail("expected dtype float32 or float64");
}

}  // namespace

double mse_loss(DType dtype, std::int64_t batch, std::int64_t outputs, const void* pred,
                const void* target, void* grad) {
  check(batch, outputs, pred, target);
  return typed(dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* p = static_cast<const T*>(pred);
    const T* t = static_cast<const T*>(target);
    T* g = static_cast<T*>(grad);
    const std::int64_t n = batch * outputs;
    double s = 0;
    for (std::int64_t e = 0; e < n; ++e) {
      const double d = static_cast<double>(p[e]) - static_cast<double>(t[e]);
      s += d * d;
      if (g) g[e] = static_cast<T>(2.0 * d / static_cast<double>(n));
    }
    return s / static_cast<double>(n);
  });
}

double cross_entropy_loss(DType dtype, std::int64_t batch, std::int64_t classes, const void* logits,
                          const std::int64_t* labels, void* grad) {
  check(batch, classes, logits, labels);
  for (std::int64_t b = 0; b < batch; ++b) {
    if (labels[b] < 0 || labels[b] >= classes) {
      fail("expected labels in [0, " + std::to_string(classes) + "), got " + std::to_string(labels[b]) +
           " at row " + std::to_string(b));
    }
  }
  return typed(dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* z = static_cast<const T*>(logits);
    T* g = static_cast<T*>(grad);
    double total = 0;
    for (std::int64_t b = 0; b < batch; ++b) {
      const T* row = z + b * classes;
      double mx = -INFINITY;
      for (std::int64_t c = 0; c < classes; ++c) mx = std::max(mx, static_cast<double>(row[c]));
      double se = 0;
      for (std::int64_t c = 0; c < classes; ++c) se += std::exp(row[c] - mx);
      const double lse = mx + std::log(se);
      total += lse - static_cast<double>(row[labels[b]]);
      if (g) {
        for (std::int64_t c = 0; c < classes; ++c) {
          const double p = std::exp(row[c] - lse) - (c == labels[b] ? 1.0 : 0.0);
          g[b * classes + c] = static_cast<T>(p / static_cast<double>(batch));
        }
      }
    }
    return total / static_cast<double>(batch);
  });
}

}  // namespace kancore

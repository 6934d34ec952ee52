// Regularisation losses (see kancore/regularizers.hpp). Small parameter-sized reductions:
// serial float64 accumulation in a fixed order, so results are deterministic.
#include "kancore/regularizers.hpp"

#include "dispatch_common.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace kancore::reg {
namespace {

using dispatch::fail;

template <class Fn>
double by_dtype(DType dtype, Fn&& fn) {
  if (dtype == DType::float32) return fn(float{});
  if (dtype == DType::float64) return fn(double{});
  fail("expected dtype float32 or float64");
}

constexpr std::int64_t kMax = std::int64_t{1} << 44;

}  // namespace

double coefficient_l1_entropy(DType dtype, const void* w, std::int64_t edges,
                              std::int64_t per_edge, double activation, double entropy,
                              void* grad) {
  if (edges < 0 || per_edge < 1 || edges > kMax || per_edge > kMax / std::max<std::int64_t>(edges, 1)) {
    fail("expected edges >= 0 and per_edge >= 1, got " + std::to_string(edges) + " and " +
         std::to_string(per_edge));
  }
  if (edges > 0 && !w) fail("expected a weight buffer, got null");
  return by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* wt = static_cast<const T*>(w);
    std::vector<double> l1(static_cast<std::size_t>(edges));
    double total = 0.0;
    for (std::int64_t e = 0; e < edges; ++e) {
      double s = 0.0;
      for (std::int64_t c = 0; c < per_edge; ++c) s += std::abs(static_cast<double>(wt[e * per_edge + c]));
      l1[e] = s / static_cast<double>(per_edge);
      total += l1[e];
    }
    double H = 0.0;
    if (total > 0.0) {
      for (std::int64_t e = 0; e < edges; ++e) {
        const double p = l1[e] / total;
        if (p > 0.0) H -= p * std::log(p);
      }
    }
    if (grad) {
      T* g = static_cast<T*>(grad);
      for (std::int64_t e = 0; e < edges; ++e) {
        // d loss / d l1[e] = activation + entropy * d H / d l1[e],  dH/dl1[e] = -(log p + H) / S.
        // With l1[e] = 0 every |w| of the edge is at its kink: subgradient 0.
        double dl1 = 0.0;
        if (l1[e] > 0.0) dl1 = activation - entropy * (std::log(l1[e] / total) + H) / total;
        const double scale = dl1 / static_cast<double>(per_edge);
        for (std::int64_t c = 0; c < per_edge; ++c) {
          const double v = static_cast<double>(wt[e * per_edge + c]);
          g[e * per_edge + c] = static_cast<T>(v > 0 ? scale : (v < 0 ? -scale : 0.0));
        }
      }
    }
    return activation * total + entropy * H;
  });
}

double smoothness(DType dtype, const void* c, std::int64_t outer, std::int64_t K,
                  std::int64_t inner, void* grad) {
  if (outer < 0 || K < 1 || inner < 1 || outer > kMax || K > kMax || inner > kMax ||
      (outer > 0 && K * inner > kMax / outer)) {
    fail("expected outer >= 0, K >= 1, inner >= 1 of sane size");
  }
  if (outer > 0 && !c) fail("expected a control-point buffer, got null");
  const double edges = static_cast<double>(outer * inner);
  return by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* ct = static_cast<const T*>(c);
    T* g = static_cast<T*>(grad);
    if (g) {
      for (std::int64_t j = 0; j < outer * K * inner; ++j) g[j] = T(0);
    }
    if (K < 3 || outer == 0) return 0.0;
    double loss = 0.0;
    std::vector<double> gacc(g ? static_cast<std::size_t>(K) : 0);
    for (std::int64_t a = 0; a < outer; ++a) {
      for (std::int64_t b = 0; b < inner; ++b) {
        auto at = [&](std::int64_t k) { return static_cast<double>(ct[(a * K + k) * inner + b]); };
        if (g) std::fill(gacc.begin(), gacc.end(), 0.0);
        for (std::int64_t k = 1; k + 1 < K; ++k) {
          const double d2 = at(k + 1) - 2.0 * at(k) + at(k - 1);
          loss += d2 * d2;
          if (g) {
            const double s = 2.0 * d2 / edges;
            gacc[k + 1] += s;
            gacc[k] -= 2.0 * s;
            gacc[k - 1] += s;
          }
        }
        if (g) {
          for (std::int64_t k = 0; k < K; ++k) g[(a * K + k) * inner + b] = static_cast<T>(gacc[k]);
        }
      }
    }
    return loss / edges;
  });
}

}  // namespace kancore::reg

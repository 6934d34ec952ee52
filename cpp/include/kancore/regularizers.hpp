// Regularisation losses of KAN layers, with their gradients, computed in float64 on the CPU.
#pragma once

#include <cstdint>

#include "kancore/types.hpp"

namespace kancore::reg {

// efficient-kan's coefficient penalty on spline_weight viewed as (edges, per_edge):
//   l1[e] = mean_c |w[e, c]|,  p = l1 / sum(l1),
//   loss = activation * sum(l1) + entropy * (-sum_e p[e] log p[e]),  with 0 log 0 = 0.
// It is finite for zero entries: an edge with l1 = 0 adds nothing, and its gradient is 0 (the
// subgradient of |w| at 0). When grad is not null it receives d loss / d w (same layout).
double coefficient_l1_entropy(DType dtype, const void* w, std::int64_t edges,
                              std::int64_t per_edge, double activation, double entropy,
                              void* grad = nullptr);

// Second-difference smoothness penalty on control points laid out as (outer, K, inner), one
// edge per (outer, inner) pair: mean over edges of sum_k (c[k+1] - 2 c[k] + c[k-1])^2.
// The C0 table (in, K, out) is (outer=in, inner=out); a B-spline spline_weight (out, in, C) is
// (outer=out*in, K=C, inner=1). K < 3 gives 0.
double smoothness(DType dtype, const void* c, std::int64_t outer, std::int64_t K,
                  std::int64_t inner, void* grad = nullptr);

}  // namespace kancore::reg

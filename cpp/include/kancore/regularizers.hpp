// Regularisation losses of KAN layers, with their gradients, computed in float64 on the CPU
// (the math: docs/layer_math.md, "Regularisers").
#pragma once

#include <cstdint>

#include "kancore/bspline_layer.hpp"
#include "kancore/c0_layer.hpp"
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

// ----------------------------------------------------------------------------------------------
// pykan's sample-based regulariser (MultKAN.reg with reg_metric "edge_forward_spline_n"),
// computed from a layer's input x (batch, in) without any (batch, out, in) tensor.
//
// For a layer with edge functions phi_oi and B >= 2 samples:
//   s_x[i]    = std_b x[b, i]                          (unbiased, divisor B-1, like torch.std)
//   s_phi[o,i] = std_b phi_oi(x[b, i])                  (unbiased)
//   A[o, i]   = s_phi[o, i] / (s_x[i] + 0.1)            (the "edge scale", shape (out, in))
//   l1        = sum_{o,i} A[o, i]
//   p_row     = A[o, i] / (sum_i A[o, :] + 1),   p_col = A[o, i] / (sum_o A[:, i] + 1)
//   entropy_row = -mean_o sum_i p_row log2(p_row + 1e-4)
//   entropy_col = -mean_i sum_o p_col log2(p_col + 1e-4)
//   loss = lamb_l1 * l1 + lamb_entropy * (entropy_row + entropy_col)
//        + lamb_coef     * sum_{edges, c} |coef_c| / out
//        + lamb_coefdiff * sum_{edges, c} |coef_{c+1} - coef_c| / out
// where coef is an edge's control points: the C0 table column C[i, :, o], or the B-spline
// spline_weight[o, i, :] (unscaled, as pykan's `coef`). The division by out (not by the number
// of coefficients per edge) is pykan 0.2.8's actual computation: it takes
// sum(mean(|coef|, dim=1)) with coef of shape (in, out, G+k), a mean over the out axis; kancore
// matches it to rounding (tests/python/test_edge_scale_regularizer.py, when pykan is installed).
// Edge functions:
//   C0:       phi_oi(x) = the layer's piecewise-linear interpolation of C[i, :, o] (with its
//             linear extension outside [-W/2, W/2]);
//   B-spline: phi_oi(x) = base_weight[o,i] silu(x) + spline_scaler[o,i] sum_c spline_weight[o,i,c] B_c(x)
//             (the full edge output, as pykan's postacts; a null base_weight drops the first
//             term, a null spline_scaler means 1).
//
// Gradients are exact except where std is 0: there d std / d phi (and d std / d x) is taken as
// the subgradient 0, so constant inputs and constant or zero edges give finite gradients. |.|
// at 0 also has subgradient 0. All sums are accumulated in float64 in a fixed order; the work
// is split over inputs, so results are bitwise deterministic whatever the thread count.
//
// Non-finite x: if any x[b, i] is NaN or ±inf, the loss is NaN and every requested gradient
// (and every edge scale) is filled with NaN, as torch.std would propagate it. No input value
// leads to an out-of-bounds access. batch < 2 throws std::invalid_argument (std is undefined).
// CPU only: a CUDA context throws std::runtime_error ("not yet on CUDA").

struct EdgeScaleOptions {
  double lamb_l1 = 1.0;
  double lamb_entropy = 2.0;
  double lamb_coef = 0.0;
  double lamb_coefdiff = 0.0;
};

// Optional outputs (null: not computed). Every computed output is overwritten.
struct EdgeScaleC0Outputs {
  void* grad_x = nullptr;      // (batch, in)
  void* grad_table = nullptr;  // (in, K, out)
  void* scales = nullptr;      // A, (out, in)
};

// C0 layer: x (batch, in), table (in, K, out), both of `dtype`. Returns the loss.
double edge_scale_c0(const c0::Shape& shape, DType dtype, const void* x, const void* table,
                     const EdgeScaleOptions& options, const EdgeScaleC0Outputs& outputs = {},
                     const ExecContext& ctx = {});

// B-spline layer: x (batch, in) and the layer's parameters (knots finite and non-decreasing).
// grads.base_weight / grads.spline_scaler need the matching parameter. scales: A, (out, in).
double edge_scale_bspline(const bspline::Shape& shape, DType dtype, const void* x,
                          const bspline::Params& params, const EdgeScaleOptions& options,
                          const bspline::Grads& grads = {}, void* scales = nullptr,
                          const ExecContext& ctx = {});

}  // namespace kancore::reg

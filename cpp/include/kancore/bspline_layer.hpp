// The B-spline KAN layer (efficient-kan's KANLinear), its grid adaptation, on plain buffers
// (the math: docs/layer_math.md, "The B-spline layer" and "Grid updates").
//
//   y[b, o] = sum_i base_weight[o, i] * silu(x[b, i])
//           + sum_i spline_scaler[o, i] * sum_c B_c(x[b, i]; knots[i]) * spline_weight[o, i, c]
//
// B_c is the Cox-de Boor basis of order k on the feature's knots t[0..G+2k] (non-decreasing,
// finite): c = 0..G+k-1, zero outside [t[0], t[G+2k]). Only k+1 of them are non-zero at any x,
// so the kernels evaluate those on the fly and never build a (batch, in, G+k) tensor. Repeated
// knots are allowed (a 0/0 term of the recursion counts as 0).
//
// All arrays are dense row-major: x (batch, in), knots (in, G+2k+1), base_weight (out, in),
// spline_weight (out, in, G+k), spline_scaler (out, in) or null (all ones), y (batch, out).
// Kernels allocate nothing: workspace comes from the caller (see *_workspace_bytes).
// forward/backward also run on CUDA (ctx.device = cuda, every buffer in that device's memory,
// work queued on ctx.stream with no synchronisation or host copy; orders k <= 16): the host
// cannot check device-resident knots, so the caller must pass valid ones (KANLinear does). The
// CUDA kernels agree with the CPU on an H200 but are not yet tuned. update_grid, refine and basis are
// CPU functions on host buffers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kancore/types.hpp"

namespace kancore::bspline {

constexpr std::int64_t kMaxOrder = 64;  // spline order k in [1, kMaxOrder]

struct Shape {
  std::int64_t batch = 0;      // rows of x; 0 is allowed (nothing to do)
  std::int64_t in = 0;         // input features, >= 1
  std::int64_t out = 0;        // output features, >= 1
  std::int64_t grid_size = 5;  // G >= 1 intervals inside the grid range
  std::int64_t order = 3;      // k in [1, kMaxOrder]
  std::int64_t num_knots() const { return grid_size + 2 * order + 1; }
  std::int64_t num_coefficients() const { return grid_size + order; }
};

// Throws std::invalid_argument ("expected X, got Y") for an impossible shape.
void validate(const Shape& shape);

// The layer's parameters. base_weight may be null: no base branch (y is the spline part only).
struct Params {
  const void* knots = nullptr;
  const void* base_weight = nullptr;
  const void* spline_weight = nullptr;
  const void* spline_scaler = nullptr;  // null: every scaler is 1
};

// Gradient outputs; a null entry is not computed. Every computed gradient is overwritten.
struct Grads {
  void* x = nullptr;
  void* base_weight = nullptr;    // requires Params::base_weight
  void* spline_weight = nullptr;
  void* spline_scaler = nullptr;  // requires Params::spline_scaler
};

std::size_t forward_workspace_bytes(const Shape& shape, DType dtype, Device device = {});
std::size_t backward_workspace_bytes(const Shape& shape, DType dtype, Device device = {});
// The same for the context a call will run with. With ctx.precision tf32 or bf16 on the CPU
// (float32), forward and the weight gradients run as GEMMs over the dense basis
// [B_c(x_i) | silu(x_i)] with that basis and the weights rounded to the format and float32 sums
// (types.hpp, MatmulPrecision), in chunks of rows within ctx.workspace_limit; the input gradient
// stays exact. On CUDA this layer has no rounded path yet and runs exactly.
std::size_t forward_workspace_bytes(const Shape& shape, DType dtype, const ExecContext& ctx);
std::size_t backward_workspace_bytes(const Shape& shape, DType dtype, const ExecContext& ctx);

// y = layer(x), overwriting y. Knots are checked (finite, non-decreasing per feature).
void forward(const Shape& shape, DType dtype, const void* x, const Params& params, void* y,
             void* workspace, std::size_t workspace_bytes, const ExecContext& ctx = {});

// Gradients of sum(grad_y * y) with respect to the requested arguments. d/dx of the basis is the
// derivative of the polynomial piece x lies in (what autograd of the recursion gives).
void backward(const Shape& shape, DType dtype, const void* x, const Params& params,
              const void* grad_y, const Grads& grads, void* workspace,
              std::size_t workspace_bytes, const ExecContext& ctx = {});

// The k+1 possibly non-zero basis values at x: writes B_{first+r}(x) to values[r] for
// r = 0..k, where first is in [0, G-1] (so first..first+k are valid coefficient indices), and
// d/dx of them to derivs[r] when derivs is not null. NaN, or x outside [t[0], t[G+2k]):
// all values are 0. Float64, for reference use and grid fitting.
std::int64_t basis(const double* knots, std::int64_t grid_size, std::int64_t order, double x,
                   double* values, double* derivs = nullptr);

// ----------------------------------------------------------------------------------------------
// Grid adaptation (CPU, float64 accumulation). Results go to separate output buffers, so a
// failure leaves the layer untouched.

struct GridUpdateOptions {
  double margin = 0.01;    // the uniform grid spans [min - margin, max + margin]
  double grid_eps = 0.02;  // knots = grid_eps * uniform + (1 - grid_eps) * quantile knots
  double ridge = 1e-10;    // relative ridge: lambda = ridge * mean diagonal of the normal matrix
};

struct GridFitReport {
  std::int64_t features_kept = 0;  // features with no finite sample: knots and weights unchanged
  std::int64_t samples_skipped = 0;  // non-finite (b, i) values left out of the fits
};

// efficient-kan's update_grid, function-preserving: new knots from the samples' quantiles mixed
// with uniform knots, then each edge's *unscaled* spline refitted by ridge-stabilised banded
// least squares to its old values on the samples (the scaler is left alone, so the layer's
// output is preserved whatever the scaler). x: (batch, in). Writes new_knots (in, G+2k+1) and
// new_spline_weight (out, in, G+k). The shape's grid_size and order are kept.
GridFitReport update_grid(const Shape& shape, DType dtype, const void* x, const void* knots,
                          const void* spline_weight, void* new_knots, void* new_spline_weight,
                          const GridUpdateOptions& options = {});

// A grid with new_grid_size intervals over the same range [t[k], t[G+k]] (knots placed by
// piecewise-linear interpolation of the old ones, so every old knot is kept when new_grid_size
// is a multiple of G; the k extension knots on each side stay where they were) and
// coefficients fitted to the old spline on dense points of the whole support [t[0], t[last]]:
// the same function everywhere, inside and outside the grid range, up to rounding when the old
// knots are kept; least squares otherwise. shape.batch is ignored. Writes new_knots (in, G'+2k+1) and new_spline_weight (out, in, G'+k).
void refine(const Shape& shape, DType dtype, const void* knots, const void* spline_weight,
            std::int64_t new_grid_size, void* new_knots, void* new_spline_weight);

// Typed conveniences.
template <class T>
void forward(const Shape& s, const T* x, const T* knots, const T* base_weight,
             const T* spline_weight, const T* spline_scaler, T* y, void* ws, std::size_t ws_bytes,
             const ExecContext& ctx = {}) {
  forward(s, dtype_of<T>::value, x, Params{knots, base_weight, spline_weight, spline_scaler}, y,
          ws, ws_bytes, ctx);
}

}  // namespace kancore::bspline

// The one place where B-spline layer calls are validated and routed to the CPU or CUDA kernels.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "bspline_backend_cuda.hpp"
#include "bspline_basis.hpp"
#include "dispatch_common.hpp"
#include "cpu/bspline_cpu.hpp"
#include "kancore/bspline_layer.hpp"

namespace kancore::bspline {
namespace {

using dispatch::by_dtype;
using dispatch::check_workspace;
using dispatch::elem_size;
using dispatch::fail;
using dispatch::require;

using dispatch::on_cuda;

// The rounded GEMM path (MatmulPrecision tf32/bf16) serves float32 on the CPU; on CUDA it is not
// built yet for this layer, which then runs its exact kernels.
bool rounded(DType dtype, const ExecContext& ctx) {
  if (ctx.precision != MatmulPrecision::highest && ctx.precision != MatmulPrecision::tf32 &&
      ctx.precision != MatmulPrecision::bf16) {
    fail("expected precision highest, tf32 or bf16, got code " + std::to_string(static_cast<int>(ctx.precision)));
  }
  return dtype == DType::float32 && ctx.precision != MatmulPrecision::highest && !on_cuda(ctx.device);
}

// Workspace of the rounded path, sized for a base branch (an upper bound without one).
std::size_t rounded_bytes(const Shape& s, bool backward, std::size_t limit) {
  return cpu::hat_gemm_layout(s, true, backward, limit).total;
}

// Knots must be finite and non-decreasing per feature: the basis search relies on it.
template <class T>
void check_knots(const Shape& s, const T* knots) {
  const std::int64_t n = s.num_knots();
  for (std::int64_t i = 0; i < s.in; ++i) {
    const T* t = knots + i * n;
    for (std::int64_t j = 0; j < n; ++j) {
      if (!std::isfinite(t[j]) || (j > 0 && t[j] < t[j - 1])) {
        fail("expected finite, non-decreasing knots, got grid[" + std::to_string(i) + ", " +
             std::to_string(j) + "] = " + std::to_string(static_cast<double>(t[j])) +
             (j > 0 ? " after " + std::to_string(static_cast<double>(t[j - 1])) : std::string()));
      }
    }
  }
}

}  // namespace

void validate(const Shape& s) {
  if (s.batch < 0) fail("expected batch >= 0, got " + std::to_string(s.batch));
  if (s.in < 1) fail("expected in_features >= 1, got " + std::to_string(s.in));
  if (s.out < 1) fail("expected out_features >= 1, got " + std::to_string(s.out));
  if (s.grid_size < 1 || s.grid_size > (std::int64_t{1} << 24)) {
    fail("expected 1 <= grid_size <= 2^24, got " + std::to_string(s.grid_size));
  }
  if (s.order < 1 || s.order > kMaxOrder) {
    fail("expected 1 <= spline_order <= " + std::to_string(kMaxOrder) + ", got " +
         std::to_string(s.order));
  }
  // Element counts (and byte counts up to ~16x them) must stay far from overflow.
  constexpr std::int64_t kMax = std::int64_t{1} << 44;
  auto fits = [&](std::int64_t a, std::int64_t b) { return a == 0 || b <= kMax / a; };
  const std::int64_t C = s.num_coefficients();
  const bool ok = s.in <= kMax && s.out <= kMax && s.batch <= kMax && fits(s.in, C) &&
                  fits(s.in * C, s.out) && fits(s.batch, s.in) && fits(s.batch, s.out);
  if (!ok) fail("expected sizes whose products fit in 64-bit indices, got an absurd shape");
}

std::size_t forward_workspace_bytes(const Shape& s, DType dtype, Device device) {
  validate(s);
  elem_size(dtype);
  if (on_cuda(device)) return cuda_backend::forward_workspace_bytes(s, dtype);
  return cpu::forward_workspace_elems(s) * elem_size(dtype);
}

std::size_t backward_workspace_bytes(const Shape& s, DType dtype, Device device) {
  validate(s);
  elem_size(dtype);
  if (on_cuda(device)) return cuda_backend::backward_workspace_bytes(s, dtype);
  return cpu::backward_workspace_elems(s) * elem_size(dtype);
}

std::size_t forward_workspace_bytes(const Shape& s, DType dtype, const ExecContext& ctx) {
  const std::size_t exact = forward_workspace_bytes(s, dtype, ctx.device);
  return rounded(dtype, ctx) ? rounded_bytes(s, false, ctx.workspace_limit) : exact;
}

std::size_t backward_workspace_bytes(const Shape& s, DType dtype, const ExecContext& ctx) {
  const std::size_t exact = backward_workspace_bytes(s, dtype, ctx.device);
  // The rounded backward runs the exact one for the input gradient first, on the same workspace.
  return rounded(dtype, ctx) ? std::max(exact, rounded_bytes(s, true, ctx.workspace_limit)) : exact;
}

void forward(const Shape& s, DType dtype, const void* x, const Params& p, void* y, void* ws,
             std::size_t ws_bytes, const ExecContext& ctx) {
  validate(s);
  require(x, "x", s.batch * s.in);
  require(p.knots, "knots", s.in * s.num_knots());
  require(p.spline_weight, "spline_weight", s.out * s.in * s.num_coefficients());
  require(y, "y", s.batch * s.out);
  if (rounded(dtype, ctx) && s.batch > 0) {
    check_workspace(rounded_bytes(s, false, 0), ws, ws_bytes);
    const auto* knots = static_cast<const float*>(p.knots);
    check_knots(s, knots);
    cpu::forward_hat_gemm(s, static_cast<const float*>(x), knots, static_cast<const float*>(p.base_weight),
                          static_cast<const float*>(p.spline_weight), static_cast<const float*>(p.spline_scaler),
                          static_cast<float*>(y), ctx.precision, ws, ws_bytes);
    return;
  }
  check_workspace(forward_workspace_bytes(s, dtype, ctx.device), ws, ws_bytes);
  if (on_cuda(ctx.device)) {  // knots stay in device memory: the caller validated them
    cuda_backend::forward(s, dtype, x, p, y, ws, ws_bytes, ctx);
    return;
  }
  by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    check_knots(s, static_cast<const T*>(p.knots));
    cpu::forward(s, static_cast<const T*>(x), static_cast<const T*>(p.knots),
                 static_cast<const T*>(p.base_weight), static_cast<const T*>(p.spline_weight),
                 static_cast<const T*>(p.spline_scaler), static_cast<T*>(y), static_cast<T*>(ws));
  });
}

void backward(const Shape& s, DType dtype, const void* x, const Params& p, const void* grad_y,
              const Grads& g, void* ws, std::size_t ws_bytes, const ExecContext& ctx) {
  validate(s);
  require(x, "x", s.batch * s.in);
  require(p.knots, "knots", s.in * s.num_knots());
  require(p.spline_weight, "spline_weight", s.out * s.in * s.num_coefficients());
  require(grad_y, "grad_y", s.batch * s.out);
  if (g.base_weight && !p.base_weight) fail("expected base_weight for its gradient, got null");
  if (g.spline_scaler && !p.spline_scaler) fail("expected spline_scaler for its gradient, got null");
  if (rounded(dtype, ctx) && s.batch > 0) {
    check_workspace(std::max(backward_workspace_bytes(s, dtype, ctx.device), rounded_bytes(s, true, 0)), ws,
                    ws_bytes);
    const auto* knots = static_cast<const float*>(p.knots);
    check_knots(s, knots);
    if (g.x != nullptr) {  // the exact input gradient
      cpu::backward(s, static_cast<const float*>(x), knots, static_cast<const float*>(p.base_weight),
                    static_cast<const float*>(p.spline_weight), static_cast<const float*>(p.spline_scaler),
                    static_cast<const float*>(grad_y), static_cast<float*>(g.x), static_cast<float*>(nullptr),
                    static_cast<float*>(nullptr), static_cast<float*>(nullptr), static_cast<float*>(ws));
    }
    if (g.base_weight || g.spline_weight || g.spline_scaler) {
      cpu::backward_weights_hat_gemm(s, static_cast<const float*>(x), knots, p.base_weight != nullptr,
                                     static_cast<const float*>(p.spline_weight),
                                     static_cast<const float*>(p.spline_scaler), static_cast<const float*>(grad_y),
                                     static_cast<float*>(g.base_weight), static_cast<float*>(g.spline_weight),
                                     static_cast<float*>(g.spline_scaler), ctx.precision, ws, ws_bytes);
    }
    return;
  }
  check_workspace(backward_workspace_bytes(s, dtype, ctx.device), ws, ws_bytes);
  if (on_cuda(ctx.device)) {
    cuda_backend::backward(s, dtype, x, p, grad_y, g, ws, ws_bytes, ctx);
    return;
  }
  by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    check_knots(s, static_cast<const T*>(p.knots));
    cpu::backward(s, static_cast<const T*>(x), static_cast<const T*>(p.knots),
                  static_cast<const T*>(p.base_weight), static_cast<const T*>(p.spline_weight),
                  static_cast<const T*>(p.spline_scaler), static_cast<const T*>(grad_y),
                  static_cast<T*>(g.x), static_cast<T*>(g.base_weight),
                  static_cast<T*>(g.spline_weight), static_cast<T*>(g.spline_scaler),
                  static_cast<T*>(ws));
  });
}

std::int64_t basis(const double* knots, std::int64_t grid_size, std::int64_t order, double x,
                   double* values, double* derivs) {
  validate(Shape{0, 1, 1, grid_size, order});
  require(knots, "knots", 1);
  require(values, "values", 1);
  double scratch[2 * (kMaxOrder + 1)];
  return detail::eval_basis<double>(knots, grid_size, order, x, values, derivs, scratch);
}

}  // namespace kancore::bspline

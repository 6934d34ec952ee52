// The one place where C0 calls are validated and routed to the CPU or CUDA kernels.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>

#include "dispatch_common.hpp"
#include "backend_cuda.hpp"
#include "cpu/c0_cpu.hpp"
#include "kancore/c0_layer.hpp"

namespace kancore::c0 {
namespace {

using dispatch::by_dtype;
using dispatch::check_workspace;
using dispatch::elem_size;
using dispatch::fail;
using dispatch::require;

bool on_cuda(const ExecContext& ctx) { return dispatch::on_cuda(ctx.device); }

// The rounded GEMM path (MatmulPrecision tf32/bf16) serves float32 forward and table gradients.
bool rounded(DType dtype, const ExecContext& ctx) {
  if (ctx.precision != MatmulPrecision::highest && ctx.precision != MatmulPrecision::tf32 &&
      ctx.precision != MatmulPrecision::bf16) {
    fail("expected precision highest, tf32 or bf16, got code " + std::to_string(static_cast<int>(ctx.precision)));
  }
  return dtype == DType::float32 && ctx.precision != MatmulPrecision::highest;
}

std::size_t rounded_bytes(const Shape& s, bool backward, const ExecContext& ctx) {
  if (on_cuda(ctx)) return cuda_backend::hat_gemm_workspace_bytes(s, backward, ctx);
  return cpu::hat_gemm_layout(s, backward, ctx.workspace_limit).total;
}

// The least workspace the rounded path runs with (chunks of one row).
std::size_t rounded_min_bytes(const Shape& s, bool backward, const ExecContext& ctx) {
  ExecContext one = ctx;
  one.workspace_limit = 0;
  return rounded_bytes(s, backward, one);
}

}  // namespace

Impl impl_from_name(std::string_view name) {
  if (name == "embedding_bag" || name == "embedding") return Impl::gather;
  if (name == "sparse_matmul_csr") return Impl::csr;
  fail("expected impl in {embedding_bag, embedding, sparse_matmul_csr}, got '" + std::string(name) + "'");
}

std::string_view impl_name(Impl impl) { return impl == Impl::csr ? "sparse_matmul_csr" : "embedding_bag"; }

void validate(const Shape& s) {
  if (s.batch < 0) fail("expected batch >= 0, got " + std::to_string(s.batch));
  if (s.in < 1) fail("expected in_features >= 1, got " + std::to_string(s.in));
  if (s.out < 1) fail("expected out_features >= 1, got " + std::to_string(s.out));
  if (s.num_control_points < 2 || s.num_control_points > std::numeric_limits<std::int32_t>::max()) {
    fail("expected 2 <= num_control_points < 2^31, got " + std::to_string(s.num_control_points));
  }
  if (!(std::isfinite(s.spline_width) && s.spline_width > 0)) {
    fail("expected a finite spline_width > 0, got " + std::to_string(s.spline_width));
  }
  // Every element count the kernels index, and every byte count derived from one (workspace
  // sizes multiply counts by up to ~48), must stay far from overflow: cap counts at 2^48.
  constexpr std::int64_t kMax = std::int64_t{1} << 48;
  auto fits = [&](std::int64_t a, std::int64_t b) { return a == 0 || b <= kMax / a; };
  const bool ok = s.in <= kMax && s.out <= kMax && s.batch <= kMax && s.num_control_points <= kMax &&
                  fits(s.in, s.num_control_points) && fits(s.in * s.num_control_points, s.out) &&
                  fits(s.batch, s.in) && fits(s.batch * s.in, 2) && fits(s.batch, s.out);
  if (!ok) fail("expected sizes whose products fit in 64-bit indices, got an absurd shape");
}

void validate(const Shape& s, DType dtype) {
  validate(s);
  const double W = s.spline_width, K1 = static_cast<double>(s.num_control_points - 1);
  const bool f32 = dtype == DType::float32;
  const double top = f32 ? std::numeric_limits<float>::max() : std::numeric_limits<double>::max();
  const double tiny = f32 ? std::numeric_limits<float>::min() : std::numeric_limits<double>::min();
  auto normal = [&](double v) { return std::isfinite(v) && v >= tiny && v <= top; };
  if (!(W <= top / 4 && normal(W / 2) && normal(K1 / W) && normal(W / K1))) {
    char width[32];
    std::snprintf(width, sizeof width, "%.6g", W);
    fail("expected a spline_width whose arithmetic stays finite in " + std::string(f32 ? "float32" : "float64") +
         " (W/2, (K-1)/W and W/(K-1) normal numbers, W <= max/4), got " + std::string(width) +
         " with num_control_points " + std::to_string(s.num_control_points));
  }
}

std::size_t forward_workspace_bytes(const Shape& s, DType dtype, Impl impl, Device device) {
  validate(s, dtype);
  const std::size_t elem = elem_size(dtype);
  if (device.type == DeviceType::cuda) return cuda_backend::forward_workspace_bytes(s, dtype, impl, device);
  if (impl == Impl::gather) return 0;
  return cpu::forward_workspace_bytes_csr(s, elem);
}

std::size_t backward_workspace_bytes(const Shape& s, DType dtype, Impl impl, Device device) {
  validate(s, dtype);
  const std::size_t elem = elem_size(dtype);
  if (device.type == DeviceType::cuda) return cuda_backend::backward_workspace_bytes(s, dtype, impl, device);
  if (impl == Impl::gather) return cpu::backward_workspace_bytes_gather(s, elem);
  return cpu::backward_workspace_bytes_csr(s, elem);
}

std::size_t forward_workspace_bytes(const Shape& s, DType dtype, Impl impl, const ExecContext& ctx) {
  validate(s, dtype);
  if (rounded(dtype, ctx)) return rounded_bytes(s, false, ctx);
  return forward_workspace_bytes(s, dtype, impl, ctx.device);
}

std::size_t backward_workspace_bytes(const Shape& s, DType dtype, Impl impl, const ExecContext& ctx) {
  validate(s, dtype);
  const std::size_t exact = backward_workspace_bytes(s, dtype, impl, ctx.device);
  if (!rounded(dtype, ctx)) return exact;
  return std::max(exact, rounded_bytes(s, true, ctx));  // backward() runs both paths on one workspace
}

namespace {
// The least workspace a CPU backward call accepts. The gather path's table gradient needs room
// for one thread's sort scratch (it runs as many threads as the workspace has room for, so a
// size queried before the thread count changed still works); its input gradient needs none.
std::size_t cpu_backward_min_bytes(const Shape& s, DType dtype, Impl impl, bool table_grad) {
  if (impl != Impl::gather) return backward_workspace_bytes(s, dtype, impl);
  const std::size_t per_thread = cpu::backward_scratch_bytes_gather(s, elem_size(dtype));
  return (table_grad && per_thread > 0) ? 64 + per_thread : 0;
}
}  // namespace

void forward(const Shape& s, DType dtype, Impl impl, const void* x, const void* table, void* y,
             void* ws, std::size_t ws_bytes, const ExecContext& ctx) {
  validate(s, dtype);
  require(x, "x", s.batch * s.in);
  require(table, "table", s.in * s.num_control_points * s.out);
  require(y, "y", s.batch * s.out);
  if (rounded(dtype, ctx) && s.batch > 0) {
    check_workspace(rounded_min_bytes(s, false, ctx), ws, ws_bytes);
    if (on_cuda(ctx)) return cuda_backend::forward_hat_gemm(s, x, table, y, ws, ws_bytes, ctx);
    return cpu::forward_hat_gemm(s, static_cast<const float*>(x), static_cast<const float*>(table),
                                 static_cast<float*>(y), ctx.precision, ws, ws_bytes);
  }
  if (on_cuda(ctx)) return cuda_backend::forward(s, dtype, impl, x, table, y, ws, ws_bytes, ctx);
  check_workspace(forward_workspace_bytes(s, dtype, impl), ws, ws_bytes);
  by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* xt = static_cast<const T*>(x);
    const T* ct = static_cast<const T*>(table);
    T* yt = static_cast<T*>(y);
    if (impl == Impl::gather) {
      cpu::forward_gather(s, xt, ct, yt);
    } else {
      cpu::forward_csr(s, xt, ct, yt, ws);
    }
  });
}

void backward_input(const Shape& s, DType dtype, Impl impl, const void* x, const void* table,
                    const void* grad_y, void* grad_x, void* ws, std::size_t ws_bytes,
                    const ExecContext& ctx) {
  validate(s, dtype);
  require(x, "x", s.batch * s.in);
  require(table, "table", s.in * s.num_control_points * s.out);
  require(grad_y, "grad_y", s.batch * s.out);
  require(grad_x, "grad_x", s.batch * s.in);
  if (on_cuda(ctx)) {
    return cuda_backend::backward_input(s, dtype, impl, x, table, grad_y, grad_x, ws, ws_bytes, ctx);
  }
  check_workspace(cpu_backward_min_bytes(s, dtype, impl, false), ws, ws_bytes);
  by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* xt = static_cast<const T*>(x);
    const T* ct = static_cast<const T*>(table);
    const T* gy = static_cast<const T*>(grad_y);
    T* gx = static_cast<T*>(grad_x);
    if (impl == Impl::gather) {
      cpu::backward_input_gather(s, xt, ct, gy, gx);
    } else {
      cpu::backward_input_csr(s, xt, ct, gy, gx, ws);
    }
  });
}

void backward_table(const Shape& s, DType dtype, Impl impl, const void* x, const void* grad_y,
                    void* grad_table, void* ws, std::size_t ws_bytes, const ExecContext& ctx) {
  validate(s, dtype);
  require(x, "x", s.batch * s.in);
  require(grad_y, "grad_y", s.batch * s.out);
  require(grad_table, "grad_table", s.in * s.num_control_points * s.out);
  if (rounded(dtype, ctx) && s.batch > 0) {
    check_workspace(rounded_min_bytes(s, true, ctx), ws, ws_bytes);
    if (on_cuda(ctx)) return cuda_backend::backward_table_hat_gemm(s, x, grad_y, grad_table, ws, ws_bytes, ctx);
    return cpu::backward_table_hat_gemm(s, static_cast<const float*>(x), static_cast<const float*>(grad_y),
                                        static_cast<float*>(grad_table), ctx.precision, ws, ws_bytes);
  }
  if (on_cuda(ctx)) {
    return cuda_backend::backward_table(s, dtype, impl, x, grad_y, grad_table, ws, ws_bytes, ctx);
  }
  check_workspace(cpu_backward_min_bytes(s, dtype, impl, true), ws, ws_bytes);
  by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* xt = static_cast<const T*>(x);
    const T* gy = static_cast<const T*>(grad_y);
    T* gt = static_cast<T*>(grad_table);
    if (impl == Impl::gather) {
      cpu::backward_table_gather(s, xt, gy, gt, ws, ws_bytes);
    } else {
      cpu::backward_table_csr(s, xt, gy, gt, ws);
    }
  });
}

void backward(const Shape& s, DType dtype, Impl impl, const void* x, const void* table,
              const void* grad_y, void* grad_x, void* grad_table, void* ws, std::size_t ws_bytes,
              const ExecContext& ctx) {
  const bool fused = grad_x != nullptr && grad_table != nullptr && impl == Impl::gather &&
                     !on_cuda(ctx) && s.batch > 0 && !rounded(dtype, ctx);
  if (!fused) {
    if (grad_x != nullptr) backward_input(s, dtype, impl, x, table, grad_y, grad_x, ws, ws_bytes, ctx);
    if (grad_table != nullptr) backward_table(s, dtype, impl, x, grad_y, grad_table, ws, ws_bytes, ctx);
    return;
  }
  validate(s, dtype);
  require(x, "x", s.batch * s.in);
  require(table, "table", s.in * s.num_control_points * s.out);
  require(grad_y, "grad_y", s.batch * s.out);
  check_workspace(cpu_backward_min_bytes(s, dtype, impl, true), ws, ws_bytes);
  by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    cpu::backward_gather(s, static_cast<const T*>(x), static_cast<const T*>(table),
                         static_cast<const T*>(grad_y), static_cast<T*>(grad_x),
                         static_cast<T*>(grad_table), ws, ws_bytes);
  });
}

}  // namespace kancore::c0

// The C0 KAN layer (kanditioned's KANLayer): a piecewise-linear spline per edge on K uniform
// control points over [-W/2, W/2], linearly extended outside. See docs/layer_math.md, "The C0 layer".
//
//   u = ((x + W/2) * (K-1)) / W        (this op order, in the element type)
//   k = clamp(floor(u), 0, K-2),  t = u - k  (t is not clamped: the end segments extend)
//   y[b,o] = sum_i (1-t) * C[i,k,o] + t * C[i,k+1,o]
//
// Layouts are dense and row-major: x (batch, in), table C (in, K, out), y (batch, out).
// Kernels allocate nothing: outputs and workspace come from the caller. With a CUDA ExecContext
// every buffer must be device memory of ctx.device.index; work is queued on ctx.stream and the
// call returns without synchronising (CUDA / cuSPARSE failures throw std::runtime_error).
//
// Non-finite inputs: NaN in x[b,i] makes row b of y NaN (and grad_x[b,i] NaN). x = ±inf gives the limit of the
// linear extension of the end segment (±inf, or the end value where that segment is flat),
// and IEEE rules when such limits are summed. No input value causes an out-of-bounds access.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kancore/types.hpp"

namespace kancore::c0 {

// Code path. `gather` (fused gather-and-interpolate) serves kanditioned's "embedding_bag" and
// "embedding"; `csr` builds the (batch, in*K) interpolation matrix in CSR form and multiplies.
enum class Impl : int { gather = 0, csr = 1 };

// Maps kanditioned's impl names; throws std::invalid_argument for anything else.
Impl impl_from_name(std::string_view name);
std::string_view impl_name(Impl impl);

struct Shape {
  std::int64_t batch = 0;
  std::int64_t in = 0;
  std::int64_t out = 0;
  std::int64_t num_control_points = 0;  // 2 <= K < 2^31
  double spline_width = 4.0;            // W > 0, finite
};

// Throws std::invalid_argument ("expected X, got Y") unless the shape is usable.
// batch == 0 is valid (the kernels then do nothing / write zeros to grad_table).
void validate(const Shape& shape);
// The same, and the kernels' arithmetic on spline_width must stay finite and normal in `dtype`:
// W/2, (K-1)/W and W/(K-1) representable, W/2 plus an input of W's size not overflowing
// (a subnormal W gave NaN outputs, W = 1e38 in float32 gave inf).
void validate(const Shape& shape, DType dtype);

// Bytes of workspace a call on `device` needs. Pass at least this many; backward_workspace_bytes
// covers every backward call (backward, backward_input, backward_table). On the CPU the gather
// forward needs none and its backward needs sort scratch for each thread the call would use
// (kancore/threading.hpp; about min(batch, 2048) * (192 + 48 * sizeof(T)) bytes per thread); a
// smaller workspace that still holds one thread's share runs on fewer threads.
std::size_t forward_workspace_bytes(const Shape& shape, DType dtype, Impl impl, Device device = {});
std::size_t backward_workspace_bytes(const Shape& shape, DType dtype, Impl impl, Device device = {});
// The same for the context a call will run with: with ctx.precision tf32 or bf16 (float32) the
// rounded GEMM path's workspace, at most about ctx.workspace_limit (more only when one row of the
// hat basis, in*K values, plus the rounded table needs more). A smaller workspace, down to one
// row's, runs the batch in smaller chunks.
std::size_t forward_workspace_bytes(const Shape& shape, DType dtype, Impl impl, const ExecContext& ctx);
std::size_t backward_workspace_bytes(const Shape& shape, DType dtype, Impl impl, const ExecContext& ctx);

// y = layer(x). Overwrites y. With ctx.precision tf32 or bf16 (float32 only), y = Phi @ C over the
// hat basis with Phi and C rounded to that format and float32 accumulation (types.hpp,
// MatmulPrecision); backward_table likewise (Phi^T @ grad_y, both rounded); backward_input is
// always exact.
void forward(const Shape& shape, DType dtype, Impl impl, const void* x, const void* table, void* y,
             void* workspace = nullptr, std::size_t workspace_bytes = 0, const ExecContext& ctx = {});

// grad_x[b,i] = sum_o grad_y[b,o] * (C[i,k+1,o] - C[i,k,o]) * (K-1)/W. Overwrites grad_x.
void backward_input(const Shape& shape, DType dtype, Impl impl, const void* x, const void* table,
                    const void* grad_y, void* grad_x, void* workspace = nullptr,
                    std::size_t workspace_bytes = 0, const ExecContext& ctx = {});

// grad_table[i,k,o] = sum_b (1-t) g[b,o] at k, + t g[b,o] at k+1. Overwrites grad_table.
// A non-finite input contributes by IEEE arithmetic of that formula (NaN or ±inf in the two
// rows it touches). On the CPU the result is deterministic (bitwise the same run to run); on
// CUDA it is when ctx.deterministic is set (otherwise float atomics may reorder the sums).
void backward_table(const Shape& shape, DType dtype, Impl impl, const void* x, const void* grad_y,
                    void* grad_table, void* workspace = nullptr, std::size_t workspace_bytes = 0,
                    const ExecContext& ctx = {});

// Both gradients at once (what training needs): on the CPU's gather path one fused pass that
// reads each grad_y row once for both. Either output may be null to skip it.
void backward(const Shape& shape, DType dtype, Impl impl, const void* x, const void* table,
              const void* grad_y, void* grad_x, void* grad_table, void* workspace = nullptr,
              std::size_t workspace_bytes = 0, const ExecContext& ctx = {});

// Typed conveniences for C++ callers.
template <class T>
void forward(const Shape& s, Impl impl, const T* x, const T* table, T* y, void* ws = nullptr,
             std::size_t ws_bytes = 0, const ExecContext& ctx = {}) {
  forward(s, dtype_of<T>::value, impl, x, table, y, ws, ws_bytes, ctx);
}
template <class T>
void backward_input(const Shape& s, Impl impl, const T* x, const T* table, const T* grad_y,
                    T* grad_x, void* ws = nullptr, std::size_t ws_bytes = 0,
                    const ExecContext& ctx = {}) {
  backward_input(s, dtype_of<T>::value, impl, x, table, grad_y, grad_x, ws, ws_bytes, ctx);
}
template <class T>
void backward(const Shape& s, Impl impl, const T* x, const T* table, const T* grad_y, T* grad_x,
              T* grad_table, void* ws = nullptr, std::size_t ws_bytes = 0,
              const ExecContext& ctx = {}) {
  backward(s, dtype_of<T>::value, impl, x, table, grad_y, grad_x, grad_table, ws, ws_bytes, ctx);
}
template <class T>
void backward_table(const Shape& s, Impl impl, const T* x, const T* grad_y, T* grad_table,
                    void* ws = nullptr, std::size_t ws_bytes = 0, const ExecContext& ctx = {}) {
  backward_table(s, dtype_of<T>::value, impl, x, grad_y, grad_table, ws, ws_bytes, ctx);
}

}  // namespace kancore::c0

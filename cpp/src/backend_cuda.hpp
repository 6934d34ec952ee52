// The CUDA backend's entry points, declared without CUDA types so the dispatcher compiles with
// a plain C++ compiler. Defined in cuda/c0_cuda.cu, or by cuda/cuda_unavailable.cpp (which
// throws "built without CUDA") when the CUDA backend is not built. Internal header.
#pragma once

#include <cstddef>

#include "kancore/c0_layer.hpp"

namespace kancore::c0::cuda_backend {

std::size_t forward_workspace_bytes(const Shape& s, DType dtype, Impl impl, Device device);
std::size_t backward_workspace_bytes(const Shape& s, DType dtype, Impl impl, Device device);
void forward(const Shape& s, DType dtype, Impl impl, const void* x, const void* table, void* y,
             void* ws, std::size_t ws_bytes, const ExecContext& ctx);
void backward_input(const Shape& s, DType dtype, Impl impl, const void* x, const void* table,
                    const void* grad_y, void* grad_x, void* ws, std::size_t ws_bytes,
                    const ExecContext& ctx);
void backward_table(const Shape& s, DType dtype, Impl impl, const void* x, const void* grad_y,
                    void* grad_table, void* ws, std::size_t ws_bytes, const ExecContext& ctx);

// The rounded GEMM path (ctx.precision tf32/bf16, float32): hat-basis chunks multiplied by cuBLAS
// on tensor cores. Workspace: at most about ctx.workspace_limit; the calls run in chunks that fit.
std::size_t hat_gemm_workspace_bytes(const Shape& s, bool backward, const ExecContext& ctx);
void forward_hat_gemm(const Shape& s, const void* x, const void* table, void* y, void* ws,
                      std::size_t ws_bytes, const ExecContext& ctx);
void backward_table_hat_gemm(const Shape& s, const void* x, const void* grad_y, void* grad_table,
                             void* ws, std::size_t ws_bytes, const ExecContext& ctx);

}  // namespace kancore::c0::cuda_backend

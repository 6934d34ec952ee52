// The B-spline layer's CUDA entry points, declared without CUDA types (internal header).
// Defined in cuda/bspline_cuda.cu, or by cuda/cuda_unavailable.cpp when CUDA is not built.
// The dispatcher (bspline_dispatch.cpp) has validated shapes and non-null buffers; knots live in
// device memory and are not inspected on the host (no host copies inside a call).
#pragma once

#include <cstddef>

#include "kancore/bspline_layer.hpp"

namespace kancore::bspline::cuda_backend {

constexpr std::int64_t kMaxOrder = 16;  // the basis triangle lives in registers/local memory

std::size_t forward_workspace_bytes(const Shape& s, DType dtype);
std::size_t backward_workspace_bytes(const Shape& s, DType dtype);
void forward(const Shape& s, DType dtype, const void* x, const Params& p, void* y, void* ws,
             std::size_t ws_bytes, const ExecContext& ctx);
void backward(const Shape& s, DType dtype, const void* x, const Params& p, const void* grad_y,
              const Grads& g, void* ws, std::size_t ws_bytes, const ExecContext& ctx);

}  // namespace kancore::bspline::cuda_backend

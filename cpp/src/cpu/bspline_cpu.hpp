// CPU kernels of the B-spline layer (internal). Typed pointers to dense row-major data; the
// dispatcher (bspline_dispatch.cpp) has validated everything.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kancore/bspline_layer.hpp"

namespace kancore::bspline::cpu {

// Workspace, in elements of the dtype.
std::size_t forward_workspace_elems(const Shape& s);
std::size_t backward_workspace_elems(const Shape& s);

// Wb (base weight) and scaler may be null.
template <class T>
void forward(const Shape& s, const T* x, const T* knots, const T* Wb, const T* W,
             const T* scaler, T* y, T* ws);

// Null gradient pointers are skipped.
template <class T>
void backward(const Shape& s, const T* x, const T* knots, const T* Wb, const T* W,
              const T* scaler, const T* grad_y, T* gx, T* gWb, T* gW, T* gscaler, T* ws);

// The rounded (MatmulPrecision tf32/bf16) GEMM path, float32 only (bspline_hat_gemm_cpu.cpp):
// workspace offsets for chunks of `rows` rows, the most that fit in `limit` bytes (at least 1).
struct HatGemmLayout {
  std::int64_t rows;
  std::size_t weights, phi, grad, total;
};
HatGemmLayout hat_gemm_layout(const Shape& s, bool base, bool backward, std::size_t limit);
void forward_hat_gemm(const Shape& s, const float* x, const float* knots, const float* Wb, const float* W,
                      const float* scaler, float* y, MatmulPrecision p, void* ws, std::size_t ws_bytes);
// The weight gradients only (null ones skipped); the input gradient comes from `backward`.
void backward_weights_hat_gemm(const Shape& s, const float* x, const float* knots, bool base, const float* W,
                               const float* scaler, const float* grad_y, float* gWb, float* gW, float* gscaler,
                               MatmulPrecision p, void* ws, std::size_t ws_bytes);

}  // namespace kancore::bspline::cpu

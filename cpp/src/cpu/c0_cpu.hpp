// CPU kernels of the C0 layer (internal). Each takes typed pointers to dense row-major data.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kancore/c0_layer.hpp"

namespace kancore::c0::cpu {

template <class T>
void forward_gather(const Shape& s, const T* x, const T* table, T* y);
template <class T>
void backward_input_gather(const Shape& s, const T* x, const T* table, const T* grad_y, T* grad_x);
// The table gradient sorts rows by interval in per-thread scratch taken from ws: at least
// backward_scratch_bytes_gather (one thread; 0: none needed) plus 64 bytes of alignment slack;
// as many threads run as have room (backward_workspace_bytes_gather: room for every thread the
// call would use, kancore/threading.hpp).
std::size_t backward_scratch_bytes_gather(const Shape& s, std::size_t elem);
std::size_t backward_workspace_bytes_gather(const Shape& s, std::size_t elem);
template <class T>
void backward_table_gather(const Shape& s, const T* x, const T* grad_y, T* grad_table, void* ws,
                           std::size_t ws_bytes);
// Both gradients in one pass (each grad_y tile is loaded once for both); the same workspace.
template <class T>
void backward_gather(const Shape& s, const T* x, const T* table, const T* grad_y, T* grad_x,
                     T* grad_table, void* ws, std::size_t ws_bytes);

std::size_t forward_workspace_bytes_csr(const Shape& s, std::size_t elem);
std::size_t backward_workspace_bytes_csr(const Shape& s, std::size_t elem);
template <class T>
void forward_csr(const Shape& s, const T* x, const T* table, T* y, void* ws);
template <class T>
void backward_input_csr(const Shape& s, const T* x, const T* table, const T* grad_y, T* grad_x,
                        void* ws);
template <class T>
void backward_table_csr(const Shape& s, const T* x, const T* grad_y, T* grad_table, void* ws);

// The rounded (MatmulPrecision tf32/bf16) GEMM path over the hat basis, float32 only
// (c0_hat_gemm_cpu.cpp). Workspace offsets for a chunk of `rows` rows, the largest that fits in
// `limit` bytes (at least 1); forward and backward_table each take a workspace of `total` bytes
// (a smaller one runs in smaller chunks, down to one row).
struct HatGemmLayout {
  std::int64_t rows;
  std::size_t table, phi, grad, total;
};
HatGemmLayout hat_gemm_layout(const Shape& s, bool backward, std::size_t limit);
void forward_hat_gemm(const Shape& s, const float* x, const float* table, float* y, MatmulPrecision p,
                      void* ws, std::size_t ws_bytes);
void backward_table_hat_gemm(const Shape& s, const float* x, const float* grad_y, float* grad_table,
                             MatmulPrecision p, void* ws, std::size_t ws_bytes);

// y[b,:] += limit of each edge whose t is not finite (the fused and CSR paths skip those edges).
template <class T>
void add_nonfinite_limits(const Shape& s, const T* x, const T* table, T* y);

}  // namespace kancore::c0::cpu

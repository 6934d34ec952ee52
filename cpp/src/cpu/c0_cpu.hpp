// CPU kernels of the C0 layer (internal). Each takes typed pointers to dense row-major data.
#pragma once

#include <cstddef>

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

// y[b,:] += limit of each edge whose t is not finite (the fused and CSR paths skip those edges).
template <class T>
void add_nonfinite_limits(const Shape& s, const T* x, const T* table, T* y);

}  // namespace kancore::c0::cpu

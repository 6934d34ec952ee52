// The C0 layer as sparse x dense products ("sparse_matmul_csr"): the interpolation matrix
// A (batch x in*K) holds, in row b, the weights (1-t, t) at columns i*K+k and i*K+k+1.
//   forward:         y  = A  @ C        (C viewed as (in*K, out))
//   backward table:  dC = A^T @ grad_y  (A^T built by a stable counting sort: deterministic)
//   backward input:  dx[b,i] = (K-1)/W * (s[b,2i+1] - s[b,2i]),  s = SDDMM(grad_y, C) on A's pattern
// Workspace layout (all from the caller): row_ptr | col_idx | [A^T row_ptr | A^T col_idx] |
// values | [A^T values or SDDMM output], each part aligned to 64 bytes.
#include <cstdint>

#include "../c0_segment.hpp"
#include "../threads.hpp"
#include "c0_cpu.hpp"
#include "kancore/csr.hpp"

namespace kancore::c0::cpu {
namespace {

using detail::Grid;
using detail::locate;
using detail::make_grid;

constexpr std::size_t align64(std::size_t n) { return (n + 63) / 64 * 64; }

struct Layout {
  std::size_t row_ptr, col_idx, t_row_ptr, t_col_idx, values, values2, total;
};

Layout layout(const Shape& s, std::size_t elem, bool backward) {
  const std::size_t nnz = static_cast<std::size_t>(s.batch) * static_cast<std::size_t>(s.in) * 2;
  const std::size_t cols = static_cast<std::size_t>(s.in) * static_cast<std::size_t>(s.num_control_points);
  Layout l{};
  std::size_t at = 0;
  l.row_ptr = at;   at += align64((static_cast<std::size_t>(s.batch) + 1) * sizeof(std::int64_t));
  l.col_idx = at;   at += align64(nnz * sizeof(std::int64_t));
  if (backward) {
    l.t_row_ptr = at; at += align64((cols + 1) * sizeof(std::int64_t));
    l.t_col_idx = at; at += align64(nnz * sizeof(std::int64_t));
  }
  l.values = at;    at += align64(nnz * elem);
  if (backward) {
    l.values2 = at; at += align64(nnz * elem);
  }
  l.total = at;
  return l;
}

template <class P>
P* at(void* ws, std::size_t offset) {
  return reinterpret_cast<P*>(static_cast<char*>(ws) + offset);
}

// Fills A's CSR arrays. With `skip_nonfinite`, edges whose t is not finite get zero weights
// (the forward adds their limit separately, so every impl computes the same function).
template <class T>
csr::Matrix<T> build(const Shape& s, const T* x, std::int64_t* row_ptr, std::int64_t* col_idx,
                     T* values, bool skip_nonfinite) {
  const std::int64_t N = s.batch, I = s.in, K = s.num_control_points;
  const Grid<T> g = make_grid<T>(K, s.spline_width);
#pragma omp parallel for schedule(static) num_threads(internal::threads_for(s.batch * s.in * s.out))
  for (std::int64_t b = 0; b < N; ++b) {
    row_ptr[b + 1] = (b + 1) * 2 * I;
    for (std::int64_t i = 0; i < I; ++i) {
      std::int64_t k;
      T t;
      locate(g, x[b * I + i], k, t);
      const std::int64_t p = (b * I + i) * 2;
      col_idx[p] = i * K + k;
      col_idx[p + 1] = i * K + k + 1;
      const bool skip = skip_nonfinite && !detail::is_finite(t);
      values[p] = skip ? T(0) : T(1) - t;
      values[p + 1] = skip ? T(0) : t;
    }
  }
  row_ptr[0] = 0;
  return csr::Matrix<T>{N, I * K, row_ptr, col_idx, values};
}

}  // namespace

std::size_t forward_workspace_bytes_csr(const Shape& s, std::size_t elem) {
  return layout(s, elem, false).total;
}
std::size_t backward_workspace_bytes_csr(const Shape& s, std::size_t elem) {
  return layout(s, elem, true).total;
}

template <class T>
void forward_csr(const Shape& s, const T* x, const T* table, T* y, void* ws) {
  if (s.batch == 0) return;
  const Layout l = layout(s, sizeof(T), false);
  const auto a = build<T>(s, x, at<std::int64_t>(ws, l.row_ptr), at<std::int64_t>(ws, l.col_idx),
                          at<T>(ws, l.values), /*skip_nonfinite=*/true);
  csr::spmm(a, table, s.out, y);
  add_nonfinite_limits(s, x, table, y);
}

template <class T>
void backward_input_csr(const Shape& s, const T* x, const T* table, const T* grad_y, T* grad_x,
                        void* ws) {
  if (s.batch == 0) return;
  const Layout l = layout(s, sizeof(T), true);
  const auto a = build<T>(s, x, at<std::int64_t>(ws, l.row_ptr), at<std::int64_t>(ws, l.col_idx),
                          at<T>(ws, l.values), /*skip_nonfinite=*/false);
  T* dots = at<T>(ws, l.values2);
  csr::sddmm(a, grad_y, table, s.out, dots);
  const T slope = make_grid<T>(s.num_control_points, s.spline_width).slope;
  const std::int64_t n = s.batch * s.in;
#pragma omp parallel for schedule(static) num_threads(internal::threads_for(s.batch * s.in * s.out))
  for (std::int64_t j = 0; j < n; ++j) {
    const T xv = x[j];
    grad_x[j] = (xv != xv) ? xv : (dots[2 * j + 1] - dots[2 * j]) * slope;
  }
}

template <class T>
void backward_table_csr(const Shape& s, const T* x, const T* grad_y, T* grad_table, void* ws) {
  const Layout l = layout(s, sizeof(T), true);
  const auto a = build<T>(s, x, at<std::int64_t>(ws, l.row_ptr), at<std::int64_t>(ws, l.col_idx),
                          at<T>(ws, l.values), /*skip_nonfinite=*/false);
  std::int64_t* t_row_ptr = at<std::int64_t>(ws, l.t_row_ptr);
  std::int64_t* t_col_idx = at<std::int64_t>(ws, l.t_col_idx);
  T* t_values = at<T>(ws, l.values2);
  csr::transpose(a, t_row_ptr, t_col_idx, t_values);
  const csr::Matrix<T> at_{a.cols, a.rows, t_row_ptr, t_col_idx, t_values};
  csr::spmm(at_, grad_y, s.out, grad_table);
}

#define KANCORE_INSTANTIATE(T)                                                               \
  template void forward_csr<T>(const Shape&, const T*, const T*, T*, void*);                 \
  template void backward_input_csr<T>(const Shape&, const T*, const T*, const T*, T*, void*); \
  template void backward_table_csr<T>(const Shape&, const T*, const T*, T*, void*);
KANCORE_INSTANTIATE(float)
KANCORE_INSTANTIATE(double)
#undef KANCORE_INSTANTIATE

}  // namespace kancore::c0::cpu

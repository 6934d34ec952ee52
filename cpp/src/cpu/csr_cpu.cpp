// Generic CSR x dense products on the CPU (see kancore/csr.hpp).
#include <algorithm>
#include <stdexcept>
#include <string>

#include "kancore/csr.hpp"

#include "../threads.hpp"

namespace kancore::csr {

template <class T>
void check(const Matrix<T>& a) {
  if (a.rows < 0 || a.cols < 0) throw std::invalid_argument("csr: negative dimensions");
  if (a.row_ptr[0] != 0) {
    throw std::invalid_argument("csr: expected row_ptr[0] == 0, got " + std::to_string(a.row_ptr[0]));
  }
  for (std::int64_t r = 0; r < a.rows; ++r) {
    if (a.row_ptr[r + 1] < a.row_ptr[r]) {
      throw std::invalid_argument("csr: row_ptr is not monotone at row " + std::to_string(r));
    }
  }
  const std::int64_t nnz = a.row_ptr[a.rows];
  for (std::int64_t p = 0; p < nnz; ++p) {
    if (a.col_idx[p] < 0 || a.col_idx[p] >= a.cols) {
      throw std::invalid_argument("csr: expected column indices in [0, " + std::to_string(a.cols) +
                                  "), got " + std::to_string(a.col_idx[p]));
    }
  }
}

template <class T>
void spmm(const Matrix<T>& a, const T* dense, std::int64_t n, T* out) {
#pragma omp parallel for schedule(dynamic, 16) num_threads(internal::threads_for(a.row_ptr[a.rows] * n))
  for (std::int64_t r = 0; r < a.rows; ++r) {
    T* __restrict o = out + r * n;
    for (std::int64_t j = 0; j < n; ++j) o[j] = T(0);
    for (std::int64_t p = a.row_ptr[r]; p < a.row_ptr[r + 1]; ++p) {
      const T v = a.values[p];
      const T* __restrict d = dense + a.col_idx[p] * n;
#pragma omp simd
      for (std::int64_t j = 0; j < n; ++j) o[j] += v * d[j];
    }
  }
}

template <class T>
void transpose(const Matrix<T>& a, std::int64_t* t_row_ptr, std::int64_t* t_col_idx,
               T* t_values) {
  const std::int64_t nnz = a.row_ptr[a.rows];
  std::fill(t_row_ptr, t_row_ptr + a.cols + 1, std::int64_t{0});
  for (std::int64_t p = 0; p < nnz; ++p) ++t_row_ptr[a.col_idx[p] + 1];
  for (std::int64_t c = 0; c < a.cols; ++c) t_row_ptr[c + 1] += t_row_ptr[c];
  // Counting sort by column, scanning rows in order: each output row stays sorted by source row.
  // t_row_ptr[c] serves as the insertion cursor of row c, then is shifted back.
  for (std::int64_t r = 0; r < a.rows; ++r) {
    for (std::int64_t p = a.row_ptr[r]; p < a.row_ptr[r + 1]; ++p) {
      const std::int64_t dst = t_row_ptr[a.col_idx[p]]++;
      t_col_idx[dst] = r;
      t_values[dst] = a.values[p];
    }
  }
  for (std::int64_t c = a.cols; c > 0; --c) t_row_ptr[c] = t_row_ptr[c - 1];
  t_row_ptr[0] = 0;
}

template <class T>
void sddmm(const Matrix<T>& a, const T* left, const T* right, std::int64_t n, T* out) {
#pragma omp parallel for schedule(dynamic, 16) num_threads(internal::threads_for(a.row_ptr[a.rows] * n))
  for (std::int64_t r = 0; r < a.rows; ++r) {
    const T* __restrict l = left + r * n;
    for (std::int64_t p = a.row_ptr[r]; p < a.row_ptr[r + 1]; ++p) {
      const T* __restrict d = right + a.col_idx[p] * n;
      T dot = T(0);
#pragma omp simd reduction(+ : dot)
      for (std::int64_t j = 0; j < n; ++j) dot += l[j] * d[j];
      out[p] = dot;
    }
  }
}

#define KANCORE_INSTANTIATE(T)                                                               \
  template void check<T>(const Matrix<T>&);                                                  \
  template void spmm<T>(const Matrix<T>&, const T*, std::int64_t, T*);                       \
  template void transpose<T>(const Matrix<T>&, std::int64_t*, std::int64_t*, T*);            \
  template void sddmm<T>(const Matrix<T>&, const T*, const T*, std::int64_t, T*);
KANCORE_INSTANTIATE(float)
KANCORE_INSTANTIATE(double)
#undef KANCORE_INSTANTIATE

}  // namespace kancore::csr

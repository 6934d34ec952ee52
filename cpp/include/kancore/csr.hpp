// Compressed sparse row (CSR) matrices and their products with dense row-major matrices.
// Used by the C0 layer's "sparse_matmul_csr" path; usable on their own from C++ (CPU).
#pragma once

#include <cstdint>

namespace kancore::csr {

// A (rows x cols) CSR matrix view: row_ptr[rows+1], col_idx[nnz], values[nnz].
template <class T>
struct Matrix {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  const std::int64_t* row_ptr = nullptr;
  const std::int64_t* col_idx = nullptr;
  const T* values = nullptr;
};

// Throws std::invalid_argument unless row_ptr is monotone from 0 and every column is in range.
template <class T>
void check(const Matrix<T>& a);

// out (a.rows x n) = a * dense (a.cols x n). Overwrites out. CPU, OpenMP over rows.
template <class T>
void spmm(const Matrix<T>& a, const T* dense, std::int64_t n, T* out);

// Writes the transpose of `a` (a.cols x a.rows) into t_row_ptr[a.cols+1], t_col_idx[nnz],
// t_values[nnz]. Columns within each output row stay in ascending order (stable), so products
// with the transpose are deterministic.
template <class T>
void transpose(const Matrix<T>& a, std::int64_t* t_row_ptr, std::int64_t* t_col_idx, T* t_values);

// Sampled dense-dense product on a's pattern: out[p] = dot(left[row(p), :], right[col(p), :])
// for every stored entry p, with left (a.rows x n) and right (a.cols x n). a.values is unused.
template <class T>
void sddmm(const Matrix<T>& a, const T* left, const T* right, std::int64_t n, T* out);

}  // namespace kancore::csr

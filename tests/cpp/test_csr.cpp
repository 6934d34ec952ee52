// kancore/csr.hpp: spmm, transpose and sddmm against dense references, and check().
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "kancore/csr.hpp"

namespace {

using kancore::csr::Matrix;

// A random sparse matrix held both as CSR and as a dense row-major copy. Row 1 is always empty,
// so empty rows are covered.
template <class T>
struct Sparse {
  std::int64_t rows, cols;
  std::vector<std::int64_t> row_ptr, col_idx;
  std::vector<T> values;
  std::vector<double> dense;  // rows x cols

  Sparse(std::int64_t r, std::int64_t c, double density, std::uint64_t seed)
      : rows(r), cols(c), row_ptr{0}, dense(static_cast<std::size_t>(r * c), 0.0) {
    std::mt19937_64 gen(seed);
    std::uniform_real_distribution<double> u01(0, 1), val(-2, 2);
    for (std::int64_t i = 0; i < r; ++i) {
      for (std::int64_t j = 0; j < c; ++j) {
        if (i != 1 && u01(gen) < density) {
          const T v = static_cast<T>(val(gen));
          col_idx.push_back(j);
          values.push_back(v);
          dense[static_cast<std::size_t>(i * c + j)] = v;
        }
      }
      row_ptr.push_back(static_cast<std::int64_t>(col_idx.size()));
    }
  }
  Matrix<T> view() const { return Matrix<T>{rows, cols, row_ptr.data(), col_idx.data(), values.data()}; }
  std::int64_t nnz() const { return row_ptr.back(); }
};

template <class T>
std::vector<T> random_dense(std::int64_t r, std::int64_t c, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> val(-1, 1);
  std::vector<T> m(static_cast<std::size_t>(r * c));
  for (auto& v : m) v = static_cast<T>(val(gen));
  return m;
}

template <class T>
double tol() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-13;
}

template <class T>
class Csr : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Csr, Types);

TYPED_TEST(Csr, SpmmMatchesDenseProduct) {
  using T = TypeParam;
  const Sparse<T> a(13, 17, 0.3, 1);
  ASSERT_GT(a.nnz(), 0);
  for (const std::int64_t n : {1, 5, 33}) {
    const auto d = random_dense<T>(a.cols, n, 2);
    std::vector<T> out(static_cast<std::size_t>(a.rows * n), std::numeric_limits<T>::quiet_NaN());
    kancore::csr::spmm(a.view(), d.data(), n, out.data());
    for (std::int64_t i = 0; i < a.rows; ++i) {
      for (std::int64_t j = 0; j < n; ++j) {
        double ref = 0, mag = 0;
        for (std::int64_t k = 0; k < a.cols; ++k) {
          ref += a.dense[static_cast<std::size_t>(i * a.cols + k)] * d[static_cast<std::size_t>(k * n + j)];
          mag += std::fabs(a.dense[static_cast<std::size_t>(i * a.cols + k)] * d[static_cast<std::size_t>(k * n + j)]);
        }
        EXPECT_NEAR(out[static_cast<std::size_t>(i * n + j)], ref, tol<T>() * (mag + 1e-30))
            << "n=" << n << " (" << i << "," << j << ")";
      }
    }
    // Row 1 is empty: overwritten with exact zeros.
    for (std::int64_t j = 0; j < n; ++j) EXPECT_EQ(out[static_cast<std::size_t>(n + j)], T(0));
  }
}

TYPED_TEST(Csr, TransposeIsTheDenseTransposeWithSortedRows) {
  using T = TypeParam;
  const Sparse<T> a(11, 7, 0.35, 3);
  std::vector<std::int64_t> trp(static_cast<std::size_t>(a.cols + 1), -1);
  std::vector<std::int64_t> tci(static_cast<std::size_t>(a.nnz()), -1);
  std::vector<T> tv(static_cast<std::size_t>(a.nnz()), std::numeric_limits<T>::quiet_NaN());
  kancore::csr::transpose(a.view(), trp.data(), tci.data(), tv.data());
  const Matrix<T> t{a.cols, a.rows, trp.data(), tci.data(), tv.data()};
  ASSERT_NO_THROW(kancore::csr::check(t));
  ASSERT_EQ(trp.back(), a.nnz());
  std::vector<double> dense_t(static_cast<std::size_t>(a.rows * a.cols), 0.0);
  for (std::int64_t r = 0; r < t.rows; ++r) {
    for (std::int64_t p = trp[static_cast<std::size_t>(r)]; p < trp[static_cast<std::size_t>(r + 1)]; ++p) {
      if (p > trp[static_cast<std::size_t>(r)]) {
        EXPECT_LT(tci[static_cast<std::size_t>(p - 1)], tci[static_cast<std::size_t>(p)])
            << "columns of transposed row " << r << " not strictly ascending";
      }
      dense_t[static_cast<std::size_t>(r * a.rows + tci[static_cast<std::size_t>(p)])] = tv[static_cast<std::size_t>(p)];
    }
  }
  for (std::int64_t i = 0; i < a.rows; ++i)
    for (std::int64_t j = 0; j < a.cols; ++j)
      EXPECT_EQ(dense_t[static_cast<std::size_t>(j * a.rows + i)], a.dense[static_cast<std::size_t>(i * a.cols + j)])
          << "(" << i << "," << j << ")";
}

// Stability: duplicate columns within a row keep their source order in the transpose (values
// are distinguishable), so products with the transpose are deterministic.
TYPED_TEST(Csr, TransposeIsStableForRepeatedColumns) {
  using T = TypeParam;
  // 3 x 2: row0 = {c1: 1, c1: 2}, row1 = {c0: 3}, row2 = {c1: 4, c0: 5}.
  const std::vector<std::int64_t> rp = {0, 2, 3, 5}, ci = {1, 1, 0, 1, 0};
  const std::vector<T> v = {1, 2, 3, 4, 5};
  const Matrix<T> a{3, 2, rp.data(), ci.data(), v.data()};
  std::vector<std::int64_t> trp(3), tci(5);
  std::vector<T> tv(5);
  kancore::csr::transpose(a, trp.data(), tci.data(), tv.data());
  EXPECT_EQ(trp, (std::vector<std::int64_t>{0, 2, 5}));
  EXPECT_EQ(tci, (std::vector<std::int64_t>{1, 2, 0, 0, 2}));
  EXPECT_EQ(tv, (std::vector<T>{3, 5, 1, 2, 4}));
}

TYPED_TEST(Csr, SddmmMatchesDenseDotsOnThePattern) {
  using T = TypeParam;
  const Sparse<T> a(9, 14, 0.4, 5);
  const std::int64_t n = 19;
  const auto left = random_dense<T>(a.rows, n, 6);
  const auto right = random_dense<T>(a.cols, n, 7);
  std::vector<T> out(static_cast<std::size_t>(a.nnz()), std::numeric_limits<T>::quiet_NaN());
  kancore::csr::sddmm(a.view(), left.data(), right.data(), n, out.data());
  for (std::int64_t r = 0; r < a.rows; ++r) {
    for (std::int64_t p = a.row_ptr[static_cast<std::size_t>(r)]; p < a.row_ptr[static_cast<std::size_t>(r + 1)]; ++p) {
      const std::int64_t c = a.col_idx[static_cast<std::size_t>(p)];
      double ref = 0, mag = 0;
      for (std::int64_t j = 0; j < n; ++j) {
        const double prod = static_cast<double>(left[static_cast<std::size_t>(r * n + j)]) *
                            right[static_cast<std::size_t>(c * n + j)];
        ref += prod;
        mag += std::fabs(prod);
      }
      EXPECT_NEAR(out[static_cast<std::size_t>(p)], ref, tol<T>() * mag) << "entry " << p;
    }
  }
}

TYPED_TEST(Csr, CheckAcceptsValidAndRejectsMalformed) {
  using T = TypeParam;
  const Sparse<T> a(6, 5, 0.5, 9);
  ASSERT_GE(a.nnz(), 2);
  EXPECT_NO_THROW(kancore::csr::check(a.view()));

  // Empty matrix with a single row_ptr entry is valid.
  const std::int64_t zero = 0;
  EXPECT_NO_THROW(kancore::csr::check(Matrix<T>{0, 3, &zero, nullptr, nullptr}));

  {
    auto rp = a.row_ptr;
    rp[0] = 1;  // does not start at 0
    Matrix<T> m = a.view();
    m.row_ptr = rp.data();
    EXPECT_THROW(kancore::csr::check(m), std::invalid_argument);
  }
  {
    auto rp = a.row_ptr;
    const std::size_t r = rp.size() / 2;
    rp[r] = rp[r - 1] - 1;  // decreases in the middle
    Matrix<T> m = a.view();
    m.row_ptr = rp.data();
    EXPECT_THROW(kancore::csr::check(m), std::invalid_argument);
  }
  for (const std::int64_t bad_col : {std::int64_t{-1}, a.cols, a.cols + 100}) {
    auto ci = a.col_idx;
    ci[ci.size() / 2] = bad_col;
    Matrix<T> m = a.view();
    m.col_idx = ci.data();
    EXPECT_THROW(kancore::csr::check(m), std::invalid_argument) << "column " << bad_col;
  }
  Matrix<T> neg = a.view();
  neg.rows = -1;
  EXPECT_THROW(kancore::csr::check(neg), std::invalid_argument);
}

}  // namespace

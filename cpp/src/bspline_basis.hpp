// The k+1 non-zero Cox-de Boor basis functions at one point (internal header).
//
// Knots t[0..n-1] (n = G+2k+1) are non-decreasing. On the interval t[m] <= x < t[m+1] the
// non-zero functions of order p are B_{m-p..m, p}; the triangle below builds them level by
// level. A function B_{j,p} exists only for 0 <= j and j+p+1 <= n-1 (those are the ones the
// full recursion over the knot array defines); missing ones count as 0, and so does any 0/0
// term (repeated knots). The result is shifted to a window of k+1 valid coefficients.
#pragma once

#include <algorithm>
#include <cstdint>

namespace kancore::bspline::detail {

// Index m of the interval holding x, or -1 when x is NaN or outside [t[0], t[n-1]).
template <class T>
inline std::int64_t find_interval(const T* t, std::int64_t n, T x) {
  if (!(x >= t[0]) || !(x < t[n - 1])) return -1;  // also rejects NaN
  // Last m with t[m] <= x; then t[m+1] > x, so the interval is not empty.
  return (std::upper_bound(t, t + n, x) - t) - 1;
}

template <class T>
inline T safe_ratio(T num, T den) {
  return den != T(0) ? num / den : T(0);
}

// dst[r] = src[r + offset] where that index is in 0..k, else 0.
template <class T>
inline void shift_window(const T* src, T* dst, std::int64_t offset, std::int64_t k) {
  for (std::int64_t r = 0; r <= k; ++r) {
    const std::int64_t s = r + offset;
    dst[r] = (s >= 0 && s <= k) ? src[s] : T(0);
  }
}

// Writes the values (and derivatives when d != nullptr) of the coefficients first..first+k
// into v[0..k] (d[0..k]) and returns first, in [0, G-1]. scratch holds 2(k+1) values.
template <class T>
inline std::int64_t eval_basis(const T* t, std::int64_t G, std::int64_t k, T x, T* v, T* d,
                               T* scratch) {
  const std::int64_t n = G + 2 * k + 1;
  const std::int64_t m = find_interval(t, n, x);
  const std::int64_t first_max = G - 1;
  if (m < 0) {
    for (std::int64_t r = 0; r <= k; ++r) {
      v[r] = T(0);
      if (d) d[r] = T(0);
    }
    return 0;
  }
  // N[r] holds B_{m-p+r, p} for r = 0..p.
  T* N = scratch;
  N[0] = T(1);
  auto exists = [n](std::int64_t j, std::int64_t p) { return j >= 0 && j + p + 1 <= n - 1; };
  for (std::int64_t p = 1; p <= k; ++p) {
    if (p == k && d) {
      // Derivative of B_{j,k}: k (B_{j,k-1} / (t[j+k]-t[j]) - B_{j+1,k-1} / (t[j+k+1]-t[j+1])),
      // from the level k-1 values still in N (N[r] = B_{m-k+1+r, k-1}).
      for (std::int64_t r = 0; r <= k; ++r) {
        const std::int64_t j = m - k + r;
        T acc = T(0);
        if (exists(j, k)) {
          if (r >= 1) acc += safe_ratio(N[r - 1], t[j + k] - t[j]);
          if (r <= k - 1) acc -= safe_ratio(N[r], t[j + k + 1] - t[j + 1]);
        }
        d[r] = T(k) * acc;
      }
    }
    // New level from the top down so N[r-1] (level p-1) is still unread when N[r] is written.
    for (std::int64_t r = p; r >= 0; --r) {
      const std::int64_t j = m - p + r;
      T val = T(0);
      if (exists(j, p)) {
        if (r >= 1) val += safe_ratio(x - t[j], t[j + p] - t[j]) * N[r - 1];
        if (r <= p - 1) val += safe_ratio(t[j + p + 1] - x, t[j + p + 1] - t[j + 1]) * N[r];
      }
      N[r] = val;
    }
  }
  // Coefficients m-k..m, shifted into the valid window first..first+k (missing ones are 0).
  const std::int64_t lo = m - k;
  const std::int64_t first = std::clamp<std::int64_t>(lo, 0, first_max);
  shift_window(N, v, first - lo, k);
  if (d) {
    T* dm = scratch + (k + 1);  // d was written in N's indexing
    std::copy(d, d + k + 1, dm);
    shift_window(dm, d, first - lo, k);
  }
  return first;
}

}  // namespace kancore::bspline::detail

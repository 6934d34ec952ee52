// Division-free basis evaluation for the CPU kernels (internal header).
//
// eval_basis (bspline_basis.hpp) is the readable statement of the Cox-de Boor triangle, but per
// (b, i) it binary-searches the knots and divides ~k(k+1) times, which made the basis cost more
// than the output accumulation. A knot plan is built once per feature and call:
//   - the knots padded by k copies of the end knots on each side, so every index the triangle
//     touches is in bounds;
//   - the reciprocals 1/(t[j+p]-t[j]) and 1/(t[j+p+1]-t[j+1]) per level p, set to 0 where the
//     difference is 0 (a 0/0 term) or where B_{j,p} is not defined by the knot array, which is
//     exactly when eval_basis counts a term as 0;
//   - whether the knots are uniform to rounding: then the triangle's ratios are the constants
//     (u + p - r)/p and (r + 1 - u)/p of the cardinal B-spline, with u the position inside the
//     interval, and no table is read at all.
// The interval is found by a guess from the mean knot spacing, corrected by walking to the
// exact "last m with t[m] <= x", so results match eval_basis up to rounding everywhere.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace kancore::bspline::cpu {

// Plan layout, per feature, in elements of T:
//   [0] t[0]  [1] 1 / mean spacing  [2] 1 if uniform else 0  [3] unused
//   then padded knots (n + 2k), then L[p] and R[p] for p = 1..k, each (n + 2k), index j + k.
inline std::int64_t knot_plan_elems(std::int64_t G, std::int64_t k) {
  const std::int64_t n = G + 2 * k + 1;
  return 4 + (2 * k + 1) * (n + 2 * k);
}

template <class T>
void build_knot_plan(const T* t, std::int64_t G, std::int64_t k, T* plan) {
  const std::int64_t n = G + 2 * k + 1, span = n + 2 * k;
  const T t0 = t[0], tn = t[n - 1];
  const T h = (tn - t0) / T(n - 1);
  bool uniform = h > T(0) && std::isfinite(h);
  const T tol = T(16) * std::numeric_limits<T>::epsilon() *
                std::max({std::abs(t0), std::abs(tn), h});
  for (std::int64_t j = 0; j < n && uniform; ++j) {
    uniform = std::abs(t[j] - (t0 + T(j) * h)) <= tol;
  }
  plan[0] = t0;
  plan[1] = h > T(0) ? T(1) / h : T(0);
  plan[2] = uniform ? T(1) : T(0);
  plan[3] = T(0);
  T* tp = plan + 4;
  for (std::int64_t j = -k; j < n + k; ++j) tp[j + k] = t[std::clamp<std::int64_t>(j, 0, n - 1)];
  auto inv = [](T den) { return den != T(0) ? T(1) / den : T(0); };
  for (std::int64_t p = 1; p <= k; ++p) {
    T* L = tp + (2 * p - 1) * span;
    T* R = L + span;
    for (std::int64_t j = -k; j < n + k; ++j) {
      const bool exists = j >= 0 && j + p + 1 <= n - 1;
      L[j + k] = exists ? inv(t[j + p] - t[j]) : T(0);
      R[j + k] = exists ? inv(t[j + p + 1] - t[j + 1]) : T(0);
    }
  }
}

// Interval m with t[m] <= x < t[m+1] (the last such m), or -1 for NaN / outside [t0, t[n-1]).
template <class T>
inline std::int64_t planned_interval(const T* plan, std::int64_t n, std::int64_t k, T x) {
  const T* t = plan + 4 + k;  // unpadded view
  if (!(x >= t[0]) || !(x < t[n - 1])) return -1;
  const T guess = (x - t[0]) * plan[1];
  std::int64_t m = std::clamp<std::int64_t>(static_cast<std::int64_t>(guess), 0, n - 2);
  // A few steps fix rounding of the guess; strongly non-uniform knots fall back to a search.
  for (int step = 0; step < 4; ++step) {
    if (x < t[m]) {
      --m;
    } else if (x >= t[m + 1]) {
      ++m;
    } else {
      return m;
    }
  }
  return (std::upper_bound(t, t + n, x) - t) - 1;
}

// Basis values (and derivatives when D) of coefficients first..first+k into v (d); returns
// first. K > 0 fixes the order at compile time; K == 0 reads it from k.
template <class T, int K, bool D>
inline std::int64_t eval_planned(const T* plan, std::int64_t G, std::int64_t k_runtime, T x, T* v,
                                 T* d) {
  const std::int64_t k = K > 0 ? K : k_runtime;
  const std::int64_t n = G + 2 * k + 1, span = n + 2 * k;
  const std::int64_t m = planned_interval(plan, n, k, x);
  if (m < 0) {
    for (std::int64_t r = 0; r <= k; ++r) {
      v[r] = T(0);
      if (D) d[r] = T(0);
    }
    return 0;
  }
  constexpr int kMax = K > 0 ? K + 1 : 65;
  T N[kMax];  // N[r] = B_{m-p+r, p}
  N[0] = T(1);
  const T* t = plan + 4 + k;  // t[j] valid for j in [-k, n+k)
  if (plan[2] != T(0)) {
    // Uniform knots: ratios are (u + p - r)/p and (r + 1 - u)/p with u in [0, 1).
    const T u = (x - t[m]) * plan[1];
    for (std::int64_t p = 1; p <= k; ++p) {
      if (D && p == k) {
        for (std::int64_t r = 0; r <= k; ++r) {
          const T lo = r >= 1 ? N[r - 1] : T(0), hi = r <= k - 1 ? N[r] : T(0);
          d[r] = (lo - hi) * plan[1];
        }
      }
      const T inv_p = T(1) / T(p);
      N[p] = (u * inv_p) * N[p - 1];
      for (std::int64_t r = p - 1; r >= 1; --r) {
        N[r] = ((u + T(p - r)) * inv_p) * N[r - 1] + ((T(r + 1) - u) * inv_p) * N[r];
      }
      N[0] = ((T(1) - u) * inv_p) * N[0];
    }
  } else {
    for (std::int64_t p = 1; p <= k; ++p) {
      const T* L = plan + 4 + (2 * p - 1) * span + k;
      const T* R = L + span;
      if (D && p == k) {
        for (std::int64_t r = 0; r <= k; ++r) {
          const std::int64_t j = m - k + r;
          const T lo = r >= 1 ? N[r - 1] * L[j] : T(0), hi = r <= k - 1 ? N[r] * R[j] : T(0);
          d[r] = T(k) * (lo - hi);
        }
      }
      for (std::int64_t r = p; r >= 0; --r) {
        const std::int64_t j = m - p + r;
        T val = T(0);
        if (r >= 1) val += (x - t[j]) * L[j] * N[r - 1];
        if (r <= p - 1) val += (t[j + p + 1] - x) * R[j] * N[r];
        N[r] = val;
      }
    }
  }
  // Coefficients m-k..m shifted into the valid window first..first+k; missing ones are 0.
  const std::int64_t lo = m - k;
  const std::int64_t first = std::clamp<std::int64_t>(lo, 0, G - 1);
  const std::int64_t off = first - lo;
  if (D) {
    T dm[kMax];
    for (std::int64_t r = 0; r <= k; ++r) dm[r] = d[r];
    for (std::int64_t r = 0; r <= k; ++r) {
      const std::int64_t s = r + off;
      d[r] = (s >= 0 && s <= k) ? dm[s] : T(0);
    }
  }
  for (std::int64_t r = 0; r <= k; ++r) {
    const std::int64_t s = r + off;
    v[r] = (s >= 0 && s <= k) ? N[s] : T(0);
  }
  return first;
}

}  // namespace kancore::bspline::cpu

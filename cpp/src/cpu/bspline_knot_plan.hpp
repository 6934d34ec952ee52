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

// eval_planned's uniform path for n inputs of one feature at once, as one SIMD loop over lanes
// (the interval guess corrected by one step against the actual knots, which is exact for a
// uniform grid; gathers for the knots). Only for plans with plan[2] != 0 and a compile-time
// order K >= 1. Inputs x[j * xstride]; outputs v[j * vstride + r] (and d[...] when D) and
// first[j * fstride], j < n. Matches eval_planned up to rounding.
// (Not inlined: inside the kernels' OpenMP regions GCC would not vectorise the lane loop.)
template <class T, int K, bool D>
__attribute__((noinline)) void eval_uniform_block(const T* plan, std::int64_t G, const T* x, std::int64_t xstride,
                        std::int64_t n, T* v, T* d, std::int64_t vstride, std::int32_t* first,
                        std::int64_t fstride) {
  static_assert(K >= 1, "a compile-time order");
  constexpr int kTaps = K + 1;
  constexpr int kBlock = 64 / sizeof(T);  // one vector register of lanes
  const std::int32_t nk = static_cast<std::int32_t>(G + 2 * K + 1);
  const std::int32_t gmax = static_cast<std::int32_t>(G - 1);
  const T* t = plan + 4 + K;  // t[j] for j in [-K, nk + K)
  const T t0 = t[0], tn = t[nk - 1], invh = plan[1];
  for (std::int64_t j0 = 0; j0 < n; j0 += kBlock) {
    const int nb = static_cast<int>(n - j0 < kBlock ? n - j0 : kBlock);
    T vv[kTaps][kBlock], dd[kTaps][kBlock], xb[kBlock];
    std::int32_t ff[kBlock];
    for (int l = 0; l < kBlock; ++l) xb[l] = l < nb ? x[(j0 + l) * xstride] : t0;  // strided rows
#pragma omp simd
    for (int l = 0; l < kBlock; ++l) {
      const T xr = xb[l];
      const bool ok = (xr >= t0) & (xr < tn);  // false for NaN
      const T xx = ok ? xr : t0;
      std::int32_t m = static_cast<std::int32_t>((xx - t0) * invh);
      m = m < 0 ? 0 : (m > nk - 2 ? nk - 2 : m);
      m = m - (xx < t[m] ? 1 : 0) + (xx >= t[m + 1] ? 1 : 0);
      m = m < 0 ? 0 : (m > nk - 2 ? nk - 2 : m);
      const T u = (xx - t[m]) * invh;
      T N[kTaps], Nd[kTaps];
      N[0] = T(1);
#pragma GCC unroll 16
      for (int p = 1; p <= K; ++p) {
        if (D && p == K) {
#pragma GCC unroll 16
          for (int r = 0; r <= K; ++r) Nd[r] = ((r >= 1 ? N[r - 1] : T(0)) - (r <= K - 1 ? N[r] : T(0))) * invh;
        }
        const T inv_p = T(1) / T(p);
        N[p] = (u * inv_p) * N[p - 1];
#pragma GCC unroll 16
        for (int r = p - 1; r >= 1; --r) {
          N[r] = ((u + T(p - r)) * inv_p) * N[r - 1] + ((T(r + 1) - u) * inv_p) * N[r];
        }
        N[0] = ((T(1) - u) * inv_p) * N[0];
      }
      const std::int32_t lo = m - K;
      const std::int32_t f = lo < 0 ? 0 : (lo > gmax ? gmax : lo);
      const std::int32_t off = f - lo;
#pragma GCC unroll 16
      for (int r = 0; r <= K; ++r) {
        T val = T(0), dval = T(0);
#pragma GCC unroll 16
        for (int s2 = 0; s2 <= K; ++s2) {
          const bool here = (r + off == s2);
          val = here ? N[s2] : val;
          if (D) dval = here ? Nd[s2] : dval;
        }
        vv[r][l] = ok ? val : T(0);
        if (D) dd[r][l] = ok ? dval : T(0);
      }
      ff[l] = ok ? f : 0;
    }
    for (int l = 0; l < nb; ++l) {
      for (int r = 0; r <= K; ++r) {
        v[(j0 + l) * vstride + r] = vv[r][l];
        if (D) d[(j0 + l) * vstride + r] = dd[r][l];
      }
      first[(j0 + l) * fstride] = ff[l];
    }
  }
}

}  // namespace kancore::bspline::cpu

// Interval lookup for the C0 layer, shared by the CPU and CUDA kernels so both backends agree
// bit for bit on (k, t). Internal header.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define KANCORE_HD __host__ __device__ __forceinline__
#else
#define KANCORE_HD inline
#endif

namespace kancore::c0::detail {

// Constants of the map u = ((x + W/2) * (K-1)) / W, in the element type, so the rounding
// matches kanditioned's `(x + W/2) * (K-1) / W` on a tensor of that dtype.
template <class T>
struct Grid {
  T half_width;  // W/2
  T km1;         // K-1
  T width;       // W
  T last;        // K-2: the largest valid left index
  T slope;       // (K-1)/W, d u / d x
};

template <class T>
inline Grid<T> make_grid(std::int64_t K, double W) {
  // K-2 in T, rounded down: above 2^24 a float K-2 may round up to K-1, and the left index
  // K-1 would touch row K (past the table).
  T last = static_cast<T>(K - 2);
  if (static_cast<double>(last) > static_cast<double>(K - 2)) last = std::nextafter(last, T(0));
  return Grid<T>{static_cast<T>(W / 2), static_cast<T>(K - 1), static_cast<T>(W), last,
                 static_cast<T>(static_cast<double>(K - 1) / W)};
}

template <class T>
KANCORE_HD T floor_of(T v) {
  return std::floor(v);
}

// Left control point k in [0, K-2] and the unclamped offset t = u - k. NaN x gives k = 0 and
// t = NaN; the comparisons are written so that no value of x can produce an index outside range.
template <class T>
KANCORE_HD void locate(const Grid<T>& g, T x, std::int64_t& k, T& t) {
  const T u = ((x + g.half_width) * g.km1) / g.width;
  // Selects, not branches, so loops over inputs vectorise: u >= 0 is false for NaN and -inf
  // (k = 0); u < K-2 is false for +inf (k = K-2); in between, floor.
  const T kf = (u >= T(0)) ? ((u < g.last) ? floor_of(u) : g.last) : T(0);
  k = static_cast<std::int64_t>(kf);
  t = u - kf;
}

// The value of the segment (a at t=0, b at t=1) for a non-finite t: the limit of its linear
// extension, a + t*(b-a) without the inf*0 = NaN of a flat segment. NaN t gives NaN.
template <class T>
KANCORE_HD T segment_limit(T a, T b, T t) {
  if (t != t) return t;
  return (a == b) ? a : t * (b - a);
}

template <class T>
KANCORE_HD bool is_finite(T v) {
  return v - v == T(0);  // false for NaN and ±inf; no library call needed on either backend
}

}  // namespace kancore::c0::detail

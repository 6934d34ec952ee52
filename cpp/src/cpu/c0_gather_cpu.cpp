// Fused gather-and-interpolate CPU kernels for the C0 layer.
//
// Each (b, i) pair selects two adjacent rows of the table (k and k+1 of edge block i) and blends
// them. The table is far larger than L2 at real sizes (256 x 32 x 256 floats = 8 MB) and the rows
// a sample picks are data dependent, so the kernels work on slices: a block of inputs x a chunk of
// outputs of the table (sized for L2) is reused by many batch rows before moving on. Interval
// indices and weights are computed once per (b, i) and slice, kept in a small per-thread patch,
// and reused across the output tiles. Output tiles are accumulated in registers.
//
// Parallel work items own disjoint outputs, so no atomics are needed and every sum has a fixed
// order: results are deterministic run to run.
#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "../c0_segment.hpp"
#include "../threads.hpp"
#include "c0_cpu.hpp"
#include "simd.hpp"

namespace kancore::c0::cpu {
namespace {

using detail::Grid;
using detail::is_finite;
using detail::locate;
using detail::make_grid;
using cpu_simd::kLanes;
using cpu_simd::load;
using cpu_simd::store;
using cpu_simd::Vec;

template <class T>
constexpr std::int64_t kOutTile = 256 / sizeof(T);  // accumulators in registers: 64 f32 / 32 f64
constexpr std::int64_t kOutChunk = 256;             // outputs per work item (a multiple of tiles)
constexpr std::int64_t kRows = 256;                 // batch rows per forward work item
constexpr std::int64_t kMaxInBlock = 16;            // inputs per slice (bounds the stack patch)
constexpr std::size_t kSliceBytes = 512 * 1024;     // table slice meant to stay in L2

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Threads for a call: one per grain of multiply-adds (small calls run on one thread).
inline int threads_of(const Shape& s) { return internal::threads_for(s.batch * s.in * s.out); }

// Inputs per slice so that (inputs x K x out-chunk) elements fit in kSliceBytes.
std::int64_t in_block(std::int64_t K, std::int64_t O, std::size_t elem) {
  const std::size_t per_input = static_cast<std::size_t>(K) * std::min(O, kOutChunk) * elem;
  return std::clamp<std::int64_t>(static_cast<std::int64_t>(kSliceBytes / per_input), 1, kMaxInBlock);
}

static_assert(kOutTile<float> == 4 * kLanes<float> && kOutTile<double> == 4 * kLanes<double>);


// Stores one output tile (four vectors). With `stream`, as non-temporal stores that bypass the
// caches: grad_table rows written once and not read again soon (the whole batch in one chunk)
// would otherwise first be read from memory and then evict the table and grad_y. p must then be
// 64-byte aligned, and the caller must fence (_mm_sfence) before the data is used elsewhere.
template <class T>
inline void store_tile(T* p, const Vec<T>& v0, const Vec<T>& v1, const Vec<T>& v2,
                       const Vec<T>& v3, bool stream) {
  constexpr std::int64_t L = kLanes<T>;
#if defined(__AVX512F__)
  if (stream) {
    if constexpr (sizeof(T) == 4) {
      _mm512_stream_ps(reinterpret_cast<float*>(p), (__m512)v0);
      _mm512_stream_ps(reinterpret_cast<float*>(p + L), (__m512)v1);
      _mm512_stream_ps(reinterpret_cast<float*>(p + 2 * L), (__m512)v2);
      _mm512_stream_ps(reinterpret_cast<float*>(p + 3 * L), (__m512)v3);
    } else {
      _mm512_stream_pd(reinterpret_cast<double*>(p), (__m512d)v0);
      _mm512_stream_pd(reinterpret_cast<double*>(p + L), (__m512d)v1);
      _mm512_stream_pd(reinterpret_cast<double*>(p + 2 * L), (__m512d)v2);
      _mm512_stream_pd(reinterpret_cast<double*>(p + 3 * L), (__m512d)v3);
    }
    return;
  }
#else
  (void)stream;  // plain stores elsewhere (streaming is only a cache-traffic optimisation)
#endif
  store(p, v0);
  store(p + L, v1);
  store(p + 2 * L, v2);
  store(p + 3 * L, v3);
}

// acc[0..kOutTile) += sum_ii w0[ii] * r0[..] + w1[ii] * r1[..], with the whole tile held in four
// vector registers across the input loop (an array accumulator would round-trip through memory).
// The loop vectoriser is off here: it would otherwise "vectorise" the input loop around these
// explicit vector operations and turn the row loads into gathers (5x slower).
template <class T>
__attribute__((optimize("no-tree-vectorize"))) void accumulate_full_tile(
    T* acc, bool zero_start, const T* __restrict table, std::int64_t O, std::int64_t K,
    const std::int32_t* kidx, const T* w0, const T* w1, std::int64_t n_in) {
  constexpr std::int64_t L = kLanes<T>;
  Vec<T> a0{}, a1{}, a2{}, a3{};
  if (!zero_start) {
    a0 = load(acc);
    a1 = load(acc + L);
    a2 = load(acc + 2 * L);
    a3 = load(acc + 3 * L);
  }
  for (std::int64_t ii = 0; ii < n_in; ++ii) {
    const T* r0 = table + (ii * K + kidx[ii]) * O;
    const T* r1 = r0 + O;
    const T p = w0[ii], q = w1[ii];
    a0 += p * load(r0);
    a0 += q * load(r1);
    a1 += p * load(r0 + L);
    a1 += q * load(r1 + L);
    a2 += p * load(r0 + 2 * L);
    a2 += q * load(r1 + 2 * L);
    a3 += p * load(r0 + 3 * L);
    a3 += q * load(r1 + 3 * L);
  }
  store_tile(acc, a0, a1, a2, a3, false);
}

// The same for a partial tile of `width` outputs.
template <class T>
inline void accumulate_partial_tile(T* __restrict acc, const T* __restrict table, std::int64_t O,
                                    std::int64_t K, const std::int32_t* kidx, const T* w0,
                                    const T* w1, std::int64_t n_in, std::int64_t width) {
  for (std::int64_t ii = 0; ii < n_in; ++ii) {
    const T* __restrict r0 = table + (ii * K + kidx[ii]) * O;
    const T* __restrict r1 = r0 + O;
    const T p = w0[ii], q = w1[ii];
#pragma omp simd
    for (std::int64_t oo = 0; oo < width; ++oo) {
      T v = acc[oo];
      v += p * r0[oo];
      v += q * r1[oo];
      acc[oo] = v;
    }
  }
}

// Interval indices as int32 lanes, one per lane of Vec<T> (16 for float, 8 for double).
template <class T>
struct IndexVecOf;
template <>
struct IndexVecOf<float> {
  typedef std::int32_t type __attribute__((vector_size(64)));
};
template <>
struct IndexVecOf<double> {
  typedef std::int32_t type __attribute__((vector_size(32)));
};

// detail::locate for kLanes<T> consecutive inputs in vector registers: the same u and the same
// selects. floor(u) is taken as the truncation of u clamped to [0, last] first (equal to the
// floor there, and every lane converts in range; NaN and -inf clamp to 0, +inf to last). The
// compiler does not vectorise the scalar form (its floor and selects become branches).
template <class T>
inline Vec<T> locate_lanes(const Grid<T>& g, const T* __restrict x, std::int32_t* __restrict kidx) {
  const Vec<T> zero{}, last = zero + g.last;
  const Vec<T> u = ((load(x) + g.half_width) * g.km1) / g.width;
  const Vec<T> clamped = u >= zero ? (u < last ? u : last) : zero;
  const auto k = __builtin_convertvector(clamped, typename IndexVecOf<T>::type);
  __builtin_memcpy(kidx, &k, sizeof(k));
  return u - __builtin_convertvector(k, Vec<T>);  // t
}

// Interval index and blend weights of n consecutive inputs of one row. Non-finite t get zero
// weights; returns whether there were any.
template <class T>
inline bool locate_row(const Grid<T>& g, const T* __restrict x, std::int64_t n,
                       std::int32_t* __restrict kidx, T* __restrict w0, T* __restrict w1) {
  constexpr std::int64_t L = kLanes<T>;
  const Vec<T> zero{};
  decltype(zero == zero) nonfinite{};  // lane mask, all-ones where some t was not finite
  std::int64_t ii = 0;
  for (; ii + L <= n; ii += L) {
    const Vec<T> t = locate_lanes(g, x + ii, kidx + ii);
    const auto finite = (t - t) == zero;
    store(w0 + ii, finite ? T(1) - t : zero);
    store(w1 + ii, finite ? t : zero);
    nonfinite |= ~finite;
  }
  bool any = false;
  for (std::int64_t l = 0; l < L; ++l) any = any || nonfinite[l] != 0;
  for (; ii < n; ++ii) {
    std::int64_t k;
    T t;
    locate(g, x[ii], k, t);
    const bool finite = is_finite(t);
    any = any || !finite;
    kidx[ii] = static_cast<std::int32_t>(k);
    w0[ii] = finite ? T(1) - t : T(0);
    w1[ii] = finite ? t : T(0);
  }
  return any;
}

// sum_o g[o] * (r1[o] - r0[o]) with four independent vector accumulators (a single one would
// serialise on the FMA latency).
template <class T>
__attribute__((optimize("no-tree-vectorize"))) T slope_dot(const T* __restrict g,
                                                            const T* __restrict r0,
                                                            const T* __restrict r1,
                                                            std::int64_t n) {
  constexpr std::int64_t L = kLanes<T>;
  Vec<T> a0{}, a1{}, a2{}, a3{};
  std::int64_t o = 0;
  for (; o + 4 * L <= n; o += 4 * L) {
    a0 += load(g + o) * (load(r1 + o) - load(r0 + o));
    a1 += load(g + o + L) * (load(r1 + o + L) - load(r0 + o + L));
    a2 += load(g + o + 2 * L) * (load(r1 + o + 2 * L) - load(r0 + o + 2 * L));
    a3 += load(g + o + 3 * L) * (load(r1 + o + 3 * L) - load(r0 + o + 3 * L));
  }
  for (; o + L <= n; o += L) a0 += load(g + o) * (load(r1 + o) - load(r0 + o));
  const Vec<T> a = (a0 + a1) + (a2 + a3);
  T sum = T(0);
  for (std::int64_t l = 0; l < L; ++l) sum += a[l];
  for (; o < n; ++o) sum += g[o] * (r1[o] - r0[o]);
  return sum;
}

}  // namespace

template <class T>
void forward_gather(const Shape& s, const T* x, const T* table, T* y) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, K = s.num_control_points;
  if (N == 0) return;
  constexpr std::int64_t OT = kOutTile<T>;
  const Grid<T> g = make_grid<T>(K, s.spline_width);
  const std::int64_t IB = in_block(K, O, sizeof(T));
  const std::int64_t row_blocks = ceil_div(N, kRows), out_chunks = ceil_div(O, kOutChunk);
  bool any_nonfinite = false;

#pragma omp parallel for collapse(2) schedule(static) reduction(|| : any_nonfinite) num_threads(threads_of(s))
  for (std::int64_t rb = 0; rb < row_blocks; ++rb) {
    for (std::int64_t oc = 0; oc < out_chunks; ++oc) {
      const std::int64_t b0 = rb * kRows, nb = std::min(kRows, N - b0);
      const std::int64_t oc0 = oc * kOutChunk, oc1 = std::min(O, oc0 + kOutChunk);
      // Patch of (interval, w0, w1) for nb rows x IB inputs, reused by every output tile.
      std::int32_t kidx[kRows][kMaxInBlock];
      T w0[kRows][kMaxInBlock], w1[kRows][kMaxInBlock];
      alignas(64) T acc[OT];

      for (std::int64_t i0 = 0; i0 < I; i0 += IB) {
        const std::int64_t ni = std::min(IB, I - i0);
        const T* slice = table + i0 * K * O;
        for (std::int64_t bb = 0; bb < nb; ++bb) {
          const bool nonfinite = locate_row(g, x + (b0 + bb) * I + i0, ni, kidx[bb], w0[bb], w1[bb]);
          any_nonfinite = any_nonfinite || nonfinite;
        }
        for (std::int64_t o0 = oc0; o0 < oc1; o0 += OT) {
          const std::int64_t width = std::min(OT, oc1 - o0);
          const bool first = (i0 == 0);
          for (std::int64_t bb = 0; bb < nb; ++bb) {
            T* yr = y + (b0 + bb) * O + o0;
            if (width == OT) {  // accumulate in registers straight from and to y
              accumulate_full_tile(yr, first, slice + o0, O, K, kidx[bb], w0[bb], w1[bb], ni);
              continue;
            }
            for (std::int64_t oo = 0; oo < width; ++oo) acc[oo] = first ? T(0) : yr[oo];
            accumulate_partial_tile(acc, slice + o0, O, K, kidx[bb], w0[bb], w1[bb], ni, width);
            for (std::int64_t oo = 0; oo < width; ++oo) yr[oo] = acc[oo];
          }
        }
      }
    }
  }
  if (any_nonfinite) add_nonfinite_limits(s, x, table, y);
}

template <class T>
void add_nonfinite_limits(const Shape& s, const T* x, const T* table, T* y) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, K = s.num_control_points;
  const Grid<T> g = make_grid<T>(K, s.spline_width);
#pragma omp parallel for schedule(static) num_threads(threads_of(s))
  for (std::int64_t b = 0; b < N; ++b) {
    for (std::int64_t i = 0; i < I; ++i) {
      std::int64_t k;
      T t;
      locate(g, x[b * I + i], k, t);
      if (is_finite(t)) continue;
      const T* r0 = table + (i * K + k) * O;
      const T* r1 = r0 + O;
      T* yr = y + b * O;
      for (std::int64_t o = 0; o < O; ++o) yr[o] += detail::segment_limit(r0[o], r1[o], t);
    }
  }
}

template <class T>
void backward_input_gather(const Shape& s, const T* x, const T* table, const T* grad_y,
                           T* grad_x) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, K = s.num_control_points;
  if (N == 0) return;
  const Grid<T> g = make_grid<T>(K, s.spline_width);
  // Inputs per slice so that (inputs x K x O) of the table stays in L2 while kRows rows use it;
  // each (b, i) is one dot product over the whole output row (one horizontal reduction).
  const std::size_t per_input = static_cast<std::size_t>(K) * O * sizeof(T);
  const std::int64_t IB = std::clamp<std::int64_t>(static_cast<std::int64_t>(kSliceBytes / per_input), 1, kMaxInBlock);
  const std::int64_t row_blocks = ceil_div(N, kRows), in_blocks = ceil_div(I, IB);

#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_of(s))
  for (std::int64_t rb = 0; rb < row_blocks; ++rb) {
    for (std::int64_t ib = 0; ib < in_blocks; ++ib) {
      const std::int64_t b0 = rb * kRows, b1 = std::min(N, b0 + kRows);
      const std::int64_t i0 = ib * IB, i1 = std::min(I, i0 + IB);
      std::int32_t kidx[kMaxInBlock];
      T w0[kMaxInBlock], w1[kMaxInBlock];
      for (std::int64_t b = b0; b < b1; ++b) {
        const T* gy = grad_y + b * O;
        const T* xr = x + b * I + i0;
        locate_row(g, xr, i1 - i0, kidx, w0, w1);
        for (std::int64_t i = i0; i < i1; ++i) {
          const T* r0 = table + (i * K + kidx[i - i0]) * O;
          const T dot = slope_dot(gy, r0, r0 + O, O);
          // NaN inputs propagate to their gradient; the slope itself is always finite.
          const T xv = xr[i - i0];
          grad_x[b * I + i] = (xv != xv) ? xv : dot * g.slope;
        }
      }
    }
  }
}

namespace {

constexpr std::int64_t kMaxSortK = 4096;  // larger K: rows are scatter-added instead of sorted

// grad_table by direct scatter-add, one input per work item (deterministic: rows in order).
// Used only when K is too large for the stack-sized bucket sort of the fused kernel.
template <class T>
void backward_table_scatter(const Shape& s, const T* x, const T* grad_y, T* grad_table) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, K = s.num_control_points;
  const Grid<T> g = make_grid<T>(K, s.spline_width);
#pragma omp parallel for schedule(static) num_threads(threads_of(s))
  for (std::int64_t i = 0; i < I; ++i) {
    T* dC = grad_table + i * K * O;
    for (std::int64_t j = 0; j < K * O; ++j) dC[j] = T(0);
    for (std::int64_t b = 0; b < N; ++b) {
      std::int64_t k;
      T t;
      locate(g, x[b * I + i], k, t);
      const T* __restrict gy = grad_y + b * O;
      T* __restrict r0 = dC + k * O;
      T* __restrict r1 = r0 + O;
      const T a = T(1) - t;
#pragma omp simd
      for (std::int64_t o = 0; o < O; ++o) {
        r0[o] += a * gy[o];
        r1[o] += t * gy[o];
      }
    }
  }
}

// Lane j of the result = the sum of the lanes of v[j], for kLanes<T> vectors at once: a
// transpose-and-add tree (about 3 operations per vector instead of a 16-step serial sum).
inline Vec<float> sum_lanes_each(const Vec<float>* v) {
  Vec<float> w[8], x[4], y[2];
  for (int j = 0; j < 8; ++j) {  // lanes 0-7: v[j]'s partial sums; 8-15: v[j+8]'s
    w[j] = __builtin_shufflevector(v[j], v[j + 8],
                                   0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(v[j], v[j + 8],
                                   8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  }
  for (int j = 0; j < 4; ++j) {  // lane groups of 4: v[j], v[j+4], v[j+8], v[j+12]
    x[j] = __builtin_shufflevector(w[j], w[j + 4],
                                   0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27) +
           __builtin_shufflevector(w[j], w[j + 4],
                                   4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
  }
  for (int j = 0; j < 2; ++j) {  // lane pairs: v[j], v[j+2], v[j+4], ..., v[j+14]
    y[j] = __builtin_shufflevector(x[j], x[j + 2],
                                   0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29) +
           __builtin_shufflevector(x[j], x[j + 2],
                                   2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
  }
  return __builtin_shufflevector(y[0], y[1],
                                 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30) +
         __builtin_shufflevector(y[0], y[1],
                                 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
}
inline Vec<double> sum_lanes_each(const Vec<double>* v) {
  Vec<double> w[4], x[2];
  for (int j = 0; j < 4; ++j) {  // lanes 0-3: v[j]'s partial sums; 4-7: v[j+4]'s
    w[j] = __builtin_shufflevector(v[j], v[j + 4], 0, 1, 2, 3, 8, 9, 10, 11) +
           __builtin_shufflevector(v[j], v[j + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
  for (int j = 0; j < 2; ++j) {  // lane pairs: v[j], v[j+2], v[j+4], v[j+6]
    x[j] = __builtin_shufflevector(w[j], w[j + 2], 0, 1, 8, 9, 4, 5, 12, 13) +
           __builtin_shufflevector(w[j], w[j + 2], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  return __builtin_shufflevector(x[0], x[1], 0, 8, 2, 10, 4, 12, 6, 14) +
         __builtin_shufflevector(x[0], x[1], 1, 9, 3, 11, 5, 13, 7, 15);
}

// dots[p] += the lane sum of dotv[p], p < n.
template <class T>
void add_lane_sums(const Vec<T>* dotv, std::int64_t n, T* dots) {
  constexpr std::int64_t L = kLanes<T>;
  std::int64_t p = 0;
  for (; p + L <= n; p += L) store(dots + p, load(dots + p) + sum_lanes_each(dotv + p));
  for (; p < n; ++p) {
    T sum = T(0);
    for (std::int64_t l = 0; l < L; ++l) sum += dotv[p][l];
    dots[p] += sum;
  }
}

constexpr std::int64_t kPrefetchRows = 4;  // table rows prefetched ahead in the fused backward

// The gradients of one input i for one output tile, from a chunk of rows sorted by interval.
// Bucket k's rows load their grad_y tile once and use it for (1-t) g into grad_table row k, t g
// into row k+1 (carried in registers to the next bucket) and, with kSlope, g . (C[k+1] - C[k])
// into the per-row slope dot of the input gradient (vector partials in `dotv`: stored by the first
// tile of a pass, added by the others, and reduced to scalars by the caller after the pass).
template <class T, bool kSlope>
__attribute__((optimize("no-tree-vectorize"))) void fused_grad_full_tile(
    T* dC, bool first_chunk, bool stream, const T* Ci, std::int64_t O, std::int64_t K,
    const T* __restrict gy, const std::int32_t* start, const std::int32_t* order,
    const T* tsorted, Vec<T>* dotv, bool first_tile) {
  constexpr std::int64_t L = kLanes<T>;
  // Row k's accumulators start with what earlier chunks stored (zero for the first chunk, so
  // grad_table needs no separate zero fill); row k+1's collect bucket k's t g.
  Vec<T> c0{}, c1{}, c2{}, c3{};
  if (!first_chunk) {
    c0 = load(dC);
    c1 = load(dC + L);
    c2 = load(dC + 2 * L);
    c3 = load(dC + 3 * L);
  }
  for (std::int64_t k = 0; k + 1 < K; ++k) {
    T* next = dC + (k + 1) * O;
    Vec<T> n0{}, n1{}, n2{}, n3{};
    if (!first_chunk) {
      n0 = load(next);
      n1 = load(next + L);
      n2 = load(next + 2 * L);
      n3 = load(next + 3 * L);
    }
    Vec<T> d0{}, d1{}, d2{}, d3{};
    if constexpr (kSlope) {
      const T* lo = Ci + k * O;
      const T* hi = lo + O;
      // The table rows come from memory, a few buckets ahead (the hardware prefetchers do not
      // see this 1-row-per-bucket stride in time).
      if (k + kPrefetchRows < K) {
        const T* ahead = lo + kPrefetchRows * O;
        for (std::int64_t l = 0; l < 4 * L; l += L) __builtin_prefetch(ahead + l);
      }
      d0 = load(hi) - load(lo);
      d1 = load(hi + L) - load(lo + L);
      d2 = load(hi + 2 * L) - load(lo + 2 * L);
      d3 = load(hi + 3 * L) - load(lo + 3 * L);
    }
    for (std::int32_t p = start[k]; p < start[k + 1]; ++p) {
      const T* gr = gy + static_cast<std::int64_t>(order[p]) * O;
      const Vec<T> g0 = load(gr), g1 = load(gr + L), g2 = load(gr + 2 * L), g3 = load(gr + 3 * L);
      const T t = tsorted[p], a = T(1) - t;
      c0 += a * g0;
      c1 += a * g1;
      c2 += a * g2;
      c3 += a * g3;
      n0 += t * g0;
      n1 += t * g1;
      n2 += t * g2;
      n3 += t * g3;
      if constexpr (kSlope) {
        // A two-level tree (shorter dependency chain than four FMAs in a row).
        const Vec<T> dot = (g0 * d0 + g1 * d1) + (g2 * d2 + g3 * d3);
        dotv[p] = first_tile ? dot : dotv[p] + dot;
      }
    }
    store_tile(dC + k * O, c0, c1, c2, c3, stream);
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
  }
  store_tile(dC + (K - 1) * O, c0, c1, c2, c3, stream);
}

// The same for a partial tile of `width` outputs (scalar partials in `dots`).
template <class T, bool kSlope>
void fused_grad_partial_tile(T* dC, const T* Ci, std::int64_t O, std::int64_t K,
                             std::int64_t width, const T* __restrict gy,
                             const std::int32_t* start, const std::int32_t* order,
                             const T* tsorted, T* dots) {
  for (std::int64_t k = 0; k + 1 < K; ++k) {
    const T* __restrict lo = kSlope ? Ci + k * O : nullptr;
    const T* __restrict hi = kSlope ? lo + O : nullptr;
    T* __restrict r0 = dC + k * O;
    T* __restrict r1 = r0 + O;
    for (std::int32_t p = start[k]; p < start[k + 1]; ++p) {
      const T* __restrict gr = gy + static_cast<std::int64_t>(order[p]) * O;
      const T t = tsorted[p], a = T(1) - t;
      if constexpr (kSlope) {
        T dot = T(0);
#pragma omp simd reduction(+ : dot)
        for (std::int64_t oo = 0; oo < width; ++oo) {
          r0[oo] += a * gr[oo];
          r1[oo] += t * gr[oo];
          dot += gr[oo] * (hi[oo] - lo[oo]);
        }
        dots[p] += dot;
      } else {
#pragma omp simd
        for (std::int64_t oo = 0; oo < width; ++oo) {
          r0[oo] += a * gr[oo];
          r1[oo] += t * gr[oo];
        }
      }
    }
  }
}

// Rows sorted at once in the fused backward. A whole typical batch fits, so every grad_table
// row is written exactly once (streamed past the caches) and every table row read once; larger
// batches go in chunks of this many rows, each adding to what the previous ones stored.
constexpr std::int64_t kFusedRows = 2048;
constexpr std::int64_t kFusedInputs = 16;  // inputs per work item: x and grad_x are read and
                                           // written in contiguous runs of this many
// Outputs per pass over a block's inputs: the grad_y columns of one pass (rows x this many)
// stay in L2 while every input of the block uses them.
template <class T>
constexpr std::int64_t kPassOutputs = 2 * kOutTile<T>;

// Interval index and raw offset t (no zeroing: the gradients follow IEEE rules) of n
// consecutive inputs of one row.
template <class T>
inline void locate_row_raw(const Grid<T>& g, const T* __restrict x, std::int64_t n,
                           std::int32_t* __restrict kidx, T* __restrict t) {
  constexpr std::int64_t L = kLanes<T>;
  std::int64_t ii = 0;
  for (; ii + L <= n; ii += L) store(t + ii, locate_lanes(g, x + ii, kidx + ii));
  for (; ii < n; ++ii) {
    std::int64_t k;
    locate(g, x[ii], k, t[ii]);
    kidx[ii] = static_cast<std::int32_t>(k);
  }
}

std::size_t align64(std::size_t n) { return (n + 63) / 64 * 64; }

// One thread's scratch of the sorted backward, carved from the caller's workspace. Per input of
// a block (index ii): bucket starts, the chunk's rows sorted by bucket with their t, and the
// rows' slope dots; per row: the block's keys and t; per sorted row: one pass's vector partials.
template <class T>
struct SortScratch {
  std::int32_t *key, *order, *start;
  T *tval, *tsorted, *dots;
  Vec<T>* dotv;

  // Bytes for one thread (every array 64-byte aligned).
  static std::size_t bytes(const Shape& s) {
    const auto R = static_cast<std::size_t>(std::min(s.batch, kFusedRows));
    const auto IB = static_cast<std::size_t>(kFusedInputs);
    const auto K = static_cast<std::size_t>(s.num_control_points);
    return 2 * align64(R * IB * 4) + align64(IB * (K + 1) * 4) + 3 * align64(R * IB * sizeof(T)) +
           align64(R * sizeof(Vec<T>));
  }
  SortScratch(const Shape& s, std::byte* p) {
    const auto R = static_cast<std::size_t>(std::min(s.batch, kFusedRows));
    const auto IB = static_cast<std::size_t>(kFusedInputs);
    const auto K = static_cast<std::size_t>(s.num_control_points);
    auto take = [&](std::size_t n) {
      std::byte* q = p;
      p += align64(n);
      return q;
    };
    key = reinterpret_cast<std::int32_t*>(take(R * IB * 4));
    order = reinterpret_cast<std::int32_t*>(take(R * IB * 4));
    start = reinterpret_cast<std::int32_t*>(take(IB * (K + 1) * 4));
    tval = reinterpret_cast<T*>(take(R * IB * sizeof(T)));
    tsorted = reinterpret_cast<T*>(take(R * IB * sizeof(T)));
    dots = reinterpret_cast<T*>(take(R * IB * sizeof(T)));
    dotv = reinterpret_cast<Vec<T>*>(take(R * sizeof(Vec<T>)));
  }
};

// The workspace's first 64-byte boundary and how many threads' scratch fit after it.
inline std::byte* aligned_start(void* ws, std::size_t ws_bytes, std::size_t per_thread, int& fit) {
  const auto addr = reinterpret_cast<std::uintptr_t>(ws);
  const std::size_t skip = (64 - addr % 64) % 64;
  fit = (ws == nullptr || ws_bytes < skip || per_thread == 0)
            ? 0
            : static_cast<int>(std::min<std::size_t>((ws_bytes - skip) / per_thread, 1 << 20));
  return static_cast<std::byte*>(ws) + skip;
}

// grad_table, and with kInput also grad_x, in one pass over bucket-sorted rows (K <= kMaxSortK).
// ws holds the scratch of as many threads as fit (the dispatcher checks there is room for one).
template <class T, bool kInput>
void sorted_backward(const Shape& s, const T* x, const T* table, const T* grad_y, T* grad_x,
                     T* grad_table, void* ws, std::size_t ws_bytes) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, K = s.num_control_points;
  if (N == 0) {  // nothing to sort; the gradient of the table is zero
    std::fill(grad_table, grad_table + I * K * O, T(0));
    return;
  }
  constexpr std::int64_t OT = kOutTile<T>;
  constexpr std::int64_t IB = kFusedInputs;
  const Grid<T> g = make_grid<T>(K, s.spline_width);
  const std::int64_t in_blocks = ceil_div(I, IB);
  const std::int64_t R = std::min(N, kFusedRows);  // rows per chunk
  // Streaming stores need 64-byte aligned tiles; a batch in several chunks re-reads its rows.
  const bool stream = N <= R && O * static_cast<std::int64_t>(sizeof(T)) % 64 == 0 &&
                      reinterpret_cast<std::uintptr_t>(grad_table) % 64 == 0;
  const std::size_t per_thread = SortScratch<T>::bytes(s);
  int fit = 0;
  std::byte* scratch = aligned_start(ws, ws_bytes, per_thread, fit);
  if (fit < 1) throw std::invalid_argument("kancore: workspace too small for the C0 backward");
  const int threads = std::min(threads_of(s), fit);

#pragma omp parallel num_threads(threads)
  {
    SortScratch<T> sc(s, scratch + static_cast<std::size_t>(omp_get_thread_num()) * per_thread);
    std::int32_t* key = sc.key;
    std::int32_t* order = sc.order;
    std::int32_t* start = sc.start;
    T* tval = sc.tval;
    T* tsorted = sc.tsorted;
    T* dots = sc.dots;
    Vec<T>* dotv = sc.dotv;

    // Work item: a block of inputs with all their outputs (grad_x[:, block] and grad_table[block]
    // are owned, so there are no write conflicts, and every sum has a fixed order: deterministic).
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t ib = 0; ib < in_blocks; ++ib) {
      const std::int64_t i0 = ib * IB, ni = std::min(IB, I - i0);
      // Full output tiles are initialised by the first row chunk; only a ragged last tile
      // (updated in place) needs zeros first.
      const std::int64_t full = O / OT * OT;
      if (full < O) {
        for (std::int64_t row = i0 * K; row < (i0 + ni) * K; ++row) {
          for (std::int64_t o = full; o < O; ++o) grad_table[row * O + o] = T(0);
        }
      }
      for (std::int64_t b0 = 0; b0 < N; b0 += R) {
        const std::int64_t nb = std::min(R, N - b0);
        for (std::int64_t r = 0; r < nb; ++r) {
          locate_row_raw(g, x + (b0 + r) * I + i0, ni, &key[r * IB], &tval[r * IB]);
        }
        // Stable counting sort of the chunk's rows by interval k, per input.
        for (std::int64_t ii = 0; ii < ni; ++ii) {
          std::int32_t* st = &start[ii * (K + 1)];
          std::int32_t* ord = &order[ii * R];
          T* ts = &tsorted[ii * R];
          std::fill(st, st + K + 1, 0);
          for (std::int64_t r = 0; r < nb; ++r) ++st[key[r * IB + ii] + 1];
          for (std::int64_t k = 0; k < K; ++k) st[k + 1] += st[k];
          for (std::int64_t r = 0; r < nb; ++r) {
            const std::int32_t p = st[key[r * IB + ii]]++;
            ord[p] = static_cast<std::int32_t>(r);
            ts[p] = tval[r * IB + ii];
          }
          for (std::int64_t k = K; k > 0; --k) st[k] = st[k - 1];
          st[0] = 0;
        }
        if constexpr (kInput) std::fill(dots, dots + ni * R, T(0));
        const T* gy = grad_y + b0 * O;
        for (std::int64_t p0 = 0; p0 < O; p0 += kPassOutputs<T>) {
          const std::int64_t p1 = std::min(O, p0 + kPassOutputs<T>);
          for (std::int64_t ii = 0; ii < ni; ++ii) {
            const std::int64_t i = i0 + ii;
            const std::int32_t* st = &start[ii * (K + 1)];
            const std::int32_t* ord = &order[ii * R];
            const T* ts = &tsorted[ii * R];
            T* dC = grad_table + i * K * O;
            const T* Ci = kInput ? table + i * K * O : nullptr;
            std::int64_t o0 = p0;
            for (; o0 + OT <= p1; o0 += OT) {  // the first full tile stores dotv, later ones add
              fused_grad_full_tile<T, kInput>(dC + o0, b0 == 0, stream, Ci + o0, O, K, gy + o0, st,
                                              ord, ts, dotv, o0 == p0);
            }
            if (o0 < p1) {
              fused_grad_partial_tile<T, kInput>(dC + o0, Ci + o0, O, K, p1 - o0, gy + o0, st, ord,
                                                 ts, kInput ? &dots[ii * R] : nullptr);
            }
            if (kInput && o0 > p0) add_lane_sums(dotv, nb, &dots[ii * R]);
          }
        }
        if constexpr (kInput) {
          // Back to row order (tval is free now), then grad_x row by row in contiguous runs.
          T* by_row = tval;
          for (std::int64_t ii = 0; ii < ni; ++ii) {
            const std::int32_t* ord = &order[ii * R];
            const T* d = &dots[ii * R];
            for (std::int64_t p = 0; p < nb; ++p) by_row[ord[p] * IB + ii] = d[p];
          }
          for (std::int64_t r = 0; r < nb; ++r) {
            const T* xr = x + (b0 + r) * I + i0;
            T* gxr = grad_x + (b0 + r) * I + i0;
            for (std::int64_t ii = 0; ii < ni; ++ii) {
              // NaN inputs propagate to their gradient; the slope itself is always finite.
              gxr[ii] = (xr[ii] != xr[ii]) ? xr[ii] : by_row[r * IB + ii] * g.slope;
            }
          }
        }
      }
#if defined(__AVX512F__)
      if (stream) _mm_sfence();  // streamed stores are visible before the item counts as done
#endif
    }
  }
}

}  // namespace

std::size_t backward_scratch_bytes_gather(const Shape& s, std::size_t elem) {
  if (s.batch == 0 || s.num_control_points > kMaxSortK) return 0;  // no sort, no scratch
  return elem == sizeof(float) ? SortScratch<float>::bytes(s) : SortScratch<double>::bytes(s);
}

std::size_t backward_workspace_bytes_gather(const Shape& s, std::size_t elem) {
  const std::size_t per_thread = backward_scratch_bytes_gather(s, elem);
  if (per_thread == 0) return 0;
  const int threads = threads_of(s);
  return 64 + per_thread * static_cast<std::size_t>(threads);  // 64: room to align the start
}

template <class T>
void backward_table_gather(const Shape& s, const T* x, const T* grad_y, T* grad_table, void* ws,
                           std::size_t ws_bytes) {
  if (s.num_control_points > kMaxSortK) return backward_table_scatter(s, x, grad_y, grad_table);
  sorted_backward<T, false>(s, x, nullptr, grad_y, nullptr, grad_table, ws, ws_bytes);
}

template <class T>
void backward_gather(const Shape& s, const T* x, const T* table, const T* grad_y, T* grad_x,
                     T* grad_table, void* ws, std::size_t ws_bytes) {
  if (s.num_control_points > kMaxSortK) {
    backward_input_gather(s, x, table, grad_y, grad_x);
    return backward_table_scatter(s, x, grad_y, grad_table);
  }
  sorted_backward<T, true>(s, x, table, grad_y, grad_x, grad_table, ws, ws_bytes);
}

#define KANCORE_INSTANTIATE(T)                                                              \
  template void forward_gather<T>(const Shape&, const T*, const T*, T*);                    \
  template void add_nonfinite_limits<T>(const Shape&, const T*, const T*, T*);              \
  template void backward_input_gather<T>(const Shape&, const T*, const T*, const T*, T*);   \
  template void backward_table_gather<T>(const Shape&, const T*, const T*, T*, void*,         \
                                         std::size_t);                                       \
  template void backward_gather<T>(const Shape&, const T*, const T*, const T*, T*, T*, void*, \
                                   std::size_t);
KANCORE_INSTANTIATE(float)
KANCORE_INSTANTIATE(double)
#undef KANCORE_INSTANTIATE

}  // namespace kancore::c0::cpu

// Fused gather-and-interpolate CPU kernels for the C0 layer.
//
// Each (b, i) pair selects two rows of the table (k and k+1 of edge block i) and blends them.
// The interval index and weights are computed once per (b, i) for a block of rows and reused
// across every output tile; each output tile is accumulated in registers over a block of
// inputs, so the hot loop is two table loads and two FMAs per output element.
#include <algorithm>
#include <cstdint>

#include "../c0_segment.hpp"
#include "c0_cpu.hpp"

namespace kancore::c0::cpu {
namespace {

using detail::Grid;
using detail::is_finite;
using detail::locate;
using detail::make_grid;

constexpr std::int64_t kRowBlock = 8;      // batch rows whose (k, t) pairs are cached together
constexpr std::int64_t kInBlock = 128;     // inputs accumulated before the output tile is stored
constexpr std::int64_t kOutChunk = 256;    // outputs per parallel work item
constexpr std::int64_t kOutTile = 32;      // outputs accumulated in registers (f32: 4 AVX2 regs)

// Accumulates `acc[0..W)` += w0 * r0[..] + w1 * r1[..] over the cached (offset, w0, w1) of one row.
template <class T, std::int64_t W>
inline void accumulate_tile(T* __restrict acc, const T* __restrict table, std::int64_t O,
                            const std::int64_t* off, const T* w0, const T* w1, std::int64_t n_in,
                            std::int64_t o0, std::int64_t width) {
  if constexpr (W > 0) {
    (void)width;
    for (std::int64_t ii = 0; ii < n_in; ++ii) {
      const T* __restrict r0 = table + off[ii] + o0;
      const T* __restrict r1 = r0 + O;
      const T a = w0[ii], b = w1[ii];
#pragma omp simd
      for (std::int64_t oo = 0; oo < W; ++oo) acc[oo] += a * r0[oo] + b * r1[oo];
    }
  } else {
    for (std::int64_t ii = 0; ii < n_in; ++ii) {
      const T* __restrict r0 = table + off[ii] + o0;
      const T* __restrict r1 = r0 + O;
      const T a = w0[ii], b = w1[ii];
#pragma omp simd
      for (std::int64_t oo = 0; oo < width; ++oo) acc[oo] += a * r0[oo] + b * r1[oo];
    }
  }
}

}  // namespace

template <class T>
void forward_gather(const Shape& s, const T* x, const T* table, T* y) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, K = s.num_control_points;
  if (N == 0) return;
  const Grid<T> g = make_grid<T>(K, s.spline_width);
  const std::int64_t row_blocks = (N + kRowBlock - 1) / kRowBlock;
  const std::int64_t out_chunks = (O + kOutChunk - 1) / kOutChunk;
  bool any_nonfinite = false;

#pragma omp parallel for collapse(2) schedule(static) reduction(|| : any_nonfinite)
  for (std::int64_t rb = 0; rb < row_blocks; ++rb) {
    for (std::int64_t oc = 0; oc < out_chunks; ++oc) {
      const std::int64_t b0 = rb * kRowBlock, nb = std::min(kRowBlock, N - b0);
      const std::int64_t oc0 = oc * kOutChunk, oc1 = std::min(O, oc0 + kOutChunk);
      // Per-thread cache of (table offset, w0, w1) for kRowBlock x kInBlock pairs.
      std::int64_t off[kRowBlock][kInBlock];
      T w0[kRowBlock][kInBlock], w1[kRowBlock][kInBlock];
      alignas(64) T acc[kOutTile];

      for (std::int64_t i0 = 0; i0 < I; i0 += kInBlock) {
        const std::int64_t ni = std::min(kInBlock, I - i0);
        for (std::int64_t bb = 0; bb < nb; ++bb) {
          const T* xr = x + (b0 + bb) * I + i0;
          for (std::int64_t ii = 0; ii < ni; ++ii) {
            std::int64_t k;
            T t;
            locate(g, xr[ii], k, t);
            off[bb][ii] = ((i0 + ii) * K + k) * O;
            if (is_finite(t)) {
              w0[bb][ii] = T(1) - t;
              w1[bb][ii] = t;
            } else {  // added afterwards by add_nonfinite_limits
              w0[bb][ii] = T(0);
              w1[bb][ii] = T(0);
              any_nonfinite = true;
            }
          }
        }
        for (std::int64_t o0 = oc0; o0 < oc1; o0 += kOutTile) {
          const std::int64_t width = std::min(kOutTile, oc1 - o0);
          for (std::int64_t bb = 0; bb < nb; ++bb) {
            T* yr = y + (b0 + bb) * O + o0;
            for (std::int64_t oo = 0; oo < width; ++oo) acc[oo] = (i0 == 0) ? T(0) : yr[oo];
            if (width == kOutTile) {
              accumulate_tile<T, kOutTile>(acc, table, O, off[bb], w0[bb], w1[bb], ni, o0, width);
            } else {
              accumulate_tile<T, 0>(acc, table, O, off[bb], w0[bb], w1[bb], ni, o0, width);
            }
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
#pragma omp parallel for schedule(static)
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
  constexpr std::int64_t kRows = 32;  // rows sharing one edge block of the table in cache
  const std::int64_t row_blocks = (N + kRows - 1) / kRows;

#pragma omp parallel for schedule(static)
  for (std::int64_t rb = 0; rb < row_blocks; ++rb) {
    const std::int64_t b0 = rb * kRows, b1 = std::min(N, b0 + kRows);
    for (std::int64_t i = 0; i < I; ++i) {
      for (std::int64_t b = b0; b < b1; ++b) {
        std::int64_t k;
        T t;
        const T xv = x[b * I + i];
        locate(g, xv, k, t);
        const T* __restrict r0 = table + (i * K + k) * O;
        const T* __restrict r1 = r0 + O;
        const T* __restrict gy = grad_y + b * O;
        T dot = T(0);
#pragma omp simd reduction(+ : dot)
        for (std::int64_t o = 0; o < O; ++o) dot += gy[o] * (r1[o] - r0[o]);
        // NaN inputs propagate to their gradient; the slope itself is always finite.
        grad_x[b * I + i] = (xv != xv) ? xv : dot * g.slope;
      }
    }
  }
}

template <class T>
void backward_table_gather(const Shape& s, const T* x, const T* grad_y, T* grad_table) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, K = s.num_control_points;
  const Grid<T> g = make_grid<T>(K, s.spline_width);
  constexpr std::int64_t kRows = 64;  // rows of grad_y kept in cache while every edge block uses them
  const std::int64_t row_blocks = (N + kRows - 1) / kRows;

  // Each thread owns whole edge blocks i, so there are no write conflicts and the sum order is
  // fixed: the result is deterministic.
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (std::int64_t j = 0; j < I * K * O; ++j) grad_table[j] = T(0);
    for (std::int64_t rb = 0; rb < row_blocks; ++rb) {
      const std::int64_t b0 = rb * kRows, b1 = std::min(N, b0 + kRows);
#pragma omp for schedule(static)
      for (std::int64_t i = 0; i < I; ++i) {
        for (std::int64_t b = b0; b < b1; ++b) {
          std::int64_t k;
          T t;
          locate(g, x[b * I + i], k, t);
          T* __restrict r0 = grad_table + (i * K + k) * O;
          T* __restrict r1 = r0 + O;
          const T* __restrict gy = grad_y + b * O;
          const T a = T(1) - t;
#pragma omp simd
          for (std::int64_t o = 0; o < O; ++o) {
            r0[o] += a * gy[o];
            r1[o] += t * gy[o];
          }
        }
      }
    }
  }
}

#define KANCORE_INSTANTIATE(T)                                                              \
  template void forward_gather<T>(const Shape&, const T*, const T*, T*);                    \
  template void add_nonfinite_limits<T>(const Shape&, const T*, const T*, T*);              \
  template void backward_input_gather<T>(const Shape&, const T*, const T*, const T*, T*);   \
  template void backward_table_gather<T>(const Shape&, const T*, const T*, T*);
KANCORE_INSTANTIATE(float)
KANCORE_INSTANTIATE(double)
#undef KANCORE_INSTANTIATE

}  // namespace kancore::c0::cpu

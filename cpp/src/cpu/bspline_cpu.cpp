// CPU kernels of the B-spline layer.
//
// The spline weights are first copied, scaled, into a gather table (in, G+k, out) in the
// workspace, so the k+1 coefficient rows a (b, i) pair selects are contiguous over outputs (the
// C0 layer's layout). Basis values are computed once per (b, i) into a per-thread patch and
// reused across the output tiles, which are accumulated in vector registers. The base branch
// (SiLU, then a GEMM) goes through Eigen. Work items own disjoint outputs: no atomics, and every
// sum has a fixed order, so results are deterministic run to run.
#include "bspline_cpu.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

// Eigen's own GEMM threading busy-waits badly on these tall-skinny shapes; the kernels split the
// products into per-thread row blocks themselves.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <omp.h>

#include "../parallel_errors.hpp"
#include "../threads.hpp"
#include "bspline_knot_plan.hpp"
#include "simd.hpp"

namespace kancore::bspline::cpu {
namespace {

using cpu_simd::kLanes;
using cpu_simd::load;
using cpu_simd::store;
using cpu_simd::Vec;

template <class T>
using MatR = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr std::int64_t kRows = 64;          // batch rows per forward work item
constexpr std::int64_t kOutChunk = 256;     // outputs per forward work item
constexpr std::int64_t kPatch = 256;        // basis values per row in the patch
constexpr std::int64_t kMaxInBlock = 8;     // inputs per patch
constexpr int kMaxBucketTaps = 6;           // orders up to 5 keep a table tile in registers

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Threads for a call: one per grain of multiply-adds (small calls run on one thread).
int threads_of(const Shape& s) {
  return internal::threads_for(s.batch * s.in * s.out * (s.order + 1));
}

template <class T>
T sigmoid(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

template <class T>
constexpr std::int64_t kTile = 4 * kLanes<T>;  // outputs per register tile

// Calls fn(std::integral_constant<int, K>) with K = k for orders 1..5 (unrolled basis
// triangles) and K = 0 (the order read at run time) above.
template <class Fn>
decltype(auto) with_order(std::int64_t k, Fn&& fn) {
  switch (k) {
    case 1: return fn(std::integral_constant<int, 1>{});
    case 2: return fn(std::integral_constant<int, 2>{});
    case 3: return fn(std::integral_constant<int, 3>{});
    case 4: return fn(std::integral_constant<int, 4>{});
    case 5: return fn(std::integral_constant<int, 5>{});
    default: return fn(std::integral_constant<int, 0>{});
  }
}

// One knot plan per feature (see bspline_knot_plan.hpp), built once per call.
template <class T>
void build_plans(const Shape& s, const T* knots, T* plans) {
  const std::int64_t P = knot_plan_elems(s.grid_size, s.order), nk = s.num_knots();
  for (std::int64_t i = 0; i < s.in; ++i) {
    build_knot_plan(knots + i * nk, s.grid_size, s.order, plans + i * P);
  }
}


// acc[0..kTile) += sum over the patch's inputs and taps of w * table row, in four registers.
// (Loop vectoriser off: it would turn the row loads into gathers.)
template <class T>
__attribute__((optimize("no-tree-vectorize"))) void accumulate_tile(
    T* acc, const T* __restrict table, std::int64_t O, std::int64_t C, std::int64_t taps,
    const std::int32_t* first, const T* w, std::int64_t n_in) {
  constexpr std::int64_t L = kLanes<T>;
  Vec<T> a0 = load(acc), a1 = load(acc + L), a2 = load(acc + 2 * L), a3 = load(acc + 3 * L);
  for (std::int64_t ii = 0; ii < n_in; ++ii) {
    const T* row = table + (ii * C + first[ii]) * O;
    const T* wi = w + ii * taps;
    for (std::int64_t r = 0; r < taps; ++r, row += O) {
      const T p = wi[r];
      a0 += p * load(row);
      a1 += p * load(row + L);
      a2 += p * load(row + 2 * L);
      a3 += p * load(row + 3 * L);
    }
  }
  store(acc, a0);
  store(acc + L, a1);
  store(acc + 2 * L, a2);
  store(acc + 3 * L, a3);
}

template <class T>
void accumulate_partial(T* __restrict acc, const T* __restrict table, std::int64_t O,
                        std::int64_t C, std::int64_t taps, const std::int32_t* first, const T* w,
                        std::int64_t n_in, std::int64_t width) {
  if (width == 1) {  // one output (formula fitting): a dot product, no vector loop per tap
    T sum = acc[0];
    for (std::int64_t ii = 0; ii < n_in; ++ii) {
      const T* row = table + (ii * C + first[ii]) * O;
      for (std::int64_t r = 0; r < taps; ++r) sum += w[ii * taps + r] * row[r * O];
    }
    acc[0] = sum;
    return;
  }
  for (std::int64_t ii = 0; ii < n_in; ++ii) {
    const T* row = table + (ii * C + first[ii]) * O;
    for (std::int64_t r = 0; r < taps; ++r, row += O) {
      const T p = w[ii * taps + r];
#pragma omp simd
      for (std::int64_t oo = 0; oo < width; ++oo) acc[oo] += p * row[oo];
    }
  }
}

// Groups n rows by the first coefficient they touch (first[r * stride] in [0, buckets)): a
// stable counting sort, so rows keep ascending order inside a bucket and every sum built from
// the buckets has a fixed order. Rows of bucket c are rows[start[c] .. start[c+1]).
inline void bucket_rows(const std::int32_t* first, std::int64_t stride, std::int64_t n,
                        std::int64_t buckets, std::int32_t* start, std::int32_t* rows) {
  std::fill(start, start + buckets + 1, 0);
  for (std::int64_t r = 0; r < n; ++r) ++start[first[r * stride] + 1];
  for (std::int64_t c = 0; c < buckets; ++c) start[c + 1] += start[c];
  // start[c] is now the first slot of bucket c; fill while advancing a copy.
  std::int32_t* next = start + buckets + 1;  // scratch of `buckets` entries after start
  std::copy(start, start + buckets, next);
  for (std::int64_t r = 0; r < n; ++r) rows[next[first[r * stride]]++] = static_cast<std::int32_t>(r);
}

// Forward over one full output tile for one input: rows that share an interval use the same
// TAPS table rows, so those rows' tile (TAPS x 4 vectors) is loaded into registers once per
// bucket and each row then costs 4 loads, TAPS*4 FMAs and 4 stores of its output tile,
// instead of one table load per FMA.
template <class T, int TAPS>
__attribute__((optimize("no-tree-vectorize"))) void tile_by_bucket(
    T* __restrict y, std::int64_t O, const T* __restrict trow, const std::int32_t* start,
    const std::int32_t* rows, std::int64_t buckets, const T* w, std::int64_t wstride) {
  constexpr std::int64_t L = kLanes<T>;
  for (std::int64_t c = 0; c < buckets; ++c) {
    const std::int32_t s0 = start[c], s1 = start[c + 1];
    if (s0 == s1) continue;
    Vec<T> t[TAPS][4];
    for (int r = 0; r < TAPS; ++r) {
      for (int j = 0; j < 4; ++j) t[r][j] = load(trow + (c + r) * O + j * L);
    }
    for (std::int32_t q = s0; q < s1; ++q) {
      const std::int64_t bb = rows[q];
      T* yr = y + bb * O;
      const T* wr = w + bb * wstride;
      Vec<T> a0 = load(yr), a1 = load(yr + L), a2 = load(yr + 2 * L), a3 = load(yr + 3 * L);
      for (int r = 0; r < TAPS; ++r) {
        const T p = wr[r];
        a0 += p * t[r][0];
        a1 += p * t[r][1];
        a2 += p * t[r][2];
        a3 += p * t[r][3];
      }
      store(yr, a0);
      store(yr + L, a1);
      store(yr + 2 * L, a2);
      store(yr + 3 * L, a3);
    }
  }
}

// table[i, c, o] = spline_weight[o, i, c] * scaler[o, i] (scaler null: 1).
template <class T>
void build_table(const Shape& s, const T* W, const T* scaler, T* table) {
  const std::int64_t I = s.in, O = s.out, C = s.num_coefficients();
#pragma omp parallel for schedule(static) num_threads(internal::threads_for(I * C * O))
  for (std::int64_t i = 0; i < I; ++i) {
    T* ti = table + i * C * O;
    for (std::int64_t o = 0; o < O; ++o) {
      const T sc = scaler ? scaler[o * I + i] : T(1);
      const T* w = W + (o * I + i) * C;
      for (std::int64_t c = 0; c < C; ++c) ti[c * O + o] = w[c] * sc;
    }
  }
}

// Calls fn(begin, end) on [0, n) in fixed blocks of kSplitRows rows (the last one shorter),
// spread over the threads. The blocks do not depend on the thread count, so every row goes
// through the same GEMM call (Eigen's kernels sum a row differently by its place in a block):
// results are bitwise identical for any count.
constexpr std::int64_t kSplitRows = 256;

template <class Fn>
void split_rows(std::int64_t n, std::int64_t work_per_row, Fn&& fn) {
  const std::int64_t blocks = ceil_div(n, kSplitRows);
  // A quarter of a grain per multiply-add: Eigen's GEMM blocks run near peak.
#pragma omp parallel for schedule(static) num_threads(internal::threads_for(n * work_per_row / 4))
  for (std::int64_t b = 0; b < blocks; ++b) fn(b * kSplitRows, std::min(n, (b + 1) * kSplitRows));
}

template <class T>
void silu_rows(std::int64_t n, const T* x, T* out) {
#pragma omp parallel for schedule(static) num_threads(internal::threads_for(2 * n))
  for (std::int64_t j = 0; j < n; ++j) out[j] = x[j] * sigmoid(x[j]);
}

// Backward over one full output tile for one input, rows grouped by interval (bucket_rows).
// Gradient table: the bucket's TAPS rows of the tile stay in registers while its rows' grad_y
// tiles stream by (no load/store of the table per row). Input gradient: the table rows stay
// in registers and each row adds sum_r d[r] * table_r . grad_y into its vector accumulator
// dot[row]; the caller reduces it once per row and input.
template <class T, int TAPS>
__attribute__((optimize("no-tree-vectorize"))) void grad_tile_by_bucket(
    const T* __restrict gy, std::int64_t O, T* __restrict gt, const T* __restrict tt,
    const std::int32_t* start, const std::int32_t* rows, std::int64_t buckets, const T* v,
    const T* d, Vec<T>* __restrict dot) {
  constexpr std::int64_t L = kLanes<T>;
  for (std::int64_t c = 0; c < buckets; ++c) {
    const std::int32_t s0 = start[c], s1 = start[c + 1];
    if (s0 == s1) continue;
    if (gt) {
      Vec<T> a[TAPS][4];
      T* g0 = gt + c * O;
      for (int r = 0; r < TAPS; ++r) {
        for (int j = 0; j < 4; ++j) a[r][j] = load(g0 + r * O + j * L);
      }
      for (std::int32_t q = s0; q < s1; ++q) {
        const std::int64_t bb = rows[q];
        const T* g = gy + bb * O;
        const Vec<T> y0 = load(g), y1 = load(g + L), y2 = load(g + 2 * L), y3 = load(g + 3 * L);
        for (int r = 0; r < TAPS; ++r) {
          const T p = v[bb * TAPS + r];
          a[r][0] += p * y0;
          a[r][1] += p * y1;
          a[r][2] += p * y2;
          a[r][3] += p * y3;
        }
      }
      for (int r = 0; r < TAPS; ++r) {
        for (int j = 0; j < 4; ++j) store(g0 + r * O + j * L, a[r][j]);
      }
    }
    if (tt) {
      Vec<T> t[TAPS][4];
      const T* t0 = tt + c * O;
      for (int r = 0; r < TAPS; ++r) {
        for (int j = 0; j < 4; ++j) t[r][j] = load(t0 + r * O + j * L);
      }
      for (std::int32_t q = s0; q < s1; ++q) {
        const std::int64_t bb = rows[q];
        const T* g = gy + bb * O;
        Vec<T> s0v{}, s1v{}, s2v{}, s3v{};
        for (int r = 0; r < TAPS; ++r) {
          const T p = d[bb * TAPS + r];
          s0v += p * t[r][0];
          s1v += p * t[r][1];
          s2v += p * t[r][2];
          s3v += p * t[r][3];
        }
        dot[bb] += (s0v * load(g) + s1v * load(g + L)) + (s2v * load(g + 2 * L) + s3v * load(g + 3 * L));
      }
    }
  }
}

template <class T>
T hsum(const Vec<T>& v) {
  T acc = T(0);
  for (std::int64_t j = 0; j < kLanes<T>; ++j) acc += v[j];
  return acc;
}

// One (b, i) pair of the backward over n outputs: gt[r] += v[r] * gy for the taps rows (O apart)
// of the gradient table (when gt is set), and returns sum_o gy[o] * sum_r d[r] * tt[r][o] (when
// tt is set). One pass over the outputs with the taps unrolled, so the dot needs a single
// horizontal reduction. (Orders above 5 and the last partial output tile take this path.)
template <class T, int TAPS>
T grad_row_fixed(const T* __restrict gy, T* __restrict gt, const T* __restrict tt, std::int64_t O,
                 std::int64_t n, const T* v, const T* d) {
  T vr[TAPS], dr[TAPS];
  for (int r = 0; r < TAPS; ++r) {
    vr[r] = v[r];
    dr[r] = d[r];
  }
  T dot = T(0);
  if (gt && tt) {
#pragma omp simd reduction(+ : dot)
    for (std::int64_t o = 0; o < n; ++o) {
      const T g = gy[o];
      T slope = T(0);
      for (int r = 0; r < TAPS; ++r) {
        gt[r * O + o] += vr[r] * g;
        slope += dr[r] * tt[r * O + o];
      }
      dot += slope * g;
    }
  } else if (gt) {
#pragma omp simd
    for (std::int64_t o = 0; o < n; ++o) {
      const T g = gy[o];
      for (int r = 0; r < TAPS; ++r) gt[r * O + o] += vr[r] * g;
    }
  } else if (tt) {
#pragma omp simd reduction(+ : dot)
    for (std::int64_t o = 0; o < n; ++o) {
      T slope = T(0);
      for (int r = 0; r < TAPS; ++r) slope += dr[r] * tt[r * O + o];
      dot += slope * gy[o];
    }
  }
  return dot;
}

template <class T>
T grad_row_any(std::int64_t taps, const T* __restrict gy, T* __restrict gt,
               const T* __restrict tt, std::int64_t O, std::int64_t n, const T* v,
               const T* d) {
  T dot = T(0);
  for (std::int64_t r = 0; r < taps; ++r) {
    const T vr = v[r], dr = d[r];
    T part = T(0);
    if (gt) {
#pragma omp simd
      for (std::int64_t o = 0; o < n; ++o) gt[r * O + o] += vr * gy[o];
    }
    if (tt) {
#pragma omp simd reduction(+ : part)
      for (std::int64_t o = 0; o < n; ++o) part += tt[r * O + o] * gy[o];
    }
    dot += dr * part;
  }
  return dot;
}

template <class T>
T grad_row(std::int64_t taps, const T* gy, T* gt, const T* tt, std::int64_t O, std::int64_t n,
           const T* v, const T* d) {
  switch (taps) {  // orders 1..5 unrolled; higher orders take the generic loop
    case 2: return grad_row_fixed<T, 2>(gy, gt, tt, O, n, v, d);
    case 3: return grad_row_fixed<T, 3>(gy, gt, tt, O, n, v, d);
    case 4: return grad_row_fixed<T, 4>(gy, gt, tt, O, n, v, d);
    case 5: return grad_row_fixed<T, 5>(gy, gt, tt, O, n, v, d);
    case 6: return grad_row_fixed<T, 6>(gy, gt, tt, O, n, v, d);
    default: return grad_row_any<T>(taps, gy, gt, tt, O, n, v, d);
  }
}

}  // namespace

std::size_t forward_workspace_elems(const Shape& s) {
  return static_cast<std::size_t>(s.in * s.num_coefficients() * s.out + s.batch * s.in +
                                  s.in * knot_plan_elems(s.grid_size, s.order));
}
std::size_t backward_workspace_elems(const Shape& s) {
  return static_cast<std::size_t>(2 * s.in * s.num_coefficients() * s.out + 2 * s.batch * s.in +
                                  s.in * knot_plan_elems(s.grid_size, s.order));
}

template <class T>
void forward(const Shape& s, const T* x, const T* knots, const T* Wb, const T* W,
             const T* scaler, T* y, T* ws) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, G = s.grid_size, k = s.order;
  const std::int64_t C = s.num_coefficients(), taps = k + 1;
  const std::int64_t P = knot_plan_elems(G, k);
  if (N == 0) return;
  T* table = ws;
  T* act = ws + I * C * O;
  T* plans = act + N * I;
  build_table(s, W, scaler, table);
  build_plans(s, knots, plans);

  // Base branch first: it initialises y (zeros without one).
  Eigen::Map<MatR<T>> Y(y, N, O);
  if (Wb) {
    silu_rows(N * I, x, act);
    Eigen::Map<const MatR<T>> A(act, N, I), B(Wb, O, I);
    split_rows(N, I * O, [&](std::int64_t r0, std::int64_t r1) {
      Y.middleRows(r0, r1 - r0).noalias() = A.middleRows(r0, r1 - r0) * B.transpose();
    });
  } else {
    Y.setZero();
  }

  constexpr std::int64_t OT = kTile<T>;
  const std::int64_t IB = std::clamp<std::int64_t>(kPatch / taps, 1, kMaxInBlock);
  const std::int64_t row_blocks = ceil_div(N, kRows), out_chunks = ceil_div(O, kOutChunk);
  const bool bucketed = taps <= kMaxBucketTaps;
  internal::RegionErrors errors;  // a failed scratch allocation must not escape the region
#pragma omp parallel num_threads(threads_of(s))
  {
  // Scratch per thread, allocated once per call (not per work item).
  std::vector<T> w_store;
  // Per input of the block: bucket starts (G + 1), a scratch copy (G), the sorted rows.
  std::vector<std::int32_t> sorted;
  errors.run([&] {
    w_store.resize(kRows * kPatch);
    sorted.resize(bucketed ? kMaxInBlock * (2 * G + 1 + kRows) : 0);
  });
  T(*w)[kPatch] = reinterpret_cast<T(*)[kPatch]>(w_store.data());
#pragma omp for collapse(2) schedule(static)
  for (std::int64_t rb = 0; rb < row_blocks; ++rb) {
    for (std::int64_t oc = 0; oc < out_chunks; ++oc) {
      if (errors.failed()) continue;
      const std::int64_t b0 = rb * kRows, nb = std::min(kRows, N - b0);
      const std::int64_t oc0 = oc * kOutChunk, oc1 = std::min(O, oc0 + kOutChunk);
      std::int32_t first[kRows][kMaxInBlock];
      alignas(64) T acc[OT];
      for (std::int64_t i0 = 0; i0 < I; i0 += IB) {
        const std::int64_t ni = std::min(IB, I - i0);
        with_order(k, [&](auto order) {
          for (std::int64_t ii = 0; ii < ni; ++ii) {
            const std::int64_t i = i0 + ii;
            const T* plan = plans + i * P;
            if constexpr (order() > 0) {
              if (plan[2] != T(0)) {  // uniform knots: all rows of the block in SIMD lanes
                eval_uniform_block<T, order(), false>(plan, G, x + b0 * I + i, I, nb, &w[0][ii * taps],
                                                      nullptr, kPatch, &first[0][ii], kMaxInBlock);
                continue;
              }
            }
            for (std::int64_t bb = 0; bb < nb; ++bb) {
              first[bb][ii] = static_cast<std::int32_t>(eval_planned<T, order(), false>(
                  plan, G, k, x[(b0 + bb) * I + i], &w[bb][ii * taps], nullptr));
            }
          }
        });
        auto start_of = [&](std::int64_t ii) { return sorted.data() + ii * (2 * G + 1 + kRows); };
        if (bucketed && oc1 - oc0 >= OT) {  // only full output tiles read the buckets
          for (std::int64_t ii = 0; ii < ni; ++ii) {
            bucket_rows(&first[0][ii], kMaxInBlock, nb, G, start_of(ii), start_of(ii) + 2 * G + 1);
          }
        }
        const T* slice = table + i0 * C * O;
        for (std::int64_t o0 = oc0; o0 < oc1; o0 += OT) {
          const std::int64_t width = std::min(OT, oc1 - o0);
          T* y0 = y + b0 * O + o0;
          if (width == OT && bucketed) {
            for (std::int64_t ii = 0; ii < ni; ++ii) {
              const std::int32_t* st = start_of(ii);
              const std::int32_t* rows = st + 2 * G + 1;
              const T* trow = slice + ii * C * O + o0;
              const T* wi = &w[0][ii * taps];
              switch (taps) {
                case 2: tile_by_bucket<T, 2>(y0, O, trow, st, rows, G, wi, kPatch); break;
                case 3: tile_by_bucket<T, 3>(y0, O, trow, st, rows, G, wi, kPatch); break;
                case 4: tile_by_bucket<T, 4>(y0, O, trow, st, rows, G, wi, kPatch); break;
                case 5: tile_by_bucket<T, 5>(y0, O, trow, st, rows, G, wi, kPatch); break;
                default: tile_by_bucket<T, 6>(y0, O, trow, st, rows, G, wi, kPatch); break;
              }
            }
            continue;
          }
          for (std::int64_t bb = 0; bb < nb; ++bb) {
            T* yr = y0 + bb * O;
            if (width == OT) {
              accumulate_tile(yr, slice + o0, O, C, taps, first[bb], w[bb], ni);
            } else {
              std::copy(yr, yr + width, acc);
              accumulate_partial(acc, slice + o0, O, C, taps, first[bb], w[bb], ni, width);
              std::copy(acc, acc + width, yr);
            }
          }
        }
      }
    }
  }
  }  // omp parallel
  errors.rethrow();
}

template <class T>
void backward(const Shape& s, const T* x, const T* knots, const T* Wb, const T* W,
              const T* scaler, const T* grad_y, T* gx, T* gWb, T* gW, T* gscaler, T* ws) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, G = s.grid_size, k = s.order;
  const std::int64_t C = s.num_coefficients(), taps = k + 1;
  const std::int64_t P = knot_plan_elems(G, k);
  T* table = ws;
  T* gtable = table + I * C * O;
  T* act = gtable + I * C * O;
  T* ebase = act + N * I;
  T* plans = ebase + N * I;
  const bool need_table_grad = gW != nullptr || gscaler != nullptr;
  if (gx) build_table(s, W, scaler, table);
  build_plans(s, knots, plans);

  // Spline part: one pass per block of inputs over row chunks. The block's gradient table
  // (kInBlock x C x O) and its gather table stay in cache while grad_y rows stream by.
  constexpr std::int64_t kInBlock = 4, kRowChunk = 64;
  constexpr std::int64_t OT = kTile<T>;
  const std::int64_t in_blocks = ceil_div(I, kInBlock);
  const bool bucketed = taps <= kMaxBucketTaps;
  const std::int64_t full_tiles_end = bucketed ? (O / OT) * OT : 0;  // the rest goes row by row
  if (gx || need_table_grad) {
    internal::RegionErrors errors;  // a failed scratch allocation must not escape the region
#pragma omp parallel num_threads(threads_of(s))
    {
    // Scratch per thread, allocated once per call: basis values and slopes of one input over
    // a row chunk (evaluated before the row loop), then the chunk's rows grouped by interval.
    std::vector<T> v, d;
    std::vector<Vec<T>> dot;
    std::vector<std::int32_t> f, sorted;
    errors.run([&] {
      v.resize(kRowChunk * taps);
      d.resize(kRowChunk * taps);
      dot.resize(kRowChunk);
      f.resize(kRowChunk);
      sorted.resize(2 * G + 1 + kRowChunk);
    });
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t ib = 0; ib < in_blocks; ++ib) {
      if (errors.failed()) continue;
      const std::int64_t i0 = ib * kInBlock, i1 = std::min(I, i0 + kInBlock);
      if (need_table_grad) std::fill(gtable + i0 * C * O, gtable + i1 * C * O, T(0));
      for (std::int64_t b0 = 0; b0 < N; b0 += kRowChunk) {
        const std::int64_t b1 = std::min(N, b0 + kRowChunk), nb = b1 - b0;
        for (std::int64_t i = i0; i < i1; ++i) {
          const T* ti = table + i * C * O;
          T* gti = gtable + i * C * O;
          with_order(k, [&](auto order) {
            const T* plan = plans + i * P;
            if constexpr (order() > 0) {
              if (plan[2] != T(0)) {  // uniform knots: the chunk's rows in SIMD lanes
                eval_uniform_block<T, order(), true>(plan, G, x + b0 * I + i, I, nb, v.data(), d.data(),
                                                     taps, f.data(), 1);
                return;
              }
            }
            for (std::int64_t b = b0; b < b1; ++b) {
              f[b - b0] = static_cast<std::int32_t>(eval_planned<T, order(), true>(
                  plan, G, k, x[b * I + i], &v[(b - b0) * taps], &d[(b - b0) * taps]));
            }
          });
          std::fill(dot.begin(), dot.end(), Vec<T>{});
          if (full_tiles_end > 0) {
            const std::int32_t* st = sorted.data();
            const std::int32_t* rows = st + 2 * G + 1;
            bucket_rows(f.data(), 1, nb, G, sorted.data(), sorted.data() + 2 * G + 1);
            for (std::int64_t o0 = 0; o0 < full_tiles_end; o0 += OT) {
              const T* gy0 = grad_y + b0 * O + o0;
              T* gt0 = need_table_grad ? gti + o0 : nullptr;
              const T* tt0 = gx ? ti + o0 : nullptr;
              switch (taps) {
                case 2: grad_tile_by_bucket<T, 2>(gy0, O, gt0, tt0, st, rows, G, v.data(), d.data(), dot.data()); break;
                case 3: grad_tile_by_bucket<T, 3>(gy0, O, gt0, tt0, st, rows, G, v.data(), d.data(), dot.data()); break;
                case 4: grad_tile_by_bucket<T, 4>(gy0, O, gt0, tt0, st, rows, G, v.data(), d.data(), dot.data()); break;
                case 5: grad_tile_by_bucket<T, 5>(gy0, O, gt0, tt0, st, rows, G, v.data(), d.data(), dot.data()); break;
                default: grad_tile_by_bucket<T, 6>(gy0, O, gt0, tt0, st, rows, G, v.data(), d.data(), dot.data()); break;
              }
            }
          }
          const std::int64_t rest = O - full_tiles_end;
          for (std::int64_t b = b0; b < b1; ++b) {
            const T xv = x[b * I + i];
            const std::int64_t fb = f[b - b0];
            T total = hsum<T>(dot[b - b0]);
            if (rest > 0) {
              total += grad_row(taps, grad_y + b * O + full_tiles_end,
                                need_table_grad ? gti + fb * O + full_tiles_end : nullptr,
                                gx ? ti + fb * O + full_tiles_end : nullptr, O, rest,
                                &v[(b - b0) * taps], &d[(b - b0) * taps]);
            }
            if (gx) {
              gx[b * I + i] = (xv != xv) ? xv : total;  // NaN inputs propagate to their gradient
            }
          }
        }
      }
    }
    }  // omp parallel
    errors.rethrow();
  }

  // Base branch: grad_base_weight = grad_y^T silu(x); grad_x += silu'(x) * (grad_y base_weight).
  if (Wb && (gWb || gx) && N > 0) {
    Eigen::Map<const MatR<T>> GY(grad_y, N, O), B(Wb, O, I);
    if (gWb) {
      silu_rows(N * I, x, act);
      Eigen::Map<const MatR<T>> A(act, N, I);
      Eigen::Map<MatR<T>> GB(gWb, O, I);
      split_rows(O, N * I, [&](std::int64_t o0, std::int64_t o1) {
        GB.middleRows(o0, o1 - o0).noalias() = GY.middleCols(o0, o1 - o0).transpose() * A;
      });
    }
    if (gx) {
      Eigen::Map<MatR<T>> E(ebase, N, I);
      split_rows(N, I * O, [&](std::int64_t r0, std::int64_t r1) {
        E.middleRows(r0, r1 - r0).noalias() = GY.middleRows(r0, r1 - r0) * B;
      });
#pragma omp parallel for schedule(static) num_threads(internal::threads_for(2 * N * I))
      for (std::int64_t j = 0; j < N * I; ++j) {
        const T xv = x[j], sg = sigmoid(xv);
        gx[j] += ebase[j] * sg * (T(1) + xv * (T(1) - sg));
      }
    }
  } else if (gWb) {
    std::fill(gWb, gWb + O * I, T(0));  // empty batch
  }

  // Spline parameters from the gradient table: d/dW = dtable * scaler, d/dscaler = sum_c dtable W.
  if (need_table_grad) {
#pragma omp parallel for schedule(static) num_threads(internal::threads_for(I * C * O))
    for (std::int64_t o = 0; o < O; ++o) {
      for (std::int64_t i = 0; i < I; ++i) {
        const T* gti = gtable + i * C * O + o;
        const T* w = W + (o * I + i) * C;
        const T sc = scaler ? scaler[o * I + i] : T(1);
        T sum = T(0);
        for (std::int64_t c = 0; c < C; ++c) {
          const T gt = gti[c * O];
          if (gW) gW[(o * I + i) * C + c] = gt * sc;
          sum += gt * w[c];
        }
        if (gscaler) gscaler[o * I + i] = sum;
      }
    }
  }
}

#define KANCORE_INSTANTIATE(T)                                                                  \
  template void forward<T>(const Shape&, const T*, const T*, const T*, const T*, const T*, T*,  \
                           T*);                                                                 \
  template void backward<T>(const Shape&, const T*, const T*, const T*, const T*, const T*,     \
                            const T*, T*, T*, T*, T*, T*);
KANCORE_INSTANTIATE(float)
KANCORE_INSTANTIATE(double)
#undef KANCORE_INSTANTIATE

}  // namespace kancore::bspline::cpu

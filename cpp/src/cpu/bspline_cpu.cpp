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

// Eigen's own GEMM threading busy-waits badly on these tall-skinny shapes; the kernels split the
// products into per-thread row blocks themselves.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <omp.h>

#include "../bspline_basis.hpp"
#include "simd.hpp"

namespace kancore::bspline::cpu {
namespace {

using detail::eval_basis;
using cpu_simd::kLanes;
using cpu_simd::load;
using cpu_simd::store;
using cpu_simd::Vec;

template <class T>
using MatR = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr std::int64_t kRows = 32;          // batch rows per forward work item
constexpr std::int64_t kOutChunk = 256;     // outputs per forward work item
constexpr std::int64_t kPatch = 256;        // basis values per row in the patch
constexpr std::int64_t kMaxInBlock = 16;    // inputs per patch
constexpr std::int64_t kTaps = kMaxOrder + 1;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Below this many multiply-adds a call runs on one thread: waking the OpenMP team costs more.
bool worth_parallel(const Shape& s) {
  return s.batch * s.in * s.out * (s.order + 1) >= (std::int64_t{1} << 16);
}

template <class T>
T sigmoid(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

template <class T>
constexpr std::int64_t kTile = 4 * kLanes<T>;  // outputs per register tile


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
  for (std::int64_t ii = 0; ii < n_in; ++ii) {
    const T* row = table + (ii * C + first[ii]) * O;
    for (std::int64_t r = 0; r < taps; ++r, row += O) {
      const T p = w[ii * taps + r];
#pragma omp simd
      for (std::int64_t oo = 0; oo < width; ++oo) acc[oo] += p * row[oo];
    }
  }
}

// table[i, c, o] = spline_weight[o, i, c] * scaler[o, i] (scaler null: 1).
template <class T>
void build_table(const Shape& s, const T* W, const T* scaler, T* table) {
  const std::int64_t I = s.in, O = s.out, C = s.num_coefficients();
#pragma omp parallel for schedule(static) if (I * C * O >= (std::int64_t{1} << 16))
  for (std::int64_t i = 0; i < I; ++i) {
    T* ti = table + i * C * O;
    for (std::int64_t o = 0; o < O; ++o) {
      const T sc = scaler ? scaler[o * I + i] : T(1);
      const T* w = W + (o * I + i) * C;
      for (std::int64_t c = 0; c < C; ++c) ti[c * O + o] = w[c] * sc;
    }
  }
}

// Calls fn(begin, end) on [0, n) split into one contiguous block per OpenMP thread.
template <class Fn>
void split_rows(std::int64_t n, std::int64_t work_per_row, Fn&& fn) {
  const bool parallel = n * work_per_row >= (std::int64_t{1} << 18);
#pragma omp parallel if (parallel)
  {
    const std::int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const std::int64_t begin = n * t / nt, end = n * (t + 1) / nt;
    if (end > begin) fn(begin, end);
  }
}

template <class T>
void silu_rows(std::int64_t n, const T* x, T* out) {
#pragma omp parallel for schedule(static) if (n >= (std::int64_t{1} << 15))
  for (std::int64_t j = 0; j < n; ++j) out[j] = x[j] * sigmoid(x[j]);
}

// One (b, i) pair of the backward: gt[r] += v[r] * gy for the taps rows of the gradient table
// (when gt is set), and returns sum_o gy[o] * sum_r d[r] * tt[r][o] (when tt is set). One pass
// over the outputs with the taps unrolled, so the dot needs a single horizontal reduction.
template <class T, int TAPS>
T grad_row_fixed(const T* __restrict gy, T* __restrict gt, const T* __restrict tt, std::int64_t O,
                 const T* v, const T* d) {
  T vr[TAPS], dr[TAPS];
  for (int r = 0; r < TAPS; ++r) {
    vr[r] = v[r];
    dr[r] = d[r];
  }
  T dot = T(0);
  if (gt && tt) {
#pragma omp simd reduction(+ : dot)
    for (std::int64_t o = 0; o < O; ++o) {
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
    for (std::int64_t o = 0; o < O; ++o) {
      const T g = gy[o];
      for (int r = 0; r < TAPS; ++r) gt[r * O + o] += vr[r] * g;
    }
  } else if (tt) {
#pragma omp simd reduction(+ : dot)
    for (std::int64_t o = 0; o < O; ++o) {
      T slope = T(0);
      for (int r = 0; r < TAPS; ++r) slope += dr[r] * tt[r * O + o];
      dot += slope * gy[o];
    }
  }
  return dot;
}

template <class T>
T grad_row_any(std::int64_t taps, const T* __restrict gy, T* __restrict gt,
               const T* __restrict tt, std::int64_t O, const T* v, const T* d) {
  T dot = T(0);
  for (std::int64_t r = 0; r < taps; ++r) {
    const T vr = v[r], dr = d[r];
    T part = T(0);
    if (gt) {
#pragma omp simd
      for (std::int64_t o = 0; o < O; ++o) gt[r * O + o] += vr * gy[o];
    }
    if (tt) {
#pragma omp simd reduction(+ : part)
      for (std::int64_t o = 0; o < O; ++o) part += tt[r * O + o] * gy[o];
    }
    dot += dr * part;
  }
  return dot;
}

template <class T>
T grad_row(std::int64_t taps, const T* gy, T* gt, const T* tt, std::int64_t O, const T* v, const T* d) {
  switch (taps) {  // orders 1..5 unrolled; higher orders take the generic loop
    case 2: return grad_row_fixed<T, 2>(gy, gt, tt, O, v, d);
    case 3: return grad_row_fixed<T, 3>(gy, gt, tt, O, v, d);
    case 4: return grad_row_fixed<T, 4>(gy, gt, tt, O, v, d);
    case 5: return grad_row_fixed<T, 5>(gy, gt, tt, O, v, d);
    case 6: return grad_row_fixed<T, 6>(gy, gt, tt, O, v, d);
    default: return grad_row_any<T>(taps, gy, gt, tt, O, v, d);
  }
}

}  // namespace

std::size_t forward_workspace_elems(const Shape& s) {
  return static_cast<std::size_t>(s.in * s.num_coefficients() * s.out + s.batch * s.in);
}
std::size_t backward_workspace_elems(const Shape& s) {
  return static_cast<std::size_t>(2 * s.in * s.num_coefficients() * s.out + 2 * s.batch * s.in);
}

template <class T>
void forward(const Shape& s, const T* x, const T* knots, const T* Wb, const T* W,
             const T* scaler, T* y, T* ws) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, G = s.grid_size, k = s.order;
  const std::int64_t C = s.num_coefficients(), nk = s.num_knots(), taps = k + 1;
  if (N == 0) return;
  T* table = ws;
  T* act = ws + I * C * O;
  build_table(s, W, scaler, table);

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
#pragma omp parallel for collapse(2) schedule(static) if (worth_parallel(s))
  for (std::int64_t rb = 0; rb < row_blocks; ++rb) {
    for (std::int64_t oc = 0; oc < out_chunks; ++oc) {
      const std::int64_t b0 = rb * kRows, nb = std::min(kRows, N - b0);
      const std::int64_t oc0 = oc * kOutChunk, oc1 = std::min(O, oc0 + kOutChunk);
      std::int32_t first[kRows][kMaxInBlock];
      T w[kRows][kPatch];
      T scratch[2 * kTaps];
      alignas(64) T acc[OT];
      for (std::int64_t i0 = 0; i0 < I; i0 += IB) {
        const std::int64_t ni = std::min(IB, I - i0);
        for (std::int64_t bb = 0; bb < nb; ++bb) {
          for (std::int64_t ii = 0; ii < ni; ++ii) {
            const std::int64_t i = i0 + ii;
            first[bb][ii] = static_cast<std::int32_t>(eval_basis<T>(
                knots + i * nk, G, k, x[(b0 + bb) * I + i], &w[bb][ii * taps], nullptr, scratch));
          }
        }
        const T* slice = table + i0 * C * O;
        for (std::int64_t o0 = oc0; o0 < oc1; o0 += OT) {
          const std::int64_t width = std::min(OT, oc1 - o0);
          for (std::int64_t bb = 0; bb < nb; ++bb) {
            T* yr = y + (b0 + bb) * O + o0;
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
}

template <class T>
void backward(const Shape& s, const T* x, const T* knots, const T* Wb, const T* W,
              const T* scaler, const T* grad_y, T* gx, T* gWb, T* gW, T* gscaler, T* ws) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, G = s.grid_size, k = s.order;
  const std::int64_t C = s.num_coefficients(), nk = s.num_knots(), taps = k + 1;
  T* table = ws;
  T* gtable = table + I * C * O;
  T* act = gtable + I * C * O;
  T* ebase = act + N * I;
  const bool need_table_grad = gW != nullptr || gscaler != nullptr;
  if (gx) build_table(s, W, scaler, table);

  // Spline part: one pass per block of inputs over row chunks. The block's gradient table
  // (kInBlock x C x O) and its gather table stay in cache while grad_y rows stream by.
  constexpr std::int64_t kInBlock = 4, kRowChunk = 64;
  const std::int64_t in_blocks = ceil_div(I, kInBlock);
  if (gx || need_table_grad) {
#pragma omp parallel for schedule(dynamic, 1) if (worth_parallel(s))
    for (std::int64_t ib = 0; ib < in_blocks; ++ib) {
      const std::int64_t i0 = ib * kInBlock, i1 = std::min(I, i0 + kInBlock);
      if (need_table_grad) std::fill(gtable + i0 * C * O, gtable + i1 * C * O, T(0));
      T v[kTaps], d[kTaps], scratch[2 * kTaps];
      for (std::int64_t b0 = 0; b0 < N; b0 += kRowChunk) {
        const std::int64_t b1 = std::min(N, b0 + kRowChunk);
        for (std::int64_t i = i0; i < i1; ++i) {
          const T* ti = table + i * C * O;
          T* gti = gtable + i * C * O;
          for (std::int64_t b = b0; b < b1; ++b) {
            const T xv = x[b * I + i];
            const std::int64_t f = eval_basis<T>(knots + i * nk, G, k, xv, v, d, scratch);
            const T* __restrict gy = grad_y + b * O;
            const T dot = grad_row(taps, gy, need_table_grad ? gti + f * O : nullptr,
                                   gx ? ti + f * O : nullptr, O, v, d);
            if (gx) {
              gx[b * I + i] = (xv != xv) ? xv : dot;  // NaN inputs propagate to their gradient
            }
          }
        }
      }
    }
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
#pragma omp parallel for schedule(static) if (N * I >= (std::int64_t{1} << 15))
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
#pragma omp parallel for schedule(static) if (I * C * O >= (std::int64_t{1} << 16))
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

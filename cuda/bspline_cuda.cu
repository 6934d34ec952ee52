// CUDA kernels of the B-spline layer (float32 and float64), a first straightforward version.
//
// STATUS: agrees with the CPU kernels on an H200 (benchmarks/gpu_check.sh runs the tests that
// compare them). Not tuned: slower than the dense basis there.
//
// Kernels, all on the caller's stream, workspace from the caller:
//   prep_kernel       one thread per (b, i): the k+1 basis values (and slopes for backward) of
//                     the guarded Cox-de Boor triangle, the first coefficient index, silu(x)
//                     (and silu'(x)) into the workspace: (batch, in, k+1) values, never
//                     (batch, in, G+k).
//   table_kernel      the scaled weights as a gather table (in, G+k, out) and base_weight^T.
//   forward_kernel    block = 64 outputs x 4 row groups of 8 rows (rows on grid.x, output
//                     tiles on grid.y); each thread accumulates its output for 8 rows over all
//                     inputs in registers; table rows are read coalesced across outputs, the
//                     per-(b, i) basis values are warp-wide broadcasts.
//   grad_x_kernel     one warp per (b, i): a dot over the outputs of grad_y with the slope row
//                     sum_r d_r table[i, f+r, :] (+ silu'(x) base_weight^T[i, :]), then a fixed
//                     shuffle reduction.
//   grad_w_kernel     one thread per (i, o) (inputs on grid.x): owns the column dtable[i, :, o] and walks the batch
//                     in order, so every gradient is deterministic (no atomics); then writes the
//                     spline_weight, spline_scaler and base_weight gradients of edge (o, i).
// Knots are read in device memory as they are: the host does not check them (no host copies);
// the Python layer validates knots whenever it sets them. Every launch is checked.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "../cpp/src/bspline_backend_cuda.hpp"
#include "cuda_common.cuh"

namespace kancore::bspline::cuda_backend {
namespace {

using cuda_common::check;
using cuda_common::check_device_index;
using cuda_common::check_launch;
using cuda_common::DeviceGuard;
using cuda_common::require_device_pointer;
using cuda_common::stream_of;
using i64 = std::int64_t;

constexpr int kTaps = kMaxOrder + 1;
constexpr int kOutTile = 64;   // outputs per forward block (threadIdx.x)
constexpr int kRowGroups = 4;  // threadIdx.y
constexpr int kRowsPerThread = 8;

// ---- the basis triangle on the device (same rules as cpp/src/bspline_basis.hpp) ------------

template <class T>
__device__ i64 find_interval(const T* t, i64 n, T x) {
  if (!(x >= t[0]) || !(x < t[n - 1])) return -1;  // also NaN
  i64 lo = 0, hi = n - 1;                          // t[lo] <= x < t[hi]
  while (hi - lo > 1) {
    const i64 mid = (lo + hi) / 2;
    if (t[mid] <= x) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;  // the last m with t[m] <= x
}

template <class T>
__device__ T safe_ratio(T num, T den) {
  return den != T(0) ? num / den : T(0);
}

// Values (and slopes when d) of coefficients first..first+k into v (d); returns first.
template <class T>
__device__ i64 eval_basis(const T* t, i64 G, int k, T x, T* v, T* d) {
  const i64 n = G + 2 * k + 1;
  const i64 m = find_interval(t, n, x);
  if (m < 0) {
    for (int r = 0; r <= k; ++r) {
      v[r] = T(0);
      if (d) d[r] = T(0);
    }
    return 0;
  }
  T N[kTaps];
  T dm[kTaps];
  N[0] = T(1);
  auto exists = [n](i64 j, i64 p) { return j >= 0 && j + p + 1 <= n - 1; };
  for (int p = 1; p <= k; ++p) {
    if (p == k && d) {
      for (int r = 0; r <= k; ++r) {
        const i64 j = m - k + r;
        T acc = T(0);
        if (exists(j, k)) {
          if (r >= 1) acc += safe_ratio(N[r - 1], t[j + k] - t[j]);
          if (r <= k - 1) acc -= safe_ratio(N[r], t[j + k + 1] - t[j + 1]);
        }
        dm[r] = T(k) * acc;
      }
    }
    for (int r = p; r >= 0; --r) {
      const i64 j = m - p + r;
      T val = T(0);
      if (exists(j, p)) {
        if (r >= 1) val += safe_ratio(x - t[j], t[j + p] - t[j]) * N[r - 1];
        if (r <= p - 1) val += safe_ratio(t[j + p + 1] - x, t[j + p + 1] - t[j + 1]) * N[r];
      }
      N[r] = val;
    }
  }
  const i64 lo = m - k;
  const i64 first = lo < 0 ? 0 : (lo > G - 1 ? G - 1 : lo);
  const i64 off = first - lo;
  for (int r = 0; r <= k; ++r) {
    const i64 s = r + off;
    const bool in = s >= 0 && s <= k;
    v[r] = in ? N[s] : T(0);
    if (d) d[r] = in ? dm[s] : T(0);
  }
  return first;
}

template <class T>
__device__ T sigmoid(T v) {
  return T(1) / (T(1) + exp(-v));
}

// ---- kernels ---------------------------------------------------------------------------------

template <class T>
__global__ void prep_kernel(i64 NI, i64 I, i64 G, int k, const T* __restrict__ x,
                            const T* __restrict__ knots, T* __restrict__ v, T* __restrict__ d,
                            std::int32_t* __restrict__ first, T* __restrict__ act,
                            T* __restrict__ dact) {
  const i64 n = G + 2 * k + 1;
  for (i64 j = blockIdx.x * i64(blockDim.x) + threadIdx.x; j < NI; j += i64(gridDim.x) * blockDim.x) {
    const i64 i = j % I;
    const T xv = x[j];
    first[j] = static_cast<std::int32_t>(
        eval_basis<T>(knots + i * n, G, k, xv, v + j * (k + 1), d ? d + j * (k + 1) : nullptr));
    const T sg = sigmoid(xv);
    act[j] = xv * sg;
    if (dact) dact[j] = sg * (T(1) + xv * (T(1) - sg));
  }
}

template <class T>
__global__ void table_kernel(i64 I, i64 O, i64 C, const T* __restrict__ W, const T* __restrict__ sc,
                             const T* __restrict__ Wb, T* __restrict__ table, T* __restrict__ WbT) {
  const i64 total = I * C * O;
  for (i64 j = blockIdx.x * i64(blockDim.x) + threadIdx.x; j < total; j += i64(gridDim.x) * blockDim.x) {
    const i64 o = j % O, c = (j / O) % C, i = j / (O * C);  // table[i, c, o]
    table[j] = W[(o * I + i) * C + c] * (sc ? sc[o * I + i] : T(1));
    if (Wb && c == 0) WbT[i * O + o] = Wb[o * I + i];
  }
}

template <class T>
__global__ void forward_kernel(i64 N, i64 I, i64 O, i64 C, int taps, const T* __restrict__ table,
                               const T* __restrict__ WbT, const T* __restrict__ v,
                               const std::int32_t* __restrict__ first, const T* __restrict__ act,
                               T* __restrict__ y) {
  // Rows on grid.x (up to 2^31 - 1 blocks), output tiles on grid.y.
  const i64 o = blockIdx.y * i64(kOutTile) + threadIdx.x;
  const i64 b0 = (blockIdx.x * i64(kRowGroups) + threadIdx.y) * kRowsPerThread;
  if (o >= O || b0 >= N) return;
  const int rows = static_cast<int>(N - b0 < kRowsPerThread ? N - b0 : kRowsPerThread);
  T acc[kRowsPerThread];  // fully unrolled loops with guards keep it in registers
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) acc[r] = T(0);
  for (i64 i = 0; i < I; ++i) {
    const T wb = WbT ? WbT[i * O + o] : T(0);
    const T* col = table + i * C * O + o;
#pragma unroll
    for (int rr = 0; rr < kRowsPerThread; ++rr) {
      if (rr < rows) {
        const i64 j = (b0 + rr) * I + i;
        const T* vj = v + j * taps;
        const T* row = col + i64(first[j]) * O;
        T a = WbT ? act[j] * wb : T(0);
        for (int r = 0; r < taps; ++r) a += vj[r] * row[r * O];
        acc[rr] += a;
      }
    }
  }
#pragma unroll
  for (int rr = 0; rr < kRowsPerThread; ++rr) {
    if (rr < rows) y[(b0 + rr) * O + o] = acc[rr];
  }
}

template <class T>
__global__ void grad_x_kernel(i64 N, i64 I, i64 O, i64 C, int taps, const T* __restrict__ x,
                              const T* __restrict__ table, const T* __restrict__ WbT,
                              const T* __restrict__ d, const std::int32_t* __restrict__ first,
                              const T* __restrict__ dact, const T* __restrict__ grad_y,
                              T* __restrict__ gx) {
  const int lane = threadIdx.x % 32;
  const i64 warps = (i64(gridDim.x) * blockDim.x) / 32;
  for (i64 j = (blockIdx.x * i64(blockDim.x) + threadIdx.x) / 32; j < N * I; j += warps) {
    const i64 b = j / I, i = j % I;
    const T* dj = d + j * taps;
    const T* row = table + (i * C + first[j]) * O;
    const T* gy = grad_y + b * O;
    const T da = WbT ? dact[j] : T(0);
    T sum = T(0);
    for (i64 o = lane; o < O; o += 32) {
      T slope = WbT ? da * WbT[i * O + o] : T(0);
      for (int r = 0; r < taps; ++r) slope += dj[r] * row[r * O + o];
      sum += slope * gy[o];
    }
    for (int off = 16; off > 0; off /= 2) sum += __shfl_down_sync(0xffffffffu, sum, off);
    if (lane == 0) {
      const T xv = x[j];
      gx[j] = (xv != xv) ? xv : sum;  // NaN inputs propagate to their gradient, as on the CPU
    }
  }
}

template <class T>
__global__ void grad_w_kernel(i64 N, i64 I, i64 O, i64 C, int taps, const T* __restrict__ W,
                              const T* __restrict__ sc, const T* __restrict__ v,
                              const std::int32_t* __restrict__ first, const T* __restrict__ act,
                              const T* __restrict__ grad_y, T* __restrict__ dtable,
                              T* __restrict__ gWb, T* __restrict__ gW, T* __restrict__ gsc) {
  const i64 o = blockIdx.y * i64(blockDim.x) + threadIdx.x;  // inputs on grid.x, output tiles on y
  const i64 i = blockIdx.x;
  if (o >= O) return;
  T* col = dtable + i * C * O + o;  // dtable[i, :, o], owned by this thread
  for (i64 c = 0; c < C; ++c) col[c * O] = T(0);
  T gb = T(0);
  for (i64 b = 0; b < N; ++b) {
    const i64 j = b * I + i;
    const T g = grad_y[b * O + o];
    const T* vj = v + j * taps;
    T* rows = col + i64(first[j]) * O;
    for (int r = 0; r < taps; ++r) rows[r * O] += vj[r] * g;
    gb += act[j] * g;
  }
  if (gWb) gWb[o * I + i] = gb;
  const T s = sc ? sc[o * I + i] : T(1);
  T gs = T(0);
  for (i64 c = 0; c < C; ++c) {
    const T gt = col[c * O];
    if (gW) gW[(o * I + i) * C + c] = gt * s;
    gs += gt * W[(o * I + i) * C + c];
  }
  if (gsc) gsc[o * I + i] = gs;
}

// ---- workspace layout ------------------------------------------------------------------------

// Elements of T (the int32 indices take one T slot each, T being at least 4 bytes).
struct Layout {
  i64 table = 0, wbt = 0, act = 0, dact = 0, v = 0, d = 0, first = 0, dtable = 0, total = 0;
};

Layout layout(const Shape& s, bool backward) {
  const i64 NI = s.batch * s.in, taps = s.order + 1, ICO = s.in * s.num_coefficients() * s.out;
  Layout L;
  i64 at = 0;
  auto take = [&](i64& field, i64 n) { field = at; at += (n + 31) / 32 * 32; };  // 128-byte aligned
  take(L.table, ICO);
  take(L.wbt, s.in * s.out);
  take(L.act, NI);
  take(L.v, NI * taps);
  take(L.first, NI);
  if (backward) {
    take(L.dact, NI);
    take(L.d, NI * taps);
    take(L.dtable, ICO);
  }
  L.total = at;
  return L;
}

int blocks_for(i64 n, int threads) {
  const i64 b = (n + threads - 1) / threads;
  return static_cast<int>(b < 65535 * 16 ? (b < 1 ? 1 : b) : 65535 * 16);
}

void check_order(const Shape& s) {
  if (s.order > kMaxOrder) {
    throw std::invalid_argument("kancore: expected spline_order <= " + std::to_string(kMaxOrder) +
                                " on CUDA, got " + std::to_string(s.order));
  }
  if (s.num_coefficients() + s.order > (i64{1} << 30)) {
    throw std::invalid_argument("kancore: grid too large for the CUDA kernels' 32-bit indices");
  }
}

void check_pointers(const Params& p, const void* x, const void* grad_y, const void* y, const Grads* g,
                    const void* ws, int device) {
  require_device_pointer(x, "x", device);
  require_device_pointer(p.knots, "grid", device);
  require_device_pointer(p.base_weight, "base_weight", device);
  require_device_pointer(p.spline_weight, "spline_weight", device);
  require_device_pointer(p.spline_scaler, "spline_scaler", device);
  require_device_pointer(grad_y, "grad_y", device);
  require_device_pointer(y, "y", device);
  require_device_pointer(ws, "workspace", device);
  if (g) {
    require_device_pointer(g->x, "grad_x", device);
    require_device_pointer(g->base_weight, "grad_base_weight", device);
    require_device_pointer(g->spline_weight, "grad_spline_weight", device);
    require_device_pointer(g->spline_scaler, "grad_spline_scaler", device);
  }
}

template <class T>
void run_prep(const Shape& s, const T* x, const T* knots, T* ws, const Layout& L, bool backward,
              cudaStream_t stream) {
  const i64 NI = s.batch * s.in;
  if (NI == 0) return;
  prep_kernel<T><<<blocks_for(NI, 256), 256, 0, stream>>>(
      NI, s.in, s.grid_size, static_cast<int>(s.order), x, knots, ws + L.v,
      backward ? ws + L.d : nullptr, reinterpret_cast<std::int32_t*>(ws + L.first), ws + L.act,
      backward ? ws + L.dact : nullptr);
  check_launch("bspline prep_kernel");
}

template <class T>
void run_table(const Shape& s, const Params& p, T* ws, const Layout& L, cudaStream_t stream) {
  const i64 total = s.in * s.num_coefficients() * s.out;
  table_kernel<T><<<blocks_for(total, 256), 256, 0, stream>>>(
      s.in, s.out, s.num_coefficients(), static_cast<const T*>(p.spline_weight),
      static_cast<const T*>(p.spline_scaler), static_cast<const T*>(p.base_weight), ws + L.table,
      ws + L.wbt);
  check_launch("bspline table_kernel");
}

template <class T>
void forward_typed(const Shape& s, const T* x, const Params& p, T* y, T* ws, cudaStream_t stream) {
  const Layout L = layout(s, false);
  const i64 N = s.batch, O = s.out;
  if (N == 0) return;
  run_table<T>(s, p, ws, L, stream);
  run_prep<T>(s, x, static_cast<const T*>(p.knots), ws, L, false, stream);
  const i64 rows_per_block = i64(kRowGroups) * kRowsPerThread;
  const i64 tiles = (O + kOutTile - 1) / kOutTile;
  if (tiles > 65535) throw std::invalid_argument("kancore: out_features too large for one CUDA launch grid");
  const dim3 grid(static_cast<unsigned>((N + rows_per_block - 1) / rows_per_block), static_cast<unsigned>(tiles));
  forward_kernel<T><<<grid, dim3(kOutTile, kRowGroups), 0, stream>>>(
      N, s.in, O, s.num_coefficients(), static_cast<int>(s.order + 1), ws + L.table,
      p.base_weight ? ws + L.wbt : nullptr, ws + L.v,
      reinterpret_cast<const std::int32_t*>(ws + L.first), ws + L.act, y);
  check_launch("bspline forward_kernel");
}

template <class T>
void backward_typed(const Shape& s, const T* x, const Params& p, const T* grad_y, const Grads& g,
                    T* ws, cudaStream_t stream) {
  const Layout L = layout(s, true);
  const i64 N = s.batch, I = s.in, O = s.out, C = s.num_coefficients();
  const int taps = static_cast<int>(s.order + 1);
  run_table<T>(s, p, ws, L, stream);
  run_prep<T>(s, x, static_cast<const T*>(p.knots), ws, L, true, stream);
  const auto* first = reinterpret_cast<const std::int32_t*>(ws + L.first);
  if (g.x && N > 0) {
    grad_x_kernel<T><<<blocks_for(N * I * 32, 256), 256, 0, stream>>>(
        N, I, O, C, taps, x, ws + L.table, p.base_weight ? ws + L.wbt : nullptr, ws + L.d, first,
        ws + L.dact, grad_y, static_cast<T*>(g.x));
    check_launch("bspline grad_x_kernel");
  }
  if (g.base_weight || g.spline_weight || g.spline_scaler) {
    const i64 tiles = (O + 127) / 128;
    if (tiles > 65535) throw std::invalid_argument("kancore: out_features too large for one CUDA launch grid");
    const dim3 grid(static_cast<unsigned>(I), static_cast<unsigned>(tiles));
    grad_w_kernel<T><<<grid, 128, 0, stream>>>(
        N, I, O, C, taps, static_cast<const T*>(p.spline_weight),
        static_cast<const T*>(p.spline_scaler), ws + L.v, first, ws + L.act, grad_y,
        ws + L.dtable, static_cast<T*>(g.base_weight), static_cast<T*>(g.spline_weight),
        static_cast<T*>(g.spline_scaler));
    check_launch("bspline grad_w_kernel");
  }
}

template <class Fn>
void by_dtype(DType dtype, Fn&& fn) {
  if (dtype == DType::float32) {
    fn(float{});
  } else {
    fn(double{});
  }
}

std::size_t elem(DType dtype) { return dtype == DType::float32 ? 4 : 8; }

}  // namespace

std::size_t forward_workspace_bytes(const Shape& s, DType dtype) {
  check_order(s);
  return static_cast<std::size_t>(layout(s, false).total) * elem(dtype);
}

std::size_t backward_workspace_bytes(const Shape& s, DType dtype) {
  check_order(s);
  return static_cast<std::size_t>(layout(s, true).total) * elem(dtype);
}

void forward(const Shape& s, DType dtype, const void* x, const Params& p, void* y, void* ws,
             std::size_t, const ExecContext& ctx) {
  check_order(s);
  check_device_index(ctx.device);
  DeviceGuard guard(ctx.device.index);
  check_pointers(p, x, nullptr, y, nullptr, ws, ctx.device.index);
  by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    forward_typed<T>(s, static_cast<const T*>(x), p, static_cast<T*>(y), static_cast<T*>(ws),
                     stream_of(ctx));
  });
}

void backward(const Shape& s, DType dtype, const void* x, const Params& p, const void* grad_y,
              const Grads& g, void* ws, std::size_t, const ExecContext& ctx) {
  check_order(s);
  check_device_index(ctx.device);
  DeviceGuard guard(ctx.device.index);
  check_pointers(p, x, grad_y, nullptr, &g, ws, ctx.device.index);
  by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    backward_typed<T>(s, static_cast<const T*>(x), p, static_cast<const T*>(grad_y), g,
                      static_cast<T*>(ws), stream_of(ctx));
  });
}

}  // namespace kancore::bspline::cuda_backend

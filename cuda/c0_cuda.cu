// CUDA kernels of the C0 layer (float32 and float64) and the cuSPARSE path for
// impl="sparse_matmul_csr". The interval lookup (k, t) is the CPU's (c0_segment.hpp), so both
// backends pick the same segment for every input bit pattern.
//
// STATUS: the exact kernels and the cuSPARSE path agree with the CPU on an H200
// (benchmarks/gpu_check.sh) and are not yet tuned; the rounded (tf32/bf16) GEMM path at the end
// is compiled but has not run on a GPU yet.
// Design notes and traffic estimates: cuda/NOTES.md.
//
// Kernels:
//   forward_kernel         block = BM batch rows x BN outputs; loops over the inputs in stages of
//                          BI inputs: the (BI x K x BN) table tile goes to shared memory and (k, t)
//                          of the (BM x BI) inputs is computed once and reused by all BN outputs.
//                          Each thread accumulates TM rows x TN outputs in registers.
//   add_limits_kernel      adds the limit of every edge whose t is not finite (the main kernels
//                          give those edges zero weights, as on the CPU); nearly free when none.
//   backward_input_kernel  block = 64 rows x 8 inputs; loops over outputs in chunks whose slope
//                          tile D[i,k,o] = C[i,k+1,o] - C[i,k,o] is staged in shared memory (as
//                          many inputs per step as fit); partial dots stay in registers and are
//                          reduced once across lanes.
//   backward_table_kernel  block = BI inputs (one warp each) x 32 outputs x a range of rows; the
//                          (BI x K x 32) gradient tile accumulates in shared memory, each element
//                          owned by one lane, rows added in order. The tile is then stored
//                          (deterministic: one row range per block) or added with one global
//                          atomic per element per row range (fast path: more blocks in flight).
//
// Rules kept: no allocation, no device synchronisation and no host copies inside a call (outputs
// and workspace come from the caller); every CUDA / cuSPARSE status is checked and thrown as
// std::runtime_error naming the call; shapes are validated by the dispatcher, pointers here.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cusparse.h>

#include <climits>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../cpp/src/backend_cuda.hpp"
#include "../cpp/src/c0_segment.hpp"
#include "../cpp/src/rounding.hpp"
#include "cuda_common.cuh"

namespace kancore::c0::cuda_backend {
namespace {

using detail::Grid;
using detail::is_finite;
using detail::locate;
using detail::make_grid;
using i64 = std::int64_t;

using cuda_common::check;
using cuda_common::check_device_index;
using cuda_common::check_launch;
using cuda_common::DeviceGuard;
using cuda_common::require_device_pointer;
using cuda_common::stream_of;

struct DeviceInfo {
  int sms = 1;
  int smem_optin = 48 * 1024;  // largest dynamic shared memory a block may ask for
};

DeviceInfo device_info(int device) {
  static std::mutex mutex;
  static std::map<int, DeviceInfo> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(device);
  if (it != cache.end()) return it->second;
  DeviceInfo info;
  check(cudaDeviceGetAttribute(&info.sms, cudaDevAttrMultiProcessorCount, device),
        "cudaDeviceGetAttribute(MultiProcessorCount)");
  check(cudaDeviceGetAttribute(&info.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
        "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)");
  cache.emplace(device, info);
  return info;
}

// Raises a kernel's dynamic shared-memory limit once per (kernel, device): above 48 KB a block
// gets the memory only after this opt-in. The limit goes straight to the device's opt-in maximum
// (not to this launch's size), so a later, larger launch of the same kernel (another layer of a
// network, a larger K) is covered too; done on first use, so not inside a later graph capture.
void allow_smem(const void* kernel, int device, int bytes) {
  static std::mutex mutex;
  static std::set<std::pair<const void*, int>> done;
  if (bytes <= 48 * 1024) return;
  const int limit = std::max(bytes, device_info(device).smem_optin);
  std::lock_guard<std::mutex> lock(mutex);
  if (done.count({kernel, device})) return;
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, limit),
        "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)");
  done.insert({kernel, device});
}

// ---- tiling constants ------------------------------------------------------------------------
// Shared-memory budgets: a tile up to kStageBytes is staged per step, and a single input's tile
// up to kMaxTileBytes still counts as "fits"; beyond that the kernels read the table from
// global memory (L1/L2) instead. Chosen for Hopper (228 KB per SM, several blocks resident).
constexpr int kStageBytes = 32 * 1024;
constexpr int kMaxTileBytes = 64 * 1024;

constexpr int kThreads = 256;
constexpr int kLanesO = 16;  // threads across outputs in forward / backward_input
constexpr int kLanesB = kThreads / kLanesO;  // threads across batch rows
template <class T> constexpr int kTN = 16 / static_cast<int>(sizeof(T));  // one 16-byte vector
template <class T> constexpr int kBN = kLanesO * kTN<T>;  // outputs per tile: 64 f32 / 32 f64
constexpr int kTM = 8;                       // forward: rows per thread
constexpr int kBM = kLanesB * kTM;           // forward: 128 rows per block
constexpr int kMaxBI = 8;                    // inputs per stage (forward) / per block (bwd input)
constexpr int kTMI = 4;                      // backward_input: rows per thread
constexpr int kBMI = kLanesB * kTMI;         // backward_input: 64 rows per block
constexpr int kTableWarps = 16;              // backward_table: at most 16 inputs per block
constexpr int kTableRows = 32;               // backward_table: rows staged per step

template <class T>
struct alignas(16) Pack {
  T v[kTN<T>];
};

__host__ __device__ constexpr i64 ceil_div(i64 a, i64 b) { return (a + b - 1) / b; }

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

// Grid dimension y/z limit; larger counts are covered by grid-stride loops in the kernels.
constexpr i64 kMaxGridYZ = 65535;
constexpr i64 kMaxGridX = 0x7fffffff;

// __ldg has no overload for a user struct: read it as the matching built-in vector.
__device__ __forceinline__ Pack<float> ldg_pack(const Pack<float>* p) {
  const float4 v = __ldg(reinterpret_cast<const float4*>(p));
  return Pack<float>{{v.x, v.y, v.z, v.w}};
}
__device__ __forceinline__ Pack<double> ldg_pack(const Pack<double>* p) {
  const double2 v = __ldg(reinterpret_cast<const double2*>(p));
  return Pack<double>{{v.x, v.y}};
}

template <class T>
__device__ __forceinline__ Pack<T> load_pack(const T* __restrict__ row, i64 o, i64 O, bool vec) {
  if (vec && o + kTN<T> <= O) return ldg_pack(reinterpret_cast<const Pack<T>*>(row + o));
  Pack<T> p;
#pragma unroll
  for (int j = 0; j < kTN<T>; ++j) p.v[j] = (o + j < O) ? __ldg(row + o + j) : T(0);
  return p;
}

// Weights of one input as the CPU's fused kernels use them: non-finite t gets zero weights (its
// limit is added by add_limits_kernel).
template <class T>
__device__ __forceinline__ void weights(const Grid<T>& g, T xv, int& k, T& w0, T& w1) {
  i64 k64;
  T t;
  locate(g, xv, k64, t);
  k = static_cast<int>(k64);
  const bool finite = is_finite(t);
  w0 = finite ? T(1) - t : T(0);
  w1 = finite ? t : T(0);
}

// ---- forward -----------------------------------------------------------------------------------
// Shared memory: [kMaxBI][kBM] k, [kMaxBI][kBM] w0, w1, then (staged) the [BI][K][BN] table tile.
template <class T>
constexpr int forward_fixed_smem() {
  return kMaxBI * kBM * (static_cast<int>(sizeof(int)) + 2 * static_cast<int>(sizeof(T)));
}

template <class T, bool kStaged>
__global__ void __launch_bounds__(kThreads) forward_kernel(i64 N, i64 I, i64 O, int K, int BI,
                                                           Grid<T> g, const T* __restrict__ x,
                                                           const T* __restrict__ table,
                                                           T* __restrict__ y, bool vec_table,
                                                           bool vec_y) {
  constexpr int TN = kTN<T>, BN = kBN<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* w0s = reinterpret_cast<T*>(smem_raw);                 // [kMaxBI][kBM]
  T* w1s = w0s + kMaxBI * kBM;                             // [kMaxBI][kBM]
  T* tile = w1s + kMaxBI * kBM;                            // [BI][K][BN] (16-byte aligned)
  int* ks = reinterpret_cast<int*>(tile + (kStaged ? static_cast<i64>(BI) * K * BN : 0));

  const int tid = threadIdx.x, tx = tid % kLanesO, ty = tid / kLanesO;
  const i64 n_otiles = ceil_div(O, BN);
  const i64 b0 = static_cast<i64>(blockIdx.x) * kBM;

  for (i64 ot = blockIdx.y; ot < n_otiles; ot += gridDim.y) {
    const i64 o0 = ot * BN;
    T acc[kTM][TN];
#pragma unroll
    for (int m = 0; m < kTM; ++m)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[m][j] = T(0);

    for (i64 i0 = 0; i0 < I; i0 += BI) {
      const int ni = static_cast<int>(I - i0 < BI ? I - i0 : BI);
      __syncthreads();  // the previous stage is done with the shared arrays
      // (k, w0, w1) of the block's rows for this stage's inputs: inputs fastest, so the reads of
      // x are runs of consecutive addresses.
      for (int e = tid; e < kBM * kMaxBI; e += kThreads) {
        const int ii = e % kMaxBI, r = e / kMaxBI;
        const i64 b = b0 + r;
        int k = 0;
        T w0 = T(0), w1 = T(0);
        if (ii < ni && b < N) weights(g, x[b * I + i0 + ii], k, w0, w1);
        ks[ii * kBM + r] = k;
        w0s[ii * kBM + r] = w0;
        w1s[ii * kBM + r] = w1;
      }
      if constexpr (kStaged) {
        // Table rows (i0*K ...) of this stage's inputs are contiguous rows of C: copy the
        // [ni*K][BN] window of columns o0.. as 16-byte packs (zero past O).
        const i64 rows = static_cast<i64>(ni) * K;
        const T* src = table + i0 * K * O;
        for (i64 p = tid; p < rows * kLanesO; p += kThreads) {
          const i64 row = p / kLanesO;
          const int cp = static_cast<int>(p % kLanesO);
          const Pack<T> v = load_pack(src + row * O, o0 + cp * TN, O, vec_table);
          *reinterpret_cast<Pack<T>*>(tile + row * BN + cp * TN) = v;
        }
      }
      __syncthreads();
      for (int ii = 0; ii < ni; ++ii) {
#pragma unroll
        for (int m = 0; m < kTM; ++m) {
          const int r = ty + m * kLanesB;
          const int k = ks[ii * kBM + r];
          const T p = w0s[ii * kBM + r], q = w1s[ii * kBM + r];
          Pack<T> a, c;
          if constexpr (kStaged) {
            const T* r0 = tile + (static_cast<i64>(ii) * K + k) * BN + tx * TN;
            a = *reinterpret_cast<const Pack<T>*>(r0);
            c = *reinterpret_cast<const Pack<T>*>(r0 + BN);
          } else {
            const T* r0 = table + ((i0 + ii) * K + k) * O;
            a = load_pack(r0, o0 + tx * TN, O, vec_table);
            c = load_pack(r0 + O, o0 + tx * TN, O, vec_table);
          }
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[m][j] = fma(q, c.v[j], fma(p, a.v[j], acc[m][j]));
        }
      }
    }
    // Store the TM x TN outputs (rows past N and columns past O are not written).
#pragma unroll
    for (int m = 0; m < kTM; ++m) {
      const i64 b = b0 + ty + m * kLanesB;
      const i64 o = o0 + tx * TN;
      if (b >= N) continue;
      T* dst = y + b * O + o;
      if (vec_y && o + TN <= O) {
        Pack<T> v;
#pragma unroll
        for (int j = 0; j < TN; ++j) v.v[j] = acc[m][j];
        *reinterpret_cast<Pack<T>*>(dst) = v;
      } else {
#pragma unroll
        for (int j = 0; j < TN; ++j)
          if (o + j < O) dst[j] = acc[m][j];
      }
    }
  }
}

// y[b,:] += limit of every edge of row b whose t is not finite, in input order (as on the CPU).
// One block per row: a block-wide vote per 256 inputs makes rows without such inputs cheap.
template <class T>
__global__ void __launch_bounds__(kThreads) add_limits_kernel(i64 N, i64 I, i64 O, int K,
                                                              Grid<T> g, const T* __restrict__ x,
                                                              const T* __restrict__ table,
                                                              T* __restrict__ y) {
  for (i64 b = blockIdx.x; b < N; b += gridDim.x) {
    const T* xr = x + b * I;
    for (i64 i0 = 0; i0 < I; i0 += kThreads) {
      bool nonfinite = false;
      if (i0 + threadIdx.x < I) {
        i64 k;
        T t;
        locate(g, xr[i0 + threadIdx.x], k, t);
        nonfinite = !is_finite(t);
      }
      if (!__syncthreads_or(nonfinite)) continue;
      const i64 i1 = (i0 + kThreads < I) ? i0 + kThreads : I;
      for (i64 i = i0; i < i1; ++i) {
        i64 k;
        T t;
        locate(g, xr[i], k, t);
        if (is_finite(t)) continue;
        const T* r0 = table + (i * K + k) * O;
        for (i64 o = threadIdx.x; o < O; o += kThreads) {
          y[b * O + o] += detail::segment_limit(r0[o], r0[o + O], t);
        }
      }
    }
  }
}

// ---- backward to the input -------------------------------------------------------------------
// Block: 64 rows x kMaxBI inputs, all outputs in chunks of BN. Shared memory: the slope tile
// D[i,k,o] = C[i,k+1,o] - C[i,k,o] of `sub` inputs at a time ([sub][K-1][BN], one load per FMA),
// then [kMaxBI][kBMI] k. Large K stage fewer inputs per step (sub = 1 up to K = 257 in float).
template <class T, bool kStaged>
__global__ void __launch_bounds__(kThreads) backward_input_kernel(
    i64 N, i64 I, i64 O, int K, int sub, Grid<T> g, const T* __restrict__ x,
    const T* __restrict__ table, const T* __restrict__ grad_y, T* __restrict__ grad_x,
    bool vec_table, bool vec_gy) {
  constexpr int TN = kTN<T>, BN = kBN<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* dtile = reinterpret_cast<T*>(smem_raw);
  int* ks = reinterpret_cast<int*>(dtile + (kStaged ? static_cast<i64>(sub) * (K - 1) * BN : 0));
  if (!kStaged) sub = kMaxBI;
  const i64 n_ib = ceil_div(I, kMaxBI);
  const int tid = threadIdx.x, tx = tid % kLanesO, ty = tid / kLanesO;
  const i64 b0 = static_cast<i64>(blockIdx.x) * kBMI;

  for (i64 ib = blockIdx.y; ib < n_ib; ib += gridDim.y) {
    const i64 i0 = ib * kMaxBI;
    const int ni = static_cast<int>(I - i0 < kMaxBI ? I - i0 : kMaxBI);
    __syncthreads();  // the previous input block is done with ks and the tile
    for (int e = tid; e < kBMI * kMaxBI; e += kThreads) {
      const int ii = e % kMaxBI, r = e / kMaxBI;
      const i64 b = b0 + r;
      i64 k = 0;
      T t;
      if (ii < ni && b < N) locate(g, x[b * I + i0 + ii], k, t);
      ks[ii * kBMI + r] = static_cast<int>(k);
    }
    T acc[kTMI][kMaxBI];
#pragma unroll
    for (int m = 0; m < kTMI; ++m)
#pragma unroll
      for (int ii = 0; ii < kMaxBI; ++ii) acc[m][ii] = T(0);

    for (i64 o0 = 0; o0 < O; o0 += BN) {
      // This thread's grad_y values of the chunk, reused for every input.
      Pack<T> gv[kTMI];
#pragma unroll
      for (int m = 0; m < kTMI; ++m) {
        const i64 b = b0 + ty + m * kLanesB;
        gv[m] = (b < N) ? load_pack(grad_y + b * O, o0 + tx * TN, O, vec_gy) : Pack<T>{};
      }
      for (int s0 = 0; s0 < ni; s0 += sub) {
        const int s1 = (s0 + sub < ni) ? s0 + sub : ni;
        if constexpr (kStaged) {
          __syncthreads();  // the previous step is done with the tile
          const i64 rows = static_cast<i64>(s1 - s0) * (K - 1);
          for (i64 p = tid; p < rows * kLanesO; p += kThreads) {
            const i64 row = p / kLanesO;
            const int cp = static_cast<int>(p % kLanesO);
            const i64 ii = s0 + row / (K - 1), k = row % (K - 1);
            const T* r0 = table + ((i0 + ii) * K + k) * O;
            const Pack<T> lo = load_pack(r0, o0 + cp * TN, O, vec_table);
            const Pack<T> hi = load_pack(r0 + O, o0 + cp * TN, O, vec_table);
            Pack<T> d;
#pragma unroll
            for (int j = 0; j < TN; ++j) d.v[j] = hi.v[j] - lo.v[j];
            *reinterpret_cast<Pack<T>*>(dtile + row * BN + cp * TN) = d;
          }
        }
        __syncthreads();  // tile (and, the first time, ks) ready
#pragma unroll
        for (int m = 0; m < kTMI; ++m) {
          const int r = ty + m * kLanesB;
#pragma unroll
          for (int ii = 0; ii < kMaxBI; ++ii) {
            if (ii < s0 || ii >= s1) continue;
            const int k = ks[ii * kBMI + r];
            Pack<T> d;
            if constexpr (kStaged) {
              d = *reinterpret_cast<const Pack<T>*>(
                  dtile + (static_cast<i64>(ii - s0) * (K - 1) + k) * BN + tx * TN);
            } else {
              const T* r0 = table + ((i0 + ii) * K + k) * O;
              const Pack<T> lo = load_pack(r0, o0 + tx * TN, O, vec_table);
              const Pack<T> hi = load_pack(r0 + O, o0 + tx * TN, O, vec_table);
#pragma unroll
              for (int j = 0; j < TN; ++j) d.v[j] = hi.v[j] - lo.v[j];
            }
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[m][ii] = fma(gv[m].v[j], d.v[j], acc[m][ii]);
          }
        }
      }
    }
    // Sum the partial dots over the 16 output lanes of each half-warp (a fixed tree: the result
    // does not depend on timing), then lane ii of the half-warp writes input ii.
#pragma unroll
    for (int m = 0; m < kTMI; ++m) {
#pragma unroll
      for (int ii = 0; ii < kMaxBI; ++ii) {
        T v = acc[m][ii];
#pragma unroll
        for (int off = kLanesO / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off, kLanesO);
        acc[m][ii] = v;
      }
      const i64 b = b0 + ty + m * kLanesB;
#pragma unroll
      for (int ii = 0; ii < kMaxBI; ++ii) {
        if (tx == ii && ii < ni && b < N) {
          const T xv = x[b * I + i0 + ii];
          grad_x[b * I + i0 + ii] = (xv != xv) ? xv : acc[m][ii] * g.slope;
        }
      }
    }
  }
}

// ---- backward to the control points --------------------------------------------------------
// Block: `warps` inputs (warp w owns input i0+w) x 32 outputs (lane = output) x rows
// [row_begin, row_end) of the batch. Shared memory: the [warps][K][32] accumulator tile (when
// kSmem), then [kTableRows][warps] k and t. Each accumulator element is touched by one lane
// only, rows in increasing order: no atomics inside the block and a fixed summation order.
// kAtomic: add the block's tile into grad_table with atomics (grad_table zeroed beforehand);
// otherwise store it (this block is the only one covering its rows). Without kSmem (very large
// K) the lane updates grad_table in global memory directly, owned (plain) or atomically.
template <class T, bool kSmem, bool kAtomic>
__global__ void backward_table_kernel(i64 N, i64 I, i64 O, int K, int warps, i64 rows_per_split,
                                      Grid<T> g, const T* __restrict__ x,
                                      const T* __restrict__ grad_y, T* __restrict__ grad_table) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int lane = threadIdx.x % 32, w = threadIdx.x / 32;
  const i64 tile_elems = kSmem ? static_cast<i64>(warps) * K * 32 : 0;
  T* acc_tile = reinterpret_cast<T*>(smem_raw);
  T* ts = acc_tile + tile_elems;                                   // [kTableRows][warps]
  int* ks = reinterpret_cast<int*>(ts + kTableRows * warps);        // [kTableRows][warps]

  // blockIdx.x enumerates (input tile, output tile), outputs fastest; the grid has exactly
  // ceil(I/warps) * ceil(O/32) blocks in x.
  const i64 n_otiles = ceil_div(O, 32);
  const i64 o = static_cast<i64>(blockIdx.x % n_otiles) * 32 + lane;
  const i64 i0 = static_cast<i64>(blockIdx.x / n_otiles) * warps;
  const i64 i = i0 + w;
  const bool active = (i < I) && (o < O);
  const i64 row_begin = static_cast<i64>(blockIdx.y) * rows_per_split;
  const i64 row_end = (row_begin + rows_per_split < N) ? row_begin + rows_per_split : N;

  // Accumulator column of this lane: smem tile (row stride 32) or grad_table (row stride O).
  T* col = kSmem ? acc_tile + static_cast<i64>(w) * K * 32 + lane : grad_table + i * K * O + o;
  const i64 stride = kSmem ? 32 : O;
  if constexpr (kSmem) {
    for (int k = 0; k < K; ++k) col[k * stride] = T(0);
  }

  for (i64 r0 = row_begin; r0 < row_end; r0 += kTableRows) {
    const int nr = static_cast<int>(row_end - r0 < kTableRows ? row_end - r0 : kTableRows);
    __syncthreads();  // the previous rows' k, t are consumed
    // (k, t) of nr rows x `warps` inputs, inputs fastest (runs of consecutive x).
    for (int e = threadIdx.x; e < kTableRows * warps; e += blockDim.x) {
      const int ww = e % warps, r = e / warps;
      i64 k = 0;
      T t = T(0);
      if (r < nr && i0 + ww < I) locate(g, x[(r0 + r) * I + i0 + ww], k, t);
      ks[r * warps + ww] = static_cast<int>(k);
      ts[r * warps + ww] = t;
    }
    __syncthreads();
    if (!active) continue;
    for (int r = 0; r < nr; ++r) {
      const int k = ks[r * warps + w];
      const T t = ts[r * warps + w];
      const T gv = grad_y[(r0 + r) * O + o];
      const T a = T(1) - t;
      T* p0 = col + static_cast<i64>(k) * stride;
      T* p1 = p0 + stride;
      if constexpr (!kSmem && kAtomic) {
        atomicAdd(p0, a * gv);
        atomicAdd(p1, t * gv);
      } else {
        *p0 += a * gv;
        *p1 += t * gv;
      }
    }
  }
  if constexpr (kSmem) {
    if (!active) return;
    T* dst = grad_table + i * K * O + o;
    for (int k = 0; k < K; ++k) {
      if constexpr (kAtomic) {
        atomicAdd(dst + static_cast<i64>(k) * O, col[k * stride]);
      } else {
        dst[static_cast<i64>(k) * O] = col[k * stride];
      }
    }
  }
}

// ---- CSR path (cuSPARSE SpMM) ----------------------------------------------------------------
// The interpolation matrix A (batch, in*K): row b has 2 entries per input, (1-t) at i*K+k and t
// at i*K+k+1 (zero weights for non-finite t; add_limits_kernel adds their limits). y = A @ C.
template <class T>
__global__ void build_csr_kernel(i64 N, i64 I, int K, Grid<T> g, const T* __restrict__ x,
                                 i64* __restrict__ row_ptr, i64* __restrict__ col_idx,
                                 T* __restrict__ values) {
  const i64 total = N * I;
  for (i64 idx = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; idx <= total;
       idx += static_cast<i64>(gridDim.x) * blockDim.x) {
    if (idx <= N) row_ptr[idx] = idx * 2 * I;
    if (idx >= total) continue;
    const i64 i = idx % I;
    int k;
    T w0, w1;
    weights(g, x[idx], k, w0, w1);
    col_idx[2 * idx] = i * K + k;
    col_idx[2 * idx + 1] = i * K + k + 1;
    values[2 * idx] = w0;
    values[2 * idx + 1] = w1;
  }
}

template <class T>
cudaDataType cuda_type() {
  return sizeof(T) == 4 ? CUDA_R_32F : CUDA_R_64F;
}

constexpr std::size_t align256(std::size_t n) { return (n + 255) / 256 * 256; }

// Descriptors of one (device, dtype, shape), created once and kept: each call only points them
// at its buffers (cusparseCsrSetPointers / cusparseDnMatSetValues). cuSPARSE handles are per
// device; the stream is set on every call while the cache lock is held.
struct SpmmPlan {
  cusparseHandle_t handle = nullptr;  // owned by the per-device handle map, not by the plan
  cusparseSpMatDescr_t a = nullptr;
  cusparseDnMatDescr_t b = nullptr, c = nullptr;
  std::size_t buffer_bytes = 0;
  std::size_t row_ptr = 0, col_idx = 0, values = 0, buffer = 0, total = 0;  // workspace layout
  SpmmPlan() = default;
  SpmmPlan(const SpmmPlan&) = delete;
  SpmmPlan& operator=(const SpmmPlan&) = delete;
  ~SpmmPlan() {
    if (a) cusparseDestroySpMat(a);
    if (b) cusparseDestroyDnMat(b);
    if (c) cusparseDestroyDnMat(c);
  }
};

using PlanKey = std::tuple<int, int, i64, i64, i64, i64>;  // device, dtype, N, I, O, K

struct PlanCache {
  std::mutex mutex;
  std::map<int, cusparseHandle_t> handles;  // kept for the process lifetime
  std::map<PlanKey, std::unique_ptr<SpmmPlan>> plans;
};

PlanCache& plan_cache() {
  static PlanCache* cache = new PlanCache();  // never destroyed: no teardown-order issues at exit
  return *cache;
}

// Returns the plan for (device, shape), creating it on first use. Caller holds the cache lock.
template <class T>
SpmmPlan& plan_for(PlanCache& cache, int device, const Shape& s) {
  const PlanKey key{device, static_cast<int>(sizeof(T)), s.batch, s.in, s.out, s.num_control_points};
  auto it = cache.plans.find(key);
  if (it != cache.plans.end()) return *it->second;
  if (cache.plans.size() >= 256) cache.plans.clear();  // bound the cache for shape-varying users
  auto h = cache.handles.find(device);
  if (h == cache.handles.end()) {
    cusparseHandle_t handle = nullptr;
    check(cusparseCreate(&handle), "cusparseCreate");
    h = cache.handles.emplace(device, handle).first;
  }
  auto plan = std::make_unique<SpmmPlan>();
  plan->handle = h->second;
  const i64 rows = s.batch, cols = s.in * s.num_control_points, nnz = 2 * s.batch * s.in;
  // Placeholder non-null addresses (never dereferenced: every call sets its own pointers).
  void* dummy = reinterpret_cast<void*>(std::uintptr_t{256});
  check(cusparseCreateCsr(&plan->a, rows, cols, nnz, dummy, dummy, dummy, CUSPARSE_INDEX_64I,
                          CUSPARSE_INDEX_64I, CUSPARSE_INDEX_BASE_ZERO, cuda_type<T>()),
        "cusparseCreateCsr");
  check(cusparseCreateDnMat(&plan->b, cols, s.out, s.out, dummy, cuda_type<T>(), CUSPARSE_ORDER_ROW),
        "cusparseCreateDnMat(table)");
  check(cusparseCreateDnMat(&plan->c, rows, s.out, s.out, dummy, cuda_type<T>(), CUSPARSE_ORDER_ROW),
        "cusparseCreateDnMat(y)");
  const T one = T(1), zero = T(0);
  check(cusparseSpMM_bufferSize(plan->handle, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                CUSPARSE_OPERATION_NON_TRANSPOSE, &one, plan->a, plan->b, &zero,
                                plan->c, cuda_type<T>(), CUSPARSE_SPMM_ALG_DEFAULT,
                                &plan->buffer_bytes),
        "cusparseSpMM_bufferSize");
  std::size_t at = 0;
  plan->row_ptr = at; at += align256((static_cast<std::size_t>(rows) + 1) * sizeof(i64));
  plan->col_idx = at; at += align256(static_cast<std::size_t>(nnz) * sizeof(i64));
  plan->values = at;  at += align256(static_cast<std::size_t>(nnz) * sizeof(T));
  plan->buffer = at;  at += align256(plan->buffer_bytes);
  plan->total = at;
  return *cache.plans.emplace(key, std::move(plan)).first->second;
}

// ---- launches ----------------------------------------------------------------------------------

template <class T>
void launch_forward_gather(const Shape& s, const T* x, const T* table, T* y, int device,
                           cudaStream_t stream) {
  const i64 N = s.batch, I = s.in, O = s.out;
  const int K = static_cast<int>(s.num_control_points);
  const Grid<T> g = make_grid<T>(K, s.spline_width);
  constexpr int BN = kBN<T>;
  const i64 per_input = static_cast<i64>(K) * BN * static_cast<i64>(sizeof(T));
  const DeviceInfo info = device_info(device);
  const bool staged = per_input <= kMaxTileBytes &&
                      per_input + forward_fixed_smem<T>() <= info.smem_optin;
  const int BI = staged ? static_cast<int>(std::clamp<i64>(kStageBytes / per_input, 1, kMaxBI)) : kMaxBI;
  const int smem = forward_fixed_smem<T>() + (staged ? static_cast<int>(BI * per_input) : 0);
  const bool vec_table = (O % kTN<T>) == 0 && aligned16(table);
  const bool vec_y = (O % kTN<T>) == 0 && aligned16(y);
  if (ceil_div(N, kBM) > kMaxGridX) throw std::invalid_argument("kancore: batch too large for one CUDA grid");
  // Rows fastest: the blocks resident at one time share an output tile, so its table slice is
  // read from DRAM about once and from L2 by the others.
  const dim3 grid(static_cast<unsigned>(std::min(ceil_div(N, kBM), kMaxGridX)),
                  static_cast<unsigned>(std::min(ceil_div(O, BN), kMaxGridYZ)));
  if (staged) {
    allow_smem(reinterpret_cast<const void*>(&forward_kernel<T, true>), device, smem);
    forward_kernel<T, true><<<grid, kThreads, smem, stream>>>(N, I, O, K, BI, g, x, table, y,
                                                             vec_table, vec_y);
  } else {
    forward_kernel<T, false><<<grid, kThreads, smem, stream>>>(N, I, O, K, BI, g, x, table, y,
                                                              vec_table, vec_y);
  }
  check_launch("forward_kernel launch");
}

template <class T>
void launch_add_limits(const Shape& s, const T* x, const T* table, T* y, cudaStream_t stream) {
  const int K = static_cast<int>(s.num_control_points);
  const Grid<T> g = make_grid<T>(K, s.spline_width);
  const unsigned blocks = static_cast<unsigned>(std::min<i64>(s.batch, kMaxGridX));
  add_limits_kernel<T><<<blocks, kThreads, 0, stream>>>(s.batch, s.in, s.out, K, g, x, table, y);
  check_launch("add_limits_kernel launch");
}

template <class T>
void launch_forward_csr(const Shape& s, const T* x, const T* table, T* y, void* ws,
                        std::size_t ws_bytes, int device, cudaStream_t stream) {
  PlanCache& cache = plan_cache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  SpmmPlan& plan = plan_for<T>(cache, device, s);
  if (ws == nullptr || ws_bytes < plan.total) {
    throw std::invalid_argument("kancore: expected a CUDA workspace of at least " +
                                std::to_string(plan.total) + " bytes, got " +
                                std::to_string(ws == nullptr ? 0 : ws_bytes));
  }
  require_device_pointer(ws, "workspace", device);
  char* base = static_cast<char*>(ws);
  auto* row_ptr = reinterpret_cast<i64*>(base + plan.row_ptr);
  auto* col_idx = reinterpret_cast<i64*>(base + plan.col_idx);
  auto* values = reinterpret_cast<T*>(base + plan.values);
  const int K = static_cast<int>(s.num_control_points);
  const Grid<T> g = make_grid<T>(K, s.spline_width);
  const i64 work = s.batch * s.in + 1;
  const unsigned blocks = static_cast<unsigned>(std::min<i64>(ceil_div(work, kThreads), 65535 * 8));
  build_csr_kernel<T><<<blocks, kThreads, 0, stream>>>(s.batch, s.in, K, g, x, row_ptr, col_idx, values);
  check_launch("build_csr_kernel launch");
  check(cusparseCsrSetPointers(plan.a, row_ptr, col_idx, values), "cusparseCsrSetPointers");
  check(cusparseDnMatSetValues(plan.b, const_cast<T*>(table)), "cusparseDnMatSetValues(table)");
  check(cusparseDnMatSetValues(plan.c, y), "cusparseDnMatSetValues(y)");
  check(cusparseSetStream(plan.handle, stream), "cusparseSetStream");
  const T one = T(1), zero = T(0);
  check(cusparseSpMM(plan.handle, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_NON_TRANSPOSE,
                     &one, plan.a, plan.b, &zero, plan.c, cuda_type<T>(), CUSPARSE_SPMM_ALG_DEFAULT,
                     plan.buffer_bytes ? base + plan.buffer : nullptr),
        "cusparseSpMM");
}

template <class T>
void launch_backward_input(const Shape& s, const T* x, const T* table, const T* grad_y, T* grad_x,
                           int device, cudaStream_t stream) {
  const i64 N = s.batch, I = s.in, O = s.out;
  const int K = static_cast<int>(s.num_control_points);
  const Grid<T> g = make_grid<T>(K, s.spline_width);
  constexpr int BN = kBN<T>;
  const i64 per_input = static_cast<i64>(K - 1) * BN * static_cast<i64>(sizeof(T));
  const int fixed = kMaxBI * kBMI * static_cast<int>(sizeof(int));
  const DeviceInfo info = device_info(device);
  const bool staged = per_input <= kMaxTileBytes && per_input + fixed <= info.smem_optin;
  // Inputs staged per step: as many of the block's 8 as the budget holds.
  const int sub = staged ? static_cast<int>(std::clamp<i64>(kMaxTileBytes / per_input, 1, kMaxBI)) : kMaxBI;
  const int smem = fixed + (staged ? static_cast<int>(sub * per_input) : 0);
  const bool vec_table = (O % kTN<T>) == 0 && aligned16(table);
  const bool vec_gy = (O % kTN<T>) == 0 && aligned16(grad_y);
  if (ceil_div(N, kBMI) > kMaxGridX) throw std::invalid_argument("kancore: batch too large for one CUDA grid");
  const dim3 grid(static_cast<unsigned>(ceil_div(N, kBMI)),
                  static_cast<unsigned>(std::min(ceil_div(I, kMaxBI), kMaxGridYZ)));
  if (staged) {
    allow_smem(reinterpret_cast<const void*>(&backward_input_kernel<T, true>), device, smem);
    backward_input_kernel<T, true><<<grid, kThreads, smem, stream>>>(
        N, I, O, K, sub, g, x, table, grad_y, grad_x, vec_table, vec_gy);
  } else {
    backward_input_kernel<T, false><<<grid, kThreads, smem, stream>>>(
        N, I, O, K, sub, g, x, table, grad_y, grad_x, vec_table, vec_gy);
  }
  check_launch("backward_input_kernel launch");
}

template <class T>
void launch_backward_table(const Shape& s, const T* x, const T* grad_y, T* grad_table,
                           bool deterministic, int device, cudaStream_t stream) {
  const i64 N = s.batch, I = s.in, O = s.out;
  const int K = static_cast<int>(s.num_control_points);
  const std::size_t table_bytes = static_cast<std::size_t>(I * K * O) * sizeof(T);
  if (N == 0) {
    check(cudaMemsetAsync(grad_table, 0, table_bytes, stream), "cudaMemsetAsync(grad_table)");
    return;
  }
  const Grid<T> g = make_grid<T>(K, s.spline_width);
  const DeviceInfo info = device_info(device);
  const i64 per_input = static_cast<i64>(K) * 32 * static_cast<i64>(sizeof(T));
  const int small_arrays = kTableRows * (static_cast<int>(sizeof(T)) + static_cast<int>(sizeof(int)));
  const bool in_smem = per_input <= kMaxTileBytes && per_input + small_arrays <= info.smem_optin;
  // Warps (inputs) per block: as many as the shared budget allows, up to 16.
  int warps = in_smem ? static_cast<int>(std::clamp<i64>(kMaxTileBytes / per_input, 1, kTableWarps))
                      : 8;
  warps = static_cast<int>(std::min<i64>(warps, I));
  while (in_smem && warps > 1 && warps * per_input + warps * small_arrays > info.smem_optin) --warps;
  const int smem = (in_smem ? static_cast<int>(warps * per_input) : 0) + warps * small_arrays;
  const i64 blocks_io = ceil_div(O, 32) * ceil_div(I, warps);
  if (blocks_io > kMaxGridX) throw std::invalid_argument("kancore: layer too large for one CUDA grid");
  // Fast path: split the batch so that about four blocks per SM are in flight, each adding its
  // tile with one atomic per element. Deterministic: one row range, plain stores.
  i64 splits = 1;
  if (!deterministic) {
    const i64 want = 4 * static_cast<i64>(info.sms);
    if (blocks_io < want) splits = std::min<i64>(ceil_div(want, blocks_io), ceil_div(N, 256));
    splits = std::clamp<i64>(splits, 1, kMaxGridYZ);
  }
  const i64 rows_per_split = ceil_div(ceil_div(N, splits), kTableRows) * kTableRows;
  splits = ceil_div(N, rows_per_split);
  const bool atomic = splits > 1;
  if (atomic || !in_smem) {
    check(cudaMemsetAsync(grad_table, 0, table_bytes, stream), "cudaMemsetAsync(grad_table)");
  }
  const dim3 grid(static_cast<unsigned>(blocks_io), static_cast<unsigned>(splits));
  const int threads = 32 * warps;
  auto launch = [&](auto kernel) {
    allow_smem(reinterpret_cast<const void*>(kernel), device, smem);
    kernel<<<grid, threads, smem, stream>>>(N, I, O, K, warps, rows_per_split, g, x, grad_y, grad_table);
  };
  if (in_smem) {
    atomic ? launch(&backward_table_kernel<T, true, true>) : launch(&backward_table_kernel<T, true, false>);
  } else {
    atomic ? launch(&backward_table_kernel<T, false, true>) : launch(&backward_table_kernel<T, false, false>);
  }
  check_launch("backward_table_kernel launch");
}

// ---- typed entry points ------------------------------------------------------------------------

template <class T>
void forward_typed(const Shape& s, Impl impl, const T* x, const T* table, T* y, void* ws,
                   std::size_t ws_bytes, const ExecContext& ctx) {
  check_device_index(ctx.device);
  DeviceGuard guard(ctx.device.index);
  const int dev = ctx.device.index;
  require_device_pointer(x, "x", dev);
  require_device_pointer(table, "table", dev);
  require_device_pointer(y, "y", dev);
  if (s.batch == 0) return;
  cudaStream_t stream = stream_of(ctx);
  if (impl == Impl::gather) {
    launch_forward_gather<T>(s, x, table, y, dev, stream);
  } else {
    launch_forward_csr<T>(s, x, table, y, ws, ws_bytes, dev, stream);
  }
  launch_add_limits<T>(s, x, table, y, stream);
}

template <class T>
void backward_input_typed(const Shape& s, const T* x, const T* table, const T* grad_y, T* grad_x,
                          const ExecContext& ctx) {
  check_device_index(ctx.device);
  DeviceGuard guard(ctx.device.index);
  const int dev = ctx.device.index;
  require_device_pointer(x, "x", dev);
  require_device_pointer(table, "table", dev);
  require_device_pointer(grad_y, "grad_y", dev);
  require_device_pointer(grad_x, "grad_x", dev);
  if (s.batch == 0) return;
  launch_backward_input<T>(s, x, table, grad_y, grad_x, dev, stream_of(ctx));
}

template <class T>
void backward_table_typed(const Shape& s, const T* x, const T* grad_y, T* grad_table,
                          const ExecContext& ctx) {
  check_device_index(ctx.device);
  DeviceGuard guard(ctx.device.index);
  const int dev = ctx.device.index;
  require_device_pointer(x, "x", dev);
  require_device_pointer(grad_y, "grad_y", dev);
  require_device_pointer(grad_table, "grad_table", dev);
  launch_backward_table<T>(s, x, grad_y, grad_table, ctx.deterministic, dev, stream_of(ctx));
}


// ---- rounded GEMM path (MatmulPrecision tf32 / bf16) ---------------------------------------------
// The hat basis Phi of a chunk of rows is written rounded (bf16 values, or float32 values already
// rounded to TF32) and multiplied by cuBLAS on tensor cores with float32 accumulation:
//   forward   y[chunk]  = Phi @ round(C)         (row-major; cuBLAS sees the transposes)
//   backward  dC       += Phi^T @ round(g[chunk])
// Operands are rounded with rounding.hpp, the CPU oracle's definition, so both sides multiply
// the same values and differ only in the order of the float32 sums.

void check_blas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw std::runtime_error(std::string("kancore cuBLAS error in ") + what + ": " +
                             cublasGetStatusString(status));
  }
}

constexpr std::size_t kBlasWorkspace = std::size_t{4} << 20;  // cuBLAS scratch, from the caller

struct HatLayout {
  i64 rows = 1;
  std::size_t table = 0, phi = 0, grad = 0, blas = 0, total = 0;
};

HatLayout hat_layout(const Shape& s, bool backward, MatmulPrecision p, std::size_t limit) {
  const std::size_t es = p == MatmulPrecision::bf16 ? 2 : 4;
  const std::size_t IK = static_cast<std::size_t>(s.in) * static_cast<std::size_t>(s.num_control_points);
  const std::size_t O = static_cast<std::size_t>(s.out);
  const std::size_t fixed = (backward ? 0 : align256(IK * O * es)) + kBlasWorkspace;
  const std::size_t per_row = IK * es + (backward ? O * es : 0);
  const std::size_t room = limit > fixed + 1024 ? limit - fixed - 1024 : 0;
  HatLayout l;
  l.rows = std::clamp<i64>(static_cast<i64>(room / per_row), 1, std::max<i64>(s.batch, 1));
  std::size_t at = 0;
  l.blas = at;  at += kBlasWorkspace;
  l.table = at; at += backward ? 0 : align256(IK * O * es);
  l.phi = at;   at += align256(static_cast<std::size_t>(l.rows) * IK * es);
  l.grad = at;  at += backward ? align256(static_cast<std::size_t>(l.rows) * O * es) : 0;
  l.total = at + 256;  // alignment slack for the caller's pointer
  return l;
}

template <class E> __device__ __forceinline__ E to_operand(float v, MatmulPrecision p);
template <> __device__ __forceinline__ float to_operand<float>(float v, MatmulPrecision p) {
  return kancore::detail::round_to(v, p);
}
template <> __device__ __forceinline__ __nv_bfloat16 to_operand<__nv_bfloat16>(float v, MatmulPrecision) {
  __nv_bfloat16_raw raw;  // the rounded float's top half: exactly the oracle's value
  raw.x = static_cast<unsigned short>(kancore::detail::float_bits(kancore::detail::round_mantissa(v, 16)) >> 16);
  return __nv_bfloat16(raw);
}

// One thread per (row, input): writes that input's K entries of the row (two non-zeros).
template <class E>
__global__ void build_phi_kernel(i64 rows, i64 I, int K, Grid<float> g, const float* __restrict__ x,
                                 bool forward, MatmulPrecision p, E* __restrict__ phi) {
  const i64 total = rows * I;
  for (i64 idx = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<i64>(gridDim.x) * blockDim.x) {
    i64 k;
    float t;
    locate(g, x[idx], k, t);
    float w0 = 1.0f - t, w1 = t;
    if (forward && !is_finite(t)) w0 = w1 = 0.0f;  // its limit is added by add_limits_kernel
    E* out = phi + idx * K;  // row r, input i: columns i*K .. i*K+K-1 of row r (idx = r*I + i)
    const E zero = to_operand<E>(0.0f, p);
    for (int j = 0; j < K; ++j) out[j] = zero;
    out[k] = to_operand<E>(w0, p);
    out[k + 1] = to_operand<E>(w1, p);
  }
}

template <class E>
__global__ void round_copy_kernel(i64 n, const float* __restrict__ src, MatmulPrecision p, E* __restrict__ dst) {
  for (i64 j = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x; j < n;
       j += static_cast<i64>(gridDim.x) * blockDim.x) {
    dst[j] = to_operand<E>(src[j], p);
  }
}

unsigned blocks_for(i64 work) { return static_cast<unsigned>(std::clamp<i64>(ceil_div(work, kThreads), 1, 65535 * 8)); }

struct BlasHandles {
  std::mutex mutex;  // one call at a time per process: the handle's stream and workspace are set per call
  std::map<int, cublasHandle_t> handles;
};

BlasHandles& blas_handles() {
  static BlasHandles* h = new BlasHandles();  // never destroyed: no teardown-order issues at exit
  return *h;
}

cublasHandle_t blas_handle(BlasHandles& h, int device) {
  auto it = h.handles.find(device);
  if (it != h.handles.end()) return it->second;
  cublasHandle_t handle = nullptr;
  check_blas(cublasCreate(&handle), "cublasCreate");
  return h.handles.emplace(device, handle).first->second;
}

int as_int(i64 v, const char* what) {
  if (v > INT_MAX) throw std::invalid_argument(std::string("kancore: ") + what + " too large for the tf32/bf16 GEMM path");
  return static_cast<int>(v);
}

// C (m x n, column-major, ldc) = alpha * op(A) @ op(B) + beta * C with operands of element E.
template <class E>
void gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
          const E* A, int lda, const E* B, int ldb, float beta, float* C, int ldc) {
  const float alpha = 1.0f;
  constexpr bool bf16 = std::is_same_v<E, __nv_bfloat16>;
  check_blas(cublasGemmEx(h, ta, tb, m, n, k, &alpha, A, bf16 ? CUDA_R_16BF : CUDA_R_32F, lda, B,
                          bf16 ? CUDA_R_16BF : CUDA_R_32F, ldb, &beta, C, CUDA_R_32F, ldc,
                          bf16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT),
             "cublasGemmEx");
}

template <class E>
void hat_forward(const Shape& s, const float* x, const float* table, float* y, char* base, const HatLayout& l,
                 MatmulPrecision p, int device, cudaStream_t stream) {
  const i64 N = s.batch, I = s.in, O = s.out;
  const int K = static_cast<int>(s.num_control_points);
  const int IK = as_int(I * K, "in_features * num_control_points");
  const Grid<float> g = make_grid<float>(K, s.spline_width);
  E* table_r = reinterpret_cast<E*>(base + l.table);
  E* phi = reinterpret_cast<E*>(base + l.phi);
  round_copy_kernel<E><<<blocks_for(i64(IK) * O), kThreads, 0, stream>>>(i64(IK) * O, table, p, table_r);
  check_launch("round_copy_kernel launch");
  BlasHandles& h = blas_handles();
  std::lock_guard<std::mutex> lock(h.mutex);
  cublasHandle_t handle = blas_handle(h, device);
  check_blas(cublasSetStream(handle, stream), "cublasSetStream");
  check_blas(cublasSetWorkspace(handle, base + l.blas, kBlasWorkspace), "cublasSetWorkspace");
  for (i64 r0 = 0; r0 < N; r0 += l.rows) {
    const i64 rows = std::min(l.rows, N - r0);
    build_phi_kernel<E><<<blocks_for(rows * I), kThreads, 0, stream>>>(rows, I, K, g, x + r0 * I, true, p, phi);
    check_launch("build_phi_kernel launch");
    // Row-major y (rows x O) = Phi (rows x IK) @ C (IK x O)  <=>  column-major y^T = C^T @ Phi^T.
    gemm<E>(handle, CUBLAS_OP_N, CUBLAS_OP_N, as_int(O, "out_features"), as_int(rows, "rows"), IK,
            table_r, as_int(O, "out_features"), phi, IK, 0.0f, y + r0 * O, as_int(O, "out_features"));
  }
}

template <class E>
void hat_backward_table(const Shape& s, const float* x, const float* grad_y, float* grad_table, char* base,
                        const HatLayout& l, MatmulPrecision p, int device, cudaStream_t stream) {
  const i64 N = s.batch, I = s.in, O = s.out;
  const int K = static_cast<int>(s.num_control_points);
  const int IK = as_int(I * K, "in_features * num_control_points");
  const Grid<float> g = make_grid<float>(K, s.spline_width);
  E* phi = reinterpret_cast<E*>(base + l.phi);
  E* g_r = reinterpret_cast<E*>(base + l.grad);
  BlasHandles& h = blas_handles();
  std::lock_guard<std::mutex> lock(h.mutex);
  cublasHandle_t handle = blas_handle(h, device);
  check_blas(cublasSetStream(handle, stream), "cublasSetStream");
  check_blas(cublasSetWorkspace(handle, base + l.blas, kBlasWorkspace), "cublasSetWorkspace");
  for (i64 r0 = 0; r0 < N; r0 += l.rows) {
    const i64 rows = std::min(l.rows, N - r0);
    build_phi_kernel<E><<<blocks_for(rows * I), kThreads, 0, stream>>>(rows, I, K, g, x + r0 * I, false, p, phi);
    check_launch("build_phi_kernel launch");
    round_copy_kernel<E><<<blocks_for(rows * O), kThreads, 0, stream>>>(rows * O, grad_y + r0 * O, p, g_r);
    check_launch("round_copy_kernel launch");
    // Row-major dC (IK x O) += Phi^T (IK x rows) @ g (rows x O)  <=>  dC^T = g^T @ Phi.
    gemm<E>(handle, CUBLAS_OP_N, CUBLAS_OP_T, as_int(O, "out_features"), IK, as_int(rows, "rows"), g_r,
            as_int(O, "out_features"), phi, IK, r0 == 0 ? 0.0f : 1.0f, grad_table, as_int(O, "out_features"));
  }
}

char* aligned256(void* ws) {
  const auto a = reinterpret_cast<std::uintptr_t>(ws);
  return reinterpret_cast<char*>((a + 255) / 256 * 256);
}

template <class Fn>
void by_dtype(DType dtype, Fn&& fn) {
  if (dtype == DType::float32) {
    fn(float{});
  } else {
    fn(double{});
  }
}

}  // namespace

std::size_t forward_workspace_bytes(const Shape& s, DType dtype, Impl impl, Device device) {
  // An empty batch does nothing (forward returns early): no cuSPARSE plan for zero rows.
  if (impl == Impl::gather || s.batch == 0) return 0;
  check_device_index(device);
  DeviceGuard guard(device.index);
  PlanCache& cache = plan_cache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  std::size_t bytes = 0;
  by_dtype(dtype, [&](auto zero) { bytes = plan_for<decltype(zero)>(cache, device.index, s).total; });
  return bytes;
}

// The backward kernels need no scratch memory (the CSR impl's backward uses the gather kernels).
std::size_t backward_workspace_bytes(const Shape&, DType, Impl, Device) { return 0; }

void forward(const Shape& s, DType dtype, Impl impl, const void* x, const void* table, void* y,
             void* ws, std::size_t ws_bytes, const ExecContext& ctx) {
  by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    forward_typed<T>(s, impl, static_cast<const T*>(x), static_cast<const T*>(table),
                     static_cast<T*>(y), ws, ws_bytes, ctx);
  });
}

void backward_input(const Shape& s, DType dtype, Impl, const void* x, const void* table,
                    const void* grad_y, void* grad_x, void*, std::size_t, const ExecContext& ctx) {
  by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    backward_input_typed<T>(s, static_cast<const T*>(x), static_cast<const T*>(table),
                            static_cast<const T*>(grad_y), static_cast<T*>(grad_x), ctx);
  });
}

void backward_table(const Shape& s, DType dtype, Impl, const void* x, const void* grad_y,
                    void* grad_table, void*, std::size_t, const ExecContext& ctx) {
  by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    backward_table_typed<T>(s, static_cast<const T*>(x), static_cast<const T*>(grad_y),
                            static_cast<T*>(grad_table), ctx);
  });
}

std::size_t hat_gemm_workspace_bytes(const Shape& s, bool backward, const ExecContext& ctx) {
  return hat_layout(s, backward, ctx.precision, ctx.workspace_limit).total;
}

void forward_hat_gemm(const Shape& s, const void* x, const void* table, void* y, void* ws,
                      std::size_t ws_bytes, const ExecContext& ctx) {
  check_device_index(ctx.device);
  DeviceGuard guard(ctx.device.index);
  const int dev = ctx.device.index;
  require_device_pointer(x, "x", dev);
  require_device_pointer(table, "table", dev);
  require_device_pointer(y, "y", dev);
  require_device_pointer(ws, "workspace", dev);
  if (s.batch == 0) return;
  const HatLayout l = hat_layout(s, false, ctx.precision, ws_bytes);
  cudaStream_t stream = stream_of(ctx);
  const auto* xf = static_cast<const float*>(x);
  const auto* cf = static_cast<const float*>(table);
  auto* yf = static_cast<float*>(y);
  if (ctx.precision == MatmulPrecision::bf16) {
    hat_forward<__nv_bfloat16>(s, xf, cf, yf, aligned256(ws), l, ctx.precision, dev, stream);
  } else {
    hat_forward<float>(s, xf, cf, yf, aligned256(ws), l, ctx.precision, dev, stream);
  }
  launch_add_limits<float>(s, xf, cf, yf, stream);
}

void backward_table_hat_gemm(const Shape& s, const void* x, const void* grad_y, void* grad_table,
                             void* ws, std::size_t ws_bytes, const ExecContext& ctx) {
  check_device_index(ctx.device);
  DeviceGuard guard(ctx.device.index);
  const int dev = ctx.device.index;
  require_device_pointer(x, "x", dev);
  require_device_pointer(grad_y, "grad_y", dev);
  require_device_pointer(grad_table, "grad_table", dev);
  require_device_pointer(ws, "workspace", dev);
  const HatLayout l = hat_layout(s, true, ctx.precision, ws_bytes);
  cudaStream_t stream = stream_of(ctx);
  const auto* xf = static_cast<const float*>(x);
  const auto* gf = static_cast<const float*>(grad_y);
  auto* dc = static_cast<float*>(grad_table);
  if (ctx.precision == MatmulPrecision::bf16) {
    hat_backward_table<__nv_bfloat16>(s, xf, gf, dc, aligned256(ws), l, ctx.precision, dev, stream);
  } else {
    hat_backward_table<float>(s, xf, gf, dc, aligned256(ws), l, ctx.precision, dev, stream);
  }
}

}  // namespace kancore::c0::cuda_backend

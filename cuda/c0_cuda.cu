// CUDA kernels of the C0 layer: straightforward first versions that share the interval lookup
// with the CPU (c0_segment.hpp), plus the cuSPARSE SpMM path for "sparse_matmul_csr".
//
// STATUS: compiled and linked in CI, not yet run on a GPU. The tiled kernels, the deterministic
// table gradient and their verification against the CPU oracle are the CUDA backend issue's work.
//
// Rules kept here: no allocation, no device synchronisation and no host copies inside a call;
// every CUDA / cuSPARSE status is checked and turned into a C++ exception.
#include <cuda_runtime.h>
#include <cusparse.h>

#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "../cpp/src/backend_cuda.hpp"
#include "../cpp/src/c0_segment.hpp"

namespace kancore::c0::cuda_backend {
namespace {

using detail::Grid;
using detail::make_grid;

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("kancore CUDA error in ") + what + ": " +
                             cudaGetErrorString(status));
  }
}

void check(cusparseStatus_t status, const char* what) {
  if (status != CUSPARSE_STATUS_SUCCESS) {
    throw std::runtime_error(std::string("kancore cuSPARSE error in ") + what + ": " +
                             cusparseGetErrorString(status));
  }
}

cudaStream_t stream_of(const ExecContext& ctx) { return static_cast<cudaStream_t>(ctx.stream); }

// One cuSPARSE handle per device, created on first use and kept for the process lifetime.
cusparseHandle_t handle_for(int device) {
  static std::mutex mutex;
  static std::unordered_map<int, cusparseHandle_t> handles;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = handles.find(device);
  if (it != handles.end()) return it->second;
  cusparseHandle_t h = nullptr;
  check(cusparseCreate(&h), "cusparseCreate");
  handles.emplace(device, h);
  return h;
}

constexpr int kThreads = 256;

unsigned blocks_for(std::int64_t n) {
  return static_cast<unsigned>((n + kThreads - 1) / kThreads);
}

template <class T>
__global__ void forward_kernel(std::int64_t N, std::int64_t I, std::int64_t O, std::int64_t K,
                               Grid<T> g, const T* __restrict__ x, const T* __restrict__ table,
                               T* __restrict__ y) {
  const std::int64_t idx = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= N * O) return;
  const std::int64_t b = idx / O, o = idx % O;
  T acc = T(0);
  for (std::int64_t i = 0; i < I; ++i) {
    std::int64_t k;
    T t;
    detail::locate(g, x[b * I + i], k, t);
    const T a = table[(i * K + k) * O + o];
    const T c = table[(i * K + k + 1) * O + o];
    acc += detail::is_finite(t) ? (T(1) - t) * a + t * c : detail::segment_limit(a, c, t);
  }
  y[idx] = acc;
}

template <class T>
__global__ void backward_input_kernel(std::int64_t N, std::int64_t I, std::int64_t O,
                                      std::int64_t K, Grid<T> g, const T* __restrict__ x,
                                      const T* __restrict__ table, const T* __restrict__ grad_y,
                                      T* __restrict__ grad_x) {
  const std::int64_t idx = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= N * I) return;
  const std::int64_t b = idx / I, i = idx % I;
  std::int64_t k;
  T t;
  const T xv = x[idx];
  detail::locate(g, xv, k, t);
  const T* r0 = table + (i * K + k) * O;
  const T* r1 = r0 + O;
  T dot = T(0);
  for (std::int64_t o = 0; o < O; ++o) dot += grad_y[b * O + o] * (r1[o] - r0[o]);
  grad_x[idx] = (xv != xv) ? xv : dot * g.slope;
}

template <class T>
__global__ void backward_table_kernel(std::int64_t N, std::int64_t I, std::int64_t O,
                                      std::int64_t K, Grid<T> g, const T* __restrict__ x,
                                      const T* __restrict__ grad_y, T* __restrict__ grad_table) {
  const std::int64_t idx = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= N * I * O) return;
  const std::int64_t o = idx % O, bi = idx / O, i = bi % I, b = bi / I;
  std::int64_t k;
  T t;
  detail::locate(g, x[b * I + i], k, t);
  const T gy = grad_y[b * O + o];
  atomicAdd(grad_table + (i * K + k) * O + o, (T(1) - t) * gy);
  atomicAdd(grad_table + (i * K + k + 1) * O + o, t * gy);
}

// CSR of the interpolation matrix, built on the device. Non-finite t get zero weights here and
// their limits are added by add_limits_kernel, as on the CPU.
template <class T>
__global__ void build_csr_kernel(std::int64_t N, std::int64_t I, std::int64_t K, Grid<T> g,
                                 const T* __restrict__ x, std::int64_t* __restrict__ row_ptr,
                                 std::int64_t* __restrict__ col_idx, T* __restrict__ values) {
  const std::int64_t idx = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (idx <= N) row_ptr[idx] = idx * 2 * I;
  if (idx >= N * I) return;
  const std::int64_t i = idx % I;
  std::int64_t k;
  T t;
  detail::locate(g, x[idx], k, t);
  const bool finite = detail::is_finite(t);
  col_idx[2 * idx] = i * K + k;
  col_idx[2 * idx + 1] = i * K + k + 1;
  values[2 * idx] = finite ? T(1) - t : T(0);
  values[2 * idx + 1] = finite ? t : T(0);
}

template <class T>
__global__ void add_limits_kernel(std::int64_t N, std::int64_t I, std::int64_t O, std::int64_t K,
                                  Grid<T> g, const T* __restrict__ x, const T* __restrict__ table,
                                  T* __restrict__ y) {
  const std::int64_t idx = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= N * O) return;
  const std::int64_t b = idx / O, o = idx % O;
  for (std::int64_t i = 0; i < I; ++i) {
    std::int64_t k;
    T t;
    detail::locate(g, x[b * I + i], k, t);
    if (detail::is_finite(t)) continue;
    y[idx] += detail::segment_limit(table[(i * K + k) * O + o], table[(i * K + k + 1) * O + o], t);
  }
}

constexpr std::size_t align256(std::size_t n) { return (n + 255) / 256 * 256; }

struct CsrLayout {
  std::size_t row_ptr, col_idx, values, spmm_buffer, total;
};

template <class T>
cudaDataType cuda_type() {
  return sizeof(T) == 4 ? CUDA_R_32F : CUDA_R_64F;
}

// RAII owners of cuSPARSE descriptors, so an exception never leaks one.
struct SpMatGuard {
  cusparseSpMatDescr_t d = nullptr;
  ~SpMatGuard() { if (d) cusparseDestroySpMat(d); }
};
struct DnMatGuard {
  cusparseDnMatDescr_t d = nullptr;
  ~DnMatGuard() { if (d) cusparseDestroyDnMat(d); }
};

struct SpmmDescriptors {
  SpMatGuard a;
  DnMatGuard b, c;
};

template <class T>
void describe(const Shape& s, std::int64_t* row_ptr, std::int64_t* col_idx, T* values,
              const T* table, T* y, SpmmDescriptors& d) {
  const std::int64_t rows = s.batch, cols = s.in * s.num_control_points, nnz = 2 * s.batch * s.in;
  check(cusparseCreateCsr(&d.a.d, rows, cols, nnz, row_ptr, col_idx, values, CUSPARSE_INDEX_64I,
                          CUSPARSE_INDEX_64I, CUSPARSE_INDEX_BASE_ZERO, cuda_type<T>()),
        "cusparseCreateCsr");
  check(cusparseCreateDnMat(&d.b.d, cols, s.out, s.out, const_cast<T*>(table), cuda_type<T>(),
                            CUSPARSE_ORDER_ROW),
        "cusparseCreateDnMat(table)");
  check(cusparseCreateDnMat(&d.c.d, rows, s.out, s.out, y, cuda_type<T>(), CUSPARSE_ORDER_ROW),
        "cusparseCreateDnMat(y)");
}

template <class T>
std::size_t spmm_buffer_bytes(const Shape& s, int device) {
  SpmmDescriptors d;
  describe<T>(s, nullptr, nullptr, nullptr, nullptr, nullptr, d);
  const T one = T(1), zero = T(0);
  std::size_t bytes = 0;
  check(cusparseSpMM_bufferSize(handle_for(device), CUSPARSE_OPERATION_NON_TRANSPOSE,
                                CUSPARSE_OPERATION_NON_TRANSPOSE, &one, d.a.d, d.b.d, &zero, d.c.d,
                                cuda_type<T>(), CUSPARSE_SPMM_ALG_DEFAULT, &bytes),
        "cusparseSpMM_bufferSize");
  return bytes;
}

template <class T>
CsrLayout csr_layout(const Shape& s, int device) {
  const std::size_t nnz = 2 * static_cast<std::size_t>(s.batch) * static_cast<std::size_t>(s.in);
  CsrLayout l{};
  std::size_t at = 0;
  l.row_ptr = at;     at += align256((static_cast<std::size_t>(s.batch) + 1) * sizeof(std::int64_t));
  l.col_idx = at;     at += align256(nnz * sizeof(std::int64_t));
  l.values = at;      at += align256(nnz * sizeof(T));
  l.spmm_buffer = at; at += align256(spmm_buffer_bytes<T>(s, device));
  l.total = at;
  return l;
}

int current_device(const ExecContext& ctx) { return ctx.device.index; }

template <class T>
void forward_typed(const Shape& s, Impl impl, const T* x, const T* table, T* y, void* ws,
                   std::size_t ws_bytes, const ExecContext& ctx) {
  if (s.batch == 0) return;
  check(cudaSetDevice(ctx.device.index), "cudaSetDevice");
  const Grid<T> g = make_grid<T>(s.num_control_points, s.spline_width);
  const std::int64_t N = s.batch, I = s.in, O = s.out, K = s.num_control_points;
  cudaStream_t stream = stream_of(ctx);
  if (impl == Impl::gather) {
    forward_kernel<T><<<blocks_for(N * O), kThreads, 0, stream>>>(N, I, O, K, g, x, table, y);
    check(cudaGetLastError(), "forward_kernel launch");
    return;
  }
  const CsrLayout l = csr_layout<T>(s, current_device(ctx));
  if (ws == nullptr || ws_bytes < l.total) {
    throw std::invalid_argument("kancore: expected a CUDA workspace of at least " +
                                std::to_string(l.total) + " bytes");
  }
  char* base = static_cast<char*>(ws);
  auto* row_ptr = reinterpret_cast<std::int64_t*>(base + l.row_ptr);
  auto* col_idx = reinterpret_cast<std::int64_t*>(base + l.col_idx);
  auto* values = reinterpret_cast<T*>(base + l.values);
  build_csr_kernel<T><<<blocks_for(N * I + 1), kThreads, 0, stream>>>(N, I, K, g, x, row_ptr,
                                                                      col_idx, values);
  check(cudaGetLastError(), "build_csr_kernel launch");
  SpmmDescriptors d;
  describe<T>(s, row_ptr, col_idx, values, table, y, d);
  cusparseHandle_t h = handle_for(current_device(ctx));
  check(cusparseSetStream(h, stream), "cusparseSetStream");
  const T one = T(1), zero = T(0);
  check(cusparseSpMM(h, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_NON_TRANSPOSE, &one,
                     d.a.d, d.b.d, &zero, d.c.d, cuda_type<T>(), CUSPARSE_SPMM_ALG_DEFAULT,
                     base + l.spmm_buffer),
        "cusparseSpMM");
  add_limits_kernel<T><<<blocks_for(N * O), kThreads, 0, stream>>>(N, I, O, K, g, x, table, y);
  check(cudaGetLastError(), "add_limits_kernel launch");
}

template <class T>
void backward_input_typed(const Shape& s, const T* x, const T* table, const T* grad_y, T* grad_x,
                          const ExecContext& ctx) {
  if (s.batch == 0) return;
  check(cudaSetDevice(ctx.device.index), "cudaSetDevice");
  const Grid<T> g = make_grid<T>(s.num_control_points, s.spline_width);
  const std::int64_t N = s.batch, I = s.in, O = s.out, K = s.num_control_points;
  backward_input_kernel<T><<<blocks_for(N * I), kThreads, 0, stream_of(ctx)>>>(
      N, I, O, K, g, x, table, grad_y, grad_x);
  check(cudaGetLastError(), "backward_input_kernel launch");
}

template <class T>
void backward_table_typed(const Shape& s, const T* x, const T* grad_y, T* grad_table,
                          const ExecContext& ctx) {
  check(cudaSetDevice(ctx.device.index), "cudaSetDevice");
  const Grid<T> g = make_grid<T>(s.num_control_points, s.spline_width);
  const std::int64_t N = s.batch, I = s.in, O = s.out, K = s.num_control_points;
  check(cudaMemsetAsync(grad_table, 0, sizeof(T) * I * K * O, stream_of(ctx)), "cudaMemsetAsync");
  if (N == 0) return;
  backward_table_kernel<T><<<blocks_for(N * I * O), kThreads, 0, stream_of(ctx)>>>(
      N, I, O, K, g, x, grad_y, grad_table);
  check(cudaGetLastError(), "backward_table_kernel launch");
}

}  // namespace

std::size_t forward_workspace_bytes(const Shape& s, DType dtype, Impl impl) {
  if (impl == Impl::gather) return 0;
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  return dtype == DType::float32 ? csr_layout<float>(s, device).total
                                 : csr_layout<double>(s, device).total;
}

std::size_t backward_workspace_bytes(const Shape&, DType, Impl) { return 0; }

void forward(const Shape& s, DType dtype, Impl impl, const void* x, const void* table, void* y,
             void* ws, std::size_t ws_bytes, const ExecContext& ctx) {
  if (dtype == DType::float32) {
    forward_typed<float>(s, impl, static_cast<const float*>(x), static_cast<const float*>(table),
                         static_cast<float*>(y), ws, ws_bytes, ctx);
  } else {
    forward_typed<double>(s, impl, static_cast<const double*>(x), static_cast<const double*>(table),
                          static_cast<double*>(y), ws, ws_bytes, ctx);
  }
}

void backward_input(const Shape& s, DType dtype, Impl, const void* x, const void* table,
                    const void* grad_y, void* grad_x, void*, std::size_t, const ExecContext& ctx) {
  if (dtype == DType::float32) {
    backward_input_typed<float>(s, static_cast<const float*>(x), static_cast<const float*>(table),
                                static_cast<const float*>(grad_y), static_cast<float*>(grad_x), ctx);
  } else {
    backward_input_typed<double>(s, static_cast<const double*>(x),
                                 static_cast<const double*>(table),
                                 static_cast<const double*>(grad_y), static_cast<double*>(grad_x),
                                 ctx);
  }
}

void backward_table(const Shape& s, DType dtype, Impl, const void* x, const void* grad_y,
                    void* grad_table, void*, std::size_t, const ExecContext& ctx) {
  if (dtype == DType::float32) {
    backward_table_typed<float>(s, static_cast<const float*>(x), static_cast<const float*>(grad_y),
                                static_cast<float*>(grad_table), ctx);
  } else {
    backward_table_typed<double>(s, static_cast<const double*>(x),
                                 static_cast<const double*>(grad_y),
                                 static_cast<double*>(grad_table), ctx);
  }
}

}  // namespace kancore::c0::cuda_backend

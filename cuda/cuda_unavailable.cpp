// The CUDA entry points of the CPU-only library (kancore::kancore): each call says so clearly.
// The CUDA-enabled library (kancore::kancore_cuda) links cuda/cuda_available.cpp and the .cu
// kernels instead.
#include <stdexcept>

#include "../cpp/src/backend_cuda.hpp"
#include "../cpp/src/bspline_backend_cuda.hpp"
#include "kancore/types.hpp"

namespace kancore {
bool built_with_cuda() noexcept { return false; }
}  // namespace kancore

namespace kancore::c0::cuda_backend {
namespace {
[[noreturn]] void unavailable() {
  throw std::runtime_error(
      "kancore: this build has no CUDA backend (rebuild with a CUDA compiler, KANCORE_CUDA=ON)");
}
}  // namespace

std::size_t forward_workspace_bytes(const Shape&, DType, Impl, Device) { unavailable(); }
std::size_t backward_workspace_bytes(const Shape&, DType, Impl, Device) { unavailable(); }
void forward(const Shape&, DType, Impl, const void*, const void*, void*, void*, std::size_t,
             const ExecContext&) { unavailable(); }
void backward_input(const Shape&, DType, Impl, const void*, const void*, const void*, void*, void*,
                    std::size_t, const ExecContext&) { unavailable(); }
void backward_table(const Shape&, DType, Impl, const void*, const void*, void*, void*, std::size_t,
                    const ExecContext&) { unavailable(); }

std::size_t hat_gemm_workspace_bytes(const Shape&, bool, const ExecContext&) { unavailable(); }
void forward_hat_gemm(const Shape&, const void*, const void*, void*, void*, std::size_t,
                      const ExecContext&) { unavailable(); }
void backward_table_hat_gemm(const Shape&, const void*, const void*, void*, void*, std::size_t,
                             const ExecContext&) { unavailable(); }

}  // namespace kancore::c0::cuda_backend

namespace kancore::bspline::cuda_backend {
namespace {
[[noreturn]] void unavailable() {
  throw std::runtime_error(
      "kancore: this build has no CUDA backend (rebuild with a CUDA compiler, KANCORE_CUDA=ON)");
}
}  // namespace

std::size_t forward_workspace_bytes(const Shape&, DType) { unavailable(); }
std::size_t backward_workspace_bytes(const Shape&, DType) { unavailable(); }
void forward(const Shape&, DType, const void*, const Params&, void*, void*, std::size_t,
             const ExecContext&) { unavailable(); }
void backward(const Shape&, DType, const void*, const Params&, const void*, const Grads&, void*,
              std::size_t, const ExecContext&) { unavailable(); }

}  // namespace kancore::bspline::cuda_backend

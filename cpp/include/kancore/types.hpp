// Basic vocabulary shared by every kancore kernel: element types, devices and execution context.
// CUDA-free: a C++ program includes this without the CUDA toolkit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace kancore {

enum class DType : int { float32 = 0, float64 = 1 };

enum class DeviceType : int { cpu = 0, cuda = 1 };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
};

// How float32 layers may multiply, as torch.get_float32_matmul_precision() chooses for nn.Linear:
// `highest` is the exact float32 path (CUDA cores; kanditioned parity). `tf32` and `bf16` let the
// C0 layer's forward and control-point gradient run as GEMMs over the hat basis Phi (batch x in*K,
// two non-zeros per (b, i)) with Phi and the other operand rounded to TF32 (10 mantissa bits) or
// BF16 (7 bits) and float32 accumulation: tensor cores on CUDA (cuBLAS); on the CPU the same
// chunked algorithm through Eigen, the oracle the device is checked against (slower than the
// exact CPU path). The input gradient stays exact. float64 layers ignore it. docs/precision.md.
enum class MatmulPrecision : int { highest = 0, tf32 = 1, bf16 = 2 };

// Where a kernel runs. For CUDA, `stream` is a cudaStream_t (nullptr: the legacy default stream)
// and every pointer passed with this context must be device memory of `device.index`.
// `deterministic`: ask for results that are bitwise identical run to run. CPU kernels always are,
// and so are the CUDA forward and input-gradient kernels; on CUDA it makes the control-point
// gradient use a fixed-order reduction (no float atomics), which can be slower when the batch is
// large and the layer small. Default off (fastest path).
// `precision`: see MatmulPrecision. `workspace_limit`: the most workspace the rounded (tf32/bf16)
// paths ask for; they then process the batch in chunks of rows that fit (at least one row).
struct ExecContext {
  Device device{};
  void* stream = nullptr;
  bool deterministic = false;
  MatmulPrecision precision = MatmulPrecision::highest;
  std::size_t workspace_limit = std::size_t{256} << 20;
};

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::float64; };

std::string to_string(DType dtype);
std::string to_string(DeviceType device);
std::string to_string(MatmulPrecision precision);  // "highest", "tf32", "bf16"
// The inverse of to_string; throws std::invalid_argument for any other name.
MatmulPrecision matmul_precision_from_name(const std::string& name);

// True when the linked kancore library contains the CUDA backend (kancore::kancore_cuda), false
// for the CPU-only kancore::kancore.
bool built_with_cuda() noexcept;

}  // namespace kancore

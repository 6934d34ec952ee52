// Basic vocabulary shared by every kancore kernel: element types, devices and execution context.
// CUDA-free: a C++ program includes this without the CUDA toolkit.
#pragma once

#include <cstdint>
#include <string>

namespace kancore {

enum class DType : int { float32 = 0, float64 = 1 };

enum class DeviceType : int { cpu = 0, cuda = 1 };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
};

// Where a kernel runs. For CUDA, `stream` is a cudaStream_t (nullptr: the legacy default stream)
// and every pointer passed with this context must be device memory of `device.index`.
// `deterministic`: ask for results that are bitwise identical run to run. CPU kernels always are,
// and so are the CUDA forward and input-gradient kernels; on CUDA it makes the control-point
// gradient use a fixed-order reduction (no float atomics), which can be slower when the batch is
// large and the layer small. Default off (fastest path).
struct ExecContext {
  Device device{};
  void* stream = nullptr;
  bool deterministic = false;
};

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::float64; };

std::string to_string(DType dtype);
std::string to_string(DeviceType device);

// True when the linked kancore library contains the CUDA backend (kancore::kancore_cuda), false
// for the CPU-only kancore::kancore.
bool built_with_cuda() noexcept;

}  // namespace kancore

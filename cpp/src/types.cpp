#include "kancore/types.hpp"

namespace kancore {

std::string to_string(DType dtype) {
  switch (dtype) {
    case DType::float32: return "float32";
    case DType::float64: return "float64";
  }
  return "unknown dtype";
}

std::string to_string(DeviceType device) {
  return device == DeviceType::cuda ? "cuda" : "cpu";
}

bool built_with_cuda() noexcept {
#if KANCORE_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace kancore

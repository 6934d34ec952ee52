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

// built_with_cuda() is defined by the backend source set linked into the library
// (cuda/cuda_available.cpp or cuda/cuda_unavailable.cpp), so this file is device-agnostic.

}  // namespace kancore

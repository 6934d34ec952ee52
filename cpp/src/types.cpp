#include "kancore/types.hpp"

#include <stdexcept>

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

std::string to_string(MatmulPrecision precision) {
  switch (precision) {
    case MatmulPrecision::highest: return "highest";
    case MatmulPrecision::tf32: return "tf32";
    case MatmulPrecision::bf16: return "bf16";
  }
  return "unknown precision";
}

MatmulPrecision matmul_precision_from_name(const std::string& name) {
  if (name == "highest") return MatmulPrecision::highest;
  if (name == "tf32") return MatmulPrecision::tf32;
  if (name == "bf16") return MatmulPrecision::bf16;
  throw std::invalid_argument("kancore: expected precision in {highest, tf32, bf16}, got '" + name + "'");
}

// built_with_cuda() is defined by the backend source set linked into the library
// (cuda/cuda_available.cpp or cuda/cuda_unavailable.cpp), so this file is device-agnostic.

}  // namespace kancore

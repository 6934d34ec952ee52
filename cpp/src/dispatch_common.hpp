// Validation helpers shared by the dispatchers (internal header): one wording for every
// "expected X, got Y" error, thrown as std::invalid_argument (ValueError in Python).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kancore/types.hpp"

namespace kancore::dispatch {

[[noreturn]] inline void fail(const std::string& what) { throw std::invalid_argument("kancore: " + what); }

inline std::size_t elem_size(DType dtype) {
  switch (dtype) {
    case DType::float32: return 4;
    case DType::float64: return 8;
  }
  fail("expected dtype float32 or float64, got code " + std::to_string(static_cast<int>(dtype)));
}

inline void require(const void* p, const char* name, std::int64_t elements) {
  if (elements > 0 && p == nullptr) fail(std::string("expected a buffer for ") + name + ", got null");
}

inline void check_workspace(std::size_t need, const void* ws, std::size_t ws_bytes) {
  if (need == 0) return;
  if (ws == nullptr || ws_bytes < need) {
    fail("expected a workspace of at least " + std::to_string(need) + " bytes, got " +
         std::to_string(ws == nullptr ? 0 : ws_bytes));
  }
}

// True for CUDA, false for the CPU; any other device type is an error.
inline bool on_cuda(const Device& device) {
  if (device.type == DeviceType::cuda) return true;
  if (device.type != DeviceType::cpu) fail("expected device cpu or cuda");
  return false;
}

// Calls fn(T{}) with T the C++ type of dtype.
template <class Fn>
void by_dtype(DType dtype, Fn&& fn) {
  if (dtype == DType::float32) {
    fn(float{});
  } else if (dtype == DType::float64) {
    fn(double{});
  } else {
    elem_size(dtype);  // throws
  }
}

}  // namespace kancore::dispatch

// Error checking, device guards and pointer checks shared by the CUDA translation units
// (internal header; host code only).
#pragma once

#include <cuda_runtime.h>
#include <cusparse.h>

#include <stdexcept>
#include <string>

#include "kancore/types.hpp"

namespace kancore::cuda_common {

// ---- errors, devices, pointers -------------------------------------------------------------

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("kancore CUDA error in ") + what + ": " +
                             cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
  }
}

inline void check(cusparseStatus_t status, const char* what) {
  if (status != CUSPARSE_STATUS_SUCCESS) {
    throw std::runtime_error(std::string("kancore cuSPARSE error in ") + what + ": " +
                             cusparseGetErrorString(status));
  }
}

inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

inline cudaStream_t stream_of(const ExecContext& ctx) { return static_cast<cudaStream_t>(ctx.stream); }

// Makes ctx's device current for the call and restores the caller's afterwards (a library
// must not leave the thread on another device).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() {
    int now = previous_;
    if (cudaGetDevice(&now) == cudaSuccess && now != previous_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

inline void check_device_index(const Device& device) {
  int count = 0;
  check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (device.index < 0 || device.index >= count) {
    throw std::invalid_argument("kancore: expected a CUDA device index in [0, " +
                                std::to_string(count) + "), got " + std::to_string(device.index));
  }
}

// A host pointer handed to a kernel would fault the device (and poison the context), so every
// buffer is checked to be device (or managed) memory of ctx's device first. Host-only call.
inline void require_device_pointer(const void* p, const char* name, int device) {
  if (p == nullptr) return;  // the dispatcher already rejected null buffers that are needed
  cudaPointerAttributes attr{};
  check(cudaPointerGetAttributes(&attr, p), "cudaPointerGetAttributes");
  const bool on_device = attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
  if (!on_device) {
    throw std::invalid_argument(std::string("kancore: expected ") + name + " in memory of cuda:" +
                                std::to_string(device) + ", got " +
                                (attr.type == cudaMemoryTypeHost ? "pinned host" : "host") +
                                " memory");
  }
  if (attr.type == cudaMemoryTypeDevice && attr.device != device) {
    throw std::invalid_argument(std::string("kancore: expected ") + name + " on cuda:" +
                                std::to_string(device) + ", got cuda:" +
                                std::to_string(attr.device));
  }
}

}  // namespace kancore::cuda_common

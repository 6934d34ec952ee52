// Device-side helpers shared by the CUDA GoogleTests (internal to tests/cpp): why a test skips,
// a device buffer with guard zones and poisoned contents, and a CUDA execution context.
#pragma once

#if KANCORE_TEST_CUDA
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <new>
#include <string>
#include <vector>

#include "kancore/types.hpp"

namespace kctest {

using kancore::Device;
using kancore::DeviceType;
using kancore::ExecContext;

// Empty when a CUDA device can run the tests, else the reason to skip.
inline std::string cuda_skip_reason() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) return std::string("no usable CUDA device: ") + cudaGetErrorString(err);
  if (count == 0) return "no CUDA device present";
  return "";
}

#define KCTEST_REQUIRE_CUDA()                                    \
  do {                                                           \
    const std::string reason = cuda_skip_reason();               \
    if (!reason.empty()) GTEST_SKIP() << reason;                 \
  } while (0)

#define CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call

// Device buffer with kGuard sentinel bytes on each side (0x5A), contents poisoned with 0xFF
// bytes (a NaN for float and double) so unwritten outputs show up.
class DeviceBuffer {
 public:
  static constexpr std::size_t kGuard = 256;
  explicit DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
    if (cudaMalloc(&base_, bytes_ + 2 * kGuard) != cudaSuccess) throw std::bad_alloc();
    cudaMemset(base_, 0x5A, bytes_ + 2 * kGuard);
    cudaMemset(data(), 0xFF, bytes_);
  }
  ~DeviceBuffer() { cudaFree(base_); }
  DeviceBuffer(DeviceBuffer&& other) noexcept : bytes_(other.bytes_), base_(other.base_) {
    other.base_ = nullptr;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(DeviceBuffer&&) = delete;
  void* data() { return static_cast<char*>(base_) + kGuard; }
  std::size_t bytes() const { return bytes_; }
  template <class T>
  T* as() { return static_cast<T*>(data()); }
  template <class T>
  void upload(const std::vector<T>& v) {
    ASSERT_EQ(v.size() * sizeof(T), bytes_);
    if (bytes_) {
      ASSERT_EQ(cudaMemcpy(data(), v.data(), bytes_, cudaMemcpyHostToDevice), cudaSuccess);
    }
  }
  template <class T>
  std::vector<T> download() {
    std::vector<T> v(bytes_ / sizeof(T));
    if (bytes_) {
      EXPECT_EQ(cudaMemcpy(v.data(), data(), bytes_, cudaMemcpyDeviceToHost), cudaSuccess);
    }
    return v;
  }
  bool guards_intact() {
    std::vector<unsigned char> h(bytes_ + 2 * kGuard);
    if (cudaMemcpy(h.data(), base_, h.size(), cudaMemcpyDeviceToHost) != cudaSuccess) return false;
    for (std::size_t j = 0; j < kGuard; ++j)
      if (h[j] != 0x5A || h[kGuard + bytes_ + j] != 0x5A) return false;
    return true;
  }

 private:
  std::size_t bytes_;
  void* base_ = nullptr;
};

template <class T>
DeviceBuffer device_copy(const std::vector<T>& v) {
  DeviceBuffer b(v.size() * sizeof(T));
  b.upload(v);
  return b;
}

inline ExecContext cuda_ctx(cudaStream_t stream = nullptr, bool deterministic = false) {
  ExecContext ctx;
  ctx.device = Device{DeviceType::cuda, 0};
  ctx.stream = stream;
  ctx.deterministic = deterministic;
  return ctx;
}

}  // namespace kctest

#endif  // KANCORE_TEST_CUDA

// Declarations and small helpers shared by the binding files of kancore._core.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kancore/types.hpp"

namespace kancore::python {

void register_c0(pybind11::module_& m);
void register_c0_grid(pybind11::module_& m);
void register_bspline(pybind11::module_& m);
void register_regularizers(pybind11::module_& m);
void register_network(pybind11::module_& m);
void register_threads(pybind11::module_& m);

// The dtype named by kancore/_ops.py ("float32" or "float64").
inline DType dtype_named(const std::string& name) {
  if (name == "float32") return DType::float32;
  if (name == "float64") return DType::float64;
  throw std::invalid_argument("kancore: expected dtype float32 or float64, got " + name);
}

// The device named by kancore/_ops.py ("cpu" or "cuda"), index 0.
inline Device device_named(const std::string& name) {
  if (name == "cpu") return Device{DeviceType::cpu, 0};
  if (name == "cuda") return Device{DeviceType::cuda, 0};
  throw std::invalid_argument("kancore: expected device cpu or cuda, got " + name);
}

// Where a kernel runs: device "cpu" or "cuda", its index, and a cudaStream_t as an integer.
inline ExecContext context_named(const std::string& device, int index, std::uintptr_t stream) {
  ExecContext ctx;
  ctx.device = device_named(device);
  ctx.device.index = index;
  ctx.stream = reinterpret_cast<void*>(stream);
  return ctx;
}

// Arrays cross as raw addresses (torch's data_ptr() or numpy's __array_interface__); the
// Python side has checked shape, dtype, device and contiguity.
template <class P>
P* ptr(std::uintptr_t address) {
  return reinterpret_cast<P*>(address);
}

}  // namespace kancore::python

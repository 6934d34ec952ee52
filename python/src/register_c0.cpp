// Bindings of the C0 layer kernels. Arrays cross as raw addresses (from torch's data_ptr() or
// numpy's __array_interface__), so one binary serves every torch version; kancore/_ops.py is the
// only caller and checks shapes, dtypes, devices and contiguity before calling.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "bindings.hpp"
#include "kancore/c0_layer.hpp"

namespace py = pybind11;

namespace kancore::python {
namespace {

// What every kernel call takes besides its arrays, parsed once.
struct Call {
  c0::Shape shape;
  DType dtype;
  c0::Impl impl;
  void* workspace;
  std::size_t workspace_bytes;
  ExecContext ctx;
};

Call parse_call(std::int64_t batch, std::int64_t in, std::int64_t out, std::int64_t K, double width,
                const std::string& dtype, const std::string& impl, std::uintptr_t ws,
                std::size_t ws_bytes, const std::string& device, int device_index,
                std::uintptr_t stream) {
  return Call{c0::Shape{batch, in, out, K, width}, dtype_named(dtype), c0::impl_from_name(impl),
              ptr<void>(ws), ws_bytes, context_named(device, device_index, stream)};
}

// The shared trailing arguments, in parse_call's order.
#define KANCORE_CALL_ARGS                                                                     \
  py::arg("batch"), py::arg("in_features"), py::arg("out_features"),                        \
      py::arg("num_control_points"), py::arg("spline_width"), py::arg("dtype"), py::arg("impl"), \
      py::arg("workspace"), py::arg("workspace_bytes"), py::arg("device"),                   \
      py::arg("device_index"), py::arg("stream")

}  // namespace

void register_c0(py::module_& m) {
  m.def(
      "c0_workspace_bytes",
      [](std::int64_t batch, std::int64_t in, std::int64_t out, std::int64_t K, double width,
         const std::string& dtype, const std::string& impl, const std::string& device,
         bool backward, int device_index, const std::string& precision, std::size_t workspace_limit) {
        const c0::Shape s{batch, in, out, K, width};
        ExecContext ctx = context_named(device, device_index, 0);
        ctx.precision = matmul_precision_from_name(precision);
        ctx.workspace_limit = workspace_limit;
        const auto im = c0::impl_from_name(impl);
        return backward ? c0::backward_workspace_bytes(s, dtype_named(dtype), im, ctx)
                        : c0::forward_workspace_bytes(s, dtype_named(dtype), im, ctx);
      },
      py::arg("batch"), py::arg("in_features"), py::arg("out_features"),
      py::arg("num_control_points"), py::arg("spline_width"), py::arg("dtype"), py::arg("impl"),
      py::arg("device"), py::arg("backward"), py::arg("device_index") = 0,
      py::arg("precision") = "highest", py::arg("workspace_limit") = std::size_t{256} << 20);

  m.def(
      "c0_forward",
      [](std::uintptr_t x, std::uintptr_t table, std::uintptr_t y, std::int64_t batch,
         std::int64_t in, std::int64_t out, std::int64_t K, double width,
         const std::string& dtype, const std::string& impl, std::uintptr_t ws,
         std::size_t ws_bytes, const std::string& device, int device_index,
         std::uintptr_t stream, const std::string& precision, std::size_t workspace_limit) {
        Call c = parse_call(batch, in, out, K, width, dtype, impl, ws, ws_bytes, device,
                            device_index, stream);
        c.ctx.precision = matmul_precision_from_name(precision);
        c.ctx.workspace_limit = workspace_limit;
        py::gil_scoped_release release;
        c0::forward(c.shape, c.dtype, c.impl, ptr<const void>(x), ptr<const void>(table),
                    ptr<void>(y), c.workspace, c.workspace_bytes, c.ctx);
      },
      "y = layer(x); overwrites y. precision: highest (exact), tf32 or bf16 (the rounded GEMM "
      "path for float32; kancore/types.hpp, MatmulPrecision).",
      py::arg("x"), py::arg("table"), py::arg("y"), KANCORE_CALL_ARGS,
      py::arg("precision") = "highest", py::arg("workspace_limit") = std::size_t{256} << 20);

  m.def(
      "c0_backward",
      [](std::uintptr_t x, std::uintptr_t table, std::uintptr_t grad_y, std::uintptr_t grad_x,
         std::uintptr_t grad_table, std::int64_t batch, std::int64_t in, std::int64_t out,
         std::int64_t K, double width, const std::string& dtype, const std::string& impl,
         std::uintptr_t ws, std::size_t ws_bytes, const std::string& device, int device_index,
         std::uintptr_t stream, bool deterministic, const std::string& precision,
         std::size_t workspace_limit) {
        Call c = parse_call(batch, in, out, K, width, dtype, impl, ws, ws_bytes, device,
                            device_index, stream);
        c.ctx.deterministic = deterministic;
        c.ctx.precision = matmul_precision_from_name(precision);
        c.ctx.workspace_limit = workspace_limit;
        py::gil_scoped_release release;
        c0::backward(c.shape, c.dtype, c.impl, ptr<const void>(x), ptr<const void>(table),
                     ptr<const void>(grad_y), ptr<void>(grad_x), ptr<void>(grad_table),
                     c.workspace, c.workspace_bytes, c.ctx);
      },
      "Both gradients; a zero address skips that gradient. deterministic: bitwise repeatable "
      "grad_table on CUDA (the CPU always is).",
      py::arg("x"), py::arg("table"), py::arg("grad_y"), py::arg("grad_x"), py::arg("grad_table"),
      KANCORE_CALL_ARGS, py::arg("deterministic") = false, py::arg("precision") = "highest",
      py::arg("workspace_limit") = std::size_t{256} << 20);
}

#undef KANCORE_CALL_ARGS

}  // namespace kancore::python

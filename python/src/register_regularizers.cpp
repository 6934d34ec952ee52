// Bindings of the edge-scale regulariser (pykan's sample-based loss). Arrays cross as raw
// addresses (0 = not given); kancore/_ops.py checks shapes, dtypes and contiguity before calling.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "bindings.hpp"
#include "kancore/regularizers.hpp"

namespace py = pybind11;

namespace kancore::python {

void register_regularizers(py::module_& m) {
  m.def(
      "edge_scale_c0",
      [](std::uintptr_t x, std::uintptr_t table, std::uintptr_t grad_x, std::uintptr_t grad_table,
         std::uintptr_t scales, std::int64_t batch, std::int64_t in, std::int64_t out, std::int64_t K,
         double W, const std::string& dtype, double lamb_l1, double lamb_entropy, double lamb_coef,
         double lamb_coefdiff, const std::string& device) {
        const c0::Shape s{batch, in, out, K, W};
        const reg::EdgeScaleOptions opt{lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff};
        const reg::EdgeScaleC0Outputs outs{ptr<void>(grad_x), ptr<void>(grad_table), ptr<void>(scales)};
        const DType dt = dtype_named(dtype);
        const ExecContext ctx{device_named(device), nullptr};
        py::gil_scoped_release release;
        return reg::edge_scale_c0(s, dt, ptr<const void>(x), ptr<const void>(table), opt, outs, ctx);
      },
      "pykan's edge-scale loss of a C0 layer; writes grad_x, grad_table, scales (A) where != 0.");

  m.def(
      "edge_scale_bspline",
      [](std::uintptr_t x, std::uintptr_t knots, std::uintptr_t base_weight,
         std::uintptr_t spline_weight, std::uintptr_t spline_scaler, std::uintptr_t gx,
         std::uintptr_t gbase, std::uintptr_t gspline, std::uintptr_t gscaler, std::uintptr_t scales,
         std::int64_t batch, std::int64_t in, std::int64_t out, std::int64_t G, std::int64_t k,
         const std::string& dtype, double lamb_l1, double lamb_entropy, double lamb_coef,
         double lamb_coefdiff, const std::string& device) {
        const bspline::Shape s{batch, in, out, G, k};
        const bspline::Params p{ptr<const void>(knots), ptr<const void>(base_weight),
                                ptr<const void>(spline_weight), ptr<const void>(spline_scaler)};
        const bspline::Grads g{ptr<void>(gx), ptr<void>(gbase), ptr<void>(gspline), ptr<void>(gscaler)};
        const reg::EdgeScaleOptions opt{lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff};
        const DType dt = dtype_named(dtype);
        const ExecContext ctx{device_named(device), nullptr};
        py::gil_scoped_release release;
        return reg::edge_scale_bspline(s, dt, ptr<const void>(x), p, opt, g, ptr<void>(scales), ctx);
      },
      "pykan's edge-scale loss of a B-spline layer; a zero address skips a parameter or an output.");
}

}  // namespace kancore::python

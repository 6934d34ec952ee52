// Bindings of the B-spline layer, its grid adaptation and the regularisation losses. Arrays
// cross as raw addresses; kancore/_ops.py checks shapes, dtypes and contiguity before calling.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "bindings.hpp"
#include "kancore/bspline_layer.hpp"
#include "kancore/regularizers.hpp"

namespace py = pybind11;

namespace kancore::python {

void register_bspline(py::module_& m) {
  using bspline::Shape;
  m.def(
      "bspline_workspace_bytes",
      [](std::int64_t batch, std::int64_t in, std::int64_t out, std::int64_t G, std::int64_t k,
         const std::string& dtype, const std::string& device, bool backward, int device_index) {
        const Shape s{batch, in, out, G, k};
        const Device dev = context_named(device, device_index, 0).device;
        return backward ? bspline::backward_workspace_bytes(s, dtype_named(dtype), dev)
                        : bspline::forward_workspace_bytes(s, dtype_named(dtype), dev);
      },
      py::arg("batch"), py::arg("in_features"), py::arg("out_features"), py::arg("grid_size"),
      py::arg("spline_order"), py::arg("dtype"), py::arg("device"), py::arg("backward"),
      py::arg("device_index") = 0);

  m.def(
      "bspline_forward",
      [](std::uintptr_t x, std::uintptr_t knots, std::uintptr_t base_weight,
         std::uintptr_t spline_weight, std::uintptr_t spline_scaler, std::uintptr_t y,
         std::int64_t batch, std::int64_t in, std::int64_t out, std::int64_t G, std::int64_t k,
         const std::string& dtype, std::uintptr_t ws, std::size_t ws_bytes,
         const std::string& device, int device_index, std::uintptr_t stream) {
        const Shape s{batch, in, out, G, k};
        const bspline::Params p{ptr<const void>(knots), ptr<const void>(base_weight),
                                ptr<const void>(spline_weight), ptr<const void>(spline_scaler)};
        const DType dt = dtype_named(dtype);
        const ExecContext ctx = context_named(device, device_index, stream);
        py::gil_scoped_release release;
        bspline::forward(s, dt, ptr<const void>(x), p, ptr<void>(y), ptr<void>(ws), ws_bytes, ctx);
      },
      "y = layer(x); a zero address for base_weight or spline_scaler means none.");

  m.def(
      "bspline_backward",
      [](std::uintptr_t x, std::uintptr_t knots, std::uintptr_t base_weight,
         std::uintptr_t spline_weight, std::uintptr_t spline_scaler, std::uintptr_t grad_y,
         std::uintptr_t gx, std::uintptr_t gbase, std::uintptr_t gspline, std::uintptr_t gscaler,
         std::int64_t batch, std::int64_t in, std::int64_t out, std::int64_t G, std::int64_t k,
         const std::string& dtype, std::uintptr_t ws, std::size_t ws_bytes,
         const std::string& device, int device_index, std::uintptr_t stream) {
        const Shape s{batch, in, out, G, k};
        const bspline::Params p{ptr<const void>(knots), ptr<const void>(base_weight),
                                ptr<const void>(spline_weight), ptr<const void>(spline_scaler)};
        const bspline::Grads g{ptr<void>(gx), ptr<void>(gbase), ptr<void>(gspline), ptr<void>(gscaler)};
        const DType dt = dtype_named(dtype);
        const ExecContext ctx = context_named(device, device_index, stream);
        py::gil_scoped_release release;
        bspline::backward(s, dt, ptr<const void>(x), p, ptr<const void>(grad_y), g, ptr<void>(ws),
                          ws_bytes, ctx);
      },
      "Gradients; a zero address skips one.");

  m.def(
      "bspline_basis",
      [](std::uintptr_t knots, std::int64_t G, std::int64_t k, std::uintptr_t xs, std::int64_t n,
         std::uintptr_t values, std::uintptr_t derivs) {
        // Dense (n, G+k) float64 basis (and derivatives) of one feature, for inspection and tests.
        const double* t = ptr<const double>(knots);
        const double* xv = ptr<const double>(xs);
        double* v = ptr<double>(values);
        double* d = ptr<double>(derivs);
        const std::int64_t C = G + k;
        double vb[bspline::kMaxOrder + 1], db[bspline::kMaxOrder + 1];
        for (std::int64_t j = 0; j < n; ++j) {
          const std::int64_t f = bspline::basis(t, G, k, xv[j], vb, d ? db : nullptr);
          for (std::int64_t c = 0; c < C; ++c) {
            v[j * C + c] = 0.0;
            if (d) d[j * C + c] = 0.0;
          }
          for (std::int64_t r = 0; r <= k; ++r) {
            v[j * C + f + r] = vb[r];
            if (d) d[j * C + f + r] = db[r];
          }
        }
      });

  m.def(
      "bspline_update_grid",
      [](std::uintptr_t x, std::uintptr_t knots, std::uintptr_t spline_weight,
         std::uintptr_t new_knots, std::uintptr_t new_spline_weight, std::int64_t batch,
         std::int64_t in, std::int64_t out, std::int64_t G, std::int64_t k,
         const std::string& dtype, double margin, double grid_eps, double ridge) {
        const Shape s{batch, in, out, G, k};
        const bspline::GridUpdateOptions opt{margin, grid_eps, ridge};
        const DType dt = dtype_named(dtype);
        bspline::GridFitReport r;
        {
          py::gil_scoped_release release;
          r = bspline::update_grid(s, dt, ptr<const void>(x), ptr<const void>(knots),
                                   ptr<const void>(spline_weight), ptr<void>(new_knots),
                                   ptr<void>(new_spline_weight), opt);
        }
        return py::make_tuple(r.features_kept, r.samples_skipped);
      },
      "Writes new knots and weights; returns (features_kept, samples_skipped).");

  m.def(
      "bspline_refine",
      [](std::uintptr_t knots, std::uintptr_t spline_weight, std::uintptr_t new_knots,
         std::uintptr_t new_spline_weight, std::int64_t in, std::int64_t out, std::int64_t G,
         std::int64_t k, std::int64_t new_G, const std::string& dtype) {
        const Shape s{0, in, out, G, k};
        const DType dt = dtype_named(dtype);
        py::gil_scoped_release release;
        bspline::refine(s, dt, ptr<const void>(knots), ptr<const void>(spline_weight), new_G,
                        ptr<void>(new_knots), ptr<void>(new_spline_weight));
      });

  m.def(
      "coefficient_l1_entropy",
      [](std::uintptr_t w, std::int64_t edges, std::int64_t per_edge, double activation,
         double entropy, const std::string& dtype, std::uintptr_t grad) {
        return reg::coefficient_l1_entropy(dtype_named(dtype), ptr<const void>(w), edges, per_edge,
                                           activation, entropy, ptr<void>(grad));
      },
      "efficient-kan's L1 + entropy penalty; writes the gradient when grad != 0.");

  m.def(
      "smoothness",
      [](std::uintptr_t c, std::int64_t outer, std::int64_t K, std::int64_t inner,
         const std::string& dtype, std::uintptr_t grad) {
        return reg::smoothness(dtype_named(dtype), ptr<const void>(c), outer, K, inner, ptr<void>(grad));
      },
      "Second-difference smoothness penalty over (outer, K, inner); writes the gradient when grad != 0.");
}

}  // namespace kancore::python

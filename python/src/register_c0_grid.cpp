// Bindings of the C0 layer's grid adaptation (kancore/c0_grid.hpp). CPU only; kancore/_ops.py
// checks every array before calling.
#include <cstdint>
#include <string>

#include "bindings.hpp"
#include "kancore/c0_grid.hpp"

namespace py = pybind11;

namespace kancore::python {

void register_c0_grid(py::module_& m) {
  m.def(
      "c0_fit_domain",
      [](std::uintptr_t x, std::uintptr_t table, std::uintptr_t scale, std::uintptr_t offset,
         std::uintptr_t new_table, std::uintptr_t new_scale, std::uintptr_t new_offset,
         std::int64_t batch, std::int64_t in, std::int64_t out, std::int64_t K, double width,
         std::int64_t new_K, const std::string& dtype, double quantile, double margin,
         double ridge) {
        const c0::Shape s{batch, in, out, K, width};
        const c0::DomainFitOptions opt{quantile, margin, ridge};
        const DType dt = dtype_named(dtype);
        c0::DomainFitReport r;
        {
          py::gil_scoped_release release;
          r = c0::fit_domain(s, dt, ptr<const void>(x), ptr<const void>(table),
                             ptr<const void>(scale), ptr<const void>(offset), new_K,
                             ptr<void>(new_table), ptr<void>(new_scale), ptr<void>(new_offset), opt);
        }
        return py::make_tuple(r.features_kept, r.samples_skipped, r.samples_outside);
      },
      "Writes the new table and input affine; returns (features_kept, samples_skipped, "
      "samples_outside).");

  m.def(
      "c0_refine",
      [](std::uintptr_t table, std::uintptr_t new_table, std::int64_t in, std::int64_t out,
         std::int64_t K, double width, std::int64_t new_K, const std::string& dtype) {
        const c0::Shape s{0, in, out, K, width};
        const DType dt = dtype_named(dtype);
        py::gil_scoped_release release;
        c0::refine(s, dt, ptr<const void>(table), new_K, ptr<void>(new_table));
      });
}

}  // namespace kancore::python

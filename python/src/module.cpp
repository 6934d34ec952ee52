// kancore._core: the pybind11 module. One register_* file per area of the core.
#include <pybind11/pybind11.h>

#include "bindings.hpp"
#include "kancore/types.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "kancore native core (C++/CUDA). Use the kancore package, not this module directly.";
  m.attr("__version__") = KANCORE_VERSION_INFO;
  m.def("built_with_cuda", &kancore::built_with_cuda,
        "True when this build contains the CUDA backend.");
  kancore::python::register_c0(m);
  kancore::python::register_c0_grid(m);
  kancore::python::register_bspline(m);
  kancore::python::register_regularizers(m);
  kancore::python::register_network(m);
  kancore::python::register_threads(m);
}

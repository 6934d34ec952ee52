// Declarations shared by the binding files of kancore._core.
#pragma once

#include <pybind11/pybind11.h>

namespace kancore::python {

void register_c0(pybind11::module_& m);
void register_bspline(pybind11::module_& m);
void register_regularizers(pybind11::module_& m);

}  // namespace kancore::python

// kancore._core: the pybind11 module. One register_* file per area of the core.
#include <pybind11/pybind11.h>

#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>

#include "bindings.hpp"
#include "kancore/types.hpp"

namespace {

// A C++ message may quote bytes of a hostile file; pybind11 decodes messages as UTF-8, and an
// ill-formed one would surface as UnicodeDecodeError instead of the intended exception. Such
// messages are decoded with backslash escapes and raised as the type the standard mapping gives.
// (Registered first, so the specific translators registered later are tried before it.)
void translate_non_utf8_messages(std::exception_ptr p) {
  try {
    std::rethrow_exception(p);
  } catch (const std::exception& e) {
    const char* what = e.what();
    PyObject* text = PyUnicode_DecodeUTF8(what, static_cast<Py_ssize_t>(std::strlen(what)), "strict");
    if (text) {  // well-formed: the standard translation (std::invalid_argument -> ValueError, ...)
      Py_DECREF(text);
      throw;
    }
    PyErr_Clear();
    PyObject* type = PyExc_RuntimeError;
    if (dynamic_cast<const std::invalid_argument*>(&e) || dynamic_cast<const std::domain_error*>(&e) ||
        dynamic_cast<const std::length_error*>(&e)) {
      type = PyExc_ValueError;
    } else if (dynamic_cast<const std::out_of_range*>(&e)) {
      type = PyExc_IndexError;
    } else if (dynamic_cast<const std::bad_alloc*>(&e)) {
      type = PyExc_MemoryError;
    }
    PyObject* msg = PyUnicode_DecodeUTF8(what, static_cast<Py_ssize_t>(std::strlen(what)), "backslashreplace");
    if (!msg) {
      PyErr_Clear();
      PyErr_SetString(type, "kancore: (message not decodable)");
      return;
    }
    PyErr_SetObject(type, msg);
    Py_DECREF(msg);
  }
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "kancore native core (C++/CUDA). Use the kancore package, not this module directly.";
  pybind11::register_exception_translator(&translate_non_utf8_messages);
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

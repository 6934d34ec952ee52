// Bindings of kancore/threading.hpp: the CPU kernels' thread count.
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "bindings.hpp"
#include "kancore/threading.hpp"

namespace py = pybind11;

namespace kancore::python {

void register_threads(py::module_& m) {
  // The signatures are written out: n is taken as an object to check its type here.
  py::options options;
  options.disable_function_signatures();
  m.def(
      "set_num_threads",
      [](const py::object& n) {
        // Any integer (int, numpy integers: anything with __index__) but bool, which is an int
        // in Python although a thread count of True is a mistake.
        PyObject* index = py::isinstance<py::bool_>(n) ? nullptr : PyNumber_Index(n.ptr());
        if (index == nullptr) {
          PyErr_Clear();
          throw py::type_error("kancore.set_num_threads: expected an int, got " +
                               std::string(py::str(py::type::of(n).attr("__name__"))));
        }
        int overflow = 0;
        const long long v = PyLong_AsLongLongAndOverflow(index, &overflow);
        Py_DECREF(index);
        if (overflow != 0 || v < 1 || v > (1LL << 20)) {
          throw std::invalid_argument("kancore.set_num_threads: expected an int in [1, 2**20], got " +
                                      std::string(py::str(n)));
        }
        kancore::set_num_threads(static_cast<int>(v));
      },
      py::arg("n"),
      "set_num_threads(n: int) -> None\n\n"
      "Set the largest number of threads kancore's CPU kernels use (n >= 1), for the whole\n"
      "process. kancore keeps its own count: it does not follow torch.set_num_threads, and\n"
      "torch.set_num_threads does not change it. Default: OMP_NUM_THREADS when set, else the\n"
      "number of processors available. Whatever n is, calls with little work (small models or\n"
      "batches) run on one thread, and results are bitwise identical for every n.\n"
      "On a busy machine, or when several processes share the cores, set_num_threads(1) is\n"
      "often fastest (see README, 'Threads').");
  m.def("get_num_threads", &kancore::get_num_threads,
        "get_num_threads() -> int\n\n"
        "The largest number of threads kancore's CPU kernels use: kancore's own count, not\n"
        "torch.get_num_threads() (see set_num_threads).");
}

}  // namespace kancore::python

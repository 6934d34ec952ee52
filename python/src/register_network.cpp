// Bindings of kancore::Network (the NumPy front end, kancore/numpy_network.py). Arrays cross as
// raw addresses; the Python side checks shapes, dtypes and contiguity before calling.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "kancore/model_io.hpp"
#include "kancore/network.hpp"
#include "kancore/training.hpp"

namespace py = pybind11;

namespace kancore::python {
namespace {

LayerConfig layer_from_dict(const py::dict& d) {
  auto get = [&](const char* key) -> py::object {
    if (!d.contains(key)) throw std::invalid_argument(std::string("kancore: layer config needs \"") + key + "\"");
    return d[key];
  };
  const std::string kind = py::str(get("kind"));
  LayerConfig l;
  l.in_features = get("in_features").cast<std::int64_t>();
  l.out_features = get("out_features").cast<std::int64_t>();
  if (kind == "c0") {
    l.kind = LayerKind::c0;
    if (d.contains("num_control_points")) l.num_control_points = d["num_control_points"].cast<std::int64_t>();
    if (d.contains("spline_width")) l.spline_width = d["spline_width"].cast<double>();
    if (d.contains("fitted_domain")) l.fitted_domain = d["fitted_domain"].cast<bool>();
  } else if (kind == "bspline") {
    l.kind = LayerKind::bspline;
    if (d.contains("grid_size")) l.grid_size = d["grid_size"].cast<std::int64_t>();
    if (d.contains("spline_order")) l.spline_order = d["spline_order"].cast<std::int64_t>();
    if (d.contains("grid_range")) {
      auto r = d["grid_range"].cast<std::vector<double>>();
      if (r.size() != 2) throw std::invalid_argument("kancore: expected grid_range [min, max]");
      l.grid_min = r[0];
      l.grid_max = r[1];
    }
    if (d.contains("scale_noise")) l.scale_noise = d["scale_noise"].cast<double>();
  } else {
    throw std::invalid_argument("kancore: expected layer kind c0 or bspline, got " + kind);
  }
  return l;
}

py::dict config_to_dict(const NetworkConfig& c) {
  py::list layers;
  for (const auto& l : c.layers) {
    py::dict d;
    d["in_features"] = l.in_features;
    d["out_features"] = l.out_features;
    if (l.kind == LayerKind::c0) {
      d["kind"] = "c0";
      d["num_control_points"] = l.num_control_points;
      d["spline_width"] = l.spline_width;
      d["fitted_domain"] = l.fitted_domain;
    } else {
      d["kind"] = "bspline";
      d["grid_size"] = l.grid_size;
      d["spline_order"] = l.spline_order;
    }
    if (!l.symbolic.empty()) {
      py::list edges;
      for (const SymbolicEdge& e : l.symbolic) {
        py::dict ed;
        ed["in"] = e.in;
        ed["out"] = e.out;
        ed["function"] = e.function;
        edges.append(ed);
      }
      d["symbolic"] = edges;
    }
    layers.append(d);
  }
  py::dict out;
  out["dtype"] = to_string(c.dtype);
  out["layernorm"] = c.layernorm;
  out["layernorm_eps"] = c.layernorm_eps;
  out["layers"] = layers;
  return out;
}

const char* group_name(ParamGroup g) {
  switch (g) {
    case ParamGroup::spline: return "spline";
    case ParamGroup::other: return "other";
    case ParamGroup::buffer: return "buffer";
  }
  return "?";
}

py::array copy_out(const TensorView& v, const void* src) {
  const py::dtype dt = v.dtype == DType::float64 ? py::dtype::of<double>() : py::dtype::of<float>();
  py::array a(dt, std::vector<py::ssize_t>(v.shape.begin(), v.shape.end()));
  std::memcpy(a.mutable_data(), src, static_cast<std::size_t>(v.numel()) * (v.dtype == DType::float64 ? 8 : 4));
  return a;
}

}  // namespace

void register_network(py::module_& m) {
  // kancore::FileNotFound (load() of a missing path) -> FileNotFoundError(ENOENT, message, path),
  // so errno and filename are set as for open(). Other errors keep pybind11's standard mapping
  // (NotAModelFile is a std::invalid_argument -> ValueError).
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const FileNotFound& e) {
      // The path as os.fsdecode gives it (surrogate escapes for bytes that are not UTF-8).
      const std::string& path = e.path();
      PyObject* name = PyUnicode_DecodeFSDefaultAndSize(path.data(), static_cast<Py_ssize_t>(path.size()));
      if (!name) return;  // the decoding error is set
      PyObject* args = Py_BuildValue("(isN)", ENOENT, "kancore: no such model file", name);
      if (args) {
        PyErr_SetObject(PyExc_FileNotFoundError, args);
        Py_DECREF(args);
      }
    }
  });
  py::class_<Network>(m, "Network", "kancore::Network (use kancore.NumpyKAN)")
      .def(py::init([](const py::list& layers, const std::string& dtype, bool layernorm, double eps,
                       std::uint64_t seed) {
             NetworkConfig c;
             c.dtype = dtype_named(dtype);
             c.layernorm = layernorm;
             c.layernorm_eps = eps;
             for (const auto& item : layers) c.layers.push_back(layer_from_dict(item.cast<py::dict>()));
             return Network(c, seed);
           }),
           py::arg("layers"), py::arg("dtype"), py::arg("layernorm"), py::arg("layernorm_eps"), py::arg("seed"))
      .def("config", [](const Network& n) { return config_to_dict(n.config()); })
      .def_property_readonly("in_features", &Network::in_features)
      .def_property_readonly("out_features", &Network::out_features)
      .def_property_readonly("num_parameters", &Network::num_parameters)
      .def("tensor_names", [](Network& n) {
        std::vector<std::pair<std::string, std::string>> out;
        for (const auto& v : n.tensors()) out.emplace_back(v.name, group_name(v.group));
        return out;
      })
      .def("get_tensor", [](Network& n, const std::string& name) {
        const TensorView v = n.tensor(name);
        return copy_out(v, v.data);
      })
      .def("get_grad", [](Network& n, const std::string& name) -> py::object {
        const TensorView v = n.tensor(name);
        if (!v.grad) return py::none();
        return copy_out(v, v.grad);
      })
      .def("tensor_shape", [](Network& n, const std::string& name) { return n.tensor(name).shape; })
      .def("set_tensor", [](Network& n, const std::string& name, std::uintptr_t src) {
        const TensorView v = n.tensor(name);
        std::memcpy(v.data, ptr<const void>(src), static_cast<std::size_t>(v.numel()) * (v.dtype == DType::float64 ? 8 : 4));
      })
      // One training-loss evaluation in one call (the torch front end's fused LBFGS/Adam
      // objective, kancore/fused.py): copy the named tensors in from `values`, forward_train,
      // the MSE loss and its gradient, backward, and copy the named gradients out to `grads`.
      .def("mse_objective", [](Network& n, const std::vector<std::string>& names, const std::vector<std::uintptr_t>& values,
                               const std::vector<std::uintptr_t>& grads, std::uintptr_t x, std::uintptr_t t,
                               std::int64_t batch) {
        if (names.size() != values.size() || names.size() != grads.size()) {
          throw std::invalid_argument("kancore: mse_objective: expected one value and one grad pointer per name");
        }
        const std::size_t elem = n.dtype() == DType::float64 ? 8 : 4;
        std::vector<TensorView> views;
        for (std::size_t k = 0; k < names.size(); ++k) {
          views.push_back(n.tensor(names[k]));
          std::memcpy(views.back().data, ptr<const void>(values[k]), static_cast<std::size_t>(views.back().numel()) * elem);
        }
        const std::int64_t O = n.out_features();
        std::vector<unsigned char> y(static_cast<std::size_t>(batch * O) * elem), gy(y.size());
        n.forward_train(batch, ptr<const void>(x), y.data());
        const double loss = mse_loss(n.dtype(), batch, O, y.data(), ptr<const void>(t), gy.data());
        n.backward(gy.data());
        for (std::size_t k = 0; k < names.size(); ++k) {
          if (grads[k] && views[k].grad) {
            std::memcpy(ptr<void>(grads[k]), views[k].grad, static_cast<std::size_t>(views[k].numel()) * elem);
          }
        }
        return loss;
      })
      // The GIL stays held in every call: a Network has no lock of its own, and two Python
      // threads using one network (say fit in one, predict in another) must not interleave.
      .def("forward", [](const Network& n, std::uintptr_t x, std::uintptr_t y, std::int64_t batch) {
        n.forward(batch, ptr<const void>(x), ptr<void>(y));
      })
      .def("forward_train", [](Network& n, std::uintptr_t x, std::uintptr_t y, std::int64_t batch) {
        n.forward_train(batch, ptr<const void>(x), ptr<void>(y));
      })
      .def("backward", [](Network& n, std::uintptr_t gy, std::uintptr_t gx) {
        n.backward(ptr<const void>(gy), ptr<void>(gx));
      })
      .def("regularization", &Network::regularization, py::arg("weight"), py::arg("add_to_grad") = false)
      .def("update_grids", [](Network& n, std::uintptr_t x, std::int64_t batch) {
        n.update_grids(batch, ptr<const void>(x));
      })
      .def("refine", &Network::refine, py::arg("new_size"))
      .def("edge_importance", [](const Network& n, std::uintptr_t x, std::int64_t batch) {
        return n.edge_importance(batch, ptr<const void>(x));
      })
      .def("prune_nodes", &Network::prune_nodes, py::arg("keep"))
      .def("fix_symbolic", &Network::fix_symbolic, py::arg("layer"), py::arg("i"), py::arg("o"), py::arg("function"),
           py::arg("a"), py::arg("b"), py::arg("c"), py::arg("d"))
      .def("unfix_symbolic", &Network::unfix_symbolic, py::arg("layer"), py::arg("i"), py::arg("o"))
      .def("fit",
           [](Network& n, std::uintptr_t x, std::uintptr_t y, std::uintptr_t labels, std::int64_t rows,
              std::uintptr_t vx, std::uintptr_t vy, std::uintptr_t vlabels, std::int64_t vrows,
              const std::string& loss, std::int64_t epochs, std::int64_t batch_size, double lr,
              double lr_spline, const std::string& optimizer, double weight_decay, double val_fraction,
              std::int64_t patience, bool restore_best, double reg_weight, std::int64_t grid_every,
              std::int64_t grid_until, std::int64_t grid_update_samples, std::uint64_t seed,
              const py::object& callback, std::vector<std::int64_t> grid_schedule,
              std::vector<std::int64_t> stage_epochs, const std::string& reg_schedule) {
             FitOptions o;
             if (loss == "mse") o.loss = LossKind::mse;
             else if (loss == "cross_entropy") o.loss = LossKind::cross_entropy;
             else throw std::invalid_argument("kancore: expected loss mse or cross_entropy, got " + loss);
             if (optimizer == "adam") o.optimizer.kind = OptimizerKind::adam;
             else if (optimizer == "adamw") o.optimizer.kind = OptimizerKind::adamw;
             else throw std::invalid_argument("kancore: expected optimizer adam or adamw, got " + optimizer);
             o.epochs = epochs;
             o.batch_size = batch_size;
             o.optimizer.lr = lr;
             o.optimizer.lr_spline = lr_spline;
             o.optimizer.weight_decay = weight_decay;
             o.val_fraction = val_fraction;
             o.patience = patience;
             o.restore_best = restore_best;
             o.reg_weight = reg_weight;
             o.grid_update_every = grid_every;
             o.grid_update_until = grid_until;
             o.grid_update_samples = grid_update_samples;
             o.seed = seed;
             o.grid_schedule = std::move(grid_schedule);
             o.stage_epochs = std::move(stage_epochs);
             if (reg_schedule == "constant") o.reg_schedule = RegSchedule::constant;
             else if (reg_schedule == "linear") o.reg_schedule = RegSchedule::linear;
             else throw std::invalid_argument("kancore: expected reg_schedule constant or linear, got " + reg_schedule);
             if (!callback.is_none()) {
               o.callback = [callback](const EpochLog& e) {
                 py::gil_scoped_acquire gil;
                 py::dict d;
                 d["epoch"] = e.epoch;
                 d["train_loss"] = e.train_loss;
                 d["val_loss"] = e.val_loss;
                 d["penalty"] = e.penalty;
                 d["improved"] = e.improved;
                 d["grid_updated"] = e.grid_updated;
                 d["refined_to"] = e.refined_to;
                 const py::object r = callback(d);
                 return r.is_none() || r.cast<bool>();
               };
             }
             const Dataset train{rows, ptr<const void>(x), ptr<const void>(y), ptr<const std::int64_t>(labels)};
             const Dataset val{vrows, ptr<const void>(vx), ptr<const void>(vy), ptr<const std::int64_t>(vlabels)};
             if (vrows == 0 && vx != 0) throw std::invalid_argument("kancore: expected a non-empty validation set, got 0 rows");
             const FitHistory h = fit(n, train, o, vrows > 0 ? &val : nullptr);  // GIL held, see forward
             py::dict out;
             out["train_loss"] = h.train_loss;
             out["val_loss"] = h.val_loss;
             out["best_epoch"] = h.best_epoch;
             out["best_loss"] = h.best_loss;
             out["stop_reason"] = h.stop_reason;
             out["reg"] = h.reg;
             out["lr"] = h.lr;
             out["grid_update_epochs"] = h.grid_update_epochs;
             out["refine_epochs"] = h.refine_epochs;
             out["steps_per_epoch"] = h.steps_per_epoch;
             return out;
           })
      .def("save", [](const Network& n, const std::string& path) { save(n, path); })
      .def("serialize", [](const Network& n) { return py::bytes(serialize(n)); })
      .def_static("load", [](const std::string& path) { return load(path); })
      .def_static("deserialize", [](const py::bytes& b) {
        const std::string s = b;
        return deserialize(s.data(), s.size());
      });

  m.def("symbolic_functions", &symbolic_functions, "The function names a symbolic edge can use.");
  m.def("mse_loss", [](std::uintptr_t p, std::uintptr_t t, std::uintptr_t g, std::int64_t batch,
                       std::int64_t outputs, const std::string& dtype) {
    return mse_loss(dtype_named(dtype), batch, outputs, ptr<const void>(p), ptr<const void>(t), ptr<void>(g));
  });
  m.def("cross_entropy_loss", [](std::uintptr_t z, std::uintptr_t labels, std::uintptr_t g, std::int64_t batch,
                                 std::int64_t classes, const std::string& dtype) {
    return cross_entropy_loss(dtype_named(dtype), batch, classes, ptr<const void>(z),
                              ptr<const std::int64_t>(labels), ptr<void>(g));
  });
}

}  // namespace kancore::python

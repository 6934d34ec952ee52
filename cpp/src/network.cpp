// kancore::Network (see kancore/network.hpp): a typed engine Impl<T> behind a runtime dtype,
// so every tensor, kernel call and gradient is in the network's own dtype.
#include "kancore/network.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

#include "aligned_vector.hpp"
#include "c0_segment.hpp"
#include "dispatch_common.hpp"
#include "kancore/bspline_layer.hpp"
#include "kancore/c0_grid.hpp"
#include "kancore/c0_layer.hpp"
#include "kancore/regularizers.hpp"
#include "rng.hpp"
#include "symbolic_edges.hpp"
#include "threads.hpp"

namespace kancore {

using dispatch::fail;

const std::vector<std::string>& symbolic_functions() {
  static const std::vector<std::string> names(std::begin(symbolic::kNames), std::end(symbolic::kNames));
  return names;
}

LayerConfig LayerConfig::c0(std::int64_t in, std::int64_t out, std::int64_t K, double W) {
  LayerConfig l;
  l.kind = LayerKind::c0;
  l.in_features = in;
  l.out_features = out;
  l.num_control_points = K;
  l.spline_width = W;
  return l;
}

LayerConfig LayerConfig::bspline(std::int64_t in, std::int64_t out, std::int64_t G, std::int64_t k) {
  LayerConfig l;
  l.kind = LayerKind::bspline;
  l.in_features = in;
  l.out_features = out;
  l.grid_size = G;
  l.spline_order = k;
  return l;
}

NetworkConfig make_config(const std::vector<std::int64_t>& widths, LayerKind kind, DType dtype,
                          bool layernorm) {
  if (widths.size() < 2) fail("expected at least two widths (in, out), got " + std::to_string(widths.size()));
  NetworkConfig c;
  c.dtype = dtype;
  c.layernorm = layernorm;
  for (std::size_t j = 0; j + 1 < widths.size(); ++j) {
    c.layers.push_back(kind == LayerKind::c0 ? LayerConfig::c0(widths[j], widths[j + 1])
                                             : LayerConfig::bspline(widths[j], widths[j + 1]));
  }
  return c;
}

void validate(const NetworkConfig& c) {
  if (c.dtype != DType::float32 && c.dtype != DType::float64) fail("expected dtype float32 or float64");
  if (c.layers.empty()) fail("expected at least one layer, got 0");
  if (c.layers.size() > 4096) fail("expected at most 4096 layers, got " + std::to_string(c.layers.size()));
  // Checked even without LayerNorm: the model file always carries it.
  if (!(std::isfinite(c.layernorm_eps) && c.layernorm_eps > 0)) {
    fail("expected a finite layernorm_eps > 0, got " + std::to_string(c.layernorm_eps));
  }
  for (std::size_t j = 0; j < c.layers.size(); ++j) {
    const LayerConfig& l = c.layers[j];
    const std::string at = "layer " + std::to_string(j) + ": ";
    try {
      if (l.kind == LayerKind::c0) {
        c0::validate(c0::Shape{0, l.in_features, l.out_features, l.num_control_points, l.spline_width}, c.dtype);
      } else if (l.kind == LayerKind::bspline) {
        bspline::validate(bspline::Shape{0, l.in_features, l.out_features, l.grid_size, l.spline_order});
        if (!(std::isfinite(l.grid_min) && std::isfinite(l.grid_max) && l.grid_min < l.grid_max)) {
          fail("expected finite grid_min < grid_max");
        }
        if (!std::isfinite(l.scale_noise)) fail("expected a finite scale_noise");
      } else {
        fail("expected layer kind c0 or bspline");
      }
    } catch (const std::invalid_argument& e) {
      fail(at + e.what());
    }
    std::set<std::pair<std::int64_t, std::int64_t>> seen;
    for (std::size_t r = 0; r < l.symbolic.size(); ++r) {
      const SymbolicEdge& e = l.symbolic[r];
      if (symbolic::index_of(e.function) < 0) {
        fail(at + "unknown symbolic function \"" + e.function + "\" (see kancore::symbolic_functions())");
      }
      if (e.in < 0 || e.in >= l.in_features || e.out < 0 || e.out >= l.out_features) {
        fail(at + "symbolic edge (" + std::to_string(e.in) + ", " + std::to_string(e.out) + ") is outside the layer");
      }
      if (!seen.insert({e.in, e.out}).second) {
        fail(at + "symbolic edge (" + std::to_string(e.in) + ", " + std::to_string(e.out) + ") is fixed twice");
      }
    }
    if (j > 0 && c.layers[j - 1].out_features != l.in_features) {
      fail(at + "expected in_features " + std::to_string(c.layers[j - 1].out_features) +
           " (the previous layer's out_features), got " + std::to_string(l.in_features));
    }
  }
}

std::int64_t TensorView::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
struct Network::Impl {
  NetworkConfig cfg;
  virtual ~Impl() = default;
  virtual std::unique_ptr<Impl> clone() const = 0;
  virtual std::vector<TensorView> tensors() = 0;
  virtual void forward(std::int64_t batch, const void* x, void* y, bool keep) = 0;
  virtual void forward_const(std::int64_t batch, const void* x, void* y) const = 0;
  virtual void backward(const void* grad_y, void* grad_x) = 0;
  virtual void zero_grad() = 0;
  virtual double regularization(double weight, bool add_to_grad) = 0;
  virtual void update_grids(std::int64_t batch, const void* x, const GridUpdateSettings& s) = 0;
  virtual void refine(std::int64_t new_size) = 0;
  virtual std::vector<std::vector<double>> edge_importance(std::int64_t batch, const void* x) const = 0;
};

namespace {

// Parameters, gradients and activations start on cache lines (aligned_vector.hpp says why).
template <class T>
using Buffer = internal::AlignedVector<T>;

template <class T>
struct Tensor {
  std::string name;
  std::vector<std::int64_t> shape;
  ParamGroup group = ParamGroup::other;
  Buffer<T> value;
  Buffer<T> grad;  // empty for buffers
};

// Indices into Impl::t. C0: a = kan_weight, b = input_scale, c = input_offset.
// B-spline: a = grid, b = base_weight, c = spline_weight, d = spline_scaler.
// e = symbolic_affine when the layer has symbolic edges, else kNone.
constexpr std::size_t kNone = static_cast<std::size_t>(-1);
struct LayerSlots {
  std::size_t a = 0, b = 0, c = 0, d = 0, e = kNone;
};

// Activations kept by forward_train for backward.
template <class T>
struct Cache {
  std::int64_t batch = -1;
  std::vector<Buffer<T>> input;  // what each layer's kernel saw (after the C0 affine)
  std::vector<Buffer<T>> raw;    // a layer's own input, kept for layers with symbolic edges
  std::vector<Buffer<T>> xhat;   // normalised pre-LayerNorm outputs
  std::vector<Buffer<T>> rstd;   // 1 / sqrt(var + eps) per row
};

// sum_o f(row[o]) in double with eight independent partial sums: one running sum waits for
// every add (latency-bound: the LayerNorms of a 4096 x 256 batch took 4 ms each that way).
template <class T, class F>
double row_sum(const T* row, std::int64_t n, F f) {
  double acc[8] = {};
  std::int64_t o = 0;
  for (; o + 8 <= n; o += 8) {
    for (int u = 0; u < 8; ++u) acc[u] += f(static_cast<double>(row[o + u]));
  }
  for (int u = 0; o < n; ++o, ++u) acc[u] += f(static_cast<double>(row[o]));
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

template <class T>
Buffer<T> workspace_for(std::size_t bytes) {
  return Buffer<T>(bytes / sizeof(T) + 1);
}

template <class T>
class Engine final : public Network::Impl {
 public:
  std::vector<Tensor<T>> t;
  std::vector<LayerSlots> slots;
  std::vector<std::pair<std::size_t, std::size_t>> norms;  // (weight, bias) after layer j
  Cache<T> cache;

  Engine(const NetworkConfig& config, std::uint64_t seed) {
    cfg = config;
    Rng rng(seed);
    const std::size_t n = cfg.layers.size();
    for (std::size_t j = 0; j < n; ++j) {
      const LayerConfig& l = cfg.layers[j];
      const std::string p = "layers." + std::to_string(j) + ".";
      const std::int64_t I = l.in_features, O = l.out_features;
      LayerSlots s;
      if (l.kind == LayerKind::c0) {
        const std::int64_t K = l.num_control_points;
        s.a = add(p + "kan_weight", {I, K, O}, ParamGroup::spline);
        s.b = add(p + "input_scale", {I}, ParamGroup::buffer);
        s.c = add(p + "input_offset", {I}, ParamGroup::buffer);
        std::fill(t[s.b].value.begin(), t[s.b].value.end(), T(1));
        // kanditioned's random_normal directions (unit-norm columns over inputs), as lines of
        // slope 1 in input units (kanditioned's rise one per control point, (K-1)/W: a stack of
        // such layers starts far too steep; see KAN(init_scale=...) and benchmarks/c0_defaults.py).
        std::vector<double> sc(static_cast<std::size_t>(I * O));
        for (auto& v : sc) v = rng.normal();
        for (std::int64_t o = 0; o < O; ++o) {
          double norm = 0;
          for (std::int64_t i = 0; i < I; ++i) norm += sc[i * O + o] * sc[i * O + o];
          norm = std::sqrt(norm);
          for (std::int64_t i = 0; i < I; ++i) sc[i * O + o] = norm > 0 ? sc[i * O + o] / norm : 0.0;
        }
        T* C = t[s.a].value.data();
        for (std::int64_t i = 0; i < I; ++i)
          for (std::int64_t k = 0; k < K; ++k)
            for (std::int64_t o = 0; o < O; ++o)
              C[(i * K + k) * O + o] = static_cast<T>(
                  (static_cast<double>(k) - (K - 1) / 2.0) * (l.spline_width / (K - 1)) * sc[i * O + o]);
      } else {
        const std::int64_t G = l.grid_size, k = l.spline_order, nk = G + 2 * k + 1;
        s.a = add(p + "grid", {I, nk}, ParamGroup::buffer);
        s.b = add(p + "base_weight", {O, I}, ParamGroup::other);
        s.c = add(p + "spline_weight", {O, I, G + k}, ParamGroup::spline);
        s.d = add(p + "spline_scaler", {O, I}, ParamGroup::other);
        const double h = (l.grid_max - l.grid_min) / static_cast<double>(G);
        for (std::int64_t i = 0; i < I; ++i)
          for (std::int64_t m = 0; m < nk; ++m)
            t[s.a].value[i * nk + m] = static_cast<T>(l.grid_min + static_cast<double>(m - k) * h);
        const double bound = 1.0 / std::sqrt(static_cast<double>(I));
        for (auto& v : t[s.b].value) v = static_cast<T>(bound * (2 * rng.uniform() - 1));
        for (auto& v : t[s.c].value) v = static_cast<T>((rng.uniform() - 0.5) * l.scale_noise / G);
        std::fill(t[s.d].value.begin(), t[s.d].value.end(), T(1));
      }
      if (!l.symbolic.empty()) {  // rows (a, b, c, d) = (1, 1, 0, 0): f(h) itself
        s.e = add(p + "symbolic_affine", {static_cast<std::int64_t>(l.symbolic.size()), 4}, ParamGroup::other);
        for (std::size_t r = 0; r < l.symbolic.size(); ++r) {
          t[s.e].value[4 * r] = T(1);
          t[s.e].value[4 * r + 1] = T(1);
        }
      }
      slots.push_back(s);
    }
    if (cfg.layernorm) {
      for (std::size_t j = 0; j + 1 < n; ++j) {
        const std::int64_t O = cfg.layers[j].out_features;
        const std::string p = "norms." + std::to_string(j) + ".";
        const std::size_t w = add(p + "weight", {O}, ParamGroup::other);
        const std::size_t b = add(p + "bias", {O}, ParamGroup::other);
        std::fill(t[w].value.begin(), t[w].value.end(), T(1));
        norms.emplace_back(w, b);
      }
    }
  }

  std::unique_ptr<Network::Impl> clone() const override { return std::make_unique<Engine>(*this); }

  std::vector<TensorView> tensors() override {
    std::vector<TensorView> out;
    for (std::size_t j = 0; j < slots.size(); ++j) {
      const LayerSlots& s = slots[j];
      if (cfg.layers[j].kind == LayerKind::c0) {
        out.push_back(view(s.a));
        if (cfg.layers[j].fitted_domain) {
          out.push_back(view(s.b));
          out.push_back(view(s.c));
        }
      } else {
        for (std::size_t k : {s.a, s.b, s.c, s.d}) out.push_back(view(k));
      }
      if (s.e != kNone) out.push_back(view(s.e));
    }
    for (auto [w, b] : norms) {
      out.push_back(view(w));
      out.push_back(view(b));
    }
    return out;
  }

  void forward(std::int64_t batch, const void* x, void* y, bool keep) override {
    run(batch, static_cast<const T*>(x), static_cast<T*>(y), keep ? &cache : nullptr);
  }
  void forward_const(std::int64_t batch, const void* x, void* y) const override {
    run(batch, static_cast<const T*>(x), static_cast<T*>(y), nullptr);
  }

  void backward(const void* grad_y_v, void* grad_x_v) override {
    const std::int64_t B = cache.batch;
    if (B < 0) throw std::logic_error("kancore: Network::backward needs a forward_train first");
    const std::size_t n = cfg.layers.size();
    const T* gy = static_cast<const T*>(grad_y_v);
    Buffer<T> g(gy, gy + B * cfg.layers.back().out_features);
    Buffer<T> gx;
    for (std::size_t jj = n; jj-- > 0;) {
      const LayerConfig& l = cfg.layers[jj];
      const std::int64_t I = l.in_features, O = l.out_features;
      if (jj + 1 < n && cfg.layernorm) norm_backward(jj, B, O, g);
      const bool want_x = jj > 0 || grad_x_v != nullptr;
      T* gxp = nullptr;
      if (want_x) {
        gx.assign(static_cast<std::size_t>(B * I), T(0));
        gxp = (jj == 0) ? static_cast<T*>(grad_x_v) : gx.data();
      }
      const LayerSlots& s = slots[jj];
      const T* in = cache.input[jj].data();
      Buffer<T> m1, m2;  // the numeric parameters with the symbolic edges zeroed
      if (l.kind == LayerKind::c0) {
        const c0::Shape sh{B, I, O, l.num_control_points, l.spline_width};
        auto ws = workspace_for<T>(c0::backward_workspace_bytes(sh, dtype_of<T>::value, c0::Impl::gather));
        c0::backward<T>(sh, c0::Impl::gather, in, numeric(jj, s.a, m1), g.data(), gxp, t[s.a].grad.data(),
                        ws.data(), ws.size() * sizeof(T));
        zero_edges(jj, s.a, t[s.a].grad.data());
        if (gxp && l.fitted_domain) {
          const T* sc = t[s.b].value.data();
          for (std::int64_t b = 0; b < B; ++b)
            for (std::int64_t i = 0; i < I; ++i) gxp[b * I + i] *= sc[i];
        }
      } else {
        const bspline::Shape sh{B, I, O, l.grid_size, l.spline_order};
        auto ws = workspace_for<T>(bspline::backward_workspace_bytes(sh, dtype_of<T>::value));
        const bspline::Params p{t[s.a].value.data(), numeric(jj, s.b, m1), numeric(jj, s.c, m2),
                                t[s.d].value.data()};
        const bspline::Grads gr{gxp, t[s.b].grad.data(), t[s.c].grad.data(), t[s.d].grad.data()};
        bspline::backward(sh, dtype_of<T>::value, in, p, g.data(), gr, ws.data(), ws.size() * sizeof(T));
        for (std::size_t k : {s.b, s.c, s.d}) zero_edges(jj, k, t[k].grad.data());
      }
      if (s.e != kNone) symbolic_backward(jj, B, cache.raw[jj].data(), g.data(), gxp);
      if (jj > 0) g.swap(gx);
    }
  }

  void zero_grad() override {
    for (auto& x : t) std::fill(x.grad.begin(), x.grad.end(), T(0));
  }

  double regularization(double weight, bool add_to_grad) override {
    double total = 0;
    const DType dt = dtype_of<T>::value;
    for (std::size_t j = 0; j < slots.size(); ++j) {
      const LayerConfig& l = cfg.layers[j];
      const LayerSlots& s = slots[j];
      const std::size_t w = (l.kind == LayerKind::c0) ? s.a : s.c;
      Buffer<T> tmp(add_to_grad ? t[w].value.size() : 0), masked;
      void* gp = add_to_grad ? tmp.data() : nullptr;
      const T* v = numeric(j, w, masked);  // symbolic edges are not regularised
      if (l.kind == LayerKind::c0) {
        total += reg::smoothness(dt, v, l.in_features, l.num_control_points, l.out_features, gp);
      } else {
        total += reg::coefficient_l1_entropy(dt, v, l.out_features * l.in_features,
                                             l.grid_size + l.spline_order, 1.0, 1.0, gp);
      }
      if (add_to_grad) {
        zero_edges(j, w, tmp.data());
        for (std::size_t e = 0; e < tmp.size(); ++e) t[w].grad[e] += static_cast<T>(weight * tmp[e]);
      }
    }
    return weight * total;
  }

  void update_grids(std::int64_t B, const void* xv, const GridUpdateSettings& st) override {
    if (B < 1) fail("expected at least one sample for a grid update, got 0");
    const DType dt = dtype_of<T>::value;
    Buffer<T> h(static_cast<const T*>(xv), static_cast<const T*>(xv) + B * cfg.layers[0].in_features);
    Buffer<T> y;
    for (std::size_t j = 0; j < slots.size(); ++j) {
      LayerConfig& l = cfg.layers[j];
      const LayerSlots& s = slots[j];
      if (l.kind == LayerKind::c0) {
        const c0::Shape sh{B, l.in_features, l.out_features, l.num_control_points, l.spline_width};
        Buffer<T> table(t[s.a].value.size()), scale(t[s.b].value.size()), offset(t[s.c].value.size());
        c0::DomainFitOptions o;
        o.quantile = st.quantile;
        o.margin = st.c0_margin;
        c0::fit_domain(sh, dt, h.data(), t[s.a].value.data(), l.fitted_domain ? t[s.b].value.data() : nullptr,
                       l.fitted_domain ? t[s.c].value.data() : nullptr, l.num_control_points,
                       table.data(), scale.data(), offset.data(), o);
        t[s.a].value.swap(table);
        t[s.b].value.swap(scale);
        t[s.c].value.swap(offset);
        l.fitted_domain = true;
      } else {
        const bspline::Shape sh{B, l.in_features, l.out_features, l.grid_size, l.spline_order};
        Buffer<T> knots(t[s.a].value.size()), spline(t[s.c].value.size());
        bspline::GridUpdateOptions o;
        o.margin = st.margin;
        o.grid_eps = st.grid_eps;
        bspline::update_grid(sh, dt, h.data(), t[s.a].value.data(), t[s.c].value.data(), knots.data(),
                             spline.data(), o);
        t[s.a].value.swap(knots);
        t[s.c].value.swap(spline);
      }
      if (j + 1 < slots.size()) {
        y.assign(static_cast<std::size_t>(B * l.out_features), T(0));
        Buffer<T> tmp;
        layer_forward(j, B, h.data(), y.data(), tmp);
        if (cfg.layernorm) norm_forward(j, B, y.data(), nullptr);
        h.swap(y);
      }
    }
    cache.batch = -1;  // parameters changed: the kept activations are stale
  }

  std::vector<std::vector<double>> edge_importance(std::int64_t B, const void* xv) const override {
    std::vector<std::vector<double>> out;
    Buffer<T> h(static_cast<const T*>(xv), static_cast<const T*>(xv) + B * cfg.layers[0].in_features), y, in;
    for (std::size_t j = 0; j < slots.size(); ++j) {
      const LayerConfig& l = cfg.layers[j];
      const LayerSlots& s = slots[j];
      const std::int64_t I = l.in_features, O = l.out_features;
      std::vector<double> sum(static_cast<std::size_t>(O * I), 0.0);
      std::vector<std::int64_t> count(sum.size(), 0);
      y.assign(static_cast<std::size_t>(B * O), T(0));
      layer_forward(j, B, h.data(), y.data(), in);  // `in`: what the kernel saw
      auto add = [&](std::int64_t o, std::int64_t i, double v) {
        if (std::isfinite(v)) {
          sum[o * I + i] += v * v;
          ++count[o * I + i];
        }
      };
      if (l.kind == LayerKind::c0) {
        const std::int64_t K = l.num_control_points;
        const auto g = c0::detail::make_grid<double>(K, l.spline_width);
        const T* C = t[s.a].value.data();
        for (std::int64_t b = 0; b < B; ++b)
          for (std::int64_t i = 0; i < I; ++i) {
            std::int64_t k = 0;
            double tt = 0;
            c0::detail::locate(g, static_cast<double>(in[b * I + i]), k, tt);
            const T* a = C + (i * K + k) * O;
            for (std::int64_t o = 0; o < O; ++o) {
              const double lo = a[o], hi = a[O + o];
              add(o, i, std::isfinite(tt) ? lo + tt * (hi - lo) : c0::detail::segment_limit(lo, hi, tt));
            }
          }
      } else {
        const std::int64_t G = l.grid_size, k = l.spline_order, nk = G + 2 * k + 1, C = G + k;
        std::vector<double> knots(static_cast<std::size_t>(nk)), v(static_cast<std::size_t>(k + 1));
        for (std::int64_t i = 0; i < I; ++i) {
          for (std::int64_t m = 0; m < nk; ++m) knots[m] = t[s.a].value[i * nk + m];
          for (std::int64_t b = 0; b < B; ++b) {
            const double xv_ = in[b * I + i];
            const std::int64_t f = bspline::basis(knots.data(), G, k, xv_, v.data());
            const double silu = xv_ / (1.0 + std::exp(-xv_));
            for (std::int64_t o = 0; o < O; ++o) {
              const T* w = t[s.c].value.data() + (o * I + i) * C + f;
              double spline = 0;
              for (std::int64_t r = 0; r <= k; ++r) spline += v[r] * w[r];
              add(o, i, t[s.b].value[o * I + i] * silu + t[s.d].value[o * I + i] * spline);
            }
          }
        }
      }
      if (s.e != kNone) {  // a symbolic edge counts with its function, not its (unused) spline
        const T* p = t[s.e].value.data();
        for (std::size_t r = 0; r < l.symbolic.size(); ++r) {
          const SymbolicEdge& e = l.symbolic[r];
          const int f = symbolic::index_of(e.function);
          sum[e.out * I + e.in] = 0;
          count[e.out * I + e.in] = 0;
          for (std::int64_t b = 0; b < B; ++b) {
            double v = 0, dv = 0;
            symbolic::eval(f, static_cast<double>(p[4 * r + 1]) * h[b * I + e.in] + p[4 * r + 2], v, dv);
            add(e.out, e.in, static_cast<double>(p[4 * r]) * v + p[4 * r + 3]);
          }
        }
      }
      for (std::size_t e = 0; e < sum.size(); ++e) sum[e] = count[e] ? std::sqrt(sum[e] / count[e]) : 0.0;
      out.push_back(std::move(sum));
      if (j + 1 < slots.size()) {
        if (cfg.layernorm) norm_forward(j, B, y.data(), nullptr);
        h.swap(y);
      }
    }
    return out;
  }

  void refine(std::int64_t new_size) override {
    const DType dt = dtype_of<T>::value;
    for (std::size_t j = 0; j < slots.size(); ++j) {
      LayerConfig& l = cfg.layers[j];
      const LayerSlots& s = slots[j];
      const std::int64_t I = l.in_features, O = l.out_features;
      if (l.kind == LayerKind::c0) {
        if (new_size == l.num_control_points) continue;
        const c0::Shape sh{0, I, O, l.num_control_points, l.spline_width};
        Buffer<T> table(static_cast<std::size_t>(I * new_size * O));
        c0::refine(sh, dt, t[s.a].value.data(), new_size, table.data());
        resize(s.a, {I, new_size, O}, std::move(table));
        l.num_control_points = new_size;
      } else {
        if (new_size == l.grid_size) continue;
        const std::int64_t k = l.spline_order;
        const bspline::Shape sh{0, I, O, l.grid_size, k};
        Buffer<T> knots(static_cast<std::size_t>(I * (new_size + 2 * k + 1)));
        Buffer<T> spline(static_cast<std::size_t>(O * I * (new_size + k)));
        bspline::refine(sh, dt, t[s.a].value.data(), t[s.c].value.data(), new_size, knots.data(), spline.data());
        resize(s.a, {I, new_size + 2 * k + 1}, std::move(knots));
        resize(s.c, {O, I, new_size + k}, std::move(spline));
        l.grid_size = new_size;
      }
    }
    cache.batch = -1;  // the kept activations belong to the old parameters
  }

 private:
  void resize(std::size_t slot, std::vector<std::int64_t> shape, Buffer<T> value) {
    Tensor<T>& x = t[slot];
    x.shape = std::move(shape);
    x.value = std::move(value);
    if (x.group != ParamGroup::buffer) x.grad.assign(x.value.size(), T(0));
  }

  std::size_t add(std::string name, std::vector<std::int64_t> shape, ParamGroup group) {
    Tensor<T> x;
    x.name = std::move(name);
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    x.shape = std::move(shape);
    x.group = group;
    x.value.assign(static_cast<std::size_t>(n), T(0));
    if (group != ParamGroup::buffer) x.grad.assign(static_cast<std::size_t>(n), T(0));
    t.push_back(std::move(x));
    return t.size() - 1;
  }

  TensorView view(std::size_t k) {
    Tensor<T>& x = t[k];
    return TensorView{x.name, x.shape, dtype_of<T>::value, x.group, x.value.data(),
                      x.grad.empty() ? nullptr : x.grad.data()};
  }

  // y = layer j (h). `in` receives what the kernel saw (h, or its affine image for a fitted C0).
  void layer_forward(std::size_t j, std::int64_t B, const T* h, T* y, Buffer<T>& in) const {
    const LayerConfig& l = cfg.layers[j];
    const LayerSlots& s = slots[j];
    const std::int64_t I = l.in_features;
    const T* kin = h;
    if (l.kind == LayerKind::c0 && l.fitted_domain) {
      in.resize(static_cast<std::size_t>(B * I));
      const T* sc = t[s.b].value.data();
      const T* of = t[s.c].value.data();
      for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t i = 0; i < I; ++i) in[b * I + i] = h[b * I + i] * sc[i] + of[i];
      kin = in.data();
    } else {
      in.assign(h, h + B * I);
    }
    Buffer<T> m1, m2;  // the numeric parameters with the symbolic edges zeroed
    if (l.kind == LayerKind::c0) {
      const c0::Shape sh{B, I, l.out_features, l.num_control_points, l.spline_width};
      c0::forward<T>(sh, c0::Impl::gather, kin, numeric(j, s.a, m1), y);
    } else {
      const bspline::Shape sh{B, I, l.out_features, l.grid_size, l.spline_order};
      auto ws = workspace_for<T>(bspline::forward_workspace_bytes(sh, dtype_of<T>::value));
      bspline::forward<T>(sh, kin, t[s.a].value.data(), numeric(j, s.b, m1), numeric(j, s.c, m2),
                          t[s.d].value.data(), y, ws.data(), ws.size() * sizeof(T));
    }
    if (s.e != kNone) symbolic_forward(j, B, h, y);
  }

  // Sets the entries of layer j's symbolic edges to zero in `data`, shaped like tensor `slot`
  // (C0 kan_weight (I, K, O); B-spline base_weight / spline_scaler (O, I), spline_weight (O, I, C)).
  void zero_edges(std::size_t j, std::size_t slot, T* data) const {
    const LayerConfig& l = cfg.layers[j];
    const LayerSlots& s = slots[j];
    const std::int64_t I = l.in_features, O = l.out_features;
    for (const SymbolicEdge& e : l.symbolic) {
      if (l.kind == LayerKind::c0 && slot == s.a) {
        for (std::int64_t k = 0; k < l.num_control_points; ++k) data[(e.in * l.num_control_points + k) * O + e.out] = T(0);
      } else if (slot == s.c && l.kind == LayerKind::bspline) {
        const std::int64_t C = l.grid_size + l.spline_order;
        std::fill(data + (e.out * I + e.in) * C, data + (e.out * I + e.in + 1) * C, T(0));
      } else {
        data[e.out * I + e.in] = T(0);
      }
    }
  }

  // Tensor `slot` of layer j as the numeric edges use it: itself, or (with symbolic edges) a
  // copy in `scratch` with those edges zeroed.
  const T* numeric(std::size_t j, std::size_t slot, Buffer<T>& scratch) const {
    if (slots[j].e == kNone) return t[slot].value.data();
    scratch.assign(t[slot].value.begin(), t[slot].value.end());
    zero_edges(j, slot, scratch.data());
    return scratch.data();
  }

  // y (B, O) += every symbolic edge of layer j: a * f(b * h[:, in] + c) + d, h its raw input.
  void symbolic_forward(std::size_t j, std::int64_t B, const T* h, T* y) const {
    const LayerConfig& l = cfg.layers[j];
    const std::int64_t I = l.in_features, O = l.out_features;
    const T* p = t[slots[j].e].value.data();
    for (std::size_t r = 0; r < l.symbolic.size(); ++r) {
      const SymbolicEdge& e = l.symbolic[r];
      const int f = symbolic::index_of(e.function);
      const double a = p[4 * r], b = p[4 * r + 1], c = p[4 * r + 2], d = p[4 * r + 3];
      for (std::int64_t n = 0; n < B; ++n) {
        double v = 0, dv = 0;
        symbolic::eval(f, b * h[n * I + e.in] + c, v, dv);
        y[n * O + e.out] = static_cast<T>(y[n * O + e.out] + (a * v + d));
      }
    }
  }

  // The symbolic edges' part of layer j's backward: writes the grad of symbolic_affine and adds
  // to gx (B, I) (the gradient at the raw input h) when not null.
  void symbolic_backward(std::size_t j, std::int64_t B, const T* h, const T* g, T* gx) {
    const LayerConfig& l = cfg.layers[j];
    const std::int64_t I = l.in_features, O = l.out_features;
    const T* p = t[slots[j].e].value.data();
    T* gp = t[slots[j].e].grad.data();
    for (std::size_t r = 0; r < l.symbolic.size(); ++r) {
      const SymbolicEdge& e = l.symbolic[r];
      const int f = symbolic::index_of(e.function);
      const double a = p[4 * r], b = p[4 * r + 1], c = p[4 * r + 2];
      double ga = 0, gb = 0, gc = 0, gd = 0;
      for (std::int64_t n = 0; n < B; ++n) {
        const double x = h[n * I + e.in], gy = g[n * O + e.out];
        double v = 0, dv = 0;
        symbolic::eval(f, b * x + c, v, dv);
        const double gu = gy * a * dv;
        ga += gy * v;
        gb += gu * x;
        gc += gu;
        gd += gy;
        if (gx) gx[n * I + e.in] = static_cast<T>(gx[n * I + e.in] + gu * b);
      }
      gp[4 * r] = static_cast<T>(ga);
      gp[4 * r + 1] = static_cast<T>(gb);
      gp[4 * r + 2] = static_cast<T>(gc);
      gp[4 * r + 3] = static_cast<T>(gd);
    }
  }

  // In place: y (B, O) -> LayerNorm_j(y). Keeps xhat and rstd in `c` when given.
  void norm_forward(std::size_t j, std::int64_t B, T* y, Cache<T>* c) const {
    const std::int64_t O = cfg.layers[j].out_features;
    const T* w = t[norms[j].first].value.data();
    const T* bias = t[norms[j].second].value.data();
    if (c) {
      c->xhat[j].resize(static_cast<std::size_t>(B * O));
      c->rstd[j].resize(static_cast<std::size_t>(B));
    }
#pragma omp parallel for schedule(static) num_threads(internal::threads_for(4 * B * O))
    for (std::int64_t b = 0; b < B; ++b) {
      T* row = y + b * O;
      const double mean = row_sum(row, O, [](double v) { return v; }) / static_cast<double>(O);
      const double var = row_sum(row, O, [mean](double v) { return (v - mean) * (v - mean); }) / static_cast<double>(O);
      const double r = 1.0 / std::sqrt(var + cfg.layernorm_eps);
      if (c) c->rstd[j][b] = static_cast<T>(r);
      for (std::int64_t o = 0; o < O; ++o) {
        const T xh = static_cast<T>((row[o] - mean) * r);
        if (c) c->xhat[j][b * O + o] = xh;
        row[o] = xh * w[o] + bias[o];
      }
    }
  }

  // g (B, O): gradient at LayerNorm_j's output in, gradient at its input out.
  void norm_backward(std::size_t j, std::int64_t B, std::int64_t O, Buffer<T>& g) {
    const T* w = t[norms[j].first].value.data();
    T* gw = t[norms[j].first].grad.data();
    T* gb = t[norms[j].second].grad.data();
    std::vector<double> aw(static_cast<std::size_t>(O), 0.0), ab(static_cast<std::size_t>(O), 0.0);
    const T* xh = cache.xhat[j].data();
    for (std::int64_t b = 0; b < B; ++b) {
      T* gr = g.data() + b * O;
      const T* xr = xh + b * O;
      double m1 = 0, m2 = 0;
      for (std::int64_t o = 0; o < O; ++o) {
        aw[o] += static_cast<double>(gr[o]) * xr[o];
        ab[o] += gr[o];
        const double gh = static_cast<double>(gr[o]) * w[o];
        m1 += gh;
        m2 += gh * xr[o];
      }
      m1 /= static_cast<double>(O);
      m2 /= static_cast<double>(O);
      const double r = cache.rstd[j][b];
      for (std::int64_t o = 0; o < O; ++o) {
        const double gh = static_cast<double>(gr[o]) * w[o];
        gr[o] = static_cast<T>(r * (gh - m1 - xr[o] * m2));
      }
    }
    for (std::int64_t o = 0; o < O; ++o) {
      gw[o] = static_cast<T>(aw[o]);
      gb[o] = static_cast<T>(ab[o]);
    }
  }

  void run(std::int64_t B, const T* x, T* y, Cache<T>* c) const {
    const std::size_t n = cfg.layers.size();
    if (c) {
      c->batch = -1;
      c->input.resize(n);
      c->raw.resize(n);
      c->xhat.resize(n);
      c->rstd.resize(n);
    }
    Buffer<T> h, next, scratch;
    const T* cur = x;
    for (std::size_t j = 0; j < n; ++j) {
      const std::int64_t O = cfg.layers[j].out_features;
      T* dst = (j + 1 == n) ? y : nullptr;
      if (!dst) {
        next.assign(static_cast<std::size_t>(B * O), T(0));
        dst = next.data();
      }
      if (c && slots[j].e != kNone) c->raw[j].assign(cur, cur + B * cfg.layers[j].in_features);
      layer_forward(j, B, cur, dst, c ? c->input[j] : scratch);
      if (j + 1 < n) {
        if (cfg.layernorm) norm_forward(j, B, dst, c);
        h.swap(next);
        cur = h.data();
      }
    }
    if (c) c->batch = B;
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
namespace {
std::unique_ptr<Network::Impl> make_engine(const NetworkConfig& c, std::uint64_t seed) {
  validate(c);
  if (c.dtype == DType::float64) return std::make_unique<Engine<double>>(c, seed);
  return std::make_unique<Engine<float>>(c, seed);
}

void cpu_only(const ExecContext& ctx) {
  if (ctx.device.type != DeviceType::cpu) {
    throw std::runtime_error("kancore: Network is not yet on CUDA (CPU only for now)");
  }
}

void check_batch(std::int64_t batch, const void* x, const void* y) {
  if (batch < 0) fail("expected batch >= 0, got " + std::to_string(batch));
  if (batch > (std::int64_t{1} << 40)) fail("expected batch < 2^40, got " + std::to_string(batch));
  if (batch > 0 && (!x || !y)) fail("expected input and output buffers, got null");
}
}  // namespace

Network::Network(const NetworkConfig& config, std::uint64_t seed) : impl_(make_engine(config, seed)) {}
Network::~Network() = default;
Network::Network(const Network& other) : impl_(other.impl_->clone()) {}
Network& Network::operator=(const Network& other) {
  if (this != &other) impl_ = other.impl_->clone();
  return *this;
}
Network::Network(Network&&) noexcept = default;
Network& Network::operator=(Network&&) noexcept = default;

const NetworkConfig& Network::config() const { return impl_->cfg; }
DType Network::dtype() const { return impl_->cfg.dtype; }
std::int64_t Network::in_features() const { return impl_->cfg.layers.front().in_features; }
std::int64_t Network::out_features() const { return impl_->cfg.layers.back().out_features; }

std::int64_t Network::num_parameters() const {
  std::int64_t n = 0;
  for (const auto& v : impl_->tensors())
    if (v.group != ParamGroup::buffer) n += v.numel();
  return n;
}

std::vector<TensorView> Network::tensors() { return impl_->tensors(); }

TensorView Network::tensor(std::string_view name) {
  for (auto& v : impl_->tensors())
    if (v.name == name) return v;
  throw std::out_of_range("kancore: the network has no tensor named " + std::string(name));
}

void Network::forward(std::int64_t batch, const void* x, void* y, const ExecContext& ctx) const {
  cpu_only(ctx);
  check_batch(batch, x, y);
  if (batch == 0) return;
  impl_->forward_const(batch, x, y);
}

void Network::forward_train(std::int64_t batch, const void* x, void* y, const ExecContext& ctx) {
  cpu_only(ctx);
  check_batch(batch, x, y);
  impl_->forward(batch, x, y, true);
}

void Network::backward(const void* grad_y, void* grad_x, const ExecContext& ctx) {
  cpu_only(ctx);
  if (!grad_y) fail("expected a grad_y buffer, got null");
  impl_->backward(grad_y, grad_x);
}

void Network::zero_grad() { impl_->zero_grad(); }

double Network::regularization(double weight, bool add_to_grad) {
  if (!std::isfinite(weight)) fail("expected a finite regularisation weight, got " + std::to_string(weight));
  return impl_->regularization(weight, add_to_grad);
}

void Network::update_grids(std::int64_t batch, const void* x, const GridUpdateSettings& s) {
  check_batch(batch, x, x);
  // Layers are updated one after another (each on the outputs of the updated ones before it):
  // work on a copy and swap it in, so a throw in a later layer leaves the network unchanged.
  auto next = impl_->clone();
  next->update_grids(batch, x, s);
  impl_ = std::move(next);
}

std::vector<std::vector<double>> Network::edge_importance(std::int64_t batch, const void* x) const {
  if (batch < 1) fail("expected at least one sample for edge_importance, got " + std::to_string(batch));
  check_batch(batch, x, x);
  return impl_->edge_importance(batch, x);
}

Network Network::prune_nodes(const std::vector<std::vector<std::int64_t>>& keep) const {
  const NetworkConfig& old = impl_->cfg;
  const std::size_t L = old.layers.size();
  if (old.layernorm) fail("prune_nodes: a network with LayerNorm cannot lose nodes (the normalisation of the others would change)");
  if (keep.size() + 1 != L) {
    fail("expected one list of kept nodes per hidden layer (" + std::to_string(L - 1) + "), got " + std::to_string(keep.size()));
  }
  for (std::size_t j = 0; j < keep.size(); ++j) {
    const auto& kj = keep[j];
    if (kj.empty()) fail("prune_nodes: hidden layer " + std::to_string(j) + " would keep no node");
    for (std::size_t q = 0; q < kj.size(); ++q) {
      if (kj[q] < 0 || kj[q] >= old.layers[j].out_features || (q > 0 && kj[q] <= kj[q - 1])) {
        fail("prune_nodes: expected strictly increasing node indices in [0, " +
             std::to_string(old.layers[j].out_features) + ") for hidden layer " + std::to_string(j));
      }
    }
  }
  auto all = [](std::int64_t n) {
    std::vector<std::int64_t> v(static_cast<std::size_t>(n));
    std::iota(v.begin(), v.end(), 0);
    return v;
  };
  auto position = [](const std::vector<std::int64_t>& v, std::int64_t x) -> std::int64_t {
    auto it = std::find(v.begin(), v.end(), x);
    return it == v.end() ? -1 : static_cast<std::int64_t>(it - v.begin());
  };
  NetworkConfig cfg = old;
  for (std::size_t j = 0; j < L; ++j) {
    const auto ins = j > 0 ? keep[j - 1] : all(old.layers[j].in_features);
    const auto outs = j + 1 < L ? keep[j] : all(old.layers[j].out_features);
    cfg.layers[j].in_features = static_cast<std::int64_t>(ins.size());
    cfg.layers[j].out_features = static_cast<std::int64_t>(outs.size());
    cfg.layers[j].symbolic.clear();  // the kept symbolic edges, renumbered
    for (const SymbolicEdge& e : old.layers[j].symbolic) {
      const std::int64_t i = position(ins, e.in), o = position(outs, e.out);
      if (i >= 0 && o >= 0) cfg.layers[j].symbolic.push_back({i, o, e.function});
    }
  }
  Network out(cfg);
  Network& self = const_cast<Network&>(*this);  // tensors() is non-const; nothing is written
  const std::size_t elem = old.dtype == DType::float64 ? 8 : 4;
  for (std::size_t j = 0; j < L; ++j) {
    const LayerConfig& l = old.layers[j];
    const auto ins = j > 0 ? keep[j - 1] : all(l.in_features);
    const auto outs = j + 1 < L ? keep[j] : all(l.out_features);
    const std::string p = "layers." + std::to_string(j) + ".";
    // Copies src[(a, b, c)] -> dst for a in A, b in Bx, c in Cx of a 3-d (row-major) tensor.
    auto copy3 = [&](const std::string& name, const std::vector<std::int64_t>& A, const std::vector<std::int64_t>& Bx,
                     const std::vector<std::int64_t>& Cx, std::int64_t nb, std::int64_t nc) {
      const TensorView src = self.tensor(p + name);
      const TensorView dst = out.tensor(p + name);
      const char* s = static_cast<const char*>(src.data);
      char* d = static_cast<char*>(dst.data);
      std::size_t e = 0;
      for (auto a : A)
        for (auto b : Bx)
          for (auto c : Cx) std::memcpy(d + elem * e++, s + elem * static_cast<std::size_t>((a * nb + b) * nc + c), elem);
    };
    const std::vector<std::int64_t> one{0};
    if (l.kind == LayerKind::c0) {
      const std::int64_t K = l.num_control_points;
      copy3("kan_weight", ins, all(K), outs, K, l.out_features);
      if (l.fitted_domain) {
        copy3("input_scale", one, one, ins, 1, l.in_features);
        copy3("input_offset", one, one, ins, 1, l.in_features);
      }
    } else {
      const std::int64_t nk = l.grid_size + 2 * l.spline_order + 1, C = l.grid_size + l.spline_order;
      copy3("grid", one, ins, all(nk), l.in_features, nk);
      copy3("base_weight", one, outs, ins, l.out_features, l.in_features);
      copy3("spline_weight", outs, ins, all(C), l.in_features, C);
      copy3("spline_scaler", one, outs, ins, l.out_features, l.in_features);
    }
  }
  copy_symbolic_affine(self, out, keep);
  return out;
}

namespace {
// Every tensor of `to` but the symbolic affines from the same-named tensor of `from` (same
// shapes: the caller changed only symbolic edges).
void copy_tensors(Network& from, Network& to) {
  for (TensorView& v : to.tensors()) {
    if (std::string_view(v.name).ends_with(".symbolic_affine")) continue;
    const TensorView src = from.tensor(v.name);
    std::memcpy(v.data, src.data, static_cast<std::size_t>(v.numel()) * (v.dtype == DType::float64 ? 8 : 4));
  }
}
}  // namespace

// The rows (a, b, c, d) of every symbolic edge of `to` from the same edge of `from`; keep[j] maps
// layer j's outputs of `to` to those of `from` (empty: the same numbering).
void Network::copy_symbolic_affine(Network& from, Network& to, const std::vector<std::vector<std::int64_t>>& keep) {
  const NetworkConfig& fc = from.config();
  const NetworkConfig& tc = to.config();
  const std::size_t elem = fc.dtype == DType::float64 ? 8 : 4;
  for (std::size_t j = 0; j < tc.layers.size(); ++j) {
    if (tc.layers[j].symbolic.empty() || fc.layers[j].symbolic.empty()) continue;
    const std::string name = "layers." + std::to_string(j) + ".symbolic_affine";
    const TensorView dst = to.tensor(name);
    const TensorView src = from.tensor(name);
    auto map = [&](std::size_t layer, std::int64_t v) {
      return keep.empty() || layer >= keep.size() ? v : keep[layer][static_cast<std::size_t>(v)];
    };
    for (std::size_t r = 0; r < tc.layers[j].symbolic.size(); ++r) {
      const SymbolicEdge& e = tc.layers[j].symbolic[r];
      const std::int64_t in = j > 0 ? map(j - 1, e.in) : e.in, out = map(j, e.out);
      const auto& old = fc.layers[j].symbolic;
      for (std::size_t q = 0; q < old.size(); ++q) {
        if (old[q].in == in && old[q].out == out) {
          std::memcpy(static_cast<char*>(dst.data) + 4 * elem * r, static_cast<const char*>(src.data) + 4 * elem * q,
                      4 * elem);
        }
      }
    }
  }
}

void Network::fix_symbolic(std::size_t layer, std::int64_t i, std::int64_t o, std::string_view function, double a,
                           double b, double c, double d) {
  const NetworkConfig& old = impl_->cfg;
  if (layer >= old.layers.size()) {
    fail("fix_symbolic: expected a layer index below " + std::to_string(old.layers.size()) + ", got " +
         std::to_string(layer));
  }
  if (!(std::isfinite(a) && std::isfinite(b) && std::isfinite(c) && std::isfinite(d))) {
    fail("fix_symbolic: expected finite a, b, c, d");
  }
  NetworkConfig cfg = old;
  auto& edges = cfg.layers[layer].symbolic;
  std::size_t row = edges.size();
  for (std::size_t r = 0; r < edges.size(); ++r)
    if (edges[r].in == i && edges[r].out == o) row = r;
  if (row == edges.size()) edges.push_back({i, o, std::string(function)});
  edges[row].function = std::string(function);
  Network next(cfg);  // validates the edge and the function name
  copy_tensors(*this, next);
  copy_symbolic_affine(*this, next, {});
  const TensorView affine = next.tensor("layers." + std::to_string(layer) + ".symbolic_affine");
  const double values[4] = {a, b, c, d};
  for (int k = 0; k < 4; ++k) {
    if (cfg.dtype == DType::float64) static_cast<double*>(affine.data)[4 * row + k] = values[k];
    else static_cast<float*>(affine.data)[4 * row + k] = static_cast<float>(values[k]);
  }
  *this = std::move(next);
}

bool Network::unfix_symbolic(std::size_t layer, std::int64_t i, std::int64_t o) {
  if (layer >= impl_->cfg.layers.size()) {
    fail("unfix_symbolic: expected a layer index below " + std::to_string(impl_->cfg.layers.size()) + ", got " +
         std::to_string(layer));
  }
  NetworkConfig cfg = impl_->cfg;
  auto& edges = cfg.layers[layer].symbolic;
  const auto it = std::find_if(edges.begin(), edges.end(), [&](const SymbolicEdge& e) { return e.in == i && e.out == o; });
  if (it == edges.end()) return false;
  edges.erase(it);
  Network next(cfg);
  copy_tensors(*this, next);
  copy_symbolic_affine(*this, next, {});
  *this = std::move(next);
  return true;
}

void Network::refine(std::int64_t new_size) {
  for (const LayerConfig& l : impl_->cfg.layers) {
    const std::int64_t least = l.kind == LayerKind::c0 ? 2 : 1;
    if (new_size < least) {
      fail("expected a new grid size >= " + std::to_string(least) + " for every layer, got " + std::to_string(new_size));
    }
  }
  auto next = impl_->clone();  // all layers or none
  next->refine(new_size);
  impl_ = std::move(next);
}

void Network::check_dtype(DType requested) const {
  if (requested != dtype()) {
    fail("expected " + to_string(dtype()) + " data for this network, got " + to_string(requested));
  }
}

}  // namespace kancore

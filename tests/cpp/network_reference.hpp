// A straightforward float64 re-statement of the model-format forward (docs/model_format.md,
// "Forward"), read from a Network's named tensors: the oracle of the Network tests.
#pragma once

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "kancore/network.hpp"

namespace netref {

inline std::vector<double> as_f64(const kancore::TensorView& v) {
  std::vector<double> out(static_cast<std::size_t>(v.numel()));
  for (std::size_t e = 0; e < out.size(); ++e) {
    out[e] = v.dtype == kancore::DType::float64 ? static_cast<const double*>(v.data)[e]
                                                : static_cast<const float*>(v.data)[e];
  }
  return out;
}

// Cox-de Boor over the whole knot row (0/0 counts as 0); the G+k order-k values at x.
inline std::vector<double> basis(const double* t, int n, int k, double x) {
  std::vector<double> B(n - 1);
  for (int j = 0; j + 1 < n; ++j) B[j] = (x >= t[j] && x < t[j + 1]) ? 1 : 0;
  for (int p = 1; p <= k; ++p) {
    std::vector<double> nb(n - 1 - p);
    for (int j = 0; j + p + 1 < n; ++j) {
      const double d1 = t[j + p] - t[j], d2 = t[j + p + 1] - t[j + 1];
      double v = 0;
      if (d1 != 0) v += (x - t[j]) / d1 * B[j];
      if (d2 != 0) v += (t[j + p + 1] - x) / d2 * B[j + 1];
      nb[j] = v;
    }
    B = nb;
  }
  return B;
}

// The symbolic edge functions, written out again (independent of cpp/src/symbolic_edges.hpp).
inline double symbolic_function(const std::string& f, double u) {
  if (f == "x") return u;
  if (f == "x^2") return std::pow(u, 2);
  if (f == "x^3") return std::pow(u, 3);
  if (f == "x^4") return std::pow(u, 4);
  if (f == "1/x") return 1 / u;
  if (f == "1/x^2") return 1 / std::pow(u, 2);
  if (f == "sqrt") return std::sqrt(u);
  if (f == "exp") return std::exp(u);
  if (f == "log") return std::log(u);
  if (f == "sin") return std::sin(u);
  if (f == "tanh") return std::tanh(u);
  if (f == "abs") return std::abs(u);
  if (f == "gaussian") return std::exp(-u * u);
  if (f == "arctan") return std::atan(u);
  throw std::invalid_argument("unknown function " + f);
}

inline bool is_symbolic(const kancore::LayerConfig& l, long i, long o) {
  for (const auto& e : l.symbolic)
    if (e.in == i && e.out == o) return true;
  return false;
}

inline std::vector<double> forward(kancore::Network& net, const std::vector<double>& x, long B) {
  const auto& cfg = net.config();
  std::vector<double> h = x;
  for (std::size_t j = 0; j < cfg.layers.size(); ++j) {
    const auto& l = cfg.layers[j];
    const std::string p = "layers." + std::to_string(j) + ".";
    const long I = l.in_features, O = l.out_features;
    std::vector<double> y(static_cast<std::size_t>(B * O), 0.0);
    if (l.kind == kancore::LayerKind::c0) {
      const auto C = as_f64(net.tensor(p + "kan_weight"));
      std::vector<double> sc(I, 1.0), of(I, 0.0);
      if (l.fitted_domain) {
        sc = as_f64(net.tensor(p + "input_scale"));
        of = as_f64(net.tensor(p + "input_offset"));
      }
      const long K = l.num_control_points;
      const double W = l.spline_width;
      for (long b = 0; b < B; ++b)
        for (long i = 0; i < I; ++i) {
          const double xi = h[b * I + i] * sc[i] + of[i];
          const double u = ((xi + W / 2) * (K - 1)) / W;
          const long k = std::min<long>(std::max<long>(static_cast<long>(std::floor(u)), 0), K - 2);
          const double t = u - k;
          for (long o = 0; o < O; ++o)
            if (!is_symbolic(l, i, o)) y[b * O + o] += (1 - t) * C[(i * K + k) * O + o] + t * C[(i * K + k + 1) * O + o];
        }
    } else {
      const auto grid = as_f64(net.tensor(p + "grid"));
      const auto bw = as_f64(net.tensor(p + "base_weight"));
      const auto sw = as_f64(net.tensor(p + "spline_weight"));
      const auto ss = as_f64(net.tensor(p + "spline_scaler"));
      const int k = static_cast<int>(l.spline_order), nk = static_cast<int>(l.grid_size + 2 * l.spline_order + 1);
      const long Cn = l.grid_size + l.spline_order;
      for (long b = 0; b < B; ++b)
        for (long i = 0; i < I; ++i) {
          const double xi = h[b * I + i];
          const double silu = xi / (1 + std::exp(-xi));
          const auto Bv = basis(&grid[i * nk], nk, k, xi);
          for (long o = 0; o < O; ++o) {
            if (is_symbolic(l, i, o)) continue;
            double s = 0;
            for (long c = 0; c < Cn; ++c) s += Bv[c] * sw[(o * I + i) * Cn + c];
            y[b * O + o] += bw[o * I + i] * silu + ss[o * I + i] * s;
          }
        }
    }
    if (!l.symbolic.empty()) {  // a * f(b * h_i + c) + d on the layer's raw input
      const auto A = as_f64(net.tensor(p + "symbolic_affine"));
      for (std::size_t r = 0; r < l.symbolic.size(); ++r) {
        const auto& e = l.symbolic[r];
        for (long b = 0; b < B; ++b)
          y[b * O + e.out] += A[4 * r] * symbolic_function(e.function, A[4 * r + 1] * h[b * I + e.in] + A[4 * r + 2]) +
                              A[4 * r + 3];
      }
    }
    if (cfg.layernorm && j + 1 < cfg.layers.size()) {
      const auto w = as_f64(net.tensor("norms." + std::to_string(j) + ".weight"));
      const auto bias = as_f64(net.tensor("norms." + std::to_string(j) + ".bias"));
      for (long b = 0; b < B; ++b) {
        double m = 0, v = 0;
        for (long o = 0; o < O; ++o) m += y[b * O + o];
        m /= O;
        for (long o = 0; o < O; ++o) v += (y[b * O + o] - m) * (y[b * O + o] - m);
        v /= O;
        for (long o = 0; o < O; ++o) y[b * O + o] = (y[b * O + o] - m) / std::sqrt(v + cfg.layernorm_eps) * w[o] + bias[o];
      }
    }
    h = y;
  }
  return h;
}

}  // namespace netref

// pykan's sample-based edge-scale regulariser (see kancore/regularizers.hpp for the definition).
//
// Why two passes and no (batch, out, in) buffer: A only needs per-edge means and standard
// deviations, so pass 1 streams over the batch once per input feature i, evaluating the out edge
// values phi_oi(x[b, i]) on the fly and folding them into per-edge Welford accumulators. The
// loss's derivative wrt A is closed-form (parameter-sized work). Since d std / d phi_b is
// (phi_b - mean) / ((B-1) std), pass 2 re-evaluates phi per (b, i) and scatters
// c[o,i] (phi - mean) into the parameter and input gradients. Work is split over inputs i: each
// thread owns whole columns of x and the parameter slices of its inputs, so nothing is shared
// and the result does not depend on the thread count.
#include "kancore/regularizers.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "bspline_basis.hpp"
#include "c0_segment.hpp"
#include "dispatch_common.hpp"
#include "threads.hpp"

namespace kancore::reg {
namespace {

using dispatch::fail;
using dispatch::require;

constexpr double kInputFloor = 0.1;  // pykan: std(input) + 0.1
constexpr double kLogEps = 1e-4;     // pykan: log2(p + 1e-4)
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void cpu_only(const ExecContext& ctx) {
  if (ctx.device.type == DeviceType::cuda) {
    throw std::runtime_error("kancore: the edge-scale regulariser is not yet on CUDA (CPU only for now)");
  }
  if (ctx.device.type != DeviceType::cpu) fail("expected device cpu or cuda");
}

void check_common(std::int64_t batch, const EdgeScaleOptions& o) {
  if (batch < 2) {
    fail("expected batch >= 2 for the edge-scale regulariser (a standard deviation over the "
         "batch needs two samples), got " + std::to_string(batch));
  }
  for (double v : {o.lamb_l1, o.lamb_entropy, o.lamb_coef, o.lamb_coefdiff}) {
    if (!std::isfinite(v)) fail("expected finite regularisation strengths, got " + std::to_string(v));
  }
}

// The loss as a function of A (out, in), and dA = d loss / d A when dA is not null. Only the
// l1 and entropy terms; A >= 0, so every log argument is >= 1e-4 and nothing here is NaN for
// finite A.
double scale_loss(const std::vector<double>& A, std::int64_t out, std::int64_t in,
                  const EdgeScaleOptions& opt, std::vector<double>* dA) {
  const double inv_ln2 = 1.0 / std::log(2.0);
  auto f = [](double p) { return p * std::log2(p + kLogEps); };
  auto fprime = [&](double p) { return std::log2(p + kLogEps) + p / (p + kLogEps) * inv_ln2; };
  double l1 = 0.0, e_row = 0.0, e_col = 0.0;
  std::vector<double> row(out, 0.0), col(in, 0.0);
  for (std::int64_t o = 0; o < out; ++o) {
    for (std::int64_t i = 0; i < in; ++i) {
      const double a = A[o * in + i];
      l1 += a;
      row[o] += a;
      col[i] += a;
    }
  }
  for (std::int64_t o = 0; o < out; ++o) {
    for (std::int64_t i = 0; i < in; ++i) e_row -= f(A[o * in + i] / (row[o] + 1.0));
  }
  for (std::int64_t i = 0; i < in; ++i) {
    for (std::int64_t o = 0; o < out; ++o) e_col -= f(A[o * in + i] / (col[i] + 1.0));
  }
  e_row /= static_cast<double>(out);
  e_col /= static_cast<double>(in);
  if (dA) {
    // p = a / (R + 1):  d/da_j of -(1/n) sum_i f(p_i) = -(1/n) (f'(p_j) - sum_i f'(p_i) p_i) / (R + 1).
    std::vector<double> srow(out, 0.0), scol(in, 0.0);
    for (std::int64_t o = 0; o < out; ++o) {
      for (std::int64_t i = 0; i < in; ++i) {
        const double pr = A[o * in + i] / (row[o] + 1.0), pc = A[o * in + i] / (col[i] + 1.0);
        srow[o] += fprime(pr) * pr;
        scol[i] += fprime(pc) * pc;
      }
    }
    dA->assign(static_cast<std::size_t>(out * in), 0.0);
    for (std::int64_t o = 0; o < out; ++o) {
      for (std::int64_t i = 0; i < in; ++i) {
        const double pr = A[o * in + i] / (row[o] + 1.0), pc = A[o * in + i] / (col[i] + 1.0);
        const double d_row = -(fprime(pr) - srow[o]) / ((row[o] + 1.0) * static_cast<double>(out));
        const double d_col = -(fprime(pc) - scol[i]) / ((col[i] + 1.0) * static_cast<double>(in));
        (*dA)[o * in + i] = opt.lamb_l1 + opt.lamb_entropy * (d_row + d_col);
      }
    }
  }
  return opt.lamb_l1 * l1 + opt.lamb_entropy * (e_row + e_col);
}

// pykan's coefficient terms on edges laid out as (outer, Kc, inner):
//   (lamb_coef * sum |w| + lamb_coefdiff * sum |w[c+1] - w[c]|) / out_features.
// pykan 0.2.8 writes sum(mean(|coef|, dim=1)) on coef of shape (in, out, G+k), so its "mean" runs
// over the out axis, not over one edge's coefficients; we follow it (checked against pykan).
// Adds the gradient into grad (same layout) when not null.
template <class T>
double coef_penalty(const T* w, std::int64_t outer, std::int64_t Kc, std::int64_t inner,
                    std::int64_t out_features, const EdgeScaleOptions& opt, T* grad) {
  if (opt.lamb_coef == 0.0 && opt.lamb_coefdiff == 0.0) return 0.0;
  auto sgn = [](double v) { return v > 0 ? 1.0 : (v < 0 ? -1.0 : 0.0); };
  const double norm = 1.0 / static_cast<double>(out_features);
  const double ga = opt.lamb_coef * norm, gd = opt.lamb_coefdiff * norm;
  double sum_abs = 0.0, sum_diff = 0.0;
  for (std::int64_t a = 0; a < outer; ++a) {
    for (std::int64_t b = 0; b < inner; ++b) {
      auto at = [&](std::int64_t c) { return (a * Kc + c) * inner + b; };
      for (std::int64_t c = 0; c < Kc; ++c) {
        const double v = static_cast<double>(w[at(c)]);
        sum_abs += std::abs(v);
        if (grad) grad[at(c)] += static_cast<T>(ga * sgn(v));
      }
      for (std::int64_t c = 0; c + 1 < Kc; ++c) {
        const double d = static_cast<double>(w[at(c + 1)]) - static_cast<double>(w[at(c)]);
        sum_diff += std::abs(d);
        if (grad) {
          grad[at(c + 1)] += static_cast<T>(gd * sgn(d));
          grad[at(c)] -= static_cast<T>(gd * sgn(d));
        }
      }
    }
  }
  return (opt.lamb_coef * sum_abs + opt.lamb_coefdiff * sum_diff) * norm;
}

// ---- edge functions ----------------------------------------------------------------------------
// Each edge kind provides, for input feature i and one sample value xv:
//   values(i, xv, phi, s)            phi[o] = phi_oi(xv) for every o
//   backprop(i, xv, c, m, want_dx, s) with g_o = c[o] (phi_oi(xv) - m[o]): adds g_o d phi / d params
//                                    to its per-input buffers and returns sum_o g_o d phi_oi / dx
//   begin(i, s) / flush(i, s)        start input i (load its parameters, zero its gradient
//                                    buffers) / write out its parameter gradients
// `s` is per-thread scratch (Scratch), allocated before the parallel region.

template <class T>
struct C0Edge {
  std::int64_t out, K;
  const T* table;
  T* grad_table;
  c0::detail::Grid<T> grid;

  struct Scratch {
    std::vector<double> gt;  // (K, out) gradient of this input's table slice
  };
  Scratch scratch() const { return Scratch{std::vector<double>(grad_table ? K * out : 0)}; }

  // (k, t) exactly as the layer's forward finds them (same rounding, same clamps).
  void values(std::int64_t i, T xv, double* phi, Scratch&) const {
    std::int64_t k;
    T t;
    c0::detail::locate(grid, xv, k, t);
    const T* r0 = table + (i * K + k) * out;
    const T* r1 = r0 + out;
    const double td = static_cast<double>(t);
    for (std::int64_t o = 0; o < out; ++o) {
      phi[o] = (1.0 - td) * static_cast<double>(r0[o]) + td * static_cast<double>(r1[o]);
    }
  }
  double backprop(std::int64_t i, T xv, const double* c, const double* m, bool want_dx, Scratch& s) const {
    std::int64_t k;
    T t;
    c0::detail::locate(grid, xv, k, t);
    const T* r0 = table + (i * K + k) * out;
    const T* r1 = r0 + out;
    const double td = static_cast<double>(t);
    const double slope = static_cast<double>(grid.slope);
    double* g0 = grad_table ? s.gt.data() + k * out : nullptr;
    double* g1 = g0 ? g0 + out : nullptr;
    double dx = 0.0;
    for (std::int64_t o = 0; o < out; ++o) {
      const double a = static_cast<double>(r0[o]), b = static_cast<double>(r1[o]);
      const double g = c[o] * ((1.0 - td) * a + td * b - m[o]);
      if (g0) {
        g0[o] += g * (1.0 - td);
        g1[o] += g * td;
      }
      if (want_dx) dx += g * (b - a) * slope;
    }
    return dx;
  }
  void begin(std::int64_t, Scratch& s) const { std::fill(s.gt.begin(), s.gt.end(), 0.0); }
  void flush(std::int64_t i, Scratch& s) const {
    if (!grad_table) return;
    T* dst = grad_table + i * K * out;
    for (std::int64_t j = 0; j < K * out; ++j) dst[j] = static_cast<T>(s.gt[j]);
  }
};

template <class T>
struct BsplineEdge {
  std::int64_t in, out, G, k, C;
  const T* knots;
  const T* base;    // (out, in) or null
  const T* weight;  // (out, in, C)
  const T* scaler;  // (out, in) or null
  bspline::Grads grads;

  // begin(i) copies input i's parameters into contiguous float64 rows, the weights transposed
  // to (C, out), so every loop below runs over contiguous outputs and vectorises.
  struct Scratch {
    std::vector<T> v, d, work;                // basis values, derivatives, eval scratch
    std::vector<double> wt, bw, sc;           // (C, out), (out), (out)
    std::vector<double> spl, dspl, g;         // (out) spline values / derivatives / g sc at one x
    std::vector<double> gb, gw, gs;           // per-input gradients: (out), (C, out), (out)
  };
  Scratch scratch() const {
    Scratch s;
    s.v.resize(k + 1);
    s.d.resize(k + 1);
    s.work.resize(2 * (k + 1));
    s.wt.resize(C * out);
    s.bw.resize(out);
    s.sc.resize(out);
    s.spl.resize(out);
    s.dspl.resize(out);
    s.g.resize(out);
    if (grads.base_weight) s.gb.resize(out);
    if (grads.spline_weight) s.gw.resize(C * out);
    if (grads.spline_scaler) s.gs.resize(out);
    return s;
  }

  static double silu(double v) { return v / (1.0 + std::exp(-v)); }
  static double dsilu(double v) {
    const double sg = 1.0 / (1.0 + std::exp(-v));
    return sg * (1.0 + v * (1.0 - sg));
  }

  // spl[o] = sum_r W[o, first+r] v[r] (and dspl with the derivatives) for every o.
  std::int64_t splines(std::int64_t i, T xv, bool with_deriv, Scratch& s) const {
    const std::int64_t first = bspline::detail::eval_basis(knots + i * (G + 2 * k + 1), G, k, xv, s.v.data(),
                                                           with_deriv ? s.d.data() : nullptr, s.work.data());
    double* spl = s.spl.data();
    double* dspl = s.dspl.data();
    std::fill(spl, spl + out, 0.0);
    if (with_deriv) std::fill(dspl, dspl + out, 0.0);
    for (std::int64_t r = 0; r <= k; ++r) {
      const double* row = s.wt.data() + (first + r) * out;
      const double vr = static_cast<double>(s.v[r]);
      for (std::int64_t o = 0; o < out; ++o) spl[o] += vr * row[o];
      if (with_deriv) {
        const double dr = static_cast<double>(s.d[r]);
        for (std::int64_t o = 0; o < out; ++o) dspl[o] += dr * row[o];
      }
    }
    return first;
  }

  void values(std::int64_t i, T xv, double* phi, Scratch& s) const {
    splines(i, xv, false, s);
    const double act = base ? silu(static_cast<double>(xv)) : 0.0;
    const double* bw = s.bw.data();
    const double* sc = s.sc.data();
    const double* spl = s.spl.data();
    for (std::int64_t o = 0; o < out; ++o) phi[o] = bw[o] * act + sc[o] * spl[o];
  }
  double backprop(std::int64_t i, T xv, const double* c, const double* m, bool want_dx, Scratch& s) const {
    const std::int64_t first = splines(i, xv, want_dx, s);
    const double xd = static_cast<double>(xv);
    const double act = base ? silu(xd) : 0.0;
    const double dact = (base && want_dx) ? dsilu(xd) : 0.0;
    const double* bw = s.bw.data();
    const double* sc = s.sc.data();
    const double* spl = s.spl.data();
    const double* dspl = s.dspl.data();
    double* g = s.g.data();
    double dx = 0.0;
    for (std::int64_t o = 0; o < out; ++o) {
      const double go = c[o] * (bw[o] * act + sc[o] * spl[o] - m[o]);
      if (!s.gb.empty()) s.gb[o] += go * act;
      if (!s.gs.empty()) s.gs[o] += go * spl[o];
      if (want_dx) dx += go * (bw[o] * dact + sc[o] * dspl[o]);
      g[o] = go * sc[o];  // d loss / d (spline sum) for the coefficient gradient
    }
    if (!s.gw.empty()) {
      for (std::int64_t r = 0; r <= k; ++r) {
        double* row = s.gw.data() + (first + r) * out;
        const double vr = static_cast<double>(s.v[r]);
        for (std::int64_t o = 0; o < out; ++o) row[o] += g[o] * vr;
      }
    }
    return dx;
  }
  void begin(std::int64_t i, Scratch& s) const {
    for (std::int64_t o = 0; o < out; ++o) {
      const std::int64_t e = o * in + i;
      s.bw[o] = base ? static_cast<double>(base[e]) : 0.0;
      s.sc[o] = scaler ? static_cast<double>(scaler[e]) : 1.0;
      for (std::int64_t c = 0; c < C; ++c) s.wt[c * out + o] = static_cast<double>(weight[e * C + c]);
    }
    std::fill(s.gb.begin(), s.gb.end(), 0.0);
    std::fill(s.gw.begin(), s.gw.end(), 0.0);
    std::fill(s.gs.begin(), s.gs.end(), 0.0);
  }
  void flush(std::int64_t i, Scratch& s) const {
    for (std::int64_t o = 0; o < out; ++o) {
      const std::int64_t e = o * in + i;
      if (!s.gb.empty()) static_cast<T*>(grads.base_weight)[e] = static_cast<T>(s.gb[o]);
      if (!s.gs.empty()) static_cast<T*>(grads.spline_scaler)[e] = static_cast<T>(s.gs[o]);
      if (!s.gw.empty()) {
        T* dst = static_cast<T*>(grads.spline_weight) + e * C;
        for (std::int64_t c = 0; c < C; ++c) dst[c] = static_cast<T>(s.gw[c * out + o]);
      }
    }
  }
};

// ---- the shared two-pass driver ----------------------------------------------------------------

struct Want {
  bool x = false;       // d loss / d x
  bool params = false;  // any parameter gradient
};

// Runs both passes for one edge kind. Returns the l1 + entropy part of the loss; writes A
// (out, in) to `scales` and d loss / d x to grad_x when they are not null. Parameter
// gradients go through the edge's flush. Sets `nonfinite` when some x is NaN or ±inf (then
// the caller overwrites the outputs with NaN).
template <class T, class Edge>
double run(const Edge& edge, std::int64_t B, std::int64_t in, std::int64_t out, const T* x,
           const EdgeScaleOptions& opt, const Want& want, T* grad_x, T* scales, bool& nonfinite) {
  // Each (b, i, o) evaluates an edge: about four grain units.
  const int threads = in > 1 ? internal::threads_for(4 * B * in * out) : 1;
  // Per-thread scratch, allocated up front: nothing inside the parallel regions may throw.
  std::vector<typename Edge::Scratch> scratch;
  scratch.reserve(threads);
  for (int t = 0; t < threads; ++t) scratch.push_back(edge.scratch());
  std::vector<std::vector<double>> phi(threads, std::vector<double>(out));
  // Per-edge statistics, stored input-major ([i * out + o]) so each input's row is contiguous.
  std::vector<double> mean_x(in), std_x(in), mean_phi(in * out), std_phi(in * out);
  std::vector<unsigned char> bad(in, 0);
  const double n = static_cast<double>(B);

  // Pass 1: Welford over the batch (stable, exact 0 for a constant edge) per input column.
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (std::int64_t i = 0; i < in; ++i) {
    const int tid = omp_get_thread_num();
    auto& s = scratch[tid];
    edge.begin(i, s);  // loads input i's parameters (and zeroes its gradient buffers)
    double* p = phi[tid].data();
    double* mp = mean_phi.data() + i * out;
    double* m2 = std_phi.data() + i * out;  // holds M2 until the end of the column
    std::fill(mp, mp + out, 0.0);
    std::fill(m2, m2 + out, 0.0);
    double mx = 0.0, m2x = 0.0;
    bool finite = true;
    for (std::int64_t b = 0; b < B; ++b) {
      const T xv = x[b * in + i];
      if (!c0::detail::is_finite(xv)) {
        finite = false;
        break;
      }
      const double inv = 1.0 / static_cast<double>(b + 1);
      const double dx = static_cast<double>(xv) - mx;
      mx += dx * inv;
      m2x += dx * (static_cast<double>(xv) - mx);
      edge.values(i, xv, p, s);
      for (std::int64_t o = 0; o < out; ++o) {
        const double d = p[o] - mp[o];
        mp[o] += d * inv;
        m2[o] += d * (p[o] - mp[o]);
      }
    }
    bad[i] = finite ? 0 : 1;
    mean_x[i] = mx;
    std_x[i] = std::sqrt(std::max(m2x, 0.0) / (n - 1.0));
    for (std::int64_t o = 0; o < out; ++o) m2[o] = std::sqrt(std::max(m2[o], 0.0) / (n - 1.0));
  }
  nonfinite = std::any_of(bad.begin(), bad.end(), [](unsigned char v) { return v != 0; });
  if (nonfinite) return kNaN;

  std::vector<double> A(out * in);
  for (std::int64_t o = 0; o < out; ++o) {
    for (std::int64_t i = 0; i < in; ++i) A[o * in + i] = std_phi[i * out + o] / (std_x[i] + kInputFloor);
  }
  if (scales) {
    for (std::int64_t j = 0; j < out * in; ++j) scales[j] = static_cast<T>(A[j]);
  }
  const bool need_grad = want.x || want.params;
  std::vector<double> dA;
  const double loss = scale_loss(A, out, in, opt, need_grad ? &dA : nullptr);
  if (!need_grad) return loss;

  // Closed-form chain through A = s_phi / (s_x + 0.1) and std:
  //   d loss / d phi_b = c[o,i] (phi_b - mean),  c = dA / (s_x + 0.1) / ((B-1) s_phi)
  //   d loss / d x_b  += cx[i] (x_b - mean_x),   cx = -sum_o dA A / (s_x + 0.1) / ((B-1) s_x)
  // with the subgradient 0 where a std is 0.
  std::vector<double> coef(in * out), cx(in);
  for (std::int64_t i = 0; i < in; ++i) {
    const double den = std_x[i] + kInputFloor;
    double dsx = 0.0;
    for (std::int64_t o = 0; o < out; ++o) {
      const double sp = std_phi[i * out + o];
      const double da = dA[o * in + i];
      coef[i * out + o] = sp > 0.0 ? da / den / ((n - 1.0) * sp) : 0.0;
      dsx -= da * A[o * in + i] / den;
    }
    cx[i] = std_x[i] > 0.0 ? dsx / ((n - 1.0) * std_x[i]) : 0.0;
  }

  // Pass 2: recompute phi per (b, i) and scatter.
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (std::int64_t i = 0; i < in; ++i) {
    auto& s = scratch[omp_get_thread_num()];
    edge.begin(i, s);
    const double* c = coef.data() + i * out;
    const double* m = mean_phi.data() + i * out;
    for (std::int64_t b = 0; b < B; ++b) {
      const T xv = x[b * in + i];
      const double d = edge.backprop(i, xv, c, m, want.x, s);
      if (want.x) grad_x[b * in + i] = static_cast<T>(d + cx[i] * (static_cast<double>(xv) - mean_x[i]));
    }
    edge.flush(i, s);
  }
  return loss;
}

template <class T>
void fill_nan(T* p, std::int64_t n) {
  if (p) std::fill(p, p + n, std::numeric_limits<T>::quiet_NaN());
}

// Knots must be finite and non-decreasing per feature: the basis search relies on it.
template <class T>
void check_knots(const bspline::Shape& s, const T* knots) {
  const std::int64_t n = s.num_knots();
  for (std::int64_t i = 0; i < s.in; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      const T v = knots[i * n + j];
      if (!std::isfinite(v) || (j > 0 && v < knots[i * n + j - 1])) {
        fail("expected finite, non-decreasing knots, got grid[" + std::to_string(i) + ", " +
             std::to_string(j) + "] = " + std::to_string(static_cast<double>(v)));
      }
    }
  }
}

}  // namespace

double edge_scale_c0(const c0::Shape& shape, DType dtype, const void* x, const void* table,
                     const EdgeScaleOptions& options, const EdgeScaleC0Outputs& outputs,
                     const ExecContext& ctx) {
  c0::validate(shape);
  cpu_only(ctx);
  check_common(shape.batch, options);
  const std::int64_t B = shape.batch, I = shape.in, O = shape.out, K = shape.num_control_points;
  require(x, "x", B * I);
  require(table, "table", I * K * O);
  double result = 0.0;
  dispatch::by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* xt = static_cast<const T*>(x);
    const T* ct = static_cast<const T*>(table);
    T* gx = static_cast<T*>(outputs.grad_x);
    T* gt = static_cast<T*>(outputs.grad_table);
    T* sc = static_cast<T*>(outputs.scales);
    const C0Edge<T> edge{O, K, ct, gt, c0::detail::make_grid<T>(K, shape.spline_width)};
    bool nonfinite = false;
    const double part = run<T>(edge, B, I, O, xt, options, Want{gx != nullptr, gt != nullptr}, gx, sc, nonfinite);
    if (nonfinite) {
      fill_nan(gx, B * I);
      fill_nan(gt, I * K * O);
      fill_nan(sc, O * I);
      result = kNaN;
      return;
    }
    // Coefficients of edge (i, o) are C[i, :, o]: (outer = in, Kc = K, inner = out).
    result = part + coef_penalty<T>(ct, I, K, O, O, options, gt);
  });
  return result;
}

double edge_scale_bspline(const bspline::Shape& shape, DType dtype, const void* x,
                          const bspline::Params& params, const EdgeScaleOptions& options,
                          const bspline::Grads& grads, void* scales, const ExecContext& ctx) {
  bspline::validate(shape);
  cpu_only(ctx);
  check_common(shape.batch, options);
  const std::int64_t B = shape.batch, I = shape.in, O = shape.out, C = shape.num_coefficients();
  require(x, "x", B * I);
  require(params.knots, "knots", I * shape.num_knots());
  require(params.spline_weight, "spline_weight", O * I * C);
  if (grads.base_weight && !params.base_weight) fail("expected base_weight when its gradient is requested, got null");
  if (grads.spline_scaler && !params.spline_scaler) {
    fail("expected spline_scaler when its gradient is requested, got null");
  }
  double result = 0.0;
  dispatch::by_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    check_knots(shape, static_cast<const T*>(params.knots));
    const BsplineEdge<T> edge{I, O, shape.grid_size, shape.order, C,
                              static_cast<const T*>(params.knots), static_cast<const T*>(params.base_weight),
                              static_cast<const T*>(params.spline_weight),
                              static_cast<const T*>(params.spline_scaler), grads};
    T* gx = static_cast<T*>(grads.x);
    T* sc = static_cast<T*>(scales);
    const bool want_params = grads.base_weight || grads.spline_weight || grads.spline_scaler;
    bool nonfinite = false;
    const double part = run<T>(edge, B, I, O, static_cast<const T*>(x), options, Want{gx != nullptr, want_params},
                               gx, sc, nonfinite);
    if (nonfinite) {
      fill_nan(gx, B * I);
      fill_nan(static_cast<T*>(grads.base_weight), O * I);
      fill_nan(static_cast<T*>(grads.spline_weight), O * I * C);
      fill_nan(static_cast<T*>(grads.spline_scaler), O * I);
      fill_nan(sc, O * I);
      result = kNaN;
      return;
    }
    // pykan's coef is the unscaled spline coefficient array: (outer = out*in, Kc = C, inner = 1).
    result = part + coef_penalty<T>(static_cast<const T*>(params.spline_weight), O * I, C, 1, O, options,
                                    static_cast<T*>(grads.spline_weight));
  });
  return result;
}

}  // namespace kancore::reg

// Grid adaptation for the C0 layer: per-feature domains from sample quantiles and refits of
// the control points by tridiagonal least squares in float64 (see c0_grid.hpp).
#include "kancore/c0_grid.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "dispatch_common.hpp"
#include "parallel_errors.hpp"
#include "threads.hpp"

namespace kancore::c0 {
namespace {

using dispatch::by_dtype;
using dispatch::fail;
using dispatch::require;

// Position of x' on K uniform points over [-W/2, W/2]: interval k and weight t, as the kernels
// define them (t not clamped: the end segments extend).
inline void locate(double xp, double W, std::int64_t K, std::int64_t& k, double& t) {
  const double u = (xp + W / 2) * static_cast<double>(K - 1) / W;
  k = static_cast<std::int64_t>(std::floor(std::clamp(u, 0.0, static_cast<double>(K - 2))));
  t = u - static_cast<double>(k);
}

// One feature of a layer: its table column (K x out) and input affine, evaluated in float64.
template <class T>
struct Feature {
  const T* col;
  std::int64_t K, O;
  double W, scale, offset;

  void eval(double x, double* y) const {
    std::int64_t k;
    double t;
    locate(x * scale + offset, W, K, k, t);
    const T* a = col + k * O;
    const T* b = a + O;
    for (std::int64_t o = 0; o < O; ++o) {
      y[o] = (1 - t) * static_cast<double>(a[o]) + t * static_cast<double>(b[o]);
    }
  }
};

// Least squares for the new column (Kn x out) of feature `nf`'s layout: sum over samples of
// |phi_new(x) - phi_old(x)|^2 plus lambda * sum_j |c_j - phi_old(z_j)|^2 at the new points z_j,
// with lambda = ridge * mean diagonal (1 with no sample). The normal matrix is tridiagonal
// (each sample touches two adjacent points): solved by Cholesky.
template <class T>
void fit_column(const Feature<T>& old_f, const std::vector<double>& samples, std::int64_t Kn,
                double new_scale, double new_offset, double ridge, T* out) {
  const std::int64_t O = old_f.O;
  const double W = old_f.W;
  std::vector<double> diag(Kn, 0.0), off(Kn, 0.0), rhs(Kn * O, 0.0), y(O);
  for (const double x : samples) {
    std::int64_t k;
    double t;
    locate(x * new_scale + new_offset, W, Kn, k, t);
    old_f.eval(x, y.data());
    diag[k] += (1 - t) * (1 - t);
    diag[k + 1] += t * t;
    off[k] += (1 - t) * t;
    double* r0 = rhs.data() + k * O;
    double* r1 = r0 + O;
    for (std::int64_t o = 0; o < O; ++o) {
      r0[o] += (1 - t) * y[o];
      r1[o] += t * y[o];
    }
  }
  double mean_diag = 0;
  for (const double d : diag) mean_diag += d / static_cast<double>(Kn);
  const double lambda = mean_diag > 0 ? ridge * mean_diag : 1.0;
  for (std::int64_t j = 0; j < Kn; ++j) {
    // The new point j in raw x: where x' = -W/2 + j W / (Kn - 1).
    const double xp = -W / 2 + static_cast<double>(j) * W / static_cast<double>(Kn - 1);
    old_f.eval((xp - new_offset) / new_scale, y.data());
    diag[j] += lambda;
    for (std::int64_t o = 0; o < O; ++o) rhs[j * O + o] += lambda * y[o];
  }
  // Cholesky of the tridiagonal matrix: diag -> L's diagonal, off -> L's subdiagonal.
  for (std::int64_t j = 0; j < Kn; ++j) {
    if (j > 0) diag[j] -= off[j - 1] * off[j - 1];
    if (!(diag[j] > 0)) {
      throw std::runtime_error("kancore: C0 grid fit: singular normal matrix (use ridge > 0)");
    }
    diag[j] = std::sqrt(diag[j]);
    if (j + 1 < Kn) off[j] /= diag[j];
  }
  for (std::int64_t j = 0; j < Kn; ++j) {  // forward substitution, all columns at once
    double* r = rhs.data() + j * O;
    if (j > 0) {
      const double* p = r - O;
      for (std::int64_t o = 0; o < O; ++o) r[o] -= off[j - 1] * p[o];
    }
    for (std::int64_t o = 0; o < O; ++o) r[o] /= diag[j];
  }
  for (std::int64_t j = Kn - 1; j >= 0; --j) {  // back substitution
    double* r = rhs.data() + j * O;
    if (j + 1 < Kn) {
      const double* nx = r + O;
      for (std::int64_t o = 0; o < O; ++o) r[o] -= off[j] * nx[o];
    }
    for (std::int64_t o = 0; o < O; ++o) r[o] /= diag[j];
  }
  for (std::int64_t j = 0; j < Kn * O; ++j) out[j] = static_cast<T>(rhs[j]);
}

// Dense uniform samples of the kernel-space domain [-W/2, W/2], mapped to raw x: enough that
// every new interval holds several, so the fit is the L2 fit over the domain.
std::vector<double> domain_samples(double W, std::int64_t K, std::int64_t Kn, double scale,
                                   double offset) {
  const std::int64_t n = 8 * (K + Kn) + 1;
  std::vector<double> xs(n);
  for (std::int64_t j = 0; j < n; ++j) {
    const double xp = -W / 2 + W * static_cast<double>(j) / static_cast<double>(n - 1);
    xs[j] = (xp - offset) / scale;
  }
  return xs;
}

void validate_new_K(const Shape& s, std::int64_t new_K) {
  Shape n = s;
  n.num_control_points = new_K;
  try {
    validate(n);
  } catch (const std::invalid_argument& e) {
    fail(std::string("new num_control_points: ") + e.what());
  }
}

// Quantile q of sorted values (linear interpolation between order statistics).
double quantile_of(const std::vector<double>& v, double q) {
  const double pos = q * static_cast<double>(v.size() - 1);
  const std::size_t lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

template <class T>
DomainFitReport fit_domain_typed(const Shape& s, const T* x, const T* table, const T* scale,
                                 const T* offset, std::int64_t Kn, T* new_table, T* new_scale,
                                 T* new_offset, const DomainFitOptions& opt) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, K = s.num_control_points;
  const double W = s.spline_width;
  std::atomic<std::int64_t> kept{0}, skipped{0}, outside{0};
  // Exceptions (bad_alloc from the sample vectors included) keep their type through the region.
  internal::RegionErrors errors;
#pragma omp parallel for schedule(dynamic, 1) num_threads(internal::threads_for(N * I * O))
  for (std::int64_t i = 0; i < I; ++i) {
    if (errors.failed()) continue;
    errors.run([&] {
      const double sc = scale ? static_cast<double>(scale[i]) : 1.0;
      const double of = offset ? static_cast<double>(offset[i]) : 0.0;
      const Feature<T> old_f{table + i * K * O, K, O, W, sc, of};
      std::vector<double> v;
      v.reserve(N);
      for (std::int64_t b = 0; b < N; ++b) {
        const double xv = static_cast<double>(x[b * I + i]);
        if (std::isfinite(xv)) v.push_back(xv);
      }
      skipped += N - static_cast<std::int64_t>(v.size());
      std::sort(v.begin(), v.end());
      double lo = 0, hi = 0;
      if (v.size() >= 2) {
        lo = quantile_of(v, opt.quantile);
        hi = quantile_of(v, 1 - opt.quantile);
        if (!(hi > lo)) {  // quantiles collapsed on a repeated value: use the full range
          lo = v.front();
          hi = v.back();
        }
      }
      const double width = hi - lo;
      // The new affine, rounded to T as the kernels will see it.
      double ns = W / (width * (1 + 2 * opt.margin));
      double no = -W / 2 - (lo - opt.margin * width) * ns;
      ns = static_cast<double>(static_cast<T>(ns));
      no = static_cast<double>(static_cast<T>(no));
      if (!(width > 0) || !std::isfinite(ns) || !std::isfinite(no) || ns <= 0) {
        // No usable spread: keep the domain, only change K.
        ++kept;
        fit_column(old_f, domain_samples(W, K, Kn, sc, of), Kn, sc, of, opt.ridge,
                   new_table + i * Kn * O);
        new_scale[i] = scale ? scale[i] : T(1);
        new_offset[i] = offset ? offset[i] : T(0);
        return;
      }
      // Samples inside the new domain (all of them when quantile = 0).
      std::vector<double> inside;
      inside.reserve(v.size());
      for (const double xv : v) {
        const double xp = xv * ns + no;
        if (xp >= -W / 2 && xp <= W / 2) inside.push_back(xv);
      }
      outside += static_cast<std::int64_t>(v.size() - inside.size());
      fit_column(old_f, inside, Kn, ns, no, opt.ridge, new_table + i * Kn * O);
      new_scale[i] = static_cast<T>(ns);
      new_offset[i] = static_cast<T>(no);
    });
  }
  errors.rethrow();
  return DomainFitReport{kept.load(), skipped.load(), outside.load()};
}

template <class T>
void refine_typed(const Shape& s, const T* table, std::int64_t Kn, T* new_table) {
  const std::int64_t I = s.in, O = s.out, K = s.num_control_points;
  const double W = s.spline_width;
  const std::vector<double> xs = domain_samples(W, K, Kn, 1.0, 0.0);
  internal::RegionErrors errors;  // fit_column allocates: keep a bad_alloc inside the region
#pragma omp parallel for schedule(static) num_threads(internal::threads_for(I * O * (K + Kn)))
  for (std::int64_t i = 0; i < I; ++i) {
    if (errors.failed()) continue;
    errors.run([&] {
      const Feature<T> old_f{table + i * K * O, K, O, W, 1.0, 0.0};
      T* out = new_table + i * Kn * O;
      fit_column(old_f, xs, Kn, 1.0, 0.0, 0.0, out);
      if (Kn > K && (Kn - 1) % (K - 1) != 0) {
        // A finer grid's end segments lie inside the old end segments: put their two points on
        // the old end lines, so the linear extension beyond +-W/2 stays exactly the old one
        // (the least-squares values differ from them by rounding-level amounts inside, but
        // their slopes would change every output far outside).
        const T* in = table + i * K * O;
        const double r = static_cast<double>(K - 1) / static_cast<double>(Kn - 1);  // h' / h
        for (std::int64_t o = 0; o < O; ++o) {
          const double c0 = in[o], c1 = in[O + o], cl = in[(K - 1) * O + o], cm = in[(K - 2) * O + o];
          out[o] = static_cast<T>(c0);
          out[O + o] = static_cast<T>(c0 + (c1 - c0) * r);
          out[(Kn - 1) * O + o] = static_cast<T>(cl);
          out[(Kn - 2) * O + o] = static_cast<T>(cl - (cl - cm) * r);
        }
      }
    });
  }
  errors.rethrow();
}

void check_options(const DomainFitOptions& o) {
  if (!(o.quantile >= 0 && o.quantile < 0.5)) {
    fail("expected quantile in [0, 0.5), got " + std::to_string(o.quantile));
  }
  if (!(o.margin >= 0 && std::isfinite(o.margin))) {
    fail("expected a finite margin >= 0, got " + std::to_string(o.margin));
  }
  if (!(o.ridge >= 0 && std::isfinite(o.ridge))) {
    fail("expected a finite ridge >= 0, got " + std::to_string(o.ridge));
  }
}

template <class T>
void check_affine(const T* scale, const T* offset, std::int64_t I) {
  if ((scale == nullptr) != (offset == nullptr)) {
    fail("expected both scale and offset, or neither");
  }
  if (!scale) return;
  for (std::int64_t i = 0; i < I; ++i) {
    if (!std::isfinite(scale[i]) || scale[i] == T(0) || !std::isfinite(offset[i])) {
      fail("expected finite input scale (non-zero) and offset, got scale " +
           std::to_string(static_cast<double>(scale[i])) + " and offset " +
           std::to_string(static_cast<double>(offset[i])) + " at feature " + std::to_string(i));
    }
  }
}

}  // namespace

DomainFitReport fit_domain(const Shape& s, DType dtype, const void* x, const void* table,
                           const void* scale, const void* offset, std::int64_t new_K,
                           void* new_table, void* new_scale, void* new_offset,
                           const DomainFitOptions& options) {
  validate(s);
  validate_new_K(s, new_K);
  check_options(options);
  require(x, "x", s.batch * s.in);
  require(table, "table", s.in * s.num_control_points * s.out);
  require(new_table, "new_table", s.in * new_K * s.out);
  require(new_scale, "new_scale", s.in);
  require(new_offset, "new_offset", s.in);
  DomainFitReport report;
  by_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    check_affine(static_cast<const T*>(scale), static_cast<const T*>(offset), s.in);
    report = fit_domain_typed<T>(s, static_cast<const T*>(x), static_cast<const T*>(table),
                                 static_cast<const T*>(scale), static_cast<const T*>(offset),
                                 new_K, static_cast<T*>(new_table), static_cast<T*>(new_scale),
                                 static_cast<T*>(new_offset), options);
  });
  return report;
}

void refine(const Shape& s, DType dtype, const void* table, std::int64_t new_K, void* new_table) {
  Shape shape = s;
  shape.batch = 0;
  validate(shape);
  validate_new_K(shape, new_K);
  require(table, "table", s.in * s.num_control_points * s.out);
  require(new_table, "new_table", s.in * new_K * s.out);
  by_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    refine_typed<T>(shape, static_cast<const T*>(table), new_K, static_cast<T*>(new_table));
  });
}

}  // namespace kancore::c0

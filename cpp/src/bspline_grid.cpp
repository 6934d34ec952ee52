// Grid adaptation of the B-spline layer: update_grid (knots from data) and refine (finer grid),
// both refitting each edge's spline to its old values by ridge-stabilised least squares.
//
// Per feature i, with A_new / A_old the (samples x coefficients) basis matrices on the new and
// old knots and W_i (C_old x out) the edge coefficients, the fit solves
//     (A_new^T A_new + lambda I) W_new = A_new^T A_old W_i.
// A_new^T A_new is banded (bandwidth k) and A_new^T A_old is a small C_new x C_old matrix, both
// accumulated from k+1 basis values per sample in float64, so the cost is O(samples k^2) plus
// O(C^2 out) per feature, independent of the batch x out product. The band is solved by a
// banded Cholesky factorisation.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bspline_basis.hpp"
#include "dispatch_common.hpp"
#include "threads.hpp"
#include "kancore/bspline_layer.hpp"
#include "parallel_errors.hpp"

namespace kancore::bspline {
namespace {

using dispatch::fail;

// Accumulates and solves one feature's normal equations.
class FeatureFit {
 public:
  FeatureFit(std::int64_t C_new, std::int64_t C_old, std::int64_t k, std::int64_t out)
      : Cn_(C_new), Co_(C_old), k_(k), O_(out), band_(C_new * (k + 1)), cross_(C_new * C_old),
        rhs_(C_new * out), wi_(C_old * out) {}

  void reset() {
    std::fill(band_.begin(), band_.end(), 0.0);
    std::fill(cross_.begin(), cross_.end(), 0.0);
  }

  // One sample: new basis values vn at coefficients fn.., old ones vo at fo.., weight w.
  void add(std::int64_t fn, const double* vn, std::int64_t fo, const double* vo, double w = 1.0) {
    for (std::int64_t r = 0; r <= k_; ++r) {
      const double a = w * vn[r];
      if (a == 0.0) continue;
      const std::int64_t c = fn + r;
      for (std::int64_t r2 = 0; r2 <= r; ++r2) band_[c * (k_ + 1) + (r - r2)] += a * vn[r2];
      double* cr = cross_.data() + c * Co_ + fo;
      for (std::int64_t r2 = 0; r2 <= k_; ++r2) cr[r2] += a * vo[r2];
    }
  }

  // Solves for feature i's new coefficients from the old ones (both (out, in, C) arrays).
  // Returns false when the system is not positive definite (only possible with ridge 0).
  template <class T>
  bool solve(double ridge, const T* W_old, T* W_new, std::int64_t I, std::int64_t i) {
    const std::int64_t Cn = Cn_, Co = Co_, O = O_, b = k_ + 1;
    for (std::int64_t o = 0; o < O; ++o) {
      for (std::int64_t c = 0; c < Co; ++c) wi_[c * O + o] = static_cast<double>(W_old[(o * I + i) * Co + c]);
    }
    // rhs = cross * W_i
    std::fill(rhs_.begin(), rhs_.end(), 0.0);
    for (std::int64_t c = 0; c < Cn; ++c) {
      double* rr = rhs_.data() + c * O;
      for (std::int64_t c2 = 0; c2 < Co; ++c2) {
        const double a = cross_[c * Co + c2];
        if (a == 0.0) continue;
        const double* wr = wi_.data() + c2 * O;
        for (std::int64_t o = 0; o < O; ++o) rr[o] += a * wr[o];
      }
    }
    double mean_diag = 0.0;
    for (std::int64_t c = 0; c < Cn; ++c) mean_diag += band_[c * b];
    mean_diag /= static_cast<double>(Cn);
    const double lambda = mean_diag > 0.0 ? ridge * mean_diag : 1.0;
    for (std::int64_t c = 0; c < Cn; ++c) band_[c * b] += lambda;
    // Banded Cholesky in place: L(r, c) lives at band_[r * b + (r - c)] for 0 <= r - c <= k.
    auto L = [&](std::int64_t r, std::int64_t c) -> double& { return band_[r * b + (r - c)]; };
    for (std::int64_t j = 0; j < Cn; ++j) {
      double diag = L(j, j);
      for (std::int64_t p = std::max<std::int64_t>(0, j - k_); p < j; ++p) diag -= L(j, p) * L(j, p);
      if (!(diag > 0.0) || !std::isfinite(diag)) return false;
      L(j, j) = std::sqrt(diag);
      for (std::int64_t r = j + 1; r <= std::min(Cn - 1, j + k_); ++r) {
        double v = L(r, j);
        for (std::int64_t p = std::max<std::int64_t>(0, r - k_); p < j; ++p) v -= L(r, p) * L(j, p);
        L(r, j) = v / L(j, j);
      }
    }
    // Solve L z = rhs, then L^T w = z, for all outputs at once (rows of rhs are contiguous).
    for (std::int64_t j = 0; j < Cn; ++j) {
      double* zj = rhs_.data() + j * O;
      for (std::int64_t p = std::max<std::int64_t>(0, j - k_); p < j; ++p) {
        const double l = L(j, p);
        const double* zp = rhs_.data() + p * O;
        for (std::int64_t o = 0; o < O; ++o) zj[o] -= l * zp[o];
      }
      const double inv = 1.0 / L(j, j);
      for (std::int64_t o = 0; o < O; ++o) zj[o] *= inv;
    }
    for (std::int64_t j = Cn - 1; j >= 0; --j) {
      double* zj = rhs_.data() + j * O;
      for (std::int64_t r = j + 1; r <= std::min(Cn - 1, j + k_); ++r) {
        const double l = L(r, j);
        const double* zr = rhs_.data() + r * O;
        for (std::int64_t o = 0; o < O; ++o) zj[o] -= l * zr[o];
      }
      const double inv = 1.0 / L(j, j);
      for (std::int64_t o = 0; o < O; ++o) zj[o] *= inv;
    }
    for (std::int64_t o = 0; o < O; ++o) {
      for (std::int64_t c = 0; c < Cn; ++c) W_new[(o * I + i) * Cn + c] = static_cast<T>(rhs_[c * O + o]);
    }
    return true;
  }

 private:
  std::int64_t Cn_, Co_, k_, O_;
  std::vector<double> band_, cross_, rhs_, wi_;
};

template <class T>
constexpr double kTypeMax = static_cast<double>(std::numeric_limits<T>::max());

// Checked before any parallel region (an exception must not escape one).
template <class T>
void check_knots(const T* knots, std::int64_t in, std::int64_t n) {
  for (std::int64_t i = 0; i < in; ++i) {
    const T* t = knots + i * n;
    for (std::int64_t j = 0; j < n; ++j) {
      if (!std::isfinite(t[j]) || (j > 0 && t[j] < t[j - 1])) {
        fail("expected finite, non-decreasing knots, got a bad grid row " + std::to_string(i));
      }
    }
  }
}

// One thread's least-squares scratch: the banded normal matrix, the dense cross matrix
// (C_new x C_old), right-hand sides, and the samples. Refused up front when absurd (a grid of
// 2^16 intervals asks for 34 GB per thread), before any allocation.
void check_scratch(const char* what, std::int64_t C_new, std::int64_t C_old, std::int64_t k, std::int64_t O,
                   std::int64_t N) {
  constexpr double kLimit = 1ull << 31;  // 2 GiB per thread
  const double bytes = 8.0 * (static_cast<double>(C_new) * static_cast<double>(k + 1) +
                              static_cast<double>(C_new) * static_cast<double>(C_old) +
                              static_cast<double>(C_new + C_old) * static_cast<double>(O) + static_cast<double>(N));
  if (bytes > kLimit) {
    char gib[32];
    std::snprintf(gib, sizeof gib, "%.3g", bytes / (1ull << 30));
    fail(std::string(what) + ": expected a grid whose least-squares scratch fits in 2 GiB per thread, got one "
         "needing " + gib + " GiB (" + std::to_string(C_new) + " x " + std::to_string(C_old) +
         " coefficients): use a smaller grid_size");
  }
}

[[noreturn]] void singular(const char* what, std::int64_t i) {
  throw std::runtime_error(std::string("kancore: ") + what + ": the least-squares system of feature " +
                           std::to_string(i) + " is singular (use a ridge > 0)");
}

template <class T>
GridFitReport update_grid_typed(const Shape& s, const T* x, const T* knots, const T* W,
                                T* new_knots, T* new_W, const GridUpdateOptions& opt) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, G = s.grid_size, k = s.order;
  const std::int64_t C = s.num_coefficients(), nk = s.num_knots();
  check_knots(knots, I, nk);
  GridFitReport report;
  std::int64_t kept = 0, skipped = 0;
  bool failed = false;
  std::int64_t failed_feature = -1;
  check_scratch("update_grid", C, C, k, O, N);
  internal::RegionErrors errors;  // a failed allocation must not escape the region (terminate)
#pragma omp parallel reduction(+ : kept, skipped) num_threads(internal::threads_for(N * I * O))
  {
    std::optional<FeatureFit> fit;
    std::vector<double> xs, t_old, t_new;
    errors.run([&] {
      fit.emplace(C, C, k, O);
      xs.reserve(static_cast<std::size_t>(N));  // push_back below stays within it
      t_old.resize(nk);
      t_new.resize(nk);
    });
    double vn[kMaxOrder + 1], vo[kMaxOrder + 1], scratch[2 * (kMaxOrder + 1)];
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t i = 0; i < I; ++i) {
      if (errors.failed()) continue;
      for (std::int64_t j = 0; j < nk; ++j) t_old[j] = static_cast<double>(knots[i * nk + j]);
      xs.clear();
      for (std::int64_t b = 0; b < N; ++b) {
        const double v = static_cast<double>(x[b * I + i]);
        if (std::isfinite(v)) xs.push_back(v);
      }
      skipped += N - static_cast<std::int64_t>(xs.size());
      if (xs.empty()) {  // nothing to learn from: keep this feature as it is
        ++kept;
        std::copy(knots + i * nk, knots + (i + 1) * nk, new_knots + i * nk);
        for (std::int64_t o = 0; o < O; ++o) {
          std::copy(W + (o * I + i) * C, W + (o * I + i + 1) * C, new_W + (o * I + i) * C);
        }
        continue;
      }
      std::sort(xs.begin(), xs.end());
      const std::int64_t n = static_cast<std::int64_t>(xs.size());
      const double lo = xs.front(), hi = xs.back();
      double step = (hi - lo + 2.0 * opt.margin) / static_cast<double>(G);
      // A constant feature with no margin would give a zero-width grid: widen it a little.
      if (!(step > 0.0)) step = std::max(std::abs(lo), 1.0) * 1e-3;
      for (std::int64_t j = 0; j <= G; ++j) {
        const std::int64_t q = static_cast<std::int64_t>(static_cast<double>(j) * static_cast<double>(n - 1) /
                                                         static_cast<double>(G));
        const double adaptive = xs[std::min(q, n - 1)];
        const double uniform = lo - opt.margin + static_cast<double>(j) * step;
        t_new[k + j] = opt.grid_eps * uniform + (1.0 - opt.grid_eps) * adaptive;
      }
      for (std::int64_t j = 1; j <= k; ++j) {
        t_new[k - j] = t_new[k] - static_cast<double>(j) * step;
        t_new[G + k + j] = t_new[G + k] + static_cast<double>(j) * step;
      }
      // Rounding in the mix must not break monotonicity.
      for (std::int64_t j = 1; j < nk; ++j) t_new[j] = std::max(t_new[j], t_new[j - 1]);
      // Samples near the dtype's limits (or a huge margin) can push the extension knots past
      // them: refuse the update (nothing is written back) rather than store ±inf knots.
      if (!(std::isfinite(step) && std::abs(t_new[0]) <= kTypeMax<T> && std::abs(t_new[nk - 1]) <= kTypeMax<T>)) {
        errors.run([&] {
          fail("update_grid: the new knots of feature " + std::to_string(i) + " would overflow the dtype "
               "(samples within a few grid steps of its largest value, or margin too large); the layer is "
               "unchanged");
        });
        continue;
      }

      fit->reset();
      for (const double v : xs) {
        const std::int64_t fo = detail::eval_basis<double>(t_old.data(), G, k, v, vo, nullptr, scratch);
        const std::int64_t fn = detail::eval_basis<double>(t_new.data(), G, k, v, vn, nullptr, scratch);
        fit->add(fn, vn, fo, vo);
      }
      if (!fit->solve(opt.ridge, W, new_W, I, i)) {
#pragma omp critical(kancore_grid_fail)
        {
          failed = true;
          failed_feature = i;
        }
        continue;
      }
      for (std::int64_t j = 0; j < nk; ++j) new_knots[i * nk + j] = static_cast<T>(t_new[j]);
    }
  }
  errors.rethrow();
  if (failed) singular("update_grid", failed_feature);
  report.features_kept = kept;
  report.samples_skipped = skipped;
  return report;
}

template <class T>
void refine_typed(const Shape& s, const T* knots, const T* W, std::int64_t G2, T* new_knots,
                  T* new_W) {
  const std::int64_t I = s.in, O = s.out, G = s.grid_size, k = s.order;
  const std::int64_t C = s.num_coefficients(), nk = s.num_knots();
  const std::int64_t C2 = G2 + k, nk2 = G2 + 2 * k + 1;
  const std::int64_t per_interval = k + 2;  // fitting points per new interval (full rank)
  check_knots(knots, I, nk);
  bool failed = false;
  std::int64_t failed_feature = -1;
  check_scratch("refine", C2, C, k, O, 0);
  internal::RegionErrors errors;  // a failed allocation must not escape the region (terminate)
#pragma omp parallel num_threads(internal::threads_for(I * O * (C + C2)))
  {
    std::optional<FeatureFit> fit;
    std::vector<double> t_old, t_new;
    errors.run([&] {
      fit.emplace(C2, C, k, O);
      t_old.resize(nk);
      t_new.resize(nk2);
    });
    double vn[kMaxOrder + 1], vo[kMaxOrder + 1], scratch[2 * (kMaxOrder + 1)];
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t i = 0; i < I; ++i) {
      if (errors.failed()) continue;
      for (std::int64_t j = 0; j < nk; ++j) t_old[j] = static_cast<double>(knots[i * nk + j]);
      // New core knots at fractional positions j G / G2 of the old core knots (piecewise linear):
      // when G2 is a multiple of G every old knot is among them.
      for (std::int64_t j = 0; j <= G2; ++j) {
        const std::int64_t num = j * G;
        const std::int64_t q = num / G2, rem = num % G2;
        const double a = t_old[k + q];
        const double b = rem == 0 ? a : t_old[k + q + 1];
        t_new[k + j] = rem == 0 ? a : a + (b - a) * (static_cast<double>(rem) / static_cast<double>(G2));
      }
      // The extension knots stay where they were, so the new spline covers the old support
      // [t_0, t_last] and, with every old knot kept, equals the old one everywhere, outside
      // the grid range too (scaling their spacing by G / G2 would shrink the support and change
      // every output beyond the range). The price: a refined uniform grid is uniform only
      // inside, and the forward takes the general basis path.
      for (std::int64_t j = 1; j <= k; ++j) {
        t_new[k - j] = t_old[k - j];
        t_new[G2 + k + j] = t_old[G + k + j];
      }
      fit->reset();
      for (std::int64_t j = 0; j < G2 + 2 * k; ++j) {  // every interval of the support
        const double a = t_new[j], b = t_new[j + 1];
        if (!(b > a)) continue;  // repeated knot: an empty interval
        for (std::int64_t q = 0; q < per_interval; ++q) {
          const double v = a + (b - a) * (static_cast<double>(q) + 0.5) / static_cast<double>(per_interval);
          const std::int64_t fo = detail::eval_basis<double>(t_old.data(), G, k, v, vo, nullptr, scratch);
          const std::int64_t fn = detail::eval_basis<double>(t_new.data(), G2, k, v, vn, nullptr, scratch);
          fit->add(fn, vn, fo, vo);
        }
      }
      if (!fit->solve(1e-13, W, new_W, I, i)) {
#pragma omp critical(kancore_refine_fail)
        {
          failed = true;
          failed_feature = i;
        }
        continue;
      }
      for (std::int64_t j = 0; j < nk2; ++j) new_knots[i * nk2 + j] = static_cast<T>(t_new[j]);
    }
  }
  errors.rethrow();
  if (failed) singular("refine", failed_feature);
}

}  // namespace

GridFitReport update_grid(const Shape& s, DType dtype, const void* x, const void* knots,
                          const void* spline_weight, void* new_knots, void* new_spline_weight,
                          const GridUpdateOptions& opt) {
  validate(s);
  if (!(std::isfinite(opt.margin) && opt.margin >= 0)) fail("expected a finite margin >= 0");
  if (!(opt.grid_eps >= 0 && opt.grid_eps <= 1)) fail("expected 0 <= grid_eps <= 1");
  if (!(std::isfinite(opt.ridge) && opt.ridge >= 0)) fail("expected a finite ridge >= 0");
  if ((s.batch > 0 && !x) || !knots || !spline_weight || !new_knots || !new_spline_weight) {
    fail("expected non-null buffers for update_grid");
  }
  if (dtype == DType::float32) {
    return update_grid_typed(s, static_cast<const float*>(x), static_cast<const float*>(knots),
                             static_cast<const float*>(spline_weight), static_cast<float*>(new_knots),
                             static_cast<float*>(new_spline_weight), opt);
  }
  if (dtype == DType::float64) {
    return update_grid_typed(s, static_cast<const double*>(x), static_cast<const double*>(knots),
                             static_cast<const double*>(spline_weight), static_cast<double*>(new_knots),
                             static_cast<double*>(new_spline_weight), opt);
  }
  fail("expected dtype float32 or float64");
}

void refine(const Shape& s, DType dtype, const void* knots, const void* spline_weight,
            std::int64_t new_grid_size, void* new_knots, void* new_spline_weight) {
  validate(s);
  validate(Shape{0, s.in, s.out, new_grid_size, s.order});
  if (!knots || !spline_weight || !new_knots || !new_spline_weight) {
    fail("expected non-null buffers for refine");
  }
  if (dtype == DType::float32) {
    return refine_typed(s, static_cast<const float*>(knots), static_cast<const float*>(spline_weight),
                        new_grid_size, static_cast<float*>(new_knots), static_cast<float*>(new_spline_weight));
  }
  if (dtype == DType::float64) {
    return refine_typed(s, static_cast<const double*>(knots), static_cast<const double*>(spline_weight),
                        new_grid_size, static_cast<double*>(new_knots), static_cast<double*>(new_spline_weight));
  }
  fail("expected dtype float32 or float64");
}

}  // namespace kancore::bspline

// Test support for the C0-layer suite: a plain, independent re-statement of the layer's math in
// long double (loops over b, i, o; no blocking, no shared code with the kernels), random data,
// guarded buffers and a tolerance-aware comparison.
//
//   u = ((x + W/2) * (K-1)) / W                 (computed in the element type T, then promoted)
//   k = clamp(floor(u), 0, K-2),  t = u - k     (t unclamped: end segments extend linearly)
//   y[b,o]        = sum_i (1-t) C[i,k,o] + t C[i,k+1,o]
//   grad_x[b,i]   = sum_o g[b,o] (C[i,k+1,o] - C[i,k,o]) (K-1)/W
//   grad_C[i,k,o] += (1-t) g[b,o],  grad_C[i,k+1,o] += t g[b,o]
//
// Only u is formed in T: that is what picks the segment, so index selection matches the kernel
// exactly. Everything after that (weights, products, sums) is done in long double from the same
// T inputs, and the rounding the kernel may commit is bounded by a tolerance proportional to the
// sum of the magnitudes of the terms (`mag`), so near-cancellation cannot produce false alarms
// and a wrong segment, weight or index is still far outside the bound.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kancore/c0_layer.hpp"
#include "kancore/types.hpp"

namespace kctest {

using kancore::DType;
using kancore::c0::Impl;
using kancore::c0::Shape;
using Real = long double;

// ---- tolerances --------------------------------------------------------------------------------
// |got - ref| <= rel * mag, where mag = sum of |terms| of that output element. float: ~84 ulp of
// the magnitude; double: ~4500 ulp (still 1e-12 relative).
template <class T> struct Tol;
template <> struct Tol<float> { static constexpr double rel = 1e-5; };
template <> struct Tol<double> { static constexpr double rel = 1e-12; };

template <class T> constexpr const char* type_name();
template <> constexpr const char* type_name<float>() { return "float"; }
template <> constexpr const char* type_name<double>() { return "double"; }

inline const char* impl_label(Impl impl) { return impl == Impl::gather ? "gather" : "csr"; }

// ---- the reference -----------------------------------------------------------------------------
struct Segment {
  std::int64_t k = 0;
  Real t = 0;
};

template <class T>
Segment locate_ref(T x, std::int64_t K, double W) {
  const T w = static_cast<T>(W);
  const T u = ((x + w / T(2)) * static_cast<T>(K - 1)) / w;  // documented op order, in T
  const Real ur = static_cast<Real>(u);
  Segment s;
  if (std::isnan(ur)) {
    s.k = 0;
    s.t = ur;
    return s;
  }
  Real f = std::floor(ur);  // ±inf stays ±inf and is clamped below
  if (f < 0) f = 0;
  if (f > static_cast<Real>(K - 2)) f = static_cast<Real>(K - 2);
  s.k = static_cast<std::int64_t>(f);
  s.t = ur - f;
  return s;
}

// Limit of c0 + t (c1 - c0) as t -> ±inf (t NaN -> NaN).
inline Real edge_limit(Real c0, Real c1, Real t) {
  if (std::isnan(t)) return std::numeric_limits<Real>::quiet_NaN();
  if (c1 == c0) return c0;
  const bool positive = (t > 0) == (c1 > c0);
  return positive ? std::numeric_limits<Real>::infinity() : -std::numeric_limits<Real>::infinity();
}

struct Ref {
  std::vector<Real> val;
  std::vector<Real> mag;
};

inline std::size_t idx(std::int64_t a) { return static_cast<std::size_t>(a); }

template <class T>
Ref forward_ref(const Shape& s, const T* x, const T* C) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, K = s.num_control_points;
  Ref r{std::vector<Real>(idx(N * O), 0), std::vector<Real>(idx(N * O), 0)};
  for (std::int64_t b = 0; b < N; ++b) {
    for (std::int64_t i = 0; i < I; ++i) {
      const Segment sg = locate_ref<T>(x[b * I + i], K, s.spline_width);
      for (std::int64_t o = 0; o < O; ++o) {
        const Real c0 = C[(i * K + sg.k) * O + o];
        const Real c1 = C[(i * K + sg.k + 1) * O + o];
        Real& v = r.val[idx(b * O + o)];
        if (std::isfinite(sg.t)) {
          v += (1 - sg.t) * c0 + sg.t * c1;
          r.mag[idx(b * O + o)] += std::fabs(1 - sg.t) * std::fabs(c0) + std::fabs(sg.t) * std::fabs(c1);
        } else {
          v += edge_limit(c0, c1, sg.t);
        }
      }
    }
  }
  return r;
}

template <class T>
Ref backward_input_ref(const Shape& s, const T* x, const T* C, const T* g) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, K = s.num_control_points;
  const Real slope = static_cast<Real>(K - 1) / static_cast<Real>(s.spline_width);
  Ref r{std::vector<Real>(idx(N * I), 0), std::vector<Real>(idx(N * I), 0)};
  for (std::int64_t b = 0; b < N; ++b) {
    for (std::int64_t i = 0; i < I; ++i) {
      const T xv = x[b * I + i];
      const Segment sg = locate_ref<T>(xv, K, s.spline_width);
      Real acc = 0, mag = 0;
      for (std::int64_t o = 0; o < O; ++o) {
        const Real c0 = C[(i * K + sg.k) * O + o];
        const Real c1 = C[(i * K + sg.k + 1) * O + o];
        const Real gv = g[b * O + o];
        acc += gv * (c1 - c0);
        mag += std::fabs(gv) * (std::fabs(c0) + std::fabs(c1));
      }
      r.val[idx(b * I + i)] = std::isnan(xv) ? std::numeric_limits<Real>::quiet_NaN() : acc * slope;
      r.mag[idx(b * I + i)] = mag * slope;
    }
  }
  return r;
}

template <class T>
Ref backward_table_ref(const Shape& s, const T* x, const T* g) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, K = s.num_control_points;
  Ref r{std::vector<Real>(idx(I * K * O), 0), std::vector<Real>(idx(I * K * O), 0)};
  for (std::int64_t b = 0; b < N; ++b) {
    for (std::int64_t i = 0; i < I; ++i) {
      const Segment sg = locate_ref<T>(x[b * I + i], K, s.spline_width);
      for (std::int64_t o = 0; o < O; ++o) {
        const Real gv = g[b * O + o];
        const std::size_t j0 = idx((i * K + sg.k) * O + o), j1 = idx((i * K + sg.k + 1) * O + o);
        r.val[j0] += (1 - sg.t) * gv;
        r.val[j1] += sg.t * gv;
        r.mag[j0] += std::fabs(1 - sg.t) * std::fabs(gv);
        r.mag[j1] += std::fabs(sg.t) * std::fabs(gv);
      }
    }
  }
  return r;
}

// ---- comparison --------------------------------------------------------------------------------
// NaN must match NaN, ±inf must match exactly, finite values within rel * mag.
template <class T>
::testing::AssertionResult matches_ref(const T* got, const Ref& ref, double rel) {
  std::size_t bad = 0;
  std::ostringstream msg;
  msg.precision(10);
  for (std::size_t j = 0; j < ref.val.size(); ++j) {
    const Real r = ref.val[j];
    const Real a = got[j];
    bool ok;
    if (std::isnan(r)) {
      ok = std::isnan(a);
    } else if (std::isinf(r)) {
      ok = (a == r);
    } else {
      ok = std::isfinite(a) && std::fabs(a - r) <= static_cast<Real>(rel) * ref.mag[j];
    }
    if (!ok) {
      if (bad < 5) {
        msg << "\n  [" << j << "] got " << static_cast<double>(a) << ", expected "
            << static_cast<double>(r) << " (allowed error "
            << static_cast<double>(static_cast<Real>(rel) * ref.mag[j]) << ")";
      }
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << ref.val.size() << " elements differ:"
                                       << msg.str();
}

// ---- random data -------------------------------------------------------------------------------
struct Rng {
  std::mt19937_64 gen;
  explicit Rng(std::uint64_t seed) : gen(seed) {}
  double uniform(double a, double b) { return std::uniform_real_distribution<double>(a, b)(gen); }
  std::int64_t integer(std::int64_t a, std::int64_t b) {
    return std::uniform_int_distribution<std::int64_t>(a, b)(gen);
  }
  double log_uniform(double a, double b) { return std::exp(uniform(std::log(a), std::log(b))); }
};

// Table values in [-2, 2]; about 1 in 10 segments flat (C[k+1] == C[k]).
template <class T>
std::vector<T> random_table(const Shape& s, Rng& rng) {
  const std::int64_t I = s.in, K = s.num_control_points, O = s.out;
  std::vector<T> c(idx(I * K * O));
  for (auto& v : c) v = static_cast<T>(rng.uniform(-2, 2));
  for (std::int64_t i = 0; i < I; ++i)
    for (std::int64_t k = 1; k < K; ++k)
      for (std::int64_t o = 0; o < O; ++o)
        if (rng.uniform(0, 1) < 0.1) c[idx((i * K + k) * O + o)] = c[idx((i * K + k - 1) * O + o)];
  return c;
}

// x: mostly inside [-W/2, W/2], a quarter outside (up to 2W away from the centre), some exactly on
// control points and on the two ends.
template <class T>
std::vector<T> random_x(const Shape& s, Rng& rng) {
  const double W = s.spline_width;
  const std::int64_t K = s.num_control_points;
  std::vector<T> x(idx(s.batch * s.in));
  for (auto& v : x) {
    const double p = rng.uniform(0, 1);
    if (p < 0.6) {
      v = static_cast<T>(rng.uniform(-W / 2, W / 2));
    } else if (p < 0.85) {
      const double side = rng.uniform(0, 1) < 0.5 ? -1 : 1;
      v = static_cast<T>(side * rng.uniform(W / 2, 2 * W));
    } else if (p < 0.95) {
      v = static_cast<T>(-W / 2 + static_cast<double>(rng.integer(0, K - 1)) * W / static_cast<double>(K - 1));
    } else {
      v = static_cast<T>(rng.uniform(0, 1) < 0.5 ? -W / 2 : W / 2);
    }
  }
  return x;
}

template <class T>
std::vector<T> random_vec(std::size_t n, Rng& rng, double lo = -1, double hi = 1) {
  std::vector<T> v(n);
  for (auto& e : v) e = static_cast<T>(rng.uniform(lo, hi));
  return v;
}

// ---- guarded buffers ---------------------------------------------------------------------------
// `n` usable elements with kGuard sentinel elements on each side. Inputs use NaN guards (an
// out-of-range read shows up as a NaN where the reference has none); outputs use a finite
// sentinel that the test checks afterwards (an out-of-range write changes it).
template <class T>
class Guarded {
 public:
  static constexpr std::size_t kGuard = 64;
  Guarded(std::size_t n, T guard, T fill) : n_(n), guard_(guard), buf_(n + 2 * kGuard, guard) {
    std::fill(buf_.begin() + kGuard, buf_.begin() + static_cast<std::ptrdiff_t>(kGuard + n), fill);
  }
  Guarded(const std::vector<T>& v, T guard) : Guarded(v.size(), guard, T(0)) {
    std::copy(v.begin(), v.end(), data());
  }
  T* data() { return buf_.data() + kGuard; }
  const T* data() const { return buf_.data() + kGuard; }
  std::size_t size() const { return n_; }
  T& operator[](std::size_t j) { return data()[j]; }
  bool guards_intact() const {
    auto same = [&](T v) { return std::memcmp(&v, &guard_, sizeof(T)) == 0; };
    for (std::size_t j = 0; j < kGuard; ++j) {
      if (!same(buf_[j]) || !same(buf_[kGuard + n_ + j])) return false;
    }
    return true;
  }

 private:
  std::size_t n_;
  T guard_;
  std::vector<T> buf_;
};

template <class T> T nan_v() { return std::numeric_limits<T>::quiet_NaN(); }
template <class T> T inf_v() { return std::numeric_limits<T>::infinity(); }
template <class T> T sentinel_v() { return static_cast<T>(-12345.25); }

template <class T>
Guarded<T> input_buffer(const std::vector<T>& v) { return Guarded<T>(v, nan_v<T>()); }
template <class T>
Guarded<T> output_buffer(std::size_t n) { return Guarded<T>(n, sentinel_v<T>(), nan_v<T>()); }

// ---- calling the layer -------------------------------------------------------------------------
// Runs one op with exactly the workspace the library asks for (none, a null pointer, for the
// gather forward), followed by a guard area that must stay untouched.
class Workspace {
 public:
  static constexpr std::size_t kGuard = 256;
  explicit Workspace(std::size_t bytes) : bytes_(bytes), buf_(bytes + kGuard, std::byte{0xA5}) {}
  void* ptr() { return bytes_ == 0 ? nullptr : buf_.data(); }
  std::size_t bytes() const { return bytes_; }
  bool guard_intact() const {
    for (std::size_t j = bytes_; j < buf_.size(); ++j)
      if (buf_[j] != std::byte{0xA5}) return false;
    return true;
  }

 private:
  std::size_t bytes_;
  std::vector<std::byte> buf_;
};

template <class T>
void run_forward(const Shape& s, Impl impl, const T* x, const T* C, T* y) {
  const DType dt = kancore::dtype_of<T>::value;
  Workspace ws(kancore::c0::forward_workspace_bytes(s, dt, impl));
  kancore::c0::forward(s, dt, impl, x, C, y, ws.ptr(), ws.bytes());
  EXPECT_TRUE(ws.guard_intact()) << "forward wrote past its workspace";
}

template <class T>
void run_backward_input(const Shape& s, Impl impl, const T* x, const T* C, const T* g, T* gx) {
  const DType dt = kancore::dtype_of<T>::value;
  Workspace ws(kancore::c0::backward_workspace_bytes(s, dt, impl));
  kancore::c0::backward_input(s, dt, impl, x, C, g, gx, ws.ptr(), ws.bytes());
  EXPECT_TRUE(ws.guard_intact()) << "backward_input wrote past its workspace";
}

template <class T>
void run_backward_table(const Shape& s, Impl impl, const T* x, const T* g, T* gC) {
  const DType dt = kancore::dtype_of<T>::value;
  Workspace ws(kancore::c0::backward_workspace_bytes(s, dt, impl));
  kancore::c0::backward_table(s, dt, impl, x, g, gC, ws.ptr(), ws.bytes());
  EXPECT_TRUE(ws.guard_intact()) << "backward_table wrote past its workspace";
}

// ---- shapes ------------------------------------------------------------------------------------
inline std::string describe(const Shape& s) {
  std::ostringstream o;
  o << "batch=" << s.batch << " in=" << s.in << " out=" << s.out << " K=" << s.num_control_points
    << " W=" << s.spline_width;
  return o.str();
}

// Appends `count` random shapes: batch in [0, max_batch], in/out from 1, K log-uniform in
// [2, 256], W log-uniform in [0.05, 20].
inline void append_random_shapes(std::vector<Shape>& v, std::uint64_t seed, int count,
                                 std::int64_t max_batch, std::int64_t max_in, std::int64_t max_out) {
  Rng rng(seed);
  for (int n = 0; n < count; ++n) {
    Shape s;
    s.batch = rng.integer(0, max_batch);
    s.in = rng.integer(1, max_in);
    s.out = rng.integer(1, max_out);
    s.num_control_points = static_cast<std::int64_t>(std::llround(rng.log_uniform(2, 256)));
    s.spline_width = rng.log_uniform(0.05, 20);
    v.push_back(s);
  }
}

// A fixed set of shapes: the K values 2, 3, 31, 256, batch 0, sizes on both sides of typical
// SIMD / tile widths (8, 16, 32, 64, 256 outputs; 16 and 128 inputs), K beyond 4096 (the kernels
// may switch strategy for very many control points), then random shapes. Nothing here depends on
// the kernels' current block sizes; see the *AcrossBlockBoundaries tests for larger shapes.
inline std::vector<Shape> test_shapes() {
  std::vector<Shape> v = {
      {1, 1, 1, 2, 2.0},      {5, 3, 7, 2, 0.5},      {13, 9, 33, 3, 4.0},     {8, 32, 32, 31, 1.0},
      {17, 70, 65, 256, 3.0}, {0, 4, 5, 6, 4.0},      {50, 1, 70, 31, 7.5},    {9, 129, 31, 5, 2.5},
      {33, 17, 257, 4, 1.25}, {7, 2, 1, 256, 0.1},    {1, 70, 1, 3, 12.0},     {40, 5, 64, 2, 4.0},
      {21, 16, 16, 8, 2.0},   {3, 17, 63, 3, 1.0},    {19, 15, 129, 11, 5.0},  {40, 2, 3, 5000, 4.0},
      {6, 1, 70, 4097, 0.7},
  };
  append_random_shapes(v, 20240611, 16, 50, 70, 70);
  return v;
}

}  // namespace kctest

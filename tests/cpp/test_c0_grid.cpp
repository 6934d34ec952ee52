// C0 grid adaptation (kancore/c0_grid.hpp): the layer's function before and after, evaluated
// with the forward kernel on x * scale + offset, exact where the new grid can represent it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

#include "kancore/c0_grid.hpp"
#include "kancore/c0_layer.hpp"

namespace {

using kancore::DType;
namespace c0 = kancore::c0;

struct C0 {
  std::int64_t in, out, K;
  double W;
  std::vector<double> table, scale, offset;  // scale/offset empty: identity
};

// y (n, out) of the layer at raw inputs x (n, in).
std::vector<double> eval(const C0& L, const std::vector<double>& x) {
  const std::int64_t n = static_cast<std::int64_t>(x.size()) / L.in;
  std::vector<double> xp(x);
  if (!L.scale.empty()) {
    for (std::int64_t b = 0; b < n; ++b) {
      for (std::int64_t i = 0; i < L.in; ++i) xp[b * L.in + i] = x[b * L.in + i] * L.scale[i] + L.offset[i];
    }
  }
  std::vector<double> y(n * L.out);
  c0::forward<double>(c0::Shape{n, L.in, L.out, L.K, L.W}, c0::Impl::gather, xp.data(), L.table.data(), y.data());
  return y;
}

C0 random_layer(std::int64_t in, std::int64_t out, std::int64_t K, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> N01;
  C0 L{in, out, K, 4.0, std::vector<double>(in * K * out), {}, {}};
  for (auto& v : L.table) v = N01(rng);
  return L;
}

C0 fitted(const C0& L, const std::vector<double>& x, std::int64_t new_K, c0::DomainFitReport* report,
          c0::DomainFitOptions opt = {}) {
  const std::int64_t n = static_cast<std::int64_t>(x.size()) / L.in;
  C0 R{L.in, L.out, new_K, L.W, std::vector<double>(L.in * new_K * L.out), std::vector<double>(L.in),
       std::vector<double>(L.in)};
  const auto r = c0::fit_domain(c0::Shape{n, L.in, L.out, L.K, L.W}, DType::float64, x.data(), L.table.data(),
                                L.scale.empty() ? nullptr : L.scale.data(),
                                L.offset.empty() ? nullptr : L.offset.data(), new_K, R.table.data(),
                                R.scale.data(), R.offset.data(), opt);
  if (report) *report = r;
  return R;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (std::size_t j = 0; j < a.size(); ++j) m = std::max(m, std::abs(a[j] - b[j]));
  return m;
}

std::vector<double> uniform_samples(std::int64_t n, std::int64_t in, double lo, double hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> U(lo, hi);
  std::vector<double> x(n * in);
  for (auto& v : x) v = U(rng);
  return x;
}

TEST(C0Grid, RefineToAMultipleIsExactEverywhere) {
  const C0 L = random_layer(3, 4, 5, 1);
  const auto x = uniform_samples(500, 3, -5, 5, 2);  // inside and far outside [-2, 2]
  for (const std::int64_t Kn : {9, 17, 5}) {
    C0 R = L;
    R.K = Kn;
    R.table.assign(L.in * Kn * L.out, 0.0);
    c0::refine(c0::Shape{0, L.in, L.out, L.K, L.W}, DType::float64, L.table.data(), Kn, R.table.data());
    EXPECT_LT(max_abs_diff(eval(R, x), eval(L, x)), 1e-12) << Kn;
  }
}

// A finer grid that is not a multiple keeps the linear extension: outside [-W/2, W/2] the
// outputs are the old ones (before the end points were pinned they moved by O(1) at |x| = 5).
TEST(C0Grid, RefineToAFinerNonMultipleKeepsTheExtension) {
  const C0 L = random_layer(3, 4, 5, 4);
  for (const std::int64_t Kn : {7, 12, 40}) {
    C0 R = L;
    R.K = Kn;
    R.table.assign(L.in * Kn * L.out, 0.0);
    c0::refine(c0::Shape{0, L.in, L.out, L.K, L.W}, DType::float64, L.table.data(), Kn, R.table.data());
    const auto left = uniform_samples(200, 3, -9, -2, 5), right = uniform_samples(200, 3, 2, 9, 6);
    EXPECT_LT(max_abs_diff(eval(R, left), eval(L, left)), 1e-11) << Kn;
    EXPECT_LT(max_abs_diff(eval(R, right), eval(L, right)), 1e-11) << Kn;
  }
}

// Not a multiple: the L2 fit over the domain, so on a fine sampling of the domain it must do
// at least as well as interpolating the old function at the new points.
TEST(C0Grid, RefineOtherwiseBeatsInterpolation) {
  const C0 L = random_layer(1, 3, 5, 3);
  const std::int64_t Kn = 7;
  C0 R = L;
  R.K = Kn;
  R.table.assign(Kn * L.out, 0.0);
  c0::refine(c0::Shape{0, L.in, L.out, L.K, L.W}, DType::float64, L.table.data(), Kn, R.table.data());
  C0 P = R;  // the interpolant: the old function at the new points
  for (std::int64_t j = 0; j < Kn; ++j) {
    const auto y = eval(L, {-2.0 + 4.0 * static_cast<double>(j) / (Kn - 1)});
    std::copy(y.begin(), y.end(), P.table.begin() + j * L.out);
  }
  std::vector<double> fine;
  for (int j = 0; j <= 4000; ++j) fine.push_back(-2.0 + 4.0 * j / 4000.0);
  auto sq = [&](const C0& M) {
    const auto a = eval(M, fine), b = eval(L, fine);
    double s = 0;
    for (std::size_t j = 0; j < a.size(); ++j) s += (a[j] - b[j]) * (a[j] - b[j]);
    return s;
  };
  const double fit = sq(R), interp = sq(P);
  EXPECT_GT(interp, 0.0);
  EXPECT_LT(fit, 0.9 * interp);
}

// Data where the old function is linear (one breakpoint at 0, data right of it, and a second
// feature's data far outside the old domain, on the linear extension): exact on the samples.
TEST(C0Grid, FitDomainIsExactWhereTheOldFunctionIsRepresentable) {
  C0 L = random_layer(2, 3, 3, 4);
  std::vector<double> x = uniform_samples(300, 2, 0.3, 1.7, 5);
  for (std::int64_t b = 0; b < 300; ++b) x[b * 2 + 1] = 5.0 + x[b * 2 + 1];  // in [5.3, 6.7]
  c0::DomainFitReport rep;
  const C0 R = fitted(L, x, 6, &rep);
  EXPECT_EQ(rep.features_kept, 0);
  EXPECT_EQ(rep.samples_skipped, 0);
  EXPECT_EQ(rep.samples_outside, 0);
  const auto before = eval(L, x), after = eval(R, x);
  double scale = 0;
  for (double v : before) scale = std::max(scale, std::abs(v));
  EXPECT_LT(max_abs_diff(after, before), 1e-12 * scale);
  // The data's range [min, max], widened by 1% each side, now maps onto [-W/2, W/2].
  for (std::int64_t i = 0; i < 2; ++i) {
    double lo = 1e300, hi = -1e300;
    for (std::int64_t b = 0; b < 300; ++b) {
      lo = std::min(lo, x[b * 2 + i]);
      hi = std::max(hi, x[b * 2 + i]);
    }
    const double w = hi - lo;
    EXPECT_NEAR((lo - 0.01 * w) * R.scale[i] + R.offset[i], -2.0, 1e-12);
    EXPECT_NEAR((hi + 0.01 * w) * R.scale[i] + R.offset[i], 2.0, 1e-12);
  }
  // Fitting again with the same K on the same data changes nothing (affine composed correctly).
  const C0 R2 = fitted(R, x, 6, &rep);
  EXPECT_LT(max_abs_diff(eval(R2, x), before), 1e-12 * scale);
}

TEST(C0Grid, FitDomainConvergesAsTheGridGetsFiner) {
  const C0 L = random_layer(3, 2, 8, 6);
  std::mt19937 rng(7);
  std::normal_distribution<double> N01;
  std::vector<double> x(2000 * 3);
  for (auto& v : x) v = 0.8 * N01(rng);
  const auto before = eval(L, x);
  double prev = 1e300;
  for (const std::int64_t Kn : {8, 16, 64, 256}) {
    const auto err = max_abs_diff(eval(fitted(L, x, Kn, nullptr), x), before);
    EXPECT_LT(err, prev) << Kn;
    prev = err;
  }
  EXPECT_LT(prev, 0.05);  // kinks of the old function between new points: O(spacing)
}

TEST(C0Grid, ConstantAndNonFiniteFeatures) {
  const C0 L = random_layer(3, 2, 5, 8);
  std::vector<double> x = uniform_samples(50, 3, -1, 1, 9);
  for (std::int64_t b = 0; b < 50; ++b) x[b * 3 + 0] = 0.25;  // constant
  x[3 * 3 + 1] = std::nan("");
  x[7 * 3 + 1] = INFINITY;
  for (std::int64_t b = 0; b < 50; ++b) x[b * 3 + 2] = b < 49 ? NAN : 0.5;  // one finite sample
  c0::DomainFitReport rep;
  const C0 R = fitted(L, x, 9, &rep);
  EXPECT_EQ(rep.features_kept, 2);
  EXPECT_EQ(rep.samples_skipped, 2 + 49);
  EXPECT_EQ(R.scale[0], 1.0);
  EXPECT_EQ(R.offset[0], 0.0);
  for (double v : R.table) ASSERT_TRUE(std::isfinite(v));
  // Kept features were refined on their old domain: 9 = 2 * (5 - 1) + 1 is exact.
  const auto probe = uniform_samples(100, 3, -3, 3, 10);
  C0 Lk = L, Rk = R;
  for (C0* M : {&Lk, &Rk}) {  // keep only features 0 and 2
    std::fill(M->table.begin() + 1 * M->K * M->out, M->table.begin() + 2 * M->K * M->out, 0.0);
  }
  EXPECT_LT(max_abs_diff(eval(Rk, probe), eval(Lk, probe)), 1e-12);
}

TEST(C0Grid, QuantilesLeaveOutliersOutside) {
  const C0 L = random_layer(1, 1, 5, 11);
  std::vector<double> x = uniform_samples(100, 1, -1, 1, 12);
  x[0] = 100.0;
  x[1] = -80.0;
  c0::DomainFitReport rep;
  c0::DomainFitOptions opt;
  opt.quantile = 0.05;
  const C0 R = fitted(L, x, 9, &rep, opt);
  EXPECT_GE(rep.samples_outside, 2);
  EXPECT_LT(4.0 / R.scale[0], 3.0);  // the domain's width stays near the bulk's
}

TEST(C0Grid, RejectsBadArguments) {
  const C0 L = random_layer(2, 2, 4, 13);
  const auto x = uniform_samples(10, 2, -1, 1, 14);
  std::vector<double> nt(2 * 64 * 2), ns(2), no(2);
  const c0::Shape s{10, 2, 2, 4, 4.0};
  auto call = [&](std::int64_t Kn, c0::DomainFitOptions opt, const double* sc, const double* of) {
    c0::fit_domain(s, DType::float64, x.data(), L.table.data(), sc, of, Kn, nt.data(), ns.data(), no.data(), opt);
  };
  EXPECT_THROW(call(1, {}, nullptr, nullptr), std::invalid_argument);
  EXPECT_THROW(call(4, {0.5, 0.01, 1e-10}, nullptr, nullptr), std::invalid_argument);
  EXPECT_THROW(call(4, {0.0, -1.0, 1e-10}, nullptr, nullptr), std::invalid_argument);
  EXPECT_THROW(call(4, {0.0, 0.01, NAN}, nullptr, nullptr), std::invalid_argument);
  const std::vector<double> one{1.0, 1.0}, zero{0.0, 0.0}, bad{1.0, NAN};
  EXPECT_THROW(call(4, {}, one.data(), nullptr), std::invalid_argument);
  EXPECT_THROW(call(4, {}, zero.data(), zero.data()), std::invalid_argument);
  EXPECT_THROW(call(4, {}, bad.data(), zero.data()), std::invalid_argument);
  EXPECT_NO_THROW(call(64, {}, one.data(), zero.data()));
  EXPECT_THROW(c0::refine(s, DType::float64, L.table.data(), 1, nt.data()), std::invalid_argument);
}

}  // namespace

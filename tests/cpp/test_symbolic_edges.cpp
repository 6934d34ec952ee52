// Symbolic edges of kancore::Network (fix_symbolic / unfix_symbolic): forward against the
// float64 re-statement (network_reference.hpp, which writes the functions out again), gradients
// against finite differences, the numeric parameters of a fixed edge untouched and restored by
// unfix, pruning, edge importance, refine, validation, and the model file round trip.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kancore/model_io.hpp"
#include "kancore/network.hpp"
#include "network_reference.hpp"

namespace {

using namespace kancore;

NetworkConfig mixed(DType dt, bool layernorm = false) {
  NetworkConfig c;
  c.dtype = dt;
  c.layernorm = layernorm;
  c.layers = {LayerConfig::bspline(3, 4, 4, 3), LayerConfig::c0(4, 3, 6, 3.0), LayerConfig::bspline(3, 2, 3, 2)};
  return c;
}

std::vector<double> uniform(std::size_t n, unsigned seed, double lo, double hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> U(lo, hi);
  std::vector<double> v(n);
  for (auto& e : v) e = U(rng);
  return v;
}

void randomise(Network& net, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> U(-0.5, 0.5);
  for (auto& t : net.tensors()) {
    if (t.group == ParamGroup::buffer || t.dtype != DType::float64) continue;
    for (std::int64_t e = 0; e < t.numel(); ++e) static_cast<double*>(t.data)[e] += U(rng);
  }
}

bool needs_positive(const std::string& f) { return f == "sqrt" || f == "log" || f == "1/x" || f == "1/x^2"; }

// Every function of the library on some edge, with inputs that keep them finite: sqrt, log,
// 1/x and 1/x^2 get c = 3 (their inputs b h stay within about ±2).
Network fixed_network(DType dt, bool layernorm = false) {
  Network net(mixed(dt, layernorm), 3);
  randomise(net, 4);
  const auto& names = symbolic_functions();
  std::size_t f = 0;
  for (std::size_t j = 0; j < 3; ++j) {
    const auto& l = net.config().layers[j];
    for (std::int64_t i = 0; i < l.in_features && f < names.size(); ++i)
      for (std::int64_t o = 0; o < l.out_features && f < names.size(); o += 2, ++f)
        net.fix_symbolic(j, i, o, names[f], 0.5 - 0.1 * static_cast<double>(f % 3), 0.4,
                         (needs_positive(names[f]) ? 3.0 : 0.1) + 0.1 * static_cast<double>(j), 0.05);
  }
  EXPECT_EQ(f, names.size());
  return net;
}

double objective(Network& net, const std::vector<double>& x, const std::vector<double>& r, long B) {
  std::vector<double> y(r.size());
  net.forward(B, x.data(), y.data());
  double s = 0;
  for (std::size_t e = 0; e < y.size(); ++e) s += r[e] * y[e];
  return s;
}

TEST(SymbolicEdges, ForwardMatchesTheReference) {
  for (bool ln : {false, true}) {
    Network net = fixed_network(DType::float64, ln);
    const long B = 40;
    const auto x = uniform(B * 3, 5, -1.5, 1.5);
    net.update_grids(B, x.data());  // a fitted C0 domain: symbolic edges still read the raw input
    std::vector<double> y(B * 2);
    net.forward(B, x.data(), y.data());
    const auto want = netref::forward(net, x, B);
    for (std::size_t e = 0; e < y.size(); ++e) EXPECT_NEAR(y[e], want[e], 1e-12 * (1 + std::abs(want[e]))) << e;
  }
}

TEST(SymbolicEdges, GradientsMatchFiniteDifferences) {
  Network net = fixed_network(DType::float64);
  const long B = 5;
  const auto x = uniform(B * 3, 6, -1.2, 1.2);
  net.update_grids(B, x.data());
  const auto r = uniform(B * 2, 7, -1, 1);
  std::vector<double> y(B * 2), gx(B * 3);
  net.zero_grad();
  net.forward_train(B, x.data(), y.data());
  net.backward(r.data(), gx.data());
  const double h = 1e-6;
  bool saw_affine = false;
  for (auto& t : net.tensors()) {
    if (t.group == ParamGroup::buffer) continue;
    saw_affine |= t.name.ends_with("symbolic_affine");
    auto* p = static_cast<double*>(t.data);
    const auto* g = static_cast<const double*>(t.grad);
    for (std::int64_t e = 0; e < t.numel(); ++e) {
      const double keep = p[e];
      p[e] = keep + h;
      const double up = objective(net, x, r, B);
      p[e] = keep - h;
      const double down = objective(net, x, r, B);
      p[e] = keep;
      const double fd = (up - down) / (2 * h);
      EXPECT_NEAR(g[e], fd, 1e-6 * (1 + std::abs(fd))) << t.name << "[" << e << "]";
    }
  }
  EXPECT_TRUE(saw_affine);
  for (std::size_t e = 0; e < x.size(); ++e) {
    auto xp = x, xm = x;
    xp[e] += h;
    xm[e] -= h;
    const double fd = (objective(net, xp, r, B) - objective(net, xm, r, B)) / (2 * h);
    EXPECT_NEAR(gx[e], fd, 1e-6 * (1 + std::abs(fd))) << "x[" << e << "]";
  }
}

TEST(SymbolicEdges, UnfixRestoresTheNumericEdgeAndRefixReplaces) {
  Network net(mixed(DType::float64), 1);
  randomise(net, 2);
  const long B = 30;
  const auto x = uniform(B * 3, 3, -1, 1);
  std::vector<double> y0(B * 2), y1(B * 2), y2(B * 2);
  net.forward(B, x.data(), y0.data());
  net.fix_symbolic(1, 2, 0, "sin", 1.0, 2.0, 0.0, 0.0);
  net.fix_symbolic(1, 2, 0, "tanh", 1.5, 1.0, 0.2, 0.1);  // replaces, does not add
  ASSERT_EQ(net.config().layers[1].symbolic.size(), 1u);
  EXPECT_EQ(net.config().layers[1].symbolic[0].function, "tanh");
  const auto A = netref::as_f64(net.tensor("layers.1.symbolic_affine"));
  EXPECT_EQ(A, (std::vector<double>{1.5, 1.0, 0.2, 0.1}));
  net.forward(B, x.data(), y1.data());
  const auto want = netref::forward(net, x, B);
  for (std::size_t e = 0; e < y1.size(); ++e) EXPECT_NEAR(y1[e], want[e], 1e-12);
  EXPECT_NE(y1, y0);
  // The numeric edge gets no gradient while fixed.
  std::vector<double> r(B * 2, 1.0);
  net.forward_train(B, x.data(), y1.data());
  net.backward(r.data());
  const TensorView w = net.tensor("layers.1.kan_weight");  // (4, 6, 3)
  for (long k = 0; k < 6; ++k) EXPECT_EQ(static_cast<const double*>(w.grad)[(2 * 6 + k) * 3 + 0], 0.0);
  EXPECT_TRUE(net.unfix_symbolic(1, 2, 0));
  EXPECT_FALSE(net.unfix_symbolic(1, 2, 0));
  EXPECT_THROW(net.tensor("layers.1.symbolic_affine"), std::out_of_range);
  net.forward(B, x.data(), y2.data());
  EXPECT_EQ(y2, y0);
}

TEST(SymbolicEdges, BadRequestsThrowAndChangeNothing) {
  Network net(mixed(DType::float32), 1);
  net.fix_symbolic(0, 0, 0, "exp");
  const NetworkConfig before = net.config();
  EXPECT_THROW(net.fix_symbolic(0, 0, 1, "cosh"), std::invalid_argument);
  EXPECT_THROW(net.fix_symbolic(0, 3, 0, "sin"), std::invalid_argument);
  EXPECT_THROW(net.fix_symbolic(0, 0, 4, "sin"), std::invalid_argument);
  EXPECT_THROW(net.fix_symbolic(0, -1, 0, "sin"), std::invalid_argument);
  EXPECT_THROW(net.fix_symbolic(3, 0, 0, "sin"), std::invalid_argument);
  EXPECT_THROW(net.fix_symbolic(0, 1, 0, "sin", std::nan("")), std::invalid_argument);
  EXPECT_THROW(net.unfix_symbolic(7, 0, 0), std::invalid_argument);
  ASSERT_EQ(net.config().layers[0].symbolic.size(), 1u);
  EXPECT_EQ(before.layers[0].symbolic[0].function, net.config().layers[0].symbolic[0].function);
  NetworkConfig twice = mixed(DType::float32);
  twice.layers[0].symbolic = {{0, 0, "x"}, {0, 0, "sin"}};
  EXPECT_THROW(Network{twice}, std::invalid_argument);
}

TEST(SymbolicEdges, PruneRefineAndImportanceKeepThem) {
  Network net = fixed_network(DType::float64);
  const long B = 50;
  const auto x = uniform(B * 3, 8, -1.5, 1.5);
  std::vector<double> y(B * 2), yr(B * 2);
  net.forward(B, x.data(), y.data());
  // Importance of a symbolic edge: the root mean square of a f(b h + c) + d over the samples.
  const auto imp = net.edge_importance(B, x.data());
  const auto& e0 = net.config().layers[0].symbolic[0];
  const auto A = netref::as_f64(net.tensor("layers.0.symbolic_affine"));
  double ss = 0;
  for (long b = 0; b < B; ++b) {
    const double v = A[0] * netref::symbolic_function(e0.function, A[1] * x[b * 3 + e0.in] + A[2]) + A[3];
    ss += v * v;
  }
  EXPECT_NEAR(imp[0][e0.out * 3 + e0.in], std::sqrt(ss / B), 1e-12);
  // Refine keeps them (and the function up to the refit of the numeric edges).
  Network fine = net;
  fine.refine(8);
  EXPECT_EQ(fine.config().layers[0].symbolic.size(), net.config().layers[0].symbolic.size());
  // Pruning keeps the symbolic edges between kept nodes, renumbered, with their constants.
  const Network small = net.prune_nodes({{0, 2, 3}, {0, 2}});
  for (std::size_t j = 0; j < 3; ++j) {
    for (const auto& e : small.config().layers[j].symbolic) {
      EXPECT_LT(e.in, small.config().layers[j].in_features);
      EXPECT_LT(e.out, small.config().layers[j].out_features);
    }
  }
  Network copy = small;
  std::vector<double> ys(B * 2);
  copy.forward(B, x.data(), ys.data());
  const auto want = netref::forward(copy, x, B);
  for (std::size_t e = 0; e < ys.size(); ++e) EXPECT_NEAR(ys[e], want[e], 1e-12 * (1 + std::abs(want[e])));
  // Layer 1's edge (2 -> 0) survives as (1 -> 0), with its row of constants.
  bool found = false;
  const auto& old1 = net.config().layers[1].symbolic;
  const auto old_affine = netref::as_f64(net.tensor("layers.1.symbolic_affine"));
  const auto new_affine = netref::as_f64(copy.tensor("layers.1.symbolic_affine"));
  for (std::size_t r = 0; r < copy.config().layers[1].symbolic.size(); ++r) {
    const auto& e = copy.config().layers[1].symbolic[r];
    for (std::size_t q = 0; q < old1.size(); ++q) {
      const std::int64_t ins[] = {0, 2, 3}, outs[] = {0, 2};
      if (old1[q].in == ins[e.in] && old1[q].out == outs[e.out]) {
        found = true;
        for (int k = 0; k < 4; ++k) EXPECT_EQ(new_affine[4 * r + k], old_affine[4 * q + k]);
      }
    }
  }
  EXPECT_TRUE(found);
}

TEST(SymbolicEdges, SaveAndLoadKeepThem) {
  for (DType dt : {DType::float64, DType::float32}) {
    Network net = fixed_network(dt);
    const std::string path = ::testing::TempDir() + "/symbolic.safetensors";
    save(net, path);
    const Network back = load(path);
    ASSERT_EQ(back.config().layers.size(), 3u);
    for (std::size_t j = 0; j < 3; ++j) {
      const auto& a = net.config().layers[j].symbolic;
      const auto& b = back.config().layers[j].symbolic;
      ASSERT_EQ(a.size(), b.size());
      for (std::size_t r = 0; r < a.size(); ++r) {
        EXPECT_EQ(a[r].in, b[r].in);
        EXPECT_EQ(a[r].out, b[r].out);
        EXPECT_EQ(a[r].function, b[r].function);
      }
    }
    const long B = 20;
    const auto xd = uniform(B * 3, 9, -1, 1);
    if (dt == DType::float64) {
      std::vector<double> y(B * 2), yb(B * 2);
      net.forward(B, xd.data(), y.data());
      back.forward(B, xd.data(), yb.data());
      EXPECT_EQ(y, yb);
    } else {
      std::vector<float> x(xd.begin(), xd.end()), y(B * 2), yb(B * 2);
      net.forward(B, x.data(), y.data());
      back.forward(B, x.data(), yb.data());
      EXPECT_EQ(y, yb);
    }
    std::remove(path.c_str());
  }
}

}  // namespace

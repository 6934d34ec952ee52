// kancore::Network: forward against a float64 re-statement, gradients against finite
// differences (LayerNorm included), losses, Adam against hand-computed steps, fit, early stopping.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

#include "kancore/network.hpp"
#include "kancore/training.hpp"
#include "network_reference.hpp"

namespace {

using namespace kancore;

NetworkConfig mixed_config(DType dt, bool layernorm) {
  NetworkConfig c;
  c.dtype = dt;
  c.layernorm = layernorm;
  c.layers = {LayerConfig::bspline(3, 4, 4, 3), LayerConfig::c0(4, 5, 6, 3.0), LayerConfig::bspline(5, 2, 3, 2)};
  return c;
}

template <class T>
std::vector<T> random_vec(std::size_t n, unsigned seed, double lo = -1.5, double hi = 1.5) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> U(lo, hi);
  std::vector<T> v(n);
  for (auto& e : v) e = static_cast<T>(U(rng));
  return v;
}

// Perturb every trainable tensor so LayerNorm weights, biases and scalers are not trivial.
void randomise(Network& net, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> U(-0.5, 0.5);
  for (auto& t : net.tensors()) {
    if (t.group == ParamGroup::buffer) continue;
    for (std::int64_t e = 0; e < t.numel(); ++e) {
      if (t.dtype == DType::float64) static_cast<double*>(t.data)[e] += U(rng);
      else static_cast<float*>(t.data)[e] += static_cast<float>(U(rng));
    }
  }
}

TEST(Network, ForwardMatchesReferenceFloat64) {
  for (bool ln : {false, true}) {
    Network net(mixed_config(DType::float64, ln), 7);
    randomise(net, 3);
    const long B = 17;
    auto x = random_vec<double>(B * 3, 1);
    // A grid update makes the C0 layer's input affine non-trivial and moves the knots.
    net.update_grids(B, x.data());
    ASSERT_TRUE(net.config().layers[1].fitted_domain);
    std::vector<double> y(B * 2);
    net.forward(B, x.data(), y.data());
    const auto ref = netref::forward(net, x, B);
    for (std::size_t e = 0; e < y.size(); ++e) EXPECT_NEAR(y[e], ref[e], 1e-12 * (1 + std::abs(ref[e]))) << e;
  }
}

TEST(Network, ForwardMatchesReferenceFloat32) {
  Network net(mixed_config(DType::float32, true), 11);
  const long B = 9;
  auto x = random_vec<float>(B * 3, 2);
  std::vector<float> y(B * 2);
  net.forward(B, x.data(), y.data());
  const auto ref = netref::forward(net, std::vector<double>(x.begin(), x.end()), B);
  for (std::size_t e = 0; e < y.size(); ++e) EXPECT_NEAR(y[e], ref[e], 1e-4 * (1 + std::abs(ref[e]))) << e;
}

TEST(Network, InitialisationFollowsThePeers) {
  NetworkConfig c;
  c.dtype = DType::float64;
  c.layers = {LayerConfig::c0(3, 2, 5, 3.0), LayerConfig::bspline(2, 2, 5, 3)};
  Network net(c, 42);
  // C0: lines of slope 1 in input units, C[i,k,o] = p_k s[i,o] at the control points
  // p_k = -W/2 + k W/(K-1), with unit-norm columns of s over the inputs.
  const auto C = netref::as_f64(net.tensor("layers.0.kan_weight"));
  for (int o = 0; o < 2; ++o) {
    double norm = 0;
    for (int i = 0; i < 3; ++i) {
      const double s = C[(i * 5 + 4) * 2 + o] / 1.5;  // p_4 = W/2 = 1.5
      norm += s * s;
      for (int k = 0; k < 5; ++k) EXPECT_NEAR(C[(i * 5 + k) * 2 + o], (-1.5 + 0.75 * k) * s, 1e-15);
    }
    EXPECT_NEAR(norm, 1.0, 1e-12);
  }
  const auto grid = netref::as_f64(net.tensor("layers.1.grid"));
  EXPECT_DOUBLE_EQ(grid[3], -1.0);
  EXPECT_DOUBLE_EQ(grid[8], 1.0);
  for (double s : netref::as_f64(net.tensor("layers.1.spline_scaler"))) EXPECT_EQ(s, 1.0);
  for (double w : netref::as_f64(net.tensor("layers.1.base_weight"))) EXPECT_LE(std::abs(w), 1 / std::sqrt(2.0));
  for (double w : netref::as_f64(net.tensor("layers.1.spline_weight"))) EXPECT_LE(std::abs(w), 0.05 / 5 + 1e-15);
  // Same seed, same weights; another seed, others.
  Network same(c, 42), other(c, 43);
  EXPECT_EQ(netref::as_f64(same.tensor("layers.0.kan_weight")), C);
  EXPECT_NE(netref::as_f64(other.tensor("layers.0.kan_weight")), C);
}

double objective(Network& net, const std::vector<double>& x, const std::vector<double>& r, long B) {
  std::vector<double> y(B * net.out_features());
  net.forward(B, x.data(), y.data());
  double s = 0;
  for (std::size_t e = 0; e < y.size(); ++e) s += r[e] * y[e];
  return s;
}

TEST(Network, GradientsMatchFiniteDifferences) {
  for (bool ln : {false, true}) {
    Network net(mixed_config(DType::float64, ln), 5);
    randomise(net, 9);
    const long B = 6;
    auto x = random_vec<double>(B * 3, 4, -1.2, 1.2);
    net.update_grids(B, x.data());  // fitted C0 affine: its chain rule is checked too
    auto r = random_vec<double>(B * 2, 8);
    std::vector<double> y(B * 2), gx(B * 3);
    net.forward_train(B, x.data(), y.data());
    net.backward(r.data(), gx.data());
    const double h = 1e-6;
    for (auto& t : net.tensors()) {
      if (t.group == ParamGroup::buffer) continue;
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
        EXPECT_NEAR(g[e], fd, 1e-6 * (1 + std::abs(fd))) << t.name << "[" << e << "] layernorm=" << ln;
      }
    }
    for (std::size_t e = 0; e < x.size(); ++e) {
      auto xp = x, xm = x;
      xp[e] += h;
      xm[e] -= h;
      const double fd = (objective(net, xp, r, B) - objective(net, xm, r, B)) / (2 * h);
      EXPECT_NEAR(gx[e], fd, 1e-6 * (1 + std::abs(fd))) << "x[" << e << "]";
    }
  }
}

TEST(Network, RegularizationGradientMatchesFiniteDifferences) {
  Network net(mixed_config(DType::float64, false), 2);
  randomise(net, 1);
  net.zero_grad();
  const double w = 0.3;
  net.regularization(w, true);
  const double h = 1e-6;
  for (auto& t : net.tensors()) {
    if (t.group != ParamGroup::spline) continue;
    auto* p = static_cast<double*>(t.data);
    const auto* g = static_cast<const double*>(t.grad);
    for (std::int64_t e = 0; e < t.numel(); ++e) {
      const double keep = p[e];
      p[e] = keep + h;
      const double up = net.regularization(w, false);
      p[e] = keep - h;
      const double down = net.regularization(w, false);
      p[e] = keep;
      EXPECT_NEAR(g[e], (up - down) / (2 * h), 1e-6) << t.name << "[" << e << "]";
    }
  }
}

TEST(Network, NaNStaysInItsRowAndEmptyBatchIsANoOp) {
  Network net(mixed_config(DType::float64, true), 1);
  std::vector<double> x = random_vec<double>(2 * 3, 3), y(4);
  x[1] = std::numeric_limits<double>::quiet_NaN();
  net.forward(2, x.data(), y.data());
  EXPECT_TRUE(std::isnan(y[0]) && std::isnan(y[1]));
  EXPECT_TRUE(std::isfinite(y[2]) && std::isfinite(y[3]));
  net.forward(0, static_cast<const void*>(nullptr), static_cast<void*>(nullptr));
}

TEST(Network, RejectsBadConfigsAndCalls) {
  NetworkConfig c = mixed_config(DType::float64, false);
  c.layers[1].in_features = 3;  // does not chain
  EXPECT_THROW(Network{c}, std::invalid_argument);
  c = mixed_config(DType::float64, false);
  c.layers[1].num_control_points = 1;
  EXPECT_THROW(Network{c}, std::invalid_argument);
  EXPECT_THROW(Network{NetworkConfig{}}, std::invalid_argument);
  Network net(mixed_config(DType::float64, false));
  std::vector<float> xf(3), yf(2);
  EXPECT_THROW(net.forward(1, xf.data(), yf.data()), std::invalid_argument);
  std::vector<double> x(3), y(2);
  ExecContext cuda;
  cuda.device.type = DeviceType::cuda;
  EXPECT_THROW(net.forward(1, x.data(), y.data(), cuda), std::runtime_error);
  EXPECT_THROW(net.backward(y.data()), std::logic_error);  // no forward_train yet
  EXPECT_THROW(net.forward(-1, x.data(), y.data()), std::invalid_argument);
  EXPECT_THROW(net.tensor("layers.9.grid"), std::out_of_range);
}

TEST(Losses, ValuesAndGradients) {
  const std::vector<double> p{0.5, -1.0, 2.0, 0.25}, t{1.0, -1.0, 0.0, 0.0};
  std::vector<double> g(4);
  const double mse = mse_loss(DType::float64, 2, 2, p.data(), t.data(), g.data());
  EXPECT_DOUBLE_EQ(mse, (0.25 + 0 + 4 + 0.0625) / 4);
  EXPECT_DOUBLE_EQ(g[2], 2 * 2.0 / 4);
  const std::vector<double> z{1.0, 2.0, -0.5, 1000.0, 0.0, -3.0};
  const std::vector<std::int64_t> lab{1, 0};
  std::vector<double> gz(6);
  const double ce = cross_entropy_loss(DType::float64, 2, 3, z.data(), lab.data(), gz.data());
  const double l0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(-0.5)) - 2.0;
  EXPECT_NEAR(ce, (l0 + 0.0) / 2, 1e-12);  // the second row is certain (large logit, stable)
  for (int e = 0; e < 6; ++e) {
    auto zp = z, zm = z;
    zp[e] += 1e-6;
    zm[e] -= 1e-6;
    const double fd = (cross_entropy_loss(DType::float64, 2, 3, zp.data(), lab.data()) -
                       cross_entropy_loss(DType::float64, 2, 3, zm.data(), lab.data())) / 2e-6;
    EXPECT_NEAR(gz[e], fd, 1e-6);
  }
  const std::vector<std::int64_t> bad{3, 0};
  EXPECT_THROW(cross_entropy_loss(DType::float64, 2, 3, z.data(), bad.data()), std::invalid_argument);
  EXPECT_THROW(mse_loss(DType::float64, 0, 2, p.data(), t.data()), std::invalid_argument);
}

TEST(Adam, MatchesHandComputedSteps) {
  for (auto kind : {OptimizerKind::adam, OptimizerKind::adamw}) {
    NetworkConfig c;
    c.dtype = DType::float64;
    c.layers = {LayerConfig::bspline(1, 1, 1, 1)};
    Network net(c, 0);
    AdamOptions o;
    o.kind = kind;
    o.lr = 0.1;
    o.lr_spline = 0.01;
    o.weight_decay = 0.5;
    Adam opt(net, o);
    auto base = net.tensor("layers.0.base_weight");
    auto spl = net.tensor("layers.0.spline_weight");
    auto* pb = static_cast<double*>(base.data);
    auto* ps = static_cast<double*>(spl.data);
    pb[0] = 1.0;
    ps[0] = -2.0;
    double hb = 1.0, hs = -2.0, mb = 0, vb = 0, ms = 0, vs = 0;
    const double grads[2] = {0.3, -0.7};
    for (int step = 1; step <= 2; ++step) {
      static_cast<double*>(base.grad)[0] = grads[step - 1];
      static_cast<double*>(spl.grad)[0] = -grads[step - 1];
      static_cast<double*>(spl.grad)[1] = 0;
      static_cast<double*>(net.tensor("layers.0.spline_scaler").grad)[0] = 0;
      opt.step();
      auto hand = [&](double& p, double g, double& m, double& v, double lr) {
        if (kind == OptimizerKind::adamw) p *= 1 - lr * 0.5;
        else g += 0.5 * p;
        m = 0.9 * m + 0.1 * g;
        v = 0.999 * v + 0.001 * g * g;
        const double mh = m / (1 - std::pow(0.9, step)), vh = v / (1 - std::pow(0.999, step));
        p -= lr * mh / (std::sqrt(vh) + 1e-8);
      };
      hand(hb, grads[step - 1], mb, vb, 0.1);
      hand(hs, -grads[step - 1], ms, vs, 0.01);
      EXPECT_NEAR(pb[0], hb, 1e-14) << "step " << step;
      EXPECT_NEAR(ps[0], hs, 1e-14) << "step " << step;
    }
  }
}

// sin(x0) * cos(x1) on [-2, 2]^2.
struct Data {
  std::vector<double> x, y;
};
Data make_data(long n, unsigned seed) {
  Data d{random_vec<double>(n * 2, seed, -2, 2), std::vector<double>(n)};
  for (long b = 0; b < n; ++b) d.y[b] = std::sin(d.x[2 * b]) * std::cos(d.x[2 * b + 1]);
  return d;
}

TEST(Fit, ReducesTheLoss) {
  for (auto kind : {LayerKind::bspline, LayerKind::c0}) {
    NetworkConfig c = make_config({2, 6, 1}, kind, DType::float64, true);
    Network net(c, 1);
    const Data d = make_data(256, 3);
    FitOptions o;
    o.epochs = 40;
    o.batch_size = 32;
    o.optimizer.lr = 0.02;
    o.val_fraction = 0.2;
    o.reg_weight = 1e-5;
    o.grid_update_every = 10;
    o.grid_update_until = 21;
    int calls = 0;
    o.callback = [&](const EpochLog&) { return ++calls > 0; };
    const FitHistory h = fit(net, Dataset{256, d.x.data(), d.y.data(), nullptr}, o);
    EXPECT_EQ(calls, 40);
    ASSERT_EQ(h.train_loss.size(), 40u);
    ASSERT_EQ(h.val_loss.size(), 40u);
    EXPECT_LT(h.best_loss, 0.25 * h.val_loss.front()) << "kind " << static_cast<int>(kind);
    EXPECT_LT(h.train_loss.back(), 0.25 * h.train_loss.front());
  }
}

// Network::refine keeps the function (exactly for a multiple, C0 after a grid update too) and
// changes the tensors' shapes; a bad size leaves the network unchanged.
TEST(Network, RefineKeepsTheFunctionAndReshapesTheTensors) {
  NetworkConfig c = make_config({2, 5, 3}, LayerKind::bspline, DType::float64, true);
  NetworkConfig c0 = make_config({2, 5, 3}, LayerKind::c0, DType::float64, true);
  for (auto& l : c0.layers) l.num_control_points = 5;
  for (const NetworkConfig& cfg : {c, c0}) {
    Network net(cfg, 3);
    randomise(net, 4);
    const auto x = random_vec<double>(2 * 200, 5, -4.0, 4.0);  // inside and well outside the grids
    if (cfg.layers[0].kind == LayerKind::c0) net.update_grids(200, x.data());
    std::vector<double> before(3 * 200), after(3 * 200);
    net.forward(200, x.data(), before.data());
    const std::int64_t size = cfg.layers[0].kind == LayerKind::c0 ? 9 : 10;  // multiples of the old
    net.refine(size);
    net.forward(200, x.data(), after.data());
    for (std::size_t e = 0; e < before.size(); ++e) EXPECT_NEAR(after[e], before[e], 1e-9) << e;
    const TensorView w = net.tensor(cfg.layers[0].kind == LayerKind::c0 ? "layers.0.kan_weight" : "layers.0.spline_weight");
    if (cfg.layers[0].kind == LayerKind::c0) {
      EXPECT_EQ(w.shape, (std::vector<std::int64_t>{2, 9, 5}));
    } else {
      EXPECT_EQ(w.shape, (std::vector<std::int64_t>{5, 2, 13}));
    }
    EXPECT_THROW(net.refine(0), std::invalid_argument);
    net.forward(200, x.data(), after.data());  // unchanged by the failed call
    for (std::size_t e = 0; e < before.size(); ++e) EXPECT_NEAR(after[e], before[e], 1e-9) << e;
  }
}

// Edge importance against a float64 restatement of each edge's function (one layer, so the
// layer's input is x itself), for both kinds, inputs inside and outside the grids.
TEST(Network, EdgeImportanceIsTheRootMeanSquareOfEachEdge) {
  const long B = 300;
  const auto x = random_vec<double>(3 * B, 11, -3.0, 3.0);
  for (auto kind : {LayerKind::bspline, LayerKind::c0}) {
    NetworkConfig c = make_config({3, 4}, kind, DType::float64, false);
    if (kind == LayerKind::c0) c.layers[0].num_control_points = 6;
    Network net(c, 5);
    randomise(net, 6);
    const auto imp = net.edge_importance(B, x.data());
    ASSERT_EQ(imp.size(), 1u);
    ASSERT_EQ(imp[0].size(), 12u);
    const LayerConfig& l = net.config().layers[0];
    for (long o = 0; o < 4; ++o)
      for (long i = 0; i < 3; ++i) {
        double sum = 0;
        for (long b = 0; b < B; ++b) {
          const double v = x[b * 3 + i];
          double phi = 0;
          if (kind == LayerKind::c0) {
            const auto C = netref::as_f64(net.tensor("layers.0.kan_weight"));  // (3, 6, 4)
            const double u = (v + 2.0) * 5.0 / 4.0;  // W = 4, K = 6
            const long k = u < 0 ? 0 : (u >= 4 ? 4 : static_cast<long>(std::floor(u)));
            phi = C[(i * 6 + k) * 4 + o] + (u - k) * (C[(i * 6 + k + 1) * 4 + o] - C[(i * 6 + k) * 4 + o]);
          } else {
            const auto knots = netref::as_f64(net.tensor("layers.0.grid"));
            const auto bw = netref::as_f64(net.tensor("layers.0.base_weight"));
            const auto sw = netref::as_f64(net.tensor("layers.0.spline_weight"));
            const auto sc = netref::as_f64(net.tensor("layers.0.spline_scaler"));
            const int nk = static_cast<int>(l.grid_size + 2 * l.spline_order + 1), C = nk - 1 - static_cast<int>(l.spline_order);
            const auto bas = netref::basis(knots.data() + i * nk, nk, static_cast<int>(l.spline_order), v);
            double spline = 0;
            for (int j = 0; j < C; ++j) spline += bas[j] * sw[(o * 3 + i) * C + j];
            phi = bw[o * 3 + i] * v / (1 + std::exp(-v)) + sc[o * 3 + i] * spline;
          }
          sum += phi * phi;
        }
        EXPECT_NEAR(imp[0][o * 3 + i], std::sqrt(sum / B), 1e-10) << "kind " << static_cast<int>(kind);
      }
  }
}

// A node whose outgoing edges are exactly zero leaves without changing the function; the pruned
// copy has fewer parameters; LayerNorm networks and bad lists are refused.
TEST(Network, PruneNodesRemovesParametersAndKeepsTheFunction) {
  for (auto kind : {LayerKind::bspline, LayerKind::c0}) {
    NetworkConfig c = make_config({3, 6, 4, 2}, kind, DType::float64, false);
    Network net(c, 7);
    randomise(net, 8);
    // Silence hidden node 2 of layer 0 (its edges into layer 1) and node 1 of layer 1.
    auto silence = [&](int layer, long node, long in, long out) {
      const std::string p = "layers." + std::to_string(layer) + ".";
      if (kind == LayerKind::c0) {
        TensorView w = net.tensor(p + "kan_weight");  // (in, K, out)
        const long K = w.shape[1];
        for (long k = 0; k < K; ++k)
          for (long o = 0; o < out; ++o) static_cast<double*>(w.data)[(node * K + k) * out + o] = 0;
      } else {
        TensorView bw = net.tensor(p + "base_weight"), sw = net.tensor(p + "spline_weight");  // (out, in[, C])
        const long C = sw.shape[2];
        for (long o = 0; o < out; ++o) {
          static_cast<double*>(bw.data)[o * in + node] = 0;
          for (long j = 0; j < C; ++j) static_cast<double*>(sw.data)[(o * in + node) * C + j] = 0;
        }
      }
    };
    silence(1, 2, 6, 4);
    silence(2, 1, 4, 2);
    const auto x = random_vec<double>(3 * 50, 9, -2.0, 2.0);
    std::vector<double> y(100), yp(100);
    net.forward(50, x.data(), y.data());
    const auto imp = net.edge_importance(50, x.data());
    for (long o = 0; o < 4; ++o) EXPECT_EQ(imp[1][o * 6 + 2], 0.0);
    const Network small = net.prune_nodes({{0, 1, 3, 4, 5}, {0, 2, 3}});
    EXPECT_EQ(small.config().layers[0].out_features, 5);
    EXPECT_EQ(small.config().layers[1].in_features, 5);
    EXPECT_EQ(small.config().layers[1].out_features, 3);
    EXPECT_EQ(small.config().layers[2].in_features, 3);
    EXPECT_LT(small.num_parameters(), net.num_parameters());
    small.forward(50, x.data(), yp.data());
    for (std::size_t e = 0; e < y.size(); ++e) EXPECT_NEAR(yp[e], y[e], 1e-12) << e;
    EXPECT_THROW(net.prune_nodes({{0, 1}}), std::invalid_argument);
    EXPECT_THROW(net.prune_nodes({{1, 0}, {0}}), std::invalid_argument);
    EXPECT_THROW(net.prune_nodes({{}, {0}}), std::invalid_argument);
    EXPECT_THROW(net.prune_nodes({{0, 6}, {0}}), std::invalid_argument);
  }
  Network ln(make_config({2, 3, 1}, LayerKind::c0, DType::float64, true), 1);
  EXPECT_THROW(ln.prune_nodes({{0, 1}}), std::invalid_argument);
}

// A grid schedule refines before the first epoch of each stage, Adam restarts the refined
// tensors only, and training goes on to a lower loss than the coarse grid alone reaches.
TEST(Fit, GridScheduleRefinesAtEachStage) {
  const Data d = make_data(256, 7);
  auto run = [&](std::vector<std::int64_t> schedule) {
    NetworkConfig c = make_config({2, 5, 1}, LayerKind::bspline, DType::float64, false);
    for (auto& l : c.layers) l.grid_size = 3;
    Network net(c, 2);
    FitOptions o;
    o.epochs = 60;
    o.batch_size = 256;
    o.optimizer.lr = 0.02;
    o.restore_best = false;
    o.grid_schedule = std::move(schedule);
    std::vector<std::int64_t> refined;
    o.callback = [&](const EpochLog& e) {
      if (e.refined_to) refined.push_back(e.epoch);
      return true;
    };
    FitHistory h = fit(net, Dataset{256, d.x.data(), d.y.data(), nullptr}, o);
    return std::make_tuple(h, net.config().layers[0].grid_size, refined);
  };
  const auto [plain, plain_size, plain_refined] = run({});
  const auto [sched, sched_size, sched_refined] = run({3, 6, 12});
  EXPECT_EQ(plain_size, 3);
  EXPECT_EQ(sched_size, 12);
  ASSERT_EQ(sched.refine_epochs.size(), 2u);
  EXPECT_EQ(sched.refine_epochs[0], std::make_pair(std::int64_t{20}, std::int64_t{6}));
  EXPECT_EQ(sched.refine_epochs[1], std::make_pair(std::int64_t{40}, std::int64_t{12}));
  EXPECT_EQ(sched_refined, (std::vector<std::int64_t>{20, 40}));
  EXPECT_TRUE(plain.refine_epochs.empty());
  EXPECT_LT(sched.train_loss.back(), plain.train_loss.back());
  // Stage lengths given explicitly replace epochs.
  NetworkConfig c = make_config({2, 3, 1}, LayerKind::c0, DType::float64, false);
  Network net(c, 1);
  FitOptions o;
  o.grid_schedule = {8, 16};
  o.stage_epochs = {2, 3};
  const FitHistory h = fit(net, Dataset{256, d.x.data(), d.y.data(), nullptr}, o);
  EXPECT_EQ(h.train_loss.size(), 5u);
  ASSERT_EQ(h.refine_epochs.size(), 2u);  // 32 -> 8 before epoch 0, 8 -> 16 before epoch 2
  EXPECT_EQ(h.refine_epochs[1].first, 2);
  o.stage_epochs = {2};
  EXPECT_THROW(fit(net, Dataset{256, d.x.data(), d.y.data(), nullptr}, o), std::invalid_argument);
}

// Progressive sparsification: the linear schedule's first step carries no penalty (the same
// parameters as a run without one), and the run ends with a smaller penalty than no penalty.
TEST(Fit, LinearRegScheduleRampsTheWeightFromZero) {
  const Data d = make_data(128, 4);
  auto run = [&](double w, RegSchedule sched, std::int64_t stop_after) {
    Network net(make_config({2, 4, 1}, LayerKind::bspline, DType::float64, false), 3);
    FitOptions o;
    o.epochs = 40;
    o.batch_size = 128;  // one step per epoch
    o.optimizer.lr = 0.02;
    o.restore_best = false;
    o.reg_weight = w;
    o.reg_schedule = sched;
    o.callback = [stop_after](const EpochLog& e) { return e.epoch + 1 < stop_after; };
    fit(net, Dataset{128, d.x.data(), d.y.data(), nullptr}, o);
    return net;
  };
  Network a = run(0.5, RegSchedule::linear, 1), b = run(0.0, RegSchedule::constant, 1);
  const auto ta = a.tensors(), tb = b.tensors();
  for (std::size_t j = 0; j < ta.size(); ++j) EXPECT_EQ(netref::as_f64(ta[j]), netref::as_f64(tb[j])) << ta[j].name;
  Network c = run(0.0, RegSchedule::constant, 40), e = run(0.5, RegSchedule::linear, 40);
  EXPECT_LT(e.regularization(1.0, false), c.regularization(1.0, false));
}

// FitHistory's per-epoch reg and lr, the grid-update epochs and steps_per_epoch, checked against
// what the callback saw and against the options.
TEST(Fit, HistoryRecordsPenaltyLearningRateGridUpdatesAndSteps) {
  for (auto kind : {LayerKind::bspline, LayerKind::c0}) {
    Network net(make_config({2, 4, 1}, kind, DType::float64), 3);
    const Data d = make_data(200, 7);
    FitOptions o;
    o.epochs = 12;
    o.batch_size = 32;  // 160 training rows after the split: 5 steps per epoch
    o.val_fraction = 0.2;
    o.optimizer.lr = 0.015;
    o.optimizer.lr_spline = 0.03;
    o.reg_weight = 1e-3;
    o.grid_update_every = 4;
    o.grid_update_until = 9;  // before epochs 0, 4 and 8
    o.grid_update_samples = 50;
    o.restore_best = false;  // so the network ends on the last epoch's weights (checked below)
    std::vector<double> penalties;
    std::vector<std::int64_t> updated;
    o.callback = [&](const EpochLog& e) {
      penalties.push_back(e.penalty);
      if (e.grid_updated) updated.push_back(e.epoch);
      return true;
    };
    const FitHistory h = fit(net, Dataset{200, d.x.data(), d.y.data(), nullptr}, o);
    ASSERT_EQ(h.train_loss.size(), 12u);
    ASSERT_EQ(h.reg.size(), 12u);
    ASSERT_EQ(h.lr.size(), 12u);
    for (std::size_t e = 0; e < 12; ++e) {
      EXPECT_EQ(h.reg[e], penalties[e]) << "epoch " << e;
      EXPECT_GT(h.reg[e], 0.0);
      EXPECT_EQ(h.lr[e], 0.015);  // the "other" group's rate, not lr_spline
    }
    EXPECT_EQ(h.grid_update_epochs, (std::vector<std::int64_t>{0, 4, 8}));
    EXPECT_EQ(h.grid_update_epochs, updated);
    EXPECT_EQ(h.steps_per_epoch, 5);
    // The penalty is the network's regularisation after the last epoch, weighted.
    EXPECT_NEAR(h.reg.back(), net.regularization(o.reg_weight, false), 1e-12 * h.reg.back());
  }
  // steps_per_epoch rounds up and a batch larger than the data is one step; no regularisation
  // and no grid updates record zeros and an empty list.
  Network net(make_config({2, 3, 1}, LayerKind::c0, DType::float64), 1);
  const Data d = make_data(70, 2);
  FitOptions o;
  o.epochs = 2;
  o.batch_size = 32;
  FitHistory h = fit(net, Dataset{70, d.x.data(), d.y.data(), nullptr}, o);
  EXPECT_EQ(h.steps_per_epoch, 3);
  EXPECT_EQ(h.reg, (std::vector<double>{0.0, 0.0}));
  EXPECT_EQ(h.lr, (std::vector<double>{o.optimizer.lr, o.optimizer.lr}));
  EXPECT_TRUE(h.grid_update_epochs.empty());
  o.batch_size = 1000;
  o.epochs = 0;
  h = fit(net, Dataset{70, d.x.data(), d.y.data(), nullptr}, o);
  EXPECT_EQ(h.steps_per_epoch, 1);
  EXPECT_TRUE(h.reg.empty() && h.lr.empty());
  // grid_update_samples must be >= 1.
  o.epochs = 1;
  o.grid_update_samples = 0;
  EXPECT_THROW(fit(net, Dataset{70, d.x.data(), d.y.data(), nullptr}, o), std::invalid_argument);
}

TEST(Fit, ClassifiesWithCrossEntropy) {
  NetworkConfig c = make_config({2, 4, 2}, LayerKind::bspline, DType::float32);
  Network net(c, 2);
  const long n = 200;
  auto x = random_vec<float>(n * 2, 5, -1, 1);
  std::vector<std::int64_t> lab(n);
  for (long b = 0; b < n; ++b) lab[b] = x[2 * b] * x[2 * b + 1] > 0 ? 1 : 0;
  FitOptions o;
  o.loss = LossKind::cross_entropy;
  o.epochs = 60;
  o.optimizer.lr = 0.05;
  const FitHistory h = fit(net, Dataset{n, x.data(), nullptr, lab.data()}, o);
  EXPECT_LT(h.train_loss.back(), 0.5 * h.train_loss.front());
}

TEST(Fit, EarlyStoppingRestoresTheBestWeights) {
  Network net(make_config({2, 5, 1}, LayerKind::bspline, DType::float64), 4);
  const Data tr = make_data(128, 1);
  Data va = make_data(64, 2);
  for (auto& v : va.y) v = -v + 0.5;  // a validation target that training moves away from
  FitOptions o;
  o.epochs = 200;
  o.patience = 3;
  o.optimizer.lr = 0.05;
  const Dataset val{64, va.x.data(), va.y.data(), nullptr};
  const FitHistory h = fit(net, Dataset{128, tr.x.data(), tr.y.data(), nullptr}, o, &val);
  EXPECT_EQ(h.stop_reason, "early_stopping");
  EXPECT_LT(h.val_loss.size(), 200u);
  EXPECT_EQ(static_cast<std::int64_t>(h.val_loss.size()), h.best_epoch + 1 + 3);
  std::vector<double> y(64);
  net.forward(64, va.x.data(), y.data());
  EXPECT_DOUBLE_EQ(mse_loss(DType::float64, 64, 1, y.data(), va.y.data()), h.best_loss);
  EXPECT_DOUBLE_EQ(h.val_loss[h.best_epoch], h.best_loss);
}

TEST(Fit, RejectsBadData) {
  Network net(make_config({2, 3, 1}, LayerKind::c0, DType::float64));
  Data d = make_data(10, 1);
  FitOptions o;
  o.epochs = 1;
  EXPECT_THROW(fit(net, Dataset{0, d.x.data(), d.y.data(), nullptr}, o), std::invalid_argument);
  d.x[3] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(fit(net, Dataset{10, d.x.data(), d.y.data(), nullptr}, o), std::invalid_argument);
  d = make_data(10, 1);
  EXPECT_THROW(fit(net, Dataset{10, d.x.data(), nullptr, nullptr}, o), std::invalid_argument);
  o.val_fraction = 1.0;
  EXPECT_THROW(fit(net, Dataset{10, d.x.data(), d.y.data(), nullptr}, o), std::invalid_argument);
}

}  // namespace

// Train a small KAN on f(x0, x1) = sin(x0) cos(x1) over [-2, 2]^2 with the C++ API, print the
// test RMSE and save the model (the shared safetensors format, loadable from Python).
//   usage: train_sin_cos OUTPUT.safetensors
#include <kancore/kancore.hpp>

#include <cmath>
#include <cstdio>
#include <exception>
#include <random>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT.safetensors\n", argv[0]);
    return 2;
  }
  try {
    std::mt19937 rng(0);
    std::uniform_real_distribution<float> U(-2.0f, 2.0f);
    auto make = [&](int n, std::vector<float>& x, std::vector<float>& y) {
      x.resize(2 * n);
      y.resize(n);
      for (int b = 0; b < n; ++b) {
        x[2 * b] = U(rng);
        x[2 * b + 1] = U(rng);
        y[b] = std::sin(x[2 * b]) * std::cos(x[2 * b + 1]);
      }
    };
    std::vector<float> xtr, ytr, xte, yte;
    make(2000, xtr, ytr);
    make(500, xte, yte);

    // [2, 8, 1] B-spline KAN with LayerNorm between the layers; grids follow the data.
    kancore::NetworkConfig config = kancore::make_config({2, 8, 1}, kancore::LayerKind::bspline,
                                                         kancore::DType::float32, /*layernorm=*/true);
    config.layers[0].grid_min = -2.0;
    config.layers[0].grid_max = 2.0;
    kancore::Network net(config, /*seed=*/1);

    kancore::FitOptions opt;
    opt.epochs = 60;
    opt.batch_size = 64;
    opt.optimizer.lr = 0.01;
    opt.val_fraction = 0.2;
    opt.patience = 10;
    opt.grid_update_every = 10;
    opt.grid_update_until = 30;
    opt.callback = [](const kancore::EpochLog& e) {
      if (e.epoch % 10 == 0) std::printf("epoch %3lld  train %.5f  val %.5f\n", static_cast<long long>(e.epoch), e.train_loss, e.val_loss);
      return true;
    };
    const kancore::FitHistory h = kancore::fit(net, kancore::Dataset{2000, xtr.data(), ytr.data(), nullptr}, opt);

    std::vector<float> pred(500);
    net.forward(500, xte.data(), pred.data());
    double se = 0, var = 0, mean = 0;
    for (float v : yte) mean += v / 500.0;
    for (int b = 0; b < 500; ++b) {
      se += (pred[b] - yte[b]) * (pred[b] - yte[b]);
      var += (yte[b] - mean) * (yte[b] - mean);
    }
    std::printf("%zu epochs (%s), best epoch %lld, %lld parameters\n", h.train_loss.size(), h.stop_reason.c_str(),
                static_cast<long long>(h.best_epoch), static_cast<long long>(net.num_parameters()));
    std::printf("test RMSE %.4f (target std %.4f)\n", std::sqrt(se / 500), std::sqrt(var / 500));
    kancore::save(net, argv[1]);
    kancore::Network back = kancore::load(argv[1]);
    std::printf("saved %s (%lld -> %lld features)\n", argv[1], static_cast<long long>(back.in_features()),
                static_cast<long long>(back.out_features()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}

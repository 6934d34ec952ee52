// Writes the fuzzer's seed corpus: valid model files of every layer kind, dtype and option.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "kancore/model_io.hpp"
#include "kancore/network.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  using namespace kancore;
  int n = 0;
  for (DType dt : {DType::float32, DType::float64}) {
    for (bool ln : {false, true}) {
      std::vector<NetworkConfig> configs;
      NetworkConfig a;
      a.layers = {LayerConfig::c0(1, 1, 2, 1.0)};
      configs.push_back(a);
      NetworkConfig b;
      b.layers = {LayerConfig::bspline(1, 2, 1, 1), LayerConfig::c0(2, 1, 3, 2.0)};
      configs.push_back(b);
      NetworkConfig c;
      c.layers = {LayerConfig::c0(2, 2, 2, 4.0), LayerConfig::bspline(2, 1, 2, 2)};
      configs.push_back(c);
      for (auto& cfg : configs) {
        cfg.dtype = dt;
        cfg.layernorm = ln;
        Network net(cfg, static_cast<std::uint64_t>(n));
        if (cfg.layers[0].kind == LayerKind::c0 && ln) {
          std::vector<double> x64(cfg.layers[0].in_features * 4, 0.5);
          for (std::size_t e = 0; e < x64.size(); ++e) x64[e] = 0.3 * static_cast<double>(e) - 0.4;
          std::vector<float> x32(x64.begin(), x64.end());
          net.update_grids(4, dt == DType::float64 ? static_cast<const void*>(x64.data()) : x32.data());
        }
        save(net, std::string(argv[1]) + "/seed_" + std::to_string(n++) + ".safetensors");
      }
    }
  }
  std::printf("wrote %d seed files\n", n);
  return 0;
}

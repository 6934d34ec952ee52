// Inference from a kancore model file without Python: load it (written by kancore.save in
// Python, or kancore::save in C++), run batches of random inputs through it, time them.
//   usage: infer MODEL.safetensors [BATCH=4096] [REPEATS=20] [THREADS=0 (kancore's default)]
// Prints the network's shape, the median and fastest time per batch, the throughput, and the
// first outputs. The same network exported to ONNX (docs/deploy.md) runs in other runtimes.
#include <kancore/kancore.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <string>
#include <vector>

namespace {

template <class T>
void run(const kancore::Network& net, long long batch, int repeats) {
  std::mt19937 rng(0);
  std::uniform_real_distribution<double> U(-2.0, 2.0);
  std::vector<T> x(static_cast<std::size_t>(batch * net.in_features()));
  for (T& v : x) v = static_cast<T>(U(rng));
  std::vector<T> y(static_cast<std::size_t>(batch * net.out_features()));
  net.forward(batch, x.data(), y.data());  // warm-up: first touch of the memory, thread start
  std::vector<double> ms;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    net.forward(batch, x.data(), y.data());
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  std::printf("batch %lld: median %.3f ms, fastest %.3f ms per batch (%d runs, %d threads), %.0f samples/s\n",
              batch, median, ms.front(), repeats, kancore::get_num_threads(), batch / (median / 1e3));
  std::printf("first outputs:");
  for (long long i = 0; i < std::min<long long>(4, batch * net.out_features()); ++i) std::printf(" %.6g", double(y[i]));
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 5) {
    std::fprintf(stderr, "usage: %s MODEL.safetensors [BATCH] [REPEATS] [THREADS]\n", argv[0]);
    return 2;
  }
  try {
    const long long batch = argc > 2 ? std::stoll(argv[2]) : 4096;
    const int repeats = argc > 3 ? std::stoi(argv[3]) : 20;
    if (batch < 1 || repeats < 1) throw std::invalid_argument("BATCH and REPEATS must be at least 1");
    if (argc > 4 && std::stoi(argv[4]) > 0) kancore::set_num_threads(std::stoi(argv[4]));
    const kancore::Network net = kancore::load(argv[1]);
    std::printf("%s: %lld -> %lld features, %zu layers, %lld parameters, %s\n", argv[1],
                static_cast<long long>(net.in_features()), static_cast<long long>(net.out_features()),
                net.config().layers.size(), static_cast<long long>(net.num_parameters()),
                kancore::to_string(net.dtype()).c_str());
    if (net.dtype() == kancore::DType::float64) {
      run<double>(net, batch, repeats);
    } else {
      run<float>(net, batch, repeats);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}

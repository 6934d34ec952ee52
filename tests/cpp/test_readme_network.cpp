// The C++ network snippet of README.md ("Networks, training and model files (C++ and NumPy)"),
// compiled and run exactly as written there: tests/cpp/CMakeLists.txt copies the ```cpp block
// after the "checked by tests/cpp/test_readme_network.cpp" marker into readme_network_snippet.inc
// at configure time (README.md is a configure dependency, so an edit re-extracts it).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "kancore/kancore.hpp"

// The snippet is a complete program; its main() becomes readme_network_main() here.
#define main readme_network_main
#include "readme_network_snippet.inc"
#undef main

namespace {

namespace fs = std::filesystem;

TEST(ReadmeExample, NetworkFitSaveLoadRunsAsDocumented) {
  // The snippet writes model.safetensors to the working directory: run it in a fresh one.
  const fs::path dir = fs::temp_directory_path() /
                       ("kancore_readme_network_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path previous = fs::current_path();
  fs::current_path(dir);
  const int rc = readme_network_main();
  fs::current_path(previous);

  EXPECT_EQ(rc, 0) << "the loaded network differs from the saved one";
  const fs::path file = dir / "model.safetensors";
  ASSERT_TRUE(fs::is_regular_file(file));
  // The saved network learned the function: RMSE well below the target's spread.
  const kancore::Network net = kancore::load(file.string());
  const std::int64_t n = 512;
  std::vector<float> x(2 * n), y(n);
  double se = 0, ss = 0;
  for (std::int64_t b = 0; b < n; ++b) {
    x[2 * b] = -1.5f + 3.0f * static_cast<float>(b % 32) / 31.0f;
    x[2 * b + 1] = -1.5f + 3.0f * static_cast<float>(b / 32) / 15.0f;
  }
  net.forward(n, x.data(), y.data());
  for (std::int64_t b = 0; b < n; ++b) {
    const double t = std::sin(x[2 * b]) * std::cos(x[2 * b + 1]);
    se += (y[b] - t) * (y[b] - t);
    ss += t * t;
  }
  EXPECT_LT(std::sqrt(se / n), 0.2 * std::sqrt(ss / n));
  fs::remove_all(dir);
}

}  // namespace

#include "kancore/threading.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>


namespace kancore {
namespace {

// OMP_NUM_THREADS's first value (it may be a list for nested levels) when positive, else the
// processors this process may use.
int default_threads() noexcept {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && n > 0 && n < (1L << 20)) return static_cast<int>(n);
  }
  return std::max(1, omp_get_num_procs());
}

std::atomic<int> g_threads{0};  // 0: not set, use the default

}  // namespace

void set_num_threads(int n) {
  if (n < 1) {
    throw std::invalid_argument("kancore: expected a thread count >= 1, got " + std::to_string(n));
  }
  g_threads.store(n, std::memory_order_relaxed);
}

int get_num_threads() noexcept {
  const int n = g_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  static const int fallback = default_threads();
  return fallback;
}

}  // namespace kancore

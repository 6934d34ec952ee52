// Internal: the thread count of one OpenMP region, from kancore::get_num_threads and the work.
#pragma once

#include <algorithm>
#include <cstdint>

#include "kancore/threading.hpp"

namespace kancore::internal {

// Work units (about one multiply-add or one element update) each thread should have before a
// second one is woken: about 0.6 ms on one core (C0 forward, 16 x 16 layer). Below it, waking an
// OpenMP team costs more than it gains, and on a busy machine a woken thread can wait a whole
// scheduler time slice (several ms) for a core. Measured: README "Threads".
inline constexpr std::int64_t kGrain = std::int64_t{1} << 20;

// Threads for a region of `work` units: one per grain, at least 1, at most get_num_threads().
// Use as `#pragma omp parallel ... num_threads(internal::threads_for(work))`.
inline int threads_for(std::int64_t work) noexcept {
  const std::int64_t n = work / kGrain;
  if (n <= 1) return 1;
  return static_cast<int>(std::min<std::int64_t>(n, get_num_threads()));
}

}  // namespace kancore::internal

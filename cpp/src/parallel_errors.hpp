// Exceptions inside OpenMP parallel regions.
//
// An exception that leaves a parallel region calls std::terminate (SIGABRT), so a failed
// allocation there would kill the process instead of becoming Python's MemoryError. Regions
// that allocate (per-thread scratch, growing vectors) catch everything inside, remember the
// first exception here, and rethrow it after the region:
//
//   RegionErrors errors;
//   #pragma omp parallel
//   {
//     std::optional<Scratch> scratch;
//     errors.run([&] { scratch.emplace(...); });
//   #pragma omp for                       // every thread still reaches the worksharing loop
//     for (...) {
//       if (!scratch || errors.failed()) continue;
//       errors.run([&] { ... });
//     }
//   }
//   errors.rethrow();
#pragma once

#include <atomic>
#include <exception>
#include <mutex>

namespace kancore::internal {

class RegionErrors {
 public:
  // Runs f, keeping its exception (the first one of the region) instead of letting it escape.
  template <class F>
  void run(F&& f) noexcept {
    try {
      f();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!first_) first_ = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
    }
  }
  bool failed() const noexcept { return failed_.load(std::memory_order_relaxed); }
  // After the region: throw the kept exception, if any.
  void rethrow() const {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::mutex mutex_;
  std::exception_ptr first_;
  std::atomic<bool> failed_{false};
};

}  // namespace kancore::internal

// Part of the CUDA source set (kancore::kancore_cuda): the library reports that its CUDA entry
// points are the real kernels (cuda/*.cu). The CPU-only library links cuda/cuda_unavailable.cpp.
#include "kancore/types.hpp"

namespace kancore {
bool built_with_cuda() noexcept { return true; }
}  // namespace kancore

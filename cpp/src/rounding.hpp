// Rounding of float32 values to the tensor-core operand formats (internal header, host and
// device). The CPU oracle of the rounded C0 paths and the CUDA kernels that stage their operands
// use this one definition, so both round every operand to the same value.
#pragma once

#include <cstdint>
#include <cstring>

#include "kancore/types.hpp"

#if defined(__CUDACC__)
#define KANCORE_ROUND_HD __host__ __device__ __forceinline__
#else
#define KANCORE_ROUND_HD inline
#endif

namespace kancore::detail {

KANCORE_ROUND_HD std::uint32_t float_bits(float v) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(v);
#else
  std::uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
#endif
}

KANCORE_ROUND_HD float float_from_bits(std::uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float v;
  std::memcpy(&v, &b, sizeof v);
  return v;
#endif
}

// v rounded to nearest (ties to even) with the low `dropped` of its 23 mantissa bits cleared:
// 13 for TF32 (10 bits kept), 16 for BF16 (7 kept). Infinities stay, NaN stays NaN, and values
// that round past the largest finite number become infinite, as the hardware conversions do.
KANCORE_ROUND_HD float round_mantissa(float v, int dropped) {
  std::uint32_t b = float_bits(v);
  if ((b & 0x7F800000u) == 0x7F800000u) return (b & 0x007FFFFFu) ? float_from_bits(b | 0x00400000u) : v;
  b += ((1u << (dropped - 1)) - 1u) + ((b >> dropped) & 1u);
  return float_from_bits(b & ~((1u << dropped) - 1u));
}

KANCORE_ROUND_HD float round_to(float v, MatmulPrecision p) {
  if (p == MatmulPrecision::bf16) return round_mantissa(v, 16);
  if (p == MatmulPrecision::tf32) return round_mantissa(v, 13);
  return v;
}

}  // namespace kancore::detail

// A 64-byte SIMD vector of T (GCC/Clang vector extension: one zmm, or two ymm on AVX2) and
// unaligned loads/stores, shared by the CPU kernels (internal header).
#pragma once

#include <cstdint>

namespace kancore::cpu_simd {

// (The attribute must sit on a non-dependent typedef, hence the two specialisations.)
template <class T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(64)));
};
template <class T>
using Vec = typename VecOf<T>::type;
template <class T>
constexpr std::int64_t kLanes = 64 / sizeof(T);

template <class T>
inline Vec<T> load(const T* p) {
  static_assert(sizeof(Vec<T>) == 64);
  Vec<T> v;
  __builtin_memcpy(&v, p, sizeof(v));  // unaligned load
  return v;
}
template <class T>
inline void store(T* p, const Vec<T>& v) {
  __builtin_memcpy(p, &v, sizeof(v));
}

}  // namespace kancore::cpu_simd

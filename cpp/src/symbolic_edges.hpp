// The functions of symbolic edges (Network::fix_symbolic): value and derivative of each, in
// double. The index is the position in kancore::symbolic_functions() (network.hpp); the torch
// front end's list (python/kancore/symbolic_edges.py, FUNCTIONS) has the same names and math.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

namespace kancore::symbolic {

inline constexpr std::string_view kNames[] = {"x",   "x^2", "x^3",  "x^4", "1/x",  "1/x^2",    "sqrt",
                                              "exp", "log", "sin",  "tanh", "abs", "gaussian", "arctan"};
inline constexpr int kCount = static_cast<int>(sizeof(kNames) / sizeof(kNames[0]));

// -1 for an unknown name.
inline int index_of(std::string_view name) {
  for (int f = 0; f < kCount; ++f)
    if (kNames[f] == name) return f;
  return -1;
}

// v = f(u), dv = f'(u). Outside a function's domain IEEE arithmetic decides (NaN, ±inf), as in
// the torch front end; abs'(0) = 0 as torch's.
inline void eval(int f, double u, double& v, double& dv) {
  switch (f) {
    case 0: v = u; dv = 1; break;
    case 1: v = u * u; dv = 2 * u; break;
    case 2: v = u * u * u; dv = 3 * u * u; break;
    case 3: { const double q = u * u; v = q * q; dv = 4 * q * u; break; }
    case 4: v = 1 / u; dv = -1 / (u * u); break;
    case 5: v = 1 / (u * u); dv = -2 / (u * u * u); break;
    case 6: v = std::sqrt(u); dv = 0.5 / v; break;
    case 7: v = std::exp(u); dv = v; break;
    case 8: v = std::log(u); dv = 1 / u; break;
    case 9: v = std::sin(u); dv = std::cos(u); break;
    case 10: v = std::tanh(u); dv = 1 - v * v; break;
    case 11: v = std::fabs(u); dv = (u > 0) - (u < 0); break;
    case 12: v = std::exp(-u * u); dv = -2 * u * v; break;
    default: v = std::atan(u); dv = 1 / (1 + u * u); break;
  }
}

}  // namespace kancore::symbolic

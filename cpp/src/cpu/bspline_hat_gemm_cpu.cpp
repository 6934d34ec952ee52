// The B-spline layer as dense GEMMs with rounded operands (MatmulPrecision tf32 or bf16): the CPU
// form of the CUDA tensor-core path and the oracle it is checked against. With J = in*(G+k) + in
// (the second block only with a base branch):
//   Phi (rows x J): row b holds the k+1 basis values of x[b,i] at columns i*(G+k)+first+r, and
//                   silu(x[b,i]) at column in*(G+k)+i; every entry rounded
//   W   (J x out):  W[i*(G+k)+c, o] = spline_weight[o,i,c] * scaler[o,i], W[in*(G+k)+i, o] =
//                   base_weight[o,i]; rounded
//   forward:        y = Phi @ W, float32 accumulation
//   backward:       dW = sum over chunks Phi^T @ round(grad_y); then the chain rule through the
//                   scaler (exact); the input gradient is the exact path's
// The batch goes in chunks of rows whose Phi fits the workspace limit.
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../bspline_basis.hpp"
#include "../rounding.hpp"
#include "../threads.hpp"
#include "bspline_cpu.hpp"

namespace kancore::bspline::cpu {
namespace {

using MatR = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using kancore::detail::round_to;

constexpr std::size_t align64(std::size_t n) { return (n + 63) / 64 * 64; }

std::int64_t columns(const Shape& s, bool base) { return s.in * s.num_coefficients() + (base ? s.in : 0); }

float silu(float v) { return v * (1.0f / (1.0f + std::exp(-v))); }

void build_phi(const Shape& s, const float* knots, bool base, const float* x, std::int64_t r0, std::int64_t rows,
               MatmulPrecision p, float* phi) {
  const std::int64_t I = s.in, C = s.num_coefficients(), J = columns(s, base), nk = s.num_knots();
  const std::int64_t k = s.order;
#pragma omp parallel for schedule(static) num_threads(internal::threads_for(rows * J))
  for (std::int64_t r = 0; r < rows; ++r) {
    float v[kMaxOrder + 1], scratch[2 * (kMaxOrder + 1)];
    float* row = phi + r * J;
    std::memset(row, 0, sizeof(float) * static_cast<std::size_t>(J));
    const float* xr = x + (r0 + r) * I;
    for (std::int64_t i = 0; i < I; ++i) {
      const std::int64_t first = detail::eval_basis<float>(knots + i * nk, s.grid_size, k, xr[i], v, nullptr, scratch);
      for (std::int64_t t = 0; t <= k; ++t) row[i * C + first + t] = round_to(v[t], p);
      if (base) row[I * C + i] = round_to(silu(xr[i]), p);
    }
  }
}

}  // namespace

HatGemmLayout hat_gemm_layout(const Shape& s, bool base, bool backward, std::size_t limit) {
  const std::size_t J = static_cast<std::size_t>(columns(s, base)), O = static_cast<std::size_t>(s.out);
  const std::size_t fixed = align64(J * O * sizeof(float));  // W (forward) or dW (backward)
  const std::size_t per_row = J * sizeof(float) + (backward ? O * sizeof(float) : 0);
  const std::size_t room = limit > fixed + 256 ? limit - fixed - 256 : 0;
  HatGemmLayout l{};
  l.rows = std::clamp<std::int64_t>(static_cast<std::int64_t>(room / per_row), 1, std::max<std::int64_t>(s.batch, 1));
  std::size_t at = 0;
  l.weights = at; at += fixed;
  l.phi = at;     at += align64(static_cast<std::size_t>(l.rows) * J * sizeof(float));
  l.grad = at;    at += backward ? align64(static_cast<std::size_t>(l.rows) * O * sizeof(float)) : 0;
  l.total = at + 64;
  return l;
}

namespace {
char* aligned64(void* ws) {
  const auto a = reinterpret_cast<std::uintptr_t>(ws);
  return reinterpret_cast<char*>((a + 63) / 64 * 64);
}
}  // namespace

void forward_hat_gemm(const Shape& s, const float* x, const float* knots, const float* Wb, const float* W,
                      const float* scaler, float* y, MatmulPrecision p, void* ws, std::size_t ws_bytes) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, C = s.num_coefficients();
  if (N == 0) return;
  const bool base = Wb != nullptr;
  const std::int64_t J = columns(s, base);
  const HatGemmLayout l = hat_gemm_layout(s, base, false, ws_bytes);
  char* at = aligned64(ws);
  float* Wx = reinterpret_cast<float*>(at + l.weights);
  float* phi = reinterpret_cast<float*>(at + l.phi);
  for (std::int64_t i = 0; i < I; ++i) {
    for (std::int64_t c = 0; c < C; ++c) {
      for (std::int64_t o = 0; o < O; ++o) {
        const float sc = scaler ? scaler[o * I + i] : 1.0f;
        Wx[(i * C + c) * O + o] = round_to(W[(o * I + i) * C + c] * sc, p);
      }
    }
    if (base) {
      for (std::int64_t o = 0; o < O; ++o) Wx[(I * C + i) * O + o] = round_to(Wb[o * I + i], p);
    }
  }
  const Eigen::Map<const MatR> Wm(Wx, J, O);
  for (std::int64_t r0 = 0; r0 < N; r0 += l.rows) {
    const std::int64_t rows = std::min(l.rows, N - r0);
    build_phi(s, knots, base, x, r0, rows, p, phi);
    Eigen::Map<MatR>(y + r0 * O, rows, O).noalias() = Eigen::Map<const MatR>(phi, rows, J) * Wm;
  }
}

void backward_weights_hat_gemm(const Shape& s, const float* x, const float* knots, bool base, const float* W,
                               const float* scaler, const float* grad_y, float* gWb, float* gW, float* gscaler,
                               MatmulPrecision p, void* ws, std::size_t ws_bytes) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, C = s.num_coefficients();
  const std::int64_t J = columns(s, base);
  const HatGemmLayout l = hat_gemm_layout(s, base, true, ws_bytes);
  char* at = aligned64(ws);
  float* dWx = reinterpret_cast<float*>(at + l.weights);
  float* phi = reinterpret_cast<float*>(at + l.phi);
  float* g_r = reinterpret_cast<float*>(at + l.grad);
  Eigen::Map<MatR> dW(dWx, J, O);
  dW.setZero();
  for (std::int64_t r0 = 0; r0 < N; r0 += l.rows) {
    const std::int64_t rows = std::min(l.rows, N - r0);
    build_phi(s, knots, base, x, r0, rows, p, phi);
    for (std::int64_t j = 0; j < rows * O; ++j) g_r[j] = round_to(grad_y[r0 * O + j], p);
    dW.noalias() += Eigen::Map<const MatR>(phi, rows, J).transpose() * Eigen::Map<const MatR>(g_r, rows, O);
  }
  // Back through W' = spline_weight * scaler (exact, in float32).
  for (std::int64_t o = 0; o < O; ++o) {
    for (std::int64_t i = 0; i < I; ++i) {
      const float sc = scaler ? scaler[o * I + i] : 1.0f;
      float dsc = 0.0f;
      for (std::int64_t c = 0; c < C; ++c) {
        const float d = dWx[(i * C + c) * O + o];
        if (gW) gW[(o * I + i) * C + c] = d * sc;
        dsc += d * W[(o * I + i) * C + c];
      }
      if (gscaler) gscaler[o * I + i] = dsc;
      if (gWb) gWb[o * I + i] = dWx[(I * C + i) * O + o];
    }
  }
}

}  // namespace kancore::bspline::cpu

// The C0 layer as dense GEMMs over the hat basis, with rounded operands (MatmulPrecision tf32 or
// bf16): the CPU form of the CUDA tensor-core path and the oracle it is checked against.
//   Phi (rows x in*K): row b holds (1-t, t) at columns i*K+k and i*K+k+1, every entry rounded
//   forward:        y  = Phi @ round(C)            (C viewed as (in*K, out)), float32 accumulation
//   backward table: dC = sum over chunks Phi^T @ round(grad_y)
// The batch is processed in chunks of rows whose Phi fits the workspace (ExecContext::
// workspace_limit), so the whole Phi never exists. Forward: an input whose t is not finite gets
// zero weights in Phi and its exact limit added afterwards (add_nonfinite_limits, as the other
// paths do); backward: its weights enter Phi as computed (IEEE arithmetic of the formula, as the
// exact table gradient). Slower than the exact CPU path by about K/2 (Phi is dense).
#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../c0_segment.hpp"
#include "../rounding.hpp"
#include "../threads.hpp"
#include "c0_cpu.hpp"

namespace kancore::c0::cpu {
namespace {

using detail::Grid;
using detail::locate;
using detail::make_grid;
using MatR = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr std::size_t align64(std::size_t n) { return (n + 63) / 64 * 64; }

// Phi for rows [r0, r0 + rows) of x, rounded; zero weights for non-finite t when `forward`.
void build_phi(const Shape& s, const Grid<float>& g, const float* x, std::int64_t r0, std::int64_t rows,
               MatmulPrecision p, bool forward, float* phi) {
  const std::int64_t I = s.in, K = s.num_control_points, IK = I * K;
#pragma omp parallel for schedule(static) num_threads(internal::threads_for(rows * IK))
  for (std::int64_t r = 0; r < rows; ++r) {
    float* row = phi + r * IK;
    std::memset(row, 0, sizeof(float) * static_cast<std::size_t>(IK));
    const float* xr = x + (r0 + r) * I;
    for (std::int64_t i = 0; i < I; ++i) {
      std::int64_t k;
      float t;
      locate(g, xr[i], k, t);
      float w0 = 1.0f - t, w1 = t;
      if (forward && !detail::is_finite(t)) w0 = w1 = 0.0f;
      row[i * K + k] = kancore::detail::round_to(w0, p);
      row[i * K + k + 1] = kancore::detail::round_to(w1, p);
    }
  }
}

void round_copy(const float* src, float* dst, std::int64_t n, MatmulPrecision p) {
#pragma omp parallel for schedule(static) num_threads(internal::threads_for(n))
  for (std::int64_t j = 0; j < n; ++j) dst[j] = kancore::detail::round_to(src[j], p);
}

}  // namespace

HatGemmLayout hat_gemm_layout(const Shape& s, bool backward, std::size_t limit) {
  const std::size_t IK = static_cast<std::size_t>(s.in) * static_cast<std::size_t>(s.num_control_points);
  const std::size_t O = static_cast<std::size_t>(s.out);
  HatGemmLayout l{};
  // Forward keeps round(C) (in*K x out); backward keeps a rounded grad_y chunk per row.
  const std::size_t fixed = backward ? 0 : align64(IK * O * sizeof(float));
  const std::size_t per_row = IK * sizeof(float) + (backward ? O * sizeof(float) : 0);
  const std::size_t room = limit > fixed + 256 ? limit - fixed - 256 : 0;
  const std::int64_t batch = std::max<std::int64_t>(s.batch, 1);
  l.rows = std::clamp<std::int64_t>(static_cast<std::int64_t>(room / per_row), 1, batch);
  std::size_t at = 0;
  l.table = at;  at += fixed;
  l.phi = at;    at += align64(static_cast<std::size_t>(l.rows) * IK * sizeof(float));
  l.grad = at;   at += backward ? align64(static_cast<std::size_t>(l.rows) * O * sizeof(float)) : 0;
  l.total = at + 64;  // alignment slack for the caller's pointer
  return l;
}

namespace {
// The workspace pointer aligned to 64 bytes, and the rows a chunk may hold given ws_bytes.
char* aligned(void* ws) {
  const auto a = reinterpret_cast<std::uintptr_t>(ws);
  return reinterpret_cast<char*>((a + 63) / 64 * 64);
}
}  // namespace

void forward_hat_gemm(const Shape& s, const float* x, const float* table, float* y, MatmulPrecision p,
                      void* ws, std::size_t ws_bytes) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, IK = I * s.num_control_points;
  if (N == 0) return;
  const HatGemmLayout l = hat_gemm_layout(s, false, ws_bytes);
  char* base = aligned(ws);
  float* table_r = reinterpret_cast<float*>(base + l.table);
  float* phi = reinterpret_cast<float*>(base + l.phi);
  round_copy(table, table_r, IK * O, p);
  const Grid<float> g = make_grid<float>(s.num_control_points, s.spline_width);
  const Eigen::Map<const MatR> C(table_r, IK, O);
  for (std::int64_t r0 = 0; r0 < N; r0 += l.rows) {
    const std::int64_t rows = std::min(l.rows, N - r0);
    build_phi(s, g, x, r0, rows, p, true, phi);
    Eigen::Map<MatR> Y(y + r0 * O, rows, O);
    Y.noalias() = Eigen::Map<const MatR>(phi, rows, IK) * C;
  }
  add_nonfinite_limits(s, x, table, y);
}

void backward_table_hat_gemm(const Shape& s, const float* x, const float* grad_y, float* grad_table,
                             MatmulPrecision p, void* ws, std::size_t ws_bytes) {
  const std::int64_t N = s.batch, I = s.in, O = s.out, IK = I * s.num_control_points;
  Eigen::Map<MatR> dC(grad_table, IK, O);
  dC.setZero();
  if (N == 0) return;
  const HatGemmLayout l = hat_gemm_layout(s, true, ws_bytes);
  char* base = aligned(ws);
  float* phi = reinterpret_cast<float*>(base + l.phi);
  float* g_r = reinterpret_cast<float*>(base + l.grad);
  const Grid<float> g = make_grid<float>(s.num_control_points, s.spline_width);
  for (std::int64_t r0 = 0; r0 < N; r0 += l.rows) {
    const std::int64_t rows = std::min(l.rows, N - r0);
    build_phi(s, g, x, r0, rows, p, false, phi);
    round_copy(grad_y + r0 * O, g_r, rows * O, p);
    dC.noalias() += Eigen::Map<const MatR>(phi, rows, IK).transpose() * Eigen::Map<const MatR>(g_r, rows, O);
  }
}

}  // namespace kancore::c0::cpu

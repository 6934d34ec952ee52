// Grid adaptation for the C0 layer (docs/layer_math.md, "Grid updates"): fit each feature's
// spline domain to the data and change the number of control points, keeping the layer's function.
//
// The kernels see x' = x * scale[i] + offset[i] (the "input affine"; absent = identity), so a
// feature's K control points sit uniformly on the raw-x interval that maps to [-W/2, W/2].
// Everything here runs on the CPU with float64 accumulation; outputs go to separate buffers,
// so a throw leaves the caller's layer untouched.
#pragma once

#include <cstdint>

#include "kancore/c0_layer.hpp"
#include "kancore/types.hpp"

namespace kancore::c0 {

struct DomainFitOptions {
  double quantile = 0.0;  // domain = [q-quantile, (1-q)-quantile] of the feature's samples ...
  double margin = 0.01;   // ... widened by margin * its width on each side
  double ridge = 1e-6;    // relative weight of the pull toward interpolating the old function
};

struct DomainFitReport {
  std::int64_t features_kept = 0;    // fewer than 2 distinct finite samples: old domain kept
  std::int64_t samples_skipped = 0;  // non-finite (b, i) values left out
  std::int64_t samples_outside = 0;  // finite samples outside their new domain (quantile > 0)
};

// For every feature: the new domain from its finite samples (per the options), then the new
// table on new_K uniform points over it, fitted by least squares to the old function on the
// samples inside the domain (each sample weighted 1), plus `ridge` x mean weight pulling each
// new control point toward the old function's value there (which keeps the fit well posed
// where no sample lands and changes nothing when the old function is representable). When
// the old breakpoints inside the domain are among the new ones the result is exact up to
// rounding.
//   shape: the old layer (batch = number of samples, num_control_points = old K, spline_width W)
//   x (batch, in); table (in, K, out); scale, offset (in) or both null (identity)
//   new_table (in, new_K, out); new_scale, new_offset (in)
DomainFitReport fit_domain(const Shape& shape, DType dtype, const void* x, const void* table,
                           const void* scale, const void* offset, std::int64_t new_K,
                           void* new_table, void* new_scale, void* new_offset,
                           const DomainFitOptions& options = {});

// The same domain with new_K control points: exact everywhere when (new_K - 1) is a multiple
// of (K - 1) (every old breakpoint is kept). Otherwise the least-squares fit over the domain
// (dense uniform samples); when new_K > K the two end points on each side are then placed on
// the old end segments, so the linear extension beyond the domain is exactly the old one.
// (A coarser grid cannot keep it; its extension follows the fit.) shape.batch is ignored.
// new_table (in, new_K, out).
void refine(const Shape& shape, DType dtype, const void* table, std::int64_t new_K,
            void* new_table);

}  // namespace kancore::c0

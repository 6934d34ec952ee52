// Saving and loading a kancore::Network in the shared model file format (below, copied from
// spec/model_format.md so that it lives in the repository; the Python saver/loader reads and
// writes exactly this).
//
//   # kancore model file, format version 1 (shared by the C++ and Python savers/loaders)
//
//   A safetensors file (https://github.com/huggingface/safetensors format, written and read by our
//   own code; the PyPI `safetensors` package may be used in tests as an independent oracle):
//   8-byte little-endian u64 N, then N bytes of UTF-8 JSON header, then the raw tensor bytes
//   (little-endian, C order). The header maps each tensor name to
//   {"dtype": "F32" | "F64", "shape": [...], "data_offsets": [begin, end]} (byte offsets from the
//   start of the data section; tensors back to back, no overlap, covering it exactly), plus
//   "__metadata__": {string: string}. Writers pad the header with spaces to a multiple of 8 bytes.
//
//   __metadata__:
//     "format": "kancore.network"
//     "format_version": "1"
//     "config": a JSON string:
//        {"dtype": "float32" | "float64",
//         "layernorm": true | false, "layernorm_eps": 1e-5,
//         "layers": [ L_0, L_1, ... ]}
//     with each L_j one of
//        {"kind": "c0", "in_features": I, "out_features": O, "num_control_points": K,
//         "spline_width": W, "fitted_domain": true | false}
//        {"kind": "bspline", "in_features": I, "out_features": O, "grid_size": G,
//         "spline_order": k}
//     Readers ignore unknown extra keys (e.g. "variant", "training" history) but reject unknown
//     "kind", a "format_version" other than "1", and any inconsistency.
//
//   Tensors (all in the config's dtype):
//     c0 layer j:      layers.{j}.kan_weight    (I, K, O)   the control-point table C[i, k, o]
//                      layers.{j}.input_scale   (I)         only when fitted_domain
//                      layers.{j}.input_offset  (I)         only when fitted_domain
//     bspline layer j: layers.{j}.grid          (I, G+2k+1) knots per input feature
//                      layers.{j}.base_weight   (O, I)
//                      layers.{j}.spline_weight (O, I, G+k)
//                      layers.{j}.spline_scaler (O, I)
//     layernorm after layer j (j = 0 .. n-2, only when "layernorm"):
//                      norms.{j}.weight (O_j), norms.{j}.bias (O_j)
//   No other tensors. Consecutive layers must chain (out_features of j == in_features of j+1).
//
//   Network forward (identical in C++ and Python):
//     h = x (batch, in_0)
//     for j in 0..n-1:
//        c0:      h' = h * input_scale + input_offset (when fitted), then the C0 layer
//                 (shared/reference.md §1: u = ((h' + W/2)(K-1))/W, k = clamp(floor(u), 0, K-2), t = u - k,
//                  y[b,o] = sum_i (1-t) C[i,k,o] + t C[i,k+1,o])
//        bspline: y = silu(h) @ base_weight^T + B(h) . (spline_weight * spline_scaler[..., None])
//                 (efficient-kan's KANLinear, reference.md §2, SiLU base)
//        if layernorm and j < n-1: h = (y - mean(y)) / sqrt(var(y) + eps) * weight + bias
//                 (mean and biased variance over the features of each row) else h = y
//
// This implementation:
// - save() writes the whole file to a temporary file in the target's directory, flushes and
//   fsyncs it, then renames it over `path`: readers see the old file or the new one, never a
//   partial one. On failure the temporary file is removed and the exception propagates.
// - load() treats the file as hostile: the header length is bounded (16 MiB) and must fit in
//   the file; the JSON is parsed with depth and element limits; every tensor's dtype, shape
//   and offsets are checked (overflow-safe products, offsets inside the data section, back to
//   back, covering it exactly); the config must be valid and match the tensors exactly (names,
//   dtype, shapes; no missing or extra tensor); knots must be finite and non-decreasing. Only
//   then is the network allocated, so no allocation exceeds what the file's bytes justify.
//   Any failure throws std::invalid_argument ("kancore: model file: ..."); I/O errors throw
//   std::runtime_error. Weight values are loaded as stored (NaN included).
// - Hosts must be little-endian (checked at compile time).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kancore/network.hpp"

namespace kancore {

void save(const Network& net, const std::string& path);
Network load(const std::string& path);

// The file's bytes, in memory (what save writes; what load parses).
std::string serialize(const Network& net);
Network deserialize(const void* data, std::size_t size);

}  // namespace kancore

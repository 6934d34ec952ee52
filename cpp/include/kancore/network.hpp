// kancore::Network: a stack of KAN layers (C0 or B-spline) with optional LayerNorm between them,
// owning its parameters, for C++ and NumPy users (the torch front end builds its own modules).
//
// Forward (the shared model format, docs/model_format.md, "Forward"):
//   h = x (batch, in_0); for each layer j:
//     c0:      h' = h * input_scale + input_offset (when fitted_domain), y = C0 layer(h')
//     bspline: y = silu(h) @ base_weight^T + B(h) . (spline_weight * spline_scaler[..., None])
//     h = LayerNorm_j(y) when layernorm and j < n-1 (mean, biased variance per row), else h = y.
//
// dtype: chosen at run time (float32 or float64) and used for every tensor, every kernel call
// and the optimiser state; all inputs and outputs are in that dtype (the typed overloads check
// it). Float64 is the choice for gradient checks; float32 matches the torch layers' default.
//
// Non-finite inputs: a NaN in row b of x makes row b of the output NaN (no other row changes);
// nothing reads or writes out of bounds for any value. batch == 0 is allowed (nothing to do).
// CPU only: a CUDA ExecContext throws std::runtime_error("... not yet on CUDA").
// A Network is not safe to use from several threads at once (training keeps activations).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kancore/types.hpp"

namespace kancore {

enum class LayerKind : int { c0 = 0, bspline = 1 };

// A symbolic (fixed) edge: edge in -> out of its layer computes a * f(b * h_in + c) + d, f the
// named function (one of symbolic_functions()), instead of its spline. Its (a, b, c, d) are the
// row of the layer's trainable tensor "layers.{j}.symbolic_affine" (n, 4), in list order.
struct SymbolicEdge {
  std::int64_t in = 0;
  std::int64_t out = 0;
  std::string function;
};

// The functions a symbolic edge can use, the same in every front end: "x", "x^2", "x^3", "x^4",
// "1/x", "1/x^2", "sqrt", "exp", "log", "sin", "tanh", "abs", "gaussian" (exp(-u^2)), "arctan".
const std::vector<std::string>& symbolic_functions();

struct LayerConfig {
  LayerKind kind = LayerKind::bspline;
  std::int64_t in_features = 0;
  std::int64_t out_features = 0;
  // C0 (kanditioned) layer
  std::int64_t num_control_points = 32;  // K >= 2
  double spline_width = 4.0;             // W > 0: control points on [-W/2, W/2]
  bool fitted_domain = false;            // input_scale / input_offset in use (set by grid updates)
  // B-spline (efficient-kan) layer
  std::int64_t grid_size = 5;     // G >= 1
  std::int64_t spline_order = 3;  // k in [1, 64]
  // Initialisation of a B-spline layer only (not stored in files): the knots are uniform on
  // [grid_min, grid_max] extended by k steps each side; see Network's constructor.
  double grid_min = -1.0;
  double grid_max = 1.0;
  double scale_noise = 0.1;
  // Fixed edges (Network::fix_symbolic), each (in, out) at most once. Their numeric parameters
  // stay in the tensors, unused (masked in forward, zero gradient), until unfixed.
  std::vector<SymbolicEdge> symbolic;

  static LayerConfig c0(std::int64_t in, std::int64_t out, std::int64_t K = 32, double W = 4.0);
  static LayerConfig bspline(std::int64_t in, std::int64_t out, std::int64_t G = 5, std::int64_t k = 3);
};

struct NetworkConfig {
  DType dtype = DType::float32;
  bool layernorm = false;
  double layernorm_eps = 1e-5;
  std::vector<LayerConfig> layers;
};

// Build a config from layer widths, e.g. {2, 8, 1}: every layer of the same kind/defaults.
NetworkConfig make_config(const std::vector<std::int64_t>& widths, LayerKind kind,
                          DType dtype = DType::float32, bool layernorm = false);

// Throws std::invalid_argument ("expected X, got Y") unless the config describes a network.
void validate(const NetworkConfig& config);

// Which learning rate a parameter follows (see optimizer.hpp). Buffers are not trained.
enum class ParamGroup : int { spline = 0, other = 1, buffer = 2 };

// A view of one named tensor of the network (names as in the model file, e.g.
// "layers.0.kan_weight", "norms.0.bias"). `grad` is null for buffers (grid, input affine).
struct TensorView {
  std::string name;
  std::vector<std::int64_t> shape;
  DType dtype = DType::float32;
  ParamGroup group = ParamGroup::other;
  void* data = nullptr;
  void* grad = nullptr;
  std::int64_t numel() const;
};

struct GridUpdateSettings {
  double margin = 0.01;    // B-spline: uniform part spans [min - margin, max + margin]
  double grid_eps = 0.02;  // B-spline: weight of the uniform knots
  double quantile = 0.0;   // C0: domain = [q, 1-q] quantiles of the samples ...
  double c0_margin = 0.01; // C0: ... widened by this fraction of its width each side
};

class Network {
 public:
  // Initialisation (seeded, reproducible across platforms: own RNG, no std distributions):
  //   C0:      kanditioned's random_normal directions: s = N(0,1) (in, out), each column scaled
  //            to unit L2 norm over in, as lines of slope 1 in input units:
  //            C[i,k,o] = (k - (K-1)/2) * W/(K-1) * s[i,o], i.e. edge(x) = s[i,o] x on the span
  //            (Python's KAN(kind="c0") default, init_scale="unit"). Not fitted (no input affine).
  //   B-spline: efficient-kan's defaults: base_weight ~ U(-1/sqrt(in), 1/sqrt(in)) (its
  //            kaiming_uniform with a = sqrt(5)); spline_weight ~ U(-0.5, 0.5) * scale_noise / G
  //            (small noise directly on the coefficients, not efficient-kan's curve fit of
  //            noise); spline_scaler = 1; knots uniform on [grid_min, grid_max] extended k steps.
  //   LayerNorm: weight 1, bias 0.
  explicit Network(const NetworkConfig& config, std::uint64_t seed = 0);
  ~Network();
  Network(const Network& other);
  Network& operator=(const Network& other);
  // A moved-from Network may only be assigned to or destroyed.
  Network(Network&&) noexcept;
  Network& operator=(Network&&) noexcept;

  const NetworkConfig& config() const;
  DType dtype() const;
  std::int64_t in_features() const;
  std::int64_t out_features() const;
  std::int64_t num_parameters() const;  // trainable elements

  // Every tensor in file order (each layer's tensors, then the norms). Views stay valid until
  // the network is moved from or assigned to, or its grids are updated (update_grids, fit).
  std::vector<TensorView> tensors();
  TensorView tensor(std::string_view name);  // throws std::out_of_range for an unknown name

  // y (batch, out) = network(x (batch, in)), both of dtype(). Keeps nothing.
  void forward(std::int64_t batch, const void* x, void* y, const ExecContext& ctx = {}) const;

  // As forward, and keeps the activations for one backward call.
  void forward_train(std::int64_t batch, const void* x, void* y, const ExecContext& ctx = {});

  // Gradients of sum(grad_y * y) for the last forward_train: overwrites every parameter's grad;
  // grad_x (batch, in) is written when not null.
  void backward(const void* grad_y, void* grad_x = nullptr, const ExecContext& ctx = {});

  void zero_grad();

  // Regularisation penalty (see training.hpp): weight * (sum over C0 layers of the
  // second-difference smoothness of the table + sum over B-spline layers of efficient-kan's
  // coefficient L1 + entropy of spline_weight). Adds weight * d/dparam to the grads when
  // add_to_grad. Returns the penalty (already multiplied by weight).
  double regularization(double weight, bool add_to_grad);

  // Grid update from samples x (batch, in): feeds x through the layers; each B-spline layer
  // gets update_grid on its inputs, each C0 layer fit_domain (same K; sets fitted_domain).
  // The function is preserved up to the least-squares fit. Layers are updated in order, each
  // on the outputs of the already-updated preceding layers.
  void update_grids(std::int64_t batch, const void* x, const GridUpdateSettings& settings = {});

  // Attribution: for every layer, the root mean square over the samples of each edge's
  // output phi_{o,i}(h_i), as a vector (out, in) row-major, where h (batch, in) is the layer's
  // input when x (batch, in_features) is fed through the network (B-spline edges: base and
  // scaled spline together; C0 edges after the layer's input affine). Removing an edge of
  // importance s changes its output's root mean square over these samples by at most s.
  // Samples with a non-finite edge output are skipped. A symbolic edge counts with its function.
  std::vector<std::vector<double>> edge_importance(std::int64_t batch, const void* x) const;

  // Pruning: a copy without the hidden nodes that keep leaves out. keep[j] lists the kept
  // outputs of layer j (j = 0 .. L-2), strictly increasing, at least one each. The kept edges'
  // parameters (symbolic edges included) are copied unchanged, so the function changes only by the removed nodes'
  // contributions (for a node of importance below s on every outgoing edge, by at most
  // (its out-degree) * s per output in root mean square). Networks with LayerNorm are refused:
  // removing a node changes the normalisation of the others.
  Network prune_nodes(const std::vector<std::vector<std::int64_t>>& keep) const;

  // Grid extension: every C0 layer to new_size control points (c0::refine, on its fitted
  // domain when it has one), every B-spline layer to new_size intervals (bspline::refine),
  // keeping the function (exactly when the new size refines the old one: see the two refine
  // functions). The refined tensors change shape (tensor views and an Adam built on the
  // network go stale: build a new Adam); nothing changes when it throws.
  void refine(std::int64_t new_size);

  // Symbolic edges (docs/layer_math.md, "Symbolic edges"). fix_symbolic makes edge i -> o of
  // layer `layer` compute a * f(b * h_i + c) + d on the layer's raw input h (before a C0 input
  // affine), f = symbolic_functions()'s `function`; refixing an edge replaces it. unfix_symbolic
  // gives the edge its numeric function back (returns false when it was not fixed). Both change
  // the tensor list (views and an Adam built on the network go stale); nothing changes when they
  // throw (unknown function, indices out of range, non-finite a, b, c, d).
  void fix_symbolic(std::size_t layer, std::int64_t i, std::int64_t o, std::string_view function,
                    double a = 1.0, double b = 1.0, double c = 0.0, double d = 0.0);
  bool unfix_symbolic(std::size_t layer, std::int64_t i, std::int64_t o);

  // Typed conveniences: throw std::invalid_argument when T is not dtype().
  template <class T>
  void forward(std::int64_t batch, const T* x, T* y) const {
    check_dtype(dtype_of<T>::value);
    forward(batch, static_cast<const void*>(x), static_cast<void*>(y));
  }

  struct Impl;  // internal (cpp/src/network.cpp): the typed engine

 private:
  void check_dtype(DType requested) const;
  static void copy_symbolic_affine(Network& from, Network& to, const std::vector<std::vector<std::int64_t>>& keep);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kancore

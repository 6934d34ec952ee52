// Training a kancore::Network on the CPU: losses, Adam/AdamW with per-group learning rates, and
// a fit loop (mini-batches, validation, early stopping, regularisation, grid updates).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "kancore/network.hpp"
#include "kancore/types.hpp"

namespace kancore {

// ---- losses (value, and the gradient with respect to the prediction when grad != null) -------
// Arrays are in `dtype`; sums are accumulated in float64. batch >= 1 (an empty batch throws).

// mean over batch*outputs of (pred - target)^2; grad = 2 (pred - target) / (batch*outputs).
double mse_loss(DType dtype, std::int64_t batch, std::int64_t outputs, const void* pred,
                const void* target, void* grad = nullptr);

// mean over the batch of -log softmax(logits[b])[labels[b]] (log-sum-exp shifted by the row max);
// grad = (softmax - onehot) / batch. labels must lie in [0, classes) (else invalid_argument).
double cross_entropy_loss(DType dtype, std::int64_t batch, std::int64_t classes, const void* logits,
                          const std::int64_t* labels, void* grad = nullptr);

enum class LossKind : int { mse = 0, cross_entropy = 1 };

// ---- optimisers ------------------------------------------------------------------------------

enum class OptimizerKind : int { adam = 0, adamw = 1 };

struct AdamOptions {
  OptimizerKind kind = OptimizerKind::adam;
  double lr = 1e-3;          // "other" group: base_weight, spline_scaler, LayerNorm weight/bias
  double lr_spline = -1.0;   // "spline" group: C0 tables, B-spline spline_weight; < 0: same as lr
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // adam: L2 added to the gradient; adamw: decoupled p *= 1 - lr*wd
};

// torch.optim.Adam / AdamW semantics (bias-corrected moments, eps added after the square root
// of the corrected second moment). Moments are kept in float64 whatever the network's dtype.
// Buffers (knots, C0 input affine) are never changed.
class Adam {
 public:
  Adam(Network& net, const AdamOptions& options);
  void step();  // one update from the gradients currently in the network
  std::int64_t steps() const { return t_; }
  const AdamOptions& options() const { return opt_; }
  void set_lr(double lr, double lr_spline = -1.0);

 private:
  Network* net_;
  AdamOptions opt_;
  std::int64_t t_ = 0;
  std::vector<std::vector<double>> m_, v_;  // per trainable tensor, in tensors() order
};

// ---- fit --------------------------------------------------------------------------------------

// Training or validation data, rows in the network's dtype. For LossKind::mse give y
// (n, out_features); for cross_entropy give labels (n) in [0, out_features).
struct Dataset {
  std::int64_t n = 0;
  const void* x = nullptr;  // (n, in_features)
  const void* y = nullptr;
  const std::int64_t* labels = nullptr;
};

struct EpochLog {
  std::int64_t epoch = 0;       // 0-based
  double train_loss = 0;        // mean data loss over the epoch's mini-batches (before each step)
  double val_loss = 0;          // data loss on the validation set after the epoch (NaN: none)
  double penalty = 0;           // regularisation penalty after the epoch (already weighted)
  bool improved = false;        // new best monitored loss (val, else train)
  bool grid_updated = false;    // grids were updated before this epoch
  std::int64_t refined_to = 0;  // the grid size the schedule refined to before this epoch (0: none)
};

enum class RegSchedule : int { constant = 0, linear = 1 };

struct FitOptions {
  LossKind loss = LossKind::mse;
  std::int64_t epochs = 100;
  std::int64_t batch_size = 64;  // clipped to the training set size
  std::uint64_t seed = 0;        // shuffles and the validation split
  AdamOptions optimizer{OptimizerKind::adam, 1e-2};
  // Validation: a given set wins; else this fraction of the rows (after a seeded shuffle).
  double val_fraction = 0.0;
  // Early stopping on the monitored loss (validation if any, else training): stop after
  // `patience` epochs without a strictly lower value (0: never stop early). With restore_best
  // the network ends with the parameters (and grids) of the best epoch.
  std::int64_t patience = 0;
  bool restore_best = true;
  // Penalty added to every mini-batch loss: reg_weight * Network::regularization (C0:
  // second-difference smoothness of the table; B-spline: efficient-kan's coefficient L1 +
  // entropy of spline_weight, both with weight 1; docs/layer_math.md, "Regularisers").
  double reg_weight = 0.0;
  // Progressive sparsification: linear ramps the weight from 0 at the first optimizer step to
  // reg_weight at the last (reg_weight * step / (total steps - 1)); constant keeps reg_weight.
  RegSchedule reg_schedule = RegSchedule::constant;
  // Grid updates before epochs 0, every, 2*every, ... that are < until (every = 0: never), on
  // the first grid_update_samples rows of that epoch's shuffled training set
  // (Network::update_grids; docs/layer_math.md, "Grid updates").
  std::int64_t grid_update_every = 0;
  std::int64_t grid_update_until = 0;
  std::int64_t grid_update_samples = 1024;
  GridUpdateSettings grid{};
  // Grid extension: the grid size of each stage (C0 K, B-spline G), e.g. {5, 10, 20}. The
  // epochs are split evenly among the stages unless stage_epochs gives their lengths (then
  // their sum replaces `epochs`); before the first epoch of a stage whose size differs from the
  // network's, Network::refine runs (the function is kept) and a fresh optimizer starts the
  // stage (measured better than keeping the moments of the unrefined tensors: Python's
  // stage_lr="restart").
  std::vector<std::int64_t> grid_schedule;
  std::vector<std::int64_t> stage_epochs;
  // Called after every epoch; return false to stop training.
  std::function<bool(const EpochLog&)> callback;
};

// What fit did. The per-epoch vectors (train_loss, reg, lr; val_loss with validation) have one
// entry per epoch run, the diverged epoch included.
struct FitHistory {
  std::vector<double> train_loss;  // per epoch
  std::vector<double> val_loss;    // per epoch (empty without validation)
  std::vector<double> reg;         // per epoch: the weighted penalty after it (EpochLog::penalty)
  std::vector<double> lr;          // per epoch: the learning rate in effect ("other" group's)
  std::vector<std::int64_t> grid_update_epochs;  // 0-based epochs before which grids were updated
  // (0-based epoch, new size) of each refine of the grid schedule.
  std::vector<std::pair<std::int64_t, std::int64_t>> refine_epochs;
  std::int64_t steps_per_epoch = 0;  // optimizer steps per epoch: ceil(training rows / batch_size)
  std::int64_t best_epoch = -1;
  double best_loss = 0;            // the monitored loss at best_epoch
  std::string stop_reason;         // "epochs", "early_stopping", "callback" or "diverged"
};

// Trains `net` in place. Inputs must be finite (NaN/inf in x or y throws invalid_argument);
// a non-finite training loss stops training with stop_reason "diverged".
FitHistory fit(Network& net, const Dataset& train, const FitOptions& options,
               const Dataset* validation = nullptr);

}  // namespace kancore

// The fit loop (see kancore/training.hpp): seeded shuffles, mini-batch Adam steps, validation,
// early stopping with a copy of the best network, grid updates on a schedule.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "dispatch_common.hpp"
#include "kancore/training.hpp"
#include "rng.hpp"

namespace kancore {
namespace {

bool all_finite(Network& net) {
  for (const auto& t : net.tensors()) {
    const std::int64_t n = t.numel();
    if (t.dtype == DType::float64) {
      const double* p = static_cast<const double*>(t.data);
      for (std::int64_t j = 0; j < n; ++j)
        if (!std::isfinite(p[j])) return false;
    } else {
      const float* p = static_cast<const float*>(t.data);
      for (std::int64_t j = 0; j < n; ++j)
        if (!std::isfinite(p[j])) return false;
    }
  }
  return true;
}

using dispatch::fail;

// The network's grid size (C0 K or B-spline G) when all layers share one, else -1.
std::int64_t grid_size_of(const Network& net) {
  std::int64_t size = -1;
  for (const LayerConfig& l : net.config().layers) {
    const std::int64_t s = l.kind == LayerKind::c0 ? l.num_control_points : l.grid_size;
    if (size != -1 && s != size) return -1;
    size = s;
  }
  return size;
}

template <class T>
struct Rows {
  std::int64_t n = 0;
  std::vector<T> x, y;
  std::vector<std::int64_t> labels;
};

template <class T>
void check_data(const Dataset& d, const Network& net, LossKind loss, const char* what) {
  const std::string w = what;
  if (d.n < 1) fail("expected a non-empty " + w + " set, got " + std::to_string(d.n) + " rows");
  if (d.n > (std::int64_t{1} << 40)) fail("expected fewer than 2^40 " + w + " rows");
  if (!d.x) fail("expected " + w + " inputs, got null");
  const T* x = static_cast<const T*>(d.x);
  for (std::int64_t e = 0; e < d.n * net.in_features(); ++e) {
    if (!std::isfinite(x[e])) fail("expected finite " + w + " inputs, got a non-finite value at row " + std::to_string(e / net.in_features()));
  }
  if (loss == LossKind::mse) {
    if (!d.y) fail("expected " + w + " targets y for the MSE loss, got null");
    const T* y = static_cast<const T*>(d.y);
    for (std::int64_t e = 0; e < d.n * net.out_features(); ++e) {
      if (!std::isfinite(y[e])) fail("expected finite " + w + " targets, got a non-finite value at row " + std::to_string(e / net.out_features()));
    }
  } else {
    if (!d.labels) fail("expected " + w + " labels for the cross-entropy loss, got null");
    for (std::int64_t b = 0; b < d.n; ++b) {
      if (d.labels[b] < 0 || d.labels[b] >= net.out_features()) {
        fail("expected " + w + " labels in [0, " + std::to_string(net.out_features()) + "), got " +
             std::to_string(d.labels[b]) + " at row " + std::to_string(b));
      }
    }
  }
}

// Copies the given rows of d (indices idx[from..to)) into r.
template <class T>
void gather(const Dataset& d, std::int64_t in, std::int64_t out, LossKind loss,
            const std::vector<std::int64_t>& idx, std::size_t from, std::size_t to, Rows<T>& r) {
  r.n = static_cast<std::int64_t>(to - from);
  r.x.resize(static_cast<std::size_t>(r.n * in));
  const T* x = static_cast<const T*>(d.x);
  for (std::size_t k = from; k < to; ++k)
    std::memcpy(&r.x[(k - from) * in], x + idx[k] * in, sizeof(T) * static_cast<std::size_t>(in));
  if (loss == LossKind::mse) {
    r.y.resize(static_cast<std::size_t>(r.n * out));
    const T* y = static_cast<const T*>(d.y);
    for (std::size_t k = from; k < to; ++k)
      std::memcpy(&r.y[(k - from) * out], y + idx[k] * out, sizeof(T) * static_cast<std::size_t>(out));
  } else {
    r.labels.resize(static_cast<std::size_t>(r.n));
    for (std::size_t k = from; k < to; ++k) r.labels[k - from] = d.labels[idx[k]];
  }
}

template <class T>
double batch_loss(LossKind loss, const Rows<T>& r, std::int64_t out, const T* pred, T* grad) {
  const DType dt = dtype_of<T>::value;
  if (loss == LossKind::mse) return mse_loss(dt, r.n, out, pred, r.y.data(), grad);
  return cross_entropy_loss(dt, r.n, out, pred, r.labels.data(), grad);
}

// Data loss of the whole set, evaluated in chunks (no activations kept).
template <class T>
double evaluate(const Network& net, const Rows<T>& data, LossKind loss) {
  const std::int64_t in = net.in_features(), out = net.out_features();
  constexpr std::int64_t kChunk = 4096;
  double total = 0;
  std::vector<T> pred;
  Rows<T> part;
  for (std::int64_t s = 0; s < data.n; s += kChunk) {
    const std::int64_t m = std::min(kChunk, data.n - s);
    part.n = m;
    part.x.assign(data.x.begin() + s * in, data.x.begin() + (s + m) * in);
    if (loss == LossKind::mse) part.y.assign(data.y.begin() + s * out, data.y.begin() + (s + m) * out);
    else part.labels.assign(data.labels.begin() + s, data.labels.begin() + s + m);
    pred.resize(static_cast<std::size_t>(m * out));
    net.forward(m, static_cast<const void*>(part.x.data()), static_cast<void*>(pred.data()));
    total += batch_loss<T>(loss, part, out, pred.data(), nullptr) * static_cast<double>(m);
  }
  return total / static_cast<double>(data.n);
}

template <class T>
FitHistory fit_typed(Network& net, const Dataset& train_in, const FitOptions& o, const Dataset* val_in) {
  if (o.epochs < 0) fail("expected epochs >= 0, got " + std::to_string(o.epochs));
  if (o.batch_size < 1) fail("expected batch_size >= 1, got " + std::to_string(o.batch_size));
  if (o.patience < 0) fail("expected patience >= 0, got " + std::to_string(o.patience));
  if (!(o.val_fraction >= 0 && o.val_fraction < 1)) fail("expected val_fraction in [0, 1), got " + std::to_string(o.val_fraction));
  if (!std::isfinite(o.reg_weight) || o.reg_weight < 0) fail("expected reg_weight >= 0, got " + std::to_string(o.reg_weight));
  if (o.grid_update_every < 0 || o.grid_update_samples < 1) {
    fail("expected grid_update_every >= 0 and grid_update_samples >= 1, got " +
         std::to_string(o.grid_update_every) + " and " + std::to_string(o.grid_update_samples));
  }
  if (o.loss != LossKind::mse && o.loss != LossKind::cross_entropy) fail("expected loss mse or cross_entropy");
  if (o.reg_schedule != RegSchedule::constant && o.reg_schedule != RegSchedule::linear) {
    fail("expected reg_schedule constant or linear");
  }
  for (const std::int64_t g : o.grid_schedule) {
    if (g < 1) fail("expected grid_schedule sizes >= 1, got " + std::to_string(g));
  }
  if (!o.stage_epochs.empty()) {
    if (o.stage_epochs.size() != o.grid_schedule.size()) {
      fail("expected one stage_epochs entry per grid_schedule stage, got " + std::to_string(o.stage_epochs.size()) +
           " for " + std::to_string(o.grid_schedule.size()));
    }
    for (const std::int64_t e : o.stage_epochs) {
      if (e < 1) fail("expected stage_epochs >= 1, got " + std::to_string(e));
    }
  } else if (o.epochs < static_cast<std::int64_t>(o.grid_schedule.size())) {
    fail(std::to_string(o.epochs) + " epochs cannot hold " + std::to_string(o.grid_schedule.size()) + " grid stages");
  }
  check_data<T>(train_in, net, o.loss, "training");
  if (val_in) check_data<T>(*val_in, net, o.loss, "validation");

  const std::int64_t in = net.in_features(), out = net.out_features();
  Rng rng(o.seed);
  auto shuffle = [&](std::vector<std::int64_t>& v) {
    for (std::size_t k = v.size(); k > 1; --k) std::swap(v[k - 1], v[rng.below(k)]);
  };

  // Split (or take) the validation rows; training rows are copied once so shuffles only move indices.
  std::vector<std::int64_t> all(static_cast<std::size_t>(train_in.n));
  std::iota(all.begin(), all.end(), 0);
  Rows<T> train, val;
  bool has_val = false;
  if (val_in) {
    std::vector<std::int64_t> vi(static_cast<std::size_t>(val_in->n));
    std::iota(vi.begin(), vi.end(), 0);
    gather<T>(*val_in, in, out, o.loss, vi, 0, vi.size(), val);
    gather<T>(train_in, in, out, o.loss, all, 0, all.size(), train);
    has_val = true;
  } else if (o.val_fraction > 0) {
    shuffle(all);
    const auto nv = static_cast<std::size_t>(std::floor(o.val_fraction * static_cast<double>(train_in.n)));
    if (nv < 1 || nv >= all.size()) fail("val_fraction leaves an empty training or validation set");
    gather<T>(train_in, in, out, o.loss, all, 0, nv, val);
    gather<T>(train_in, in, out, o.loss, all, nv, all.size(), train);
    has_val = true;
  } else {
    gather<T>(train_in, in, out, o.loss, all, 0, all.size(), train);
  }
  const Dataset train_view{train.n, train.x.data(), train.y.data(), train.labels.data()};

  Adam opt(net, o.optimizer);  // replaced at each grid-schedule stage
  FitHistory hist;
  hist.stop_reason = "epochs";
  std::optional<Network> best;
  double best_loss = std::numeric_limits<double>::infinity();
  std::int64_t since_best = 0;
  const std::int64_t bs = std::min(o.batch_size, train.n);
  hist.steps_per_epoch = (train.n + bs - 1) / bs;
  std::vector<std::int64_t> order(static_cast<std::size_t>(train.n));
  std::iota(order.begin(), order.end(), 0);
  Rows<T> mb;
  std::vector<T> pred, grad;

  // Stage j of the grid schedule starts at epoch starts[j].
  const std::int64_t epochs = o.stage_epochs.empty()
      ? o.epochs
      : std::accumulate(o.stage_epochs.begin(), o.stage_epochs.end(), std::int64_t{0});
  std::vector<std::int64_t> starts;
  for (std::size_t j = 0; j < o.grid_schedule.size(); ++j) {
    if (o.stage_epochs.empty()) {
      starts.push_back(static_cast<std::int64_t>(j) * epochs / static_cast<std::int64_t>(o.grid_schedule.size()));
    } else {
      starts.push_back(j == 0 ? 0 : starts.back() + o.stage_epochs[j - 1]);
    }
  }

  const std::int64_t total_steps = epochs * hist.steps_per_epoch;
  std::int64_t step = 0;
  auto reg_weight_at = [&](std::int64_t s) {
    if (o.reg_schedule == RegSchedule::constant || total_steps <= 1) return o.reg_weight;
    return o.reg_weight * static_cast<double>(s) / static_cast<double>(total_steps - 1);
  };

  for (std::int64_t epoch = 0; epoch < epochs; ++epoch) {
    EpochLog log;
    log.epoch = epoch;
    for (std::size_t j = 0; j < starts.size(); ++j) {
      if (starts[j] != epoch || grid_size_of(net) == o.grid_schedule[j]) continue;
      net.refine(o.grid_schedule[j]);
      // A fresh optimizer for every stage: Python's default (stage_lr="restart"), which beat
      // keeping the moments of the unrefined tensors on every formula of
      // benchmarks/grid_schedule.py.
      opt = Adam(net, o.optimizer);
      log.refined_to = o.grid_schedule[j];
      hist.refine_epochs.emplace_back(epoch, o.grid_schedule[j]);
    }
    shuffle(order);
    if (o.grid_update_every > 0 && epoch % o.grid_update_every == 0 && epoch < o.grid_update_until) {
      const auto m = static_cast<std::size_t>(std::min(o.grid_update_samples, train.n));
      gather<T>(train_view, in, out, o.loss, order, 0, m, mb);
      net.update_grids(mb.n, mb.x.data(), o.grid);
      log.grid_updated = true;
      hist.grid_update_epochs.push_back(epoch);
    }
    const double epoch_lr = opt.options().lr;  // no schedule: constant within the epoch
    double sum = 0;
    for (std::int64_t s = 0; s < train.n; s += bs) {
      const auto from = static_cast<std::size_t>(s);
      const auto to = static_cast<std::size_t>(std::min(train.n, s + bs));
      gather<T>(train_view, in, out, o.loss, order, from, to, mb);
      pred.resize(static_cast<std::size_t>(mb.n * out));
      grad.resize(pred.size());
      net.forward_train(mb.n, mb.x.data(), pred.data());
      const double l = batch_loss<T>(o.loss, mb, out, pred.data(), grad.data());
      sum += l * static_cast<double>(mb.n);
      net.backward(grad.data());
      if (o.reg_weight > 0) net.regularization(reg_weight_at(step), true);
      ++step;
      opt.step();
    }
    log.train_loss = sum / static_cast<double>(train.n);
    log.val_loss = has_val ? evaluate<T>(net, val, o.loss) : std::numeric_limits<double>::quiet_NaN();
    log.penalty = o.reg_weight > 0 ? net.regularization(reg_weight_at(step > 0 ? step - 1 : 0), false) : 0.0;
    hist.train_loss.push_back(log.train_loss);
    hist.reg.push_back(log.penalty);
    hist.lr.push_back(epoch_lr);
    if (has_val) hist.val_loss.push_back(log.val_loss);
    if (!std::isfinite(log.train_loss)) {
      hist.stop_reason = "diverged";
      if (o.callback) o.callback(log);
      break;
    }
    const double monitored = has_val ? log.val_loss : log.train_loss;
    if (monitored < best_loss) {
      best_loss = monitored;
      hist.best_epoch = epoch;
      hist.best_loss = monitored;
      since_best = 0;
      log.improved = true;
      // The loss is averaged over the epoch's steps, but the copy is taken after the last one:
      // never keep weights that this last step made non-finite as the "best".
      if (o.restore_best && all_finite(net)) best = net;
    } else {
      ++since_best;
    }
    if (o.callback && !o.callback(log)) {
      hist.stop_reason = "callback";
      break;
    }
    if (o.patience > 0 && since_best >= o.patience) {
      hist.stop_reason = "early_stopping";
      break;
    }
  }
  if (o.restore_best && best) net = std::move(*best);
  return hist;
}

}  // namespace

FitHistory fit(Network& net, const Dataset& train, const FitOptions& options, const Dataset* validation) {
  if (net.dtype() == DType::float64) return fit_typed<double>(net, train, options, validation);
  return fit_typed<float>(net, train, options, validation);
}

}  // namespace kancore

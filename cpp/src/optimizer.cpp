// Adam / AdamW with a learning rate per parameter group (see kancore/training.hpp).
#include <cmath>
#include <string>

#include "dispatch_common.hpp"
#include "kancore/training.hpp"

namespace kancore {

using dispatch::fail;

namespace {
void check_options(const AdamOptions& o) {
  auto finite_nonneg = [](double v) { return std::isfinite(v) && v >= 0; };
  if (!finite_nonneg(o.lr)) fail("expected a finite lr >= 0, got " + std::to_string(o.lr));
  if (!std::isfinite(o.lr_spline)) fail("expected a finite lr_spline, got " + std::to_string(o.lr_spline));
  if (!(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1)) fail("expected betas in [0, 1)");
  if (!(std::isfinite(o.eps) && o.eps > 0)) fail("expected eps > 0, got " + std::to_string(o.eps));
  if (!finite_nonneg(o.weight_decay)) fail("expected weight_decay >= 0, got " + std::to_string(o.weight_decay));
}

template <class T>
void update(T* p, const T* g, double* m, double* v, std::int64_t n, double lr, const AdamOptions& o,
            double bias1, double bias2) {
  const bool decoupled = o.kind == OptimizerKind::adamw;
  for (std::int64_t e = 0; e < n; ++e) {
    double pe = p[e];
    double ge = g[e];
    if (o.weight_decay != 0) {
      if (decoupled) pe *= 1.0 - lr * o.weight_decay;
      else ge += o.weight_decay * pe;
    }
    m[e] = o.beta1 * m[e] + (1 - o.beta1) * ge;
    v[e] = o.beta2 * v[e] + (1 - o.beta2) * ge * ge;
    const double denom = std::sqrt(v[e]) / std::sqrt(bias2) + o.eps;
    pe -= (lr / bias1) * m[e] / denom;
    p[e] = static_cast<T>(pe);
  }
}
}  // namespace

Adam::Adam(Network& net, const AdamOptions& options) : net_(&net), opt_(options) {
  check_options(opt_);
  for (const auto& t : net.tensors()) {
    if (t.group == ParamGroup::buffer) continue;
    m_.emplace_back(static_cast<std::size_t>(t.numel()), 0.0);
    v_.emplace_back(static_cast<std::size_t>(t.numel()), 0.0);
  }
}

void Adam::set_lr(double lr, double lr_spline) {
  AdamOptions o = opt_;
  o.lr = lr;
  o.lr_spline = lr_spline;
  check_options(o);
  opt_ = o;
}

void Adam::step() {
  ++t_;
  const double bias1 = 1 - std::pow(opt_.beta1, static_cast<double>(t_));
  const double bias2 = 1 - std::pow(opt_.beta2, static_cast<double>(t_));
  std::size_t k = 0;
  for (const auto& t : net_->tensors()) {
    if (t.group == ParamGroup::buffer) continue;
    if (k >= m_.size() || m_[k].size() != static_cast<std::size_t>(t.numel())) {
      throw std::logic_error("kancore: Adam: the network's parameters changed shape since construction");
    }
    const double lr = (t.group == ParamGroup::spline && opt_.lr_spline >= 0) ? opt_.lr_spline : opt_.lr;
    if (t.dtype == DType::float64) {
      update(static_cast<double*>(t.data), static_cast<const double*>(t.grad), m_[k].data(), v_[k].data(),
             t.numel(), lr, opt_, bias1, bias2);
    } else {
      update(static_cast<float*>(t.data), static_cast<const float*>(t.grad), m_[k].data(), v_[k].data(),
             t.numel(), lr, opt_, bias1, bias2);
    }
    ++k;
  }
}

}  // namespace kancore

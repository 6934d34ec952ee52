"""Training helpers: ``Trainer`` / ``fit`` (one loop for KANs and the MLPs they are compared with)
and ``create_dataset`` (pykan-style function-fitting data).

The loop, in order, at each step s = 0 .. steps-1:

1. grid update (KANs only) when ``grid_update_every > 0``, ``s % grid_update_every == 0`` and
   ``s < grid_update_until``: the network is run on ``grid_update_samples`` random training inputs
   with ``update_grid=True`` (B-spline layers move their knots, C0 layers fit their input domain);
   parameters that were replaced (e.g. a new K) get fresh optimizer state, the others keep theirs;
   and, with a ``grid_schedule`` (grid sizes per stage: B-spline G, C0 K), at the first step of
   each stage the network is refined to that stage's size (``model.refine``, which keeps the
   function); then a fresh optimizer and a new warmup + cosine start the stage
   (``stage_lr="restart"``, measured best), or the schedule runs on over the whole run and only
   the refined parameters get fresh state (``"continue"``);
2. one optimizer step on a mini-batch (``batch_size=None``: the full training set) of
   ``loss(model(x), y) + reg_weight * f(s) * penalty``, with the gradient norm clipped to
   ``grad_clip`` (``f`` the ``reg_schedule``: 1, or ``s / (steps - 1)`` for ``"linear"``);
3. every ``eval_every`` steps (and at the last one): the validation loss; the best weights are kept
   and, after ``patience`` evaluations without improvement, training stops. At the end the best
   weights are restored (``restore_best``).

Learning rates: Adam/AdamW with two parameter groups, the spline parameters (``KANLayer``'s
``kan_weight``/``dct_weight``/``r_weight``/``l_weight``, ``KANLinear.spline_weight``) at
``lr_spline`` (default ``lr``) and everything else at ``lr``; a linear warmup over ``warmup_steps`` then a
cosine decay to ``min_lr_ratio * lr`` (``lr_factor``). ``optimizer="lbfgs"`` uses torch's LBFGS
with a strong-Wolfe line search, one learning rate and no schedule or clipping.

The penalty (``reg``): ``"auto"`` is efficient-kan's ``regularization_loss()`` (L1 + entropy of
the coefficients) for B-spline KANs and ``smoothness_loss()`` (second differences of the control
points) for C0 KANs; ``"coef"``/``"smoothness"`` pick one explicitly, and ``"edge_scale"`` is
pykan's sample-based regulariser on the batch (``KAN.edge_scale_loss``, sharing the forward pass).
``reg_kwargs`` go to the chosen method.

The names are shared with ``NumpyKAN.fit`` (and the C++ ``FitOptions``): ``lr``, ``lr_spline``,
``validation=(X_val, y_val)``, ``val_fraction``, ``patience``, ``restore_best``,
``grid_update_every``/``grid_update_until``/``grid_update_samples``, ``epochs``, and the history
keys (see ``Trainer.fit``). The older names ``spline_lr_mult``, ``X_val``/``y_val`` still work for
this release, with a ``FutureWarning``.
"""
from __future__ import annotations

import copy
import math
import warnings
import numbers
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .kan_layer import KANLayer
from .kan_linear import KANLinear
from .fused import FusedMSE
from .network import KAN

_SPLINE_NAMES = {"KANLayer": ("kan_weight", "dct_weight", "r_weight", "l_weight"),
                 "KANLinear": ("spline_weight",)}
OPTIMIZERS = ("adam", "adamw", "lbfgs")
HISTORY_KEYS = ("step", "epoch", "train_loss", "val_loss", "test_loss", "reg", "lr", "grid_update_steps",
                "refine_steps", "best", "best_step", "best_epoch", "best_loss", "stop_reason")
STAGE_LR = ("restart", "continue")


def _renamed(old: str, new: str) -> None:
    warnings.warn(f"kancore: {old} is deprecated and will be removed in kancore 0.3; use {new}",
                  FutureWarning, stacklevel=4)
REGS = ("auto", "coef", "smoothness", "edge_scale")
REG_SCHEDULES = ("constant", "linear")


def lr_factor(step: int, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> float:
    """The learning-rate multiplier of optimizer step ``step`` (0-based): (step+1)/warmup_steps
    during the warmup, then a cosine from 1 toward ``min_lr_ratio``, which it would reach one
    step after the last (so the last step still learns)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = total_steps - warmup_steps
    progress = 1.0 if span <= 0 else min(1.0, (step - warmup_steps) / span)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _spline_attrs(module: nn.Module):
    """The spline parameter names of a KAN layer (subclasses included; by class name for
    efficient-kan's or kanditioned's own classes), else ()."""
    if isinstance(module, KANLayer):
        return _SPLINE_NAMES["KANLayer"]
    if isinstance(module, KANLinear):
        return _SPLINE_NAMES["KANLinear"]
    return _SPLINE_NAMES.get(type(module).__name__, ())


class _NoBar:
    """Stands in for tqdm when no progress bar is wanted (or tqdm is not installed)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar_class(progress: bool):
    if not progress:
        return _NoBar
    try:
        from tqdm.auto import tqdm  # notebook-aware progress bar
    except ImportError:
        warnings.warn("kancore: progress=True needs tqdm (pip install tqdm); training without a progress bar")
        return _NoBar
    return tqdm


def spline_parameter_names(model: nn.Module) -> List[str]:
    """Names (as in ``model.named_parameters()``) of the spline parameters of every KAN layer."""
    names = []
    for prefix, module in model.named_modules():
        for attr in _spline_attrs(module):
            if isinstance(getattr(module, attr, None), nn.Parameter):
                names.append(f"{prefix}.{attr}" if prefix else attr)
    return names


def parameter_groups(model: nn.Module, lr: float, lr_spline: Optional[float] = None) -> List[dict]:
    """Optimizer parameter groups: ``base`` at ``lr``, ``spline`` at ``lr_spline`` (default
    ``lr``); empty groups are left out. Each group carries ``name`` and ``param_names`` so
    replaced parameters can be found."""
    spline = set(spline_parameter_names(model))
    groups = {"base": [], "spline": []}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups["spline" if name in spline else "base"].append(name)
    params = dict(model.named_parameters())
    rates = {"base": lr, "spline": lr if lr_spline is None else lr_spline}
    return [{"name": g, "lr": rates[g], "initial_lr": rates[g], "param_names": names,
             "params": [params[n] for n in names]} for g, names in groups.items() if names]


def _positive(name, value, integer=False, allow_none=False):
    if value is None and allow_none:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive {'int' if integer else 'number'}, got {value!r}")
    return int(value) if integer else float(value)


def _sequence(name, value):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of ints, got {value!r}")
    return list(value)


def _grid_size(model: nn.Module) -> Optional[int]:
    """The network's current grid size (B-spline G or C0 K), None when the layers differ."""
    sizes = {getattr(m, "grid_size", None) if isinstance(m, KANLinear) else getattr(m, "num_control_points", None)
             for m in model.modules() if isinstance(m, (KANLinear, KANLayer))}
    return sizes.pop() if len(sizes) == 1 else None


def _as_tensor(name, a, dtype=None, device=None):
    t = a if isinstance(a, torch.Tensor) else torch.as_tensor(a)
    if dtype is not None and t.is_floating_point():
        t = t.to(dtype)
    return t.to(device) if device is not None else t


class Trainer:
    """Trains any ``nn.Module`` on (X, y); KAN-specific features (spline learning rate, grid
    updates, penalties) apply where the model has them. See the module docstring for the loop.

    Parameters
    ----------
    model : nn.Module
        Trained in place (a ``kancore.KAN``, a KAN layer, an MLP...).
    optimizer : {"adam", "adamw", "lbfgs"}
        Adam/AdamW with two parameter groups and a schedule, or torch's LBFGS with a strong-Wolfe
        line search (one learning rate, no schedule, no clipping).
    lr : float
        Learning rate of the base weights, scalers and norms (and of everything with LBFGS).
    lr_spline : float, optional
        Learning rate of the spline parameters (C0 tables, B-spline ``spline_weight``); default
        ``lr``.
    weight_decay : float
        Adam: L2 added to the gradient; AdamW: decoupled decay.
    betas : (float, float)
        Adam's moment coefficients.
    warmup_steps : int
        Linear warmup from ``lr / warmup_steps`` to ``lr``.
    schedule : {"cosine", "constant"}
        After the warmup: a cosine decay to ``min_lr_ratio * lr``, or constant.
    min_lr_ratio : float
        Where the cosine ends, relative to ``lr``.
    grad_clip : float, optional
        Clip the global gradient norm to this value.
    loss : {"mse", "cross_entropy"} or callable
        The data loss; a callable takes ``(prediction, target)``. ``"cross_entropy"`` needs a
        model with at least two outputs and integer class labels.
    reg_weight : float
        Weight of the penalty (0: none).
    reg_schedule : {"constant", "linear"}
        Progressive sparsification: ``"linear"`` ramps the penalty's weight from 0 at the first
        step to ``reg_weight`` at the last (``reg_weight * s / (steps - 1)``), so the network
        first fits and is then pushed toward few important edges, ready for ``kancore.prune``;
        ``"constant"`` keeps ``reg_weight`` throughout.
    reg : {"auto", "coef", "smoothness", "edge_scale"}
        Which penalty (see the module docstring); ``reg_kwargs`` go to it.
    reg_kwargs : dict, optional
        Keyword arguments of the penalty method.
    grid_update_every : int
        Update the grids every this many steps (0: never), before step ``grid_update_until``
        (default: all steps), on ``grid_update_samples`` random training rows.
    grid_update_until : int, optional
        See ``grid_update_every``.
    grid_update_samples : int
        See ``grid_update_every``.
    grid_schedule : sequence of int, optional
        Grid extension during training: the grid size (B-spline ``grid_size``, C0
        ``num_control_points``) of each stage, e.g. ``[5, 10, 20]``. The steps are split evenly
        among the stages unless ``stage_steps`` gives their lengths; at the start of each stage
        whose size differs from the network's, ``model.refine(size)`` runs (the function is
        kept). Needs a model with ``refine`` (``kancore.KAN``, a layer).
    stage_steps : sequence of int, optional
        Optimizer steps of each stage of ``grid_schedule`` (their sum is the run's length).
    stage_lr : {"restart", "continue"}
        Across stages, ``"restart"`` (the default, chosen by measurement:
        ``benchmarks/grid_schedule.py``, README "Grid schedules") builds a fresh optimizer and
        runs the warmup and cosine again in every stage; ``"continue"`` keeps one warmup +
        cosine over the whole run and the optimizer state of the parameters refine does not
        replace. LBFGS always restarts its history.
    batch_size : int, optional
        Mini-batch rows; ``None``: the full training set every step.
    eval_every : int
        Record the history (and evaluate the validation set) every this many steps.
    patience : int, optional
        Stop after this many evaluations without a better validation loss (``None`` or 0: never).
    restore_best : bool
        End on the weights of the best validation loss.
    progress : bool
        Show a tqdm progress bar (notebook-aware).
    seed : int
        Seeds the mini-batch order, the validation split and the grid-update samples.
    lbfgs_max_iter, lbfgs_history : int
        LBFGS's inner iterations per step and its history size.
    fused : bool
        Compute the loss and gradients of plain steps (a CPU ``kancore.KAN`` without symbolic
        edges, MSE, no penalty, no autocast) in one native call (``kancore/fused.py``): the same
        values as autograd to rounding, about 3x faster on small full-batch problems. False
        always goes through autograd.
    spline_lr_mult : float, optional
        Deprecated: use ``lr_spline = lr * spline_lr_mult``.
    """

    def __init__(self, model: nn.Module, *, optimizer: str = "adam", lr: float = 1e-2,
                 lr_spline: Optional[float] = None, weight_decay: float = 0.0,
                 betas: Tuple[float, float] = (0.9, 0.999), warmup_steps: int = 0, schedule: str = "cosine",
                 min_lr_ratio: float = 0.0, grad_clip: Optional[float] = None,
                 loss: Union[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = "mse",
                 reg_weight: float = 0.0, reg: str = "auto", reg_schedule: str = "constant",
                 reg_kwargs: Optional[Dict[str, Any]] = None, grid_update_every: int = 0,
                 grid_update_until: Optional[int] = None, grid_update_samples: int = 1024,
                 grid_schedule: Optional[Sequence[int]] = None, stage_steps: Optional[Sequence[int]] = None,
                 stage_lr: str = "restart", batch_size: Optional[int] = None, eval_every: int = 10, patience: Optional[int] = None,
                 restore_best: bool = True, progress: bool = True, seed: int = 0, lbfgs_max_iter: int = 20,
                 lbfgs_history: int = 10, fused: bool = True, spline_lr_mult: Optional[float] = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"expected an nn.Module, got {type(model).__name__}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
        if reg not in REGS:
            raise ValueError(f"reg must be one of {REGS}, got {reg!r}")
        if isinstance(loss, str) and loss not in ("mse", "cross_entropy"):
            raise ValueError(f"loss must be 'mse', 'cross_entropy' or a callable, got {loss!r}")
        if not (isinstance(warmup_steps, numbers.Integral) and warmup_steps >= 0):
            raise ValueError(f"warmup_steps must be an int >= 0, got {warmup_steps!r}")
        if not (isinstance(grid_update_every, numbers.Integral) and grid_update_every >= 0):
            raise ValueError(f"grid_update_every must be an int >= 0, got {grid_update_every!r}")
        if not 0.0 <= float(min_lr_ratio) <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio!r}")
        if not (isinstance(reg_weight, numbers.Real) and math.isfinite(reg_weight) and reg_weight >= 0):
            raise ValueError(f"reg_weight must be a finite number >= 0, got {reg_weight!r}")
        self.model = model
        self.optimizer_name = optimizer
        self.lr = _positive("lr", lr)
        if spline_lr_mult is not None:
            _renamed("spline_lr_mult", "lr_spline (an absolute rate: lr * spline_lr_mult)")
            if lr_spline is not None:
                raise ValueError("pass lr_spline or the deprecated spline_lr_mult, not both")
            lr_spline = self.lr * _positive("spline_lr_mult", spline_lr_mult)
        self.lr_spline = self.lr if lr_spline is None else _positive("lr_spline", lr_spline)
        if optimizer == "lbfgs" and (self.lr_spline != self.lr or grad_clip is not None or warmup_steps):
            raise ValueError("optimizer='lbfgs' takes one learning rate, no warmup and no gradient clipping "
                             "(its line search needs the true gradient): leave lr_spline unset, "
                             "warmup_steps=0, grad_clip=None")
        self.weight_decay = float(weight_decay)
        self.betas = tuple(betas)
        self.warmup_steps = int(warmup_steps)
        self.schedule = schedule
        self.min_lr_ratio = float(min_lr_ratio)
        self.grad_clip = _positive("grad_clip", grad_clip, allow_none=True)
        self.loss = loss
        self.reg_weight = float(reg_weight)
        if reg_schedule not in REG_SCHEDULES:
            raise ValueError(f"reg_schedule must be one of {REG_SCHEDULES}, got {reg_schedule!r}")
        self.reg_schedule = reg_schedule
        self._reg_factor = 1.0
        self.reg = reg
        self.reg_kwargs = dict(reg_kwargs or {})
        self.grid_update_every = int(grid_update_every)
        self.grid_update_until = grid_update_until
        self.grid_update_samples = _positive("grid_update_samples", grid_update_samples, integer=True)
        self.grid_schedule = None if grid_schedule is None else [
            _positive("grid_schedule entries", g, integer=True) for g in _sequence("grid_schedule", grid_schedule)]
        self.stage_steps = None if stage_steps is None else [
            _positive("stage_steps entries", n, integer=True) for n in _sequence("stage_steps", stage_steps)]
        if self.stage_steps is not None and (self.grid_schedule is None
                                             or len(self.stage_steps) != len(self.grid_schedule)):
            raise ValueError("stage_steps needs a grid_schedule of the same length, got "
                             f"{stage_steps!r} for grid_schedule={grid_schedule!r}")
        if stage_lr not in STAGE_LR:
            raise ValueError(f"stage_lr must be one of {STAGE_LR}, got {stage_lr!r}")
        self.stage_lr = stage_lr
        if self.grid_schedule is not None and not callable(getattr(model, "refine", None)):
            raise ValueError(f"grid_schedule needs a model with refine() (a kancore.KAN or layer), "
                             f"got {type(model).__name__}")
        self.batch_size = _positive("batch_size", batch_size, integer=True, allow_none=True)
        self.eval_every = _positive("eval_every", eval_every, integer=True)
        self.patience = None if patience == 0 else _positive("patience", patience, integer=True, allow_none=True)
        self.restore_best = bool(restore_best)
        self.progress = bool(progress)
        self.seed = int(seed)
        self.lbfgs_max_iter = _positive("lbfgs_max_iter", lbfgs_max_iter, integer=True)
        self.lbfgs_history = _positive("lbfgs_history", lbfgs_history, integer=True)
        self._penalty = self._pick_penalty() if self.reg_weight > 0 else None
        self._fused = FusedMSE() if fused else None
        if self.grid_update_every and not self._has_grids():
            raise ValueError("grid updates need a kancore.KAN or an nn.Sequential with update_grid layers, "
                             f"got {type(model).__name__}")
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self._lbfgs_last: Optional[float] = None  # LBFGS: the objective at the last step (unscaled)
        self._lbfgs_scale = 1.0
        self._lbfgs_fresh = True
        self.best_step: Optional[int] = None
        self.stopped_early = False

    # -- pieces -----------------------------------------------------------------------------

    def _pick_penalty(self) -> str:
        m = self.model
        reg = self.reg
        if reg == "auto":
            reg = "smoothness" if getattr(m, "kind", None) == "c0" else "coef"
        method = {"coef": "regularization_loss", "smoothness": "smoothness_loss",
                  "edge_scale": "edge_scale_loss"}[reg]
        if not callable(getattr(m, method, None)):
            raise ValueError(f"reg={self.reg!r} needs a model with {method}() (a kancore.KAN), "
                             f"got {type(m).__name__}")
        return reg

    def _has_grids(self) -> bool:
        if isinstance(self.model, KAN):
            return True
        return isinstance(self.model, nn.Sequential) and any(hasattr(c, "update_grid") for c in self.model)

    def _build_optimizer(self) -> torch.optim.Optimizer:
        self._lbfgs_fresh = True  # LBFGS: the next step picks its objective scale anew
        if self.optimizer_name == "lbfgs":
            params = [p for p in self.model.parameters() if p.requires_grad]
            # No early exit on a small gradient or change: near a good fit both are tiny while
            # the loss still falls by orders of magnitude (torch's defaults, 1e-7 and 1e-9,
            # stop there; pykan's LBFGS sets 1e-32 for the same reason).
            return torch.optim.LBFGS(params, lr=self.lr, max_iter=self.lbfgs_max_iter,
                                     history_size=self.lbfgs_history, line_search_fn="strong_wolfe",
                                     tolerance_grad=1e-32, tolerance_change=1e-32)
        groups = parameter_groups(self.model, self.lr, self.lr_spline)
        cls = torch.optim.AdamW if self.optimizer_name == "adamw" else torch.optim.Adam
        return cls(groups, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)

    def _lbfgs_rescale(self) -> float:
        """The factor LBFGS's objective is multiplied by in this step.

        torch's LBFGS keeps a curvature pair only when y.s > 1e-10. Near a good fit (an MSE of
        1e-8) every pair falls below that, and LBFGS decays into gradient descent with a line
        search; pykan's own copy lowers the bound instead. kancore keeps torch's optimizer and
        divides the objective by its value instead, whenever it has fallen 1000-fold since the
        last division, restarting the history (pairs of two scales do not mix). The minimiser
        is the same; on benchmarks/vs_pykan.py this cut the final test RMSE several-fold."""
        last, current = self._lbfgs_last, self._lbfgs_scale
        if self._lbfgs_fresh:
            self._lbfgs_fresh = False
            current = 1.0 if last is None or not last > 0 or not math.isfinite(last) else 1.0 / last
        elif last is not None and math.isfinite(last) and 0 < last * current < 1e-3:
            current = 1.0 / last
            self.optimizer = self._build_optimizer()
            self._lbfgs_fresh = False  # the scale is set for this history
        self._lbfgs_scale = current
        return current

    def _set_lr(self, step: int, total: int) -> None:
        if self.optimizer_name == "lbfgs":
            return
        f = 1.0 if self.schedule == "constant" and step >= self.warmup_steps else \
            lr_factor(step, total, self.warmup_steps, self.min_lr_ratio)
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * f

    def _sync_parameters(self) -> None:
        """After a grid update: put replaced parameters (new objects, e.g. another K) into the
        optimizer with fresh state; unchanged ones keep their moments. LBFGS restarts when
        parameters were replaced."""
        current = dict(self.model.named_parameters())
        if self.optimizer_name == "lbfgs":
            # Its curvature history describes the old parameters: restart only when some were
            # replaced (a grid update rewrites values in place and keeps it, as pykan does).
            params = self.optimizer.param_groups[0]["params"]
            if [id(p) for p in params] != [id(p) for p in current.values() if p.requires_grad]:
                self.optimizer = self._build_optimizer()
            return
        for g in self.optimizer.param_groups:
            new_params = []
            for name, old in zip(g["param_names"], g["params"]):
                new = current[name]
                if new is not old:
                    self.optimizer.state.pop(old, None)
                new_params.append(new)
            g["params"] = new_params

    def _update_grids(self, x: torch.Tensor) -> None:
        was_training = self.model.training
        with torch.no_grad():
            if isinstance(self.model, KAN):
                self.model(x, update_grid=True)
            else:
                for child in self.model:
                    if hasattr(child, "update_grid"):
                        child.update_grid(x.reshape(-1, x.shape[-1]))
                    x = child(x)
        self.model.train(was_training)
        self._sync_parameters()

    def _data_loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if callable(self.loss):
            return self.loss(pred, y)
        if self.loss == "cross_entropy":
            if pred.dim() < 2 or pred.shape[-1] < 2:
                raise ValueError(f"cross_entropy needs a model with at least two outputs (one per class), "
                                 f"this one gives {tuple(pred.shape)}; for one output use loss='mse' or a "
                                 "callable such as torch.nn.functional.binary_cross_entropy_with_logits")
            if y.is_floating_point() or y.dim() != 1:
                raise ValueError(f"cross_entropy needs integer class labels of shape (n,), got {y.dtype} "
                                 f"{tuple(y.shape)}")
            return F.cross_entropy(pred, y)
        if pred.shape != y.shape:
            raise ValueError(f"mse: the model gives {tuple(pred.shape)} but the labels are {tuple(y.shape)}")
        return F.mse_loss(pred, y)

    def _objective(self, x, y):
        """(total loss, data loss, penalty or None) on one batch."""
        if self._penalty == "edge_scale":
            penalty, pred = self.model.edge_scale_loss(x, **self.reg_kwargs, return_output=True)
        else:
            pred = self.model(x)
            penalty = None
            if self._penalty == "coef":
                penalty = self.model.regularization_loss(**self.reg_kwargs)
            elif self._penalty == "smoothness":
                penalty = self.model.smoothness_loss()
        data = self._data_loss(pred, y)
        total = data if penalty is None else data + (self.reg_weight * self._reg_factor) * penalty
        return total, data, penalty

    @torch.no_grad()
    def evaluate(self, X: torch.Tensor, y: torch.Tensor) -> float:
        """The data loss (no penalty) on ``(X, y)``, in eval mode.

        Parameters
        ----------
        X, y : torch.Tensor
            Inputs and targets, as prepared for ``fit`` (the model's dtype and device).

        Returns
        -------
        float
        """
        was_training = self.model.training
        self.model.eval()
        try:
            return float(self._data_loss(self.model(X), y))
        finally:
            self.model.train(was_training)

    def _prepare(self, X: Any, y: Any, what: str) -> Tuple[torch.Tensor, torch.Tensor]:
        ref = next(self.model.parameters(), None)
        dtype = ref.dtype if ref is not None else None
        device = ref.device if ref is not None else None
        X = _as_tensor(f"X{what}", X, dtype, device)
        y = _as_tensor(f"y{what}", y, dtype if self.loss != "cross_entropy" else None, device)
        if X.dim() < 2 or X.shape[0] == 0:
            raise ValueError(f"expected X{what} of shape (n >= 1, features...), got {tuple(X.shape)}")
        if y.dim() < 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"X{what} has {X.shape[0]} rows but y{what} has shape {tuple(y.shape)}")
        if self.loss == "mse" and y.dim() == 1:
            y = y.unsqueeze(1)  # one regression target: (n,) -> (n, 1)
        # One NaN in a batch would turn every parameter into NaN at the first step: refuse it,
        # as NumpyKAN.fit does.
        if X.is_floating_point() and not bool(torch.isfinite(X).all()):
            raise ValueError(f"X{what} contains NaN or ±inf; training needs finite inputs")
        if y.is_floating_point() and not bool(torch.isfinite(y).all()):
            raise ValueError(f"y{what} contains NaN or ±inf; training needs finite targets")
        return X, y

    # -- the loop ---------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None, steps: Optional[int] = None, *, epochs: Optional[int] = None,
            validation: Optional[Tuple[Any, Any]] = None, val_fraction: float = 0.0,
            X_val: Any = None, y_val: Any = None) -> Dict[str, Any]:
        """Train and return the history.

        Parameters
        ----------
        X : array-like or dict
            Training inputs ``(n, in_features)``, or a pykan-style dataset dict
            (``train_input``, ``train_label``, optionally ``test_input``/``test_label``, which
            are reported as ``test_loss`` but never used for early stopping or model selection).
        y : array-like, optional
            Targets ``(n, out)`` (or ``(n,)`` for one output) for ``"mse"``; integer class labels
            ``(n,)`` for ``"cross_entropy"``.
        steps : int, optional
            Optimizer steps (fewer if early stopping fires). Default 1000 unless ``epochs`` is given.
        epochs : int, optional
            Instead of ``steps``: passes over the training set (``ceil(n / batch_size)`` steps each).
        validation : (X_val, y_val), optional
            The validation set watched by early stopping and ``restore_best``.
        val_fraction : float
            Without ``validation``: hold out this fraction of the training rows (seeded shuffle).
        X_val, y_val
            Deprecated: use ``validation=(X_val, y_val)``.

        Returns
        -------
        dict
            The same keys as ``NumpyKAN.fit``'s history. Per record (every ``eval_every`` steps
            and at the last): ``step`` (optimizer steps done), ``epoch`` (passes over the
            training set done), ``train_loss`` (mean data loss since the previous record),
            ``val_loss``, ``test_loss`` (empty without such data), ``reg`` (mean penalty), ``lr``
            (the base rate). Then ``grid_update_steps`` (steps before which grids were updated),
            ``best`` (index of the best record by validation loss, else None), ``best_step``,
            ``best_epoch`` (0-based epoch of that record), ``best_loss`` and ``stop_reason``
            (``"completed"``, ``"early_stopping"`` or ``"diverged"``: a non-finite loss).
        """
        X_test = y_test = None
        if isinstance(X, dict):
            if y is not None:
                raise ValueError("pass either a dataset dict or X and y, not both")
            missing = {"train_input", "train_label"} - set(X)
            if missing:
                raise ValueError(f"the dataset dict lacks {sorted(missing)}")
            X_test, y_test = X.get("test_input"), X.get("test_label")
            X, y = X["train_input"], X["train_label"]
        elif y is None:
            raise ValueError("y is required (or pass a dataset dict as X)")
        if X_val is not None or y_val is not None:
            _renamed("X_val/y_val", "validation=(X_val, y_val)")
            if validation is not None:
                raise ValueError("pass validation=(X_val, y_val) or the deprecated X_val/y_val, not both")
            if (X_val is None) != (y_val is None):
                raise ValueError("pass both X_val and y_val, or neither")
            validation = (X_val, y_val)
        if not (isinstance(val_fraction, numbers.Real) and 0.0 <= val_fraction < 1.0):
            raise ValueError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
        if validation is not None and val_fraction:
            raise ValueError("pass validation or val_fraction, not both")
        if validation is not None and (not isinstance(validation, (tuple, list)) or len(validation) != 2):
            raise ValueError("validation must be a pair (X_val, y_val)")
        X, y = self._prepare(X, y, "")
        gen = torch.Generator().manual_seed(self.seed)
        if val_fraction:
            n_val = int(round(val_fraction * X.shape[0]))
            if not 1 <= n_val < X.shape[0]:
                raise ValueError(f"val_fraction={val_fraction} of {X.shape[0]} rows leaves no validation "
                                 "or no training rows")
            perm = torch.randperm(X.shape[0], generator=gen).to(X.device)
            validation = (X[perm[:n_val]], y[perm[:n_val]])
            X, y = X[perm[n_val:]], y[perm[n_val:]]
        has_val = validation is not None
        if has_val:
            X_v, y_v = self._prepare(validation[0], validation[1], "_val")
        elif self.patience is not None:
            raise ValueError("early stopping (patience) needs a validation set: pass validation=(X_val, y_val) "
                             "or val_fraction")
        if X_test is not None and y_test is not None:
            X_test, y_test = self._prepare(X_test, y_test, "_test")
        n = X.shape[0]
        bs = n if self.batch_size is None else min(self.batch_size, n)
        per_epoch = math.ceil(n / bs)
        if steps is not None and epochs is not None:
            raise ValueError("pass steps or epochs, not both")
        if epochs is not None:
            steps = _positive("epochs", epochs, integer=True) * per_epoch
        if self.stage_steps is not None:
            if steps is not None and steps != sum(self.stage_steps):
                raise ValueError(f"stage_steps sum to {sum(self.stage_steps)} steps but steps/epochs ask for {steps}")
            steps = sum(self.stage_steps)
        steps = 1000 if steps is None else _positive("steps", steps, integer=True)
        until = steps if self.grid_update_until is None else int(self.grid_update_until)
        # Stage s of the grid schedule starts at step starts[s].
        stages: Dict[int, int] = {}
        if self.grid_schedule is not None:
            S = len(self.grid_schedule)
            if self.stage_steps is not None:
                starts = [sum(self.stage_steps[:j]) for j in range(S)]
            else:
                if steps < S:
                    raise ValueError(f"{steps} steps cannot hold {S} grid stages")
                starts = [(j * steps) // S for j in range(S)]
            stages = dict(zip(starts, self.grid_schedule))
        stage_start, stage_end = 0, steps

        tqdm = _progress_bar_class(self.progress)
        order, cursor = torch.randperm(n, generator=gen), 0
        self.model.train()
        self._lbfgs_last = None
        self.optimizer = self._build_optimizer()
        self.best_step, self.stopped_early = None, False
        best, best_state, bad_evals = math.inf, None, 0
        hist: Dict[str, Any] = {k: [] for k in ("step", "epoch", "train_loss", "val_loss", "test_loss", "reg",
                                                "lr", "grid_update_steps", "refine_steps")}
        best_size = None
        hist.update(best=None, best_step=None, best_epoch=None, best_loss=None, stop_reason="completed")
        run_loss, run_reg, run_n = 0.0, 0.0, 0

        bar = tqdm(total=steps, disable=not self.progress, desc="fit", leave=True)
        try:
            for step in range(steps):
                if step in stages:
                    size = stages[step]
                    later = [b for b in stages if b > step]
                    stage_start, stage_end = step, (min(later) if later else steps)
                    if _grid_size(self.model) != size:
                        self.model.refine(size)
                        hist["refine_steps"].append((step, size))
                        if self.stage_lr == "restart":
                            self.optimizer = self._build_optimizer()
                        else:
                            self._sync_parameters()
                if self.grid_update_every and step % self.grid_update_every == 0 and step < until:
                    pick = torch.randperm(n, generator=gen)[:self.grid_update_samples].to(X.device)
                    self._update_grids(X[pick])
                    hist["grid_update_steps"].append(step)
                if bs == n:
                    xb, yb = X, y
                else:
                    if cursor + bs > n:
                        order, cursor = torch.randperm(n, generator=gen), 0
                    idx = order[cursor:cursor + bs].to(X.device)
                    cursor += bs
                    xb, yb = X[idx], y[idx]
                if self.stage_lr == "restart":
                    self._set_lr(step - stage_start, stage_end - stage_start)
                else:
                    self._set_lr(step, steps)
                parts: Dict[str, Any] = {}

                scale = self._lbfgs_rescale() if self.optimizer_name == "lbfgs" else 1.0
                if self.reg_schedule == "linear":
                    self._reg_factor = step / (steps - 1) if steps > 1 else 1.0

                fused = None
                if (self._fused is not None and self._penalty is None and self.loss == "mse"
                        and FusedMSE.supports(self.model, xb, yb)):
                    self.optimizer.zero_grad(set_to_none=True)  # parameters without a gradient stay None
                    fused = self._fused.bind(self.model, xb, yb)

                def closure() -> torch.Tensor:
                    assert self.optimizer is not None
                    if fused is not None:  # one native call: forward, loss, backward (kancore/fused.py)
                        value = fused()  # overwrites the gradients
                        if scale != 1.0:
                            for p in self.model.parameters():
                                if p.grad is not None:
                                    p.grad.mul_(scale)
                        data = torch.tensor(value, dtype=torch.float64)
                        parts["data"], parts["reg"], parts["total"] = data, None, data * scale
                        return parts["total"]
                    self.optimizer.zero_grad(set_to_none=True)
                    total, data, penalty = self._objective(xb, yb)
                    if scale != 1.0:
                        total = total * scale
                    total.backward()
                    parts["data"], parts["reg"], parts["total"] = data.detach(), penalty, total.detach()
                    return total

                if self.optimizer_name == "lbfgs":
                    self.optimizer.step(closure)
                    self._lbfgs_last = float(parts["total"]) / scale  # once per step, not per evaluation
                else:
                    closure()
                    if self.grad_clip is not None:
                        nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
                    self.optimizer.step()
                run_loss += float(parts["data"])
                run_reg += 0.0 if parts["reg"] is None else float(parts["reg"].detach())
                run_n += 1
                bar.update(1)
                diverged = not math.isfinite(run_loss)

                if (step + 1) % self.eval_every == 0 or step == steps - 1 or diverged:
                    hist["step"].append(step + 1)
                    hist["epoch"].append((step + 1) / per_epoch)
                    hist["train_loss"].append(run_loss / run_n)
                    hist["reg"].append(run_reg / run_n)
                    g0 = self.optimizer.param_groups[0]  # base lr times the schedule, whatever group comes first
                    hist["lr"].append(self.lr * g0["lr"] / g0["initial_lr"] if g0.get("initial_lr") else g0["lr"])
                    run_loss, run_reg, run_n = 0.0, 0.0, 0
                    post = {"loss": f"{hist['train_loss'][-1]:.3g}"}
                    if X_test is not None:
                        hist["test_loss"].append(self.evaluate(X_test, y_test))
                    if has_val:
                        val = self.evaluate(X_v, y_v)
                        hist["val_loss"].append(val)
                        post["val"] = f"{val:.3g}"
                        if val < best:
                            best, bad_evals, self.best_step = val, 0, step + 1
                            hist["best"] = len(hist["val_loss"]) - 1
                            best_state = copy.deepcopy(self.model.state_dict())
                            best_size = _grid_size(self.model)
                        else:
                            bad_evals += 1
                    bar.set_postfix(post, refresh=False)
                    if diverged:
                        hist["stop_reason"] = "diverged"
                        break
                    if self.patience is not None and bad_evals >= self.patience:
                        self.stopped_early = True
                        hist["stop_reason"] = "early_stopping"
                        break
        finally:
            bar.close()
        if has_val and self.restore_best and best_state is not None:
            if self.grid_schedule is not None and best_size is not None and _grid_size(self.model) != best_size:
                self.model.refine(best_size)  # the best weights are from an earlier stage: its shapes
            self.model.load_state_dict(best_state)
        if hist["best"] is not None:
            hist["best_step"] = self.best_step
            hist["best_epoch"] = (self.best_step - 1) // per_epoch
            hist["best_loss"] = best
        return hist


def fit(model: nn.Module, X: Any, y: Any = None, *, steps: Optional[int] = None, epochs: Optional[int] = None,
        validation: Optional[Tuple[Any, Any]] = None, val_fraction: float = 0.0,
        X_val: Any = None, y_val: Any = None, **options: Any) -> Dict[str, Any]:
    """Train ``model`` in place and return the history.

    ``kancore.fit(model, X, y, steps=..., validation=(X_val, y_val), **options)`` is
    ``Trainer(model, **options).fit(X, y, steps=..., validation=...)``.

    Parameters
    ----------
    model : nn.Module
        Trained in place.
    X, y, steps, epochs, validation, val_fraction, X_val, y_val
        The data and the length of training, as in ``Trainer.fit``.
    **options
        ``Trainer``'s parameters: ``lr``, ``lr_spline``, ``batch_size``, ``patience``,
        ``grid_update_every``, ``reg_weight``, ``optimizer``, ``progress``...

    Returns
    -------
    dict
        The history (``Trainer.fit``; the same keys as ``NumpyKAN.fit``'s).

    Examples
    --------
    >>> import torch, kancore
    >>> data = kancore.create_dataset(lambda x: torch.sin(x[:, 0]) * x[:, 1], n_var=2, train_num=200)
    >>> model = kancore.KAN([2, 4, 1])
    >>> history = kancore.fit(model, data, steps=20, progress=False)
    >>> sorted(history)[:3]
    ['best', 'best_epoch', 'best_loss']
    """
    return Trainer(model, **options).fit(X, y, steps=steps, epochs=epochs, validation=validation,
                                         val_fraction=val_fraction, X_val=X_val, y_val=y_val)


def create_dataset(f: Callable[[torch.Tensor], Any], n_var: int = 2,
                   ranges: Union[Sequence[float], Sequence[Sequence[float]]] = (-2, 2),
                   train_num: int = 1000, test_num: int = 1000, seed: int = 0,
                   device: Union[str, torch.device] = "cpu",
                   dtype: torch.dtype = torch.float32) -> Dict[str, torch.Tensor]:
    """Sample inputs uniformly on ``ranges`` (one (lo, hi) for every variable, or one per variable)
    and label them with ``f`` (a function of an (n, n_var) tensor returning (n,) or (n, k)).
    The same seed gives the same data.

    Parameters
    ----------
    f : callable
        Maps an ``(n, n_var)`` tensor to ``(n,)`` or ``(n, k)`` labels.
    n_var : int
        Input variables.
    ranges : (float, float) or sequence of them
        One ``(lo, hi)`` for every variable, or one per variable.
    train_num, test_num : int
        Samples in each split.
    seed : int
        Seed of the sampling.
    device, dtype
        Where and in which dtype the tensors are returned.

    Returns
    -------
    dict
        pykan's dataset: ``train_input`` ``(train_num, n_var)``, ``train_label``
        ``(train_num, k)``, ``test_input``, ``test_label``.
    """
    n_var = _positive("n_var", n_var, integer=True)
    train_num = _positive("train_num", train_num, integer=True)
    test_num = _positive("test_num", test_num, integer=True)
    r = torch.as_tensor(ranges, dtype=torch.float64)
    if r.shape == (2,):
        r = r.expand(n_var, 2)
    if r.shape != (n_var, 2) or not torch.isfinite(r).all() or not (r[:, 0] < r[:, 1]).all():
        raise ValueError(f"ranges must be (lo, hi) or {n_var} pairs of finite lo < hi, got {ranges!r}")
    gen = torch.Generator().manual_seed(int(seed))

    def sample(num: int) -> Tuple[torch.Tensor, torch.Tensor]:
        u = torch.rand(num, n_var, generator=gen, dtype=torch.float64)
        x = (r[:, 0] + u * (r[:, 1] - r[:, 0])).to(dtype)
        y = torch.as_tensor(f(x))
        if y.dim() == 1:
            y = y.unsqueeze(1)
        if y.dim() != 2 or y.shape[0] != num:
            raise ValueError(f"f must return shape ({num},) or ({num}, k) for {num} inputs, got {tuple(y.shape)}")
        return x.to(device), y.to(device=device, dtype=dtype)

    train_input, train_label = sample(train_num)
    test_input, test_label = sample(test_num)
    return {"train_input": train_input, "train_label": train_label,
            "test_input": test_input, "test_label": test_label}

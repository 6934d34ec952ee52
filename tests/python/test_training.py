"""kancore.fit / Trainer / create_dataset: the training loop's contract (python/kancore/training.py).

Tiny networks and a few hundred steps at most: every test runs in about a second.
"""
import math

import pytest

torch = pytest.importorskip("torch")

import kancore  # noqa: E402
from kancore import KAN  # noqa: E402
from kancore.training import Trainer, create_dataset, fit, lr_factor, spline_parameter_names  # noqa: E402


def _data(n=256, seed=0):
    return create_dataset(lambda x: torch.sin(x[:, 0]) * x[:, 1], n_var=2, train_num=n, test_num=128, seed=seed)


@pytest.mark.parametrize("kw", [dict(grid_range=(-2, 2)), dict(kind="c0", num_control_points=8),
                                dict(layernorm=True, grid_range=(-2, 2))], ids=["bspline", "c0", "layernorm"])
def test_fit_reduces_the_loss_and_is_repeatable(kw):
    ds = _data()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = KAN([2, 3, 1], **kw)
        before = torch.nn.functional.mse_loss(model(ds["test_input"]), ds["test_label"]).item()
        hist = fit(model, ds, steps=60, lr=2e-2, progress=False, eval_every=20)
        runs.append(hist)
    assert hist["step"] == [20, 40, 60]
    assert hist["test_loss"][-1] < 0.5 * before
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert runs[0] == runs[1]  # fixed seeds: the same run twice


def test_kancore_fit_is_exported_and_plain_modules_train():
    ds = _data()
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.SiLU(), torch.nn.Linear(16, 1))
    hist = kancore.fit(mlp, ds["train_input"], ds["train_label"][:, 0], steps=50, lr=1e-2, progress=False,
                       batch_size=32, eval_every=25)
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert hist["val_loss"] == [] and hist["test_loss"] == []


def test_early_stopping_restores_the_best_weights():
    ds = _data()
    torch.manual_seed(0)
    model = KAN([2, 3, 1], kind="c0", num_control_points=6)
    # A validation set whose labels disagree with the training labels: its loss gets worse as the
    # model learns, so training must stop and come back to an early state.
    x_val, y_val = ds["test_input"], -3 * ds["test_label"]
    trainer = Trainer(model, lr=3e-2, eval_every=1, patience=3, progress=False)
    hist = trainer.fit(ds["train_input"], ds["train_label"], steps=200, validation=(x_val, y_val))
    assert trainer.stopped_early and len(hist["step"]) < 200 and hist["stop_reason"] == "early_stopping"
    assert hist["best_step"] == trainer.best_step and hist["best_loss"] == min(hist["val_loss"])
    assert hist["val_loss"][hist["best"]] == hist["best_loss"]
    best = min(hist["val_loss"])
    assert trainer.best_step == hist["step"][hist["val_loss"].index(best)]
    assert len(hist["step"]) == hist["step"].index(trainer.best_step) + 1 + 3  # exactly `patience` bad evals
    assert trainer.evaluate(x_val, y_val) == best  # the restored weights are the best ones, bitwise
    assert trainer.evaluate(x_val, y_val) < hist["val_loss"][-1]


def test_grid_update_schedule_changes_grids_and_training_goes_on():
    ds = _data()
    torch.manual_seed(0)
    model = KAN([2, 3, 1], grid_size=4)
    grid0 = model.layers[0].grid.clone()
    hist = fit(model, ds, steps=40, lr=2e-2, grid_update_every=5, grid_update_until=12,
               grid_update_samples=100, progress=False, eval_every=10)
    assert hist["grid_update_steps"] == [0, 5, 10]
    # Inputs span [-2, 2]; the initial grid is efficient-kan's [-1, 1]: the knots must have moved.
    assert not torch.equal(model.layers[0].grid, grid0)
    assert model.layers[0].grid[:, 3].max() < -1.5
    assert all(math.isfinite(v) for v in hist["train_loss"])
    assert hist["test_loss"][-1] < hist["test_loss"][0]

    torch.manual_seed(0)
    c0 = KAN([2, 3, 1], kind="c0", num_control_points=6)
    assert c0.layers[0].input_scale is None
    hist = fit(c0, ds, steps=20, grid_update_every=10, progress=False)
    assert hist["grid_update_steps"] == [0, 10]
    assert c0.layers[0].input_scale is not None and c0.layers[1].input_scale is not None
    assert math.isfinite(hist["train_loss"][-1])


@pytest.mark.parametrize("kind", ["bspline", "c0"])
@pytest.mark.parametrize("stage_lr", ["continue", "restart"])
def test_grid_schedule_refines_at_each_stage(kind, stage_lr):
    ds = _data()
    torch.manual_seed(0)
    sizes = [3, 6, 12] if kind == "bspline" else [4, 7, 13]
    model = KAN([2, 3, 1], **({"grid_size": 3} if kind == "bspline" else {"kind": "c0", "num_control_points": 4}))
    hist = fit(model, ds, steps=30, lr=2e-2, grid_schedule=sizes, stage_lr=stage_lr, progress=False,
               eval_every=5, warmup_steps=2)
    assert hist["refine_steps"] == [(10, sizes[1]), (20, sizes[2])]
    size = model.layers[0].grid_size if kind == "bspline" else model.layers[0].num_control_points
    assert size == sizes[2]
    assert all(math.isfinite(v) for v in hist["train_loss"])
    lrs = hist["lr"]  # recorded every 5 steps: restart rises again after each refine
    if stage_lr == "restart":
        assert lrs[2] > lrs[1] and lrs[4] > lrs[3]
    else:
        assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_grid_schedule_with_stage_steps_and_restore_best_across_stages():
    ds = _data()
    torch.manual_seed(1)
    model = KAN([2, 3, 1], grid_size=6)
    # The last stage coarsens the grid (lossy), so the best weights are likely of the first
    # stage: restore_best must bring back their grid size with them.
    trainer = Trainer(model, lr=2e-2, grid_schedule=[6, 2], stage_steps=[20, 5], progress=False, eval_every=5)
    hist = trainer.fit(ds["train_input"], ds["train_label"], validation=(ds["test_input"], ds["test_label"]))
    assert len(hist["train_loss"]) == 5 and hist["refine_steps"] == [(20, 2)]
    assert model.layers[0].grid_size == (6 if hist["best_step"] <= 20 else 2)
    assert trainer.evaluate(ds["test_input"], ds["test_label"]) == pytest.approx(hist["best_loss"], rel=1e-6)
    with pytest.raises(ValueError, match="stage_steps"):
        Trainer(model, grid_schedule=[3, 6], stage_steps=[5])
    with pytest.raises(ValueError, match="stage_lr"):
        Trainer(model, grid_schedule=[3, 6], stage_lr="sometimes")
    with pytest.raises(ValueError, match="refine"):
        Trainer(torch.nn.Linear(2, 1), grid_schedule=[3, 6])
    with pytest.raises(ValueError, match="stage_steps sum"):
        Trainer(model, grid_schedule=[3, 6], stage_steps=[5, 5], progress=False).fit(ds, steps=11)


def test_replaced_parameters_get_fresh_optimizer_state():
    ds = _data()
    torch.manual_seed(0)
    model = KAN([2, 3, 1], kind="c0", num_control_points=5, layernorm=True)
    trainer = Trainer(model, lr=1e-2, progress=False)
    trainer.optimizer = trainer._build_optimizer()
    loss = torch.nn.functional.mse_loss(model(ds["train_input"]), ds["train_label"])
    loss.backward()
    trainer.optimizer.step()
    old = model.layers[0].kan_weight
    kept = model.norms[0].weight
    assert old in trainer.optimizer.state and kept in trainer.optimizer.state
    model.refine(9)  # replaces the tables (new K)
    trainer._sync_parameters()
    params = [p for g in trainer.optimizer.param_groups for p in g["params"]]
    assert any(p is model.layers[0].kan_weight for p in params)
    assert not any(p is old for p in params)
    assert old not in trainer.optimizer.state and model.layers[0].kan_weight not in trainer.optimizer.state
    assert kept in trainer.optimizer.state  # untouched parameters keep their Adam moments
    trainer.optimizer.zero_grad()
    torch.nn.functional.mse_loss(model(ds["train_input"]), ds["train_label"]).backward()
    trainer.optimizer.step()  # works with the new shapes
    assert trainer.optimizer.state[model.layers[0].kan_weight]["exp_avg"].shape == (2, 9, 3)


@pytest.mark.parametrize("kind", ["bspline", "c0"])
def test_parameter_groups_have_the_right_learning_rates(kind):
    torch.manual_seed(0)
    model = KAN([2, 3, 1], kind=kind, layernorm=True)
    trainer = Trainer(model, lr=1e-3, lr_spline=1e-2, progress=False)
    opt = trainer._build_optimizer()
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["base"]["lr"] == 1e-3 and groups["spline"]["lr"] == pytest.approx(1e-2)
    spline = set(groups["spline"]["param_names"])
    if kind == "c0":
        assert spline == {"layers.0.kan_weight", "layers.1.kan_weight"}
        assert set(groups["base"]["param_names"]) == {"norms.0.weight", "norms.0.bias"}
    else:
        assert spline == {"layers.0.spline_weight", "layers.1.spline_weight"}
        assert "layers.0.spline_scaler" in groups["base"]["param_names"]
        assert "layers.1.base_weight" in groups["base"]["param_names"]
    # Every trainable parameter is in exactly one group, as the object the model holds.
    named = dict(model.named_parameters())
    for g in opt.param_groups:
        assert all(p is named[n] for n, p in zip(g["param_names"], g["params"]))
    assert sum(len(g["params"]) for g in opt.param_groups) == len(named)
    dct = KAN([2, 2], kind="c0", variant="DCT")
    assert spline_parameter_names(dct) == ["layers.0.dct_weight"]


def test_warmup_cosine_schedule_values():
    assert [lr_factor(s, 10, 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 10, 4) == 1.0  # cosine starts at 1 after the warmup
    # the cosine would reach min_lr_ratio one step after the last, so the last step still learns
    assert lr_factor(9, 10, 4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 6)))
    assert lr_factor(9, 10, 4) > 0
    assert lr_factor(9, 10, 4, min_lr_ratio=0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 5 / 6)))
    assert lr_factor(6, 11, 0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 6 / 11)))
    assert lr_factor(0, 1, 0) == 1.0  # a single step runs at the full rate
    # The optimizer really runs at those rates (both groups scaled alike).
    ds = _data(64)
    torch.manual_seed(0)
    model = KAN([2, 1], kind="c0", num_control_points=4)
    hist = fit(model, ds, steps=10, lr=0.1, warmup_steps=4, min_lr_ratio=0.1, eval_every=1, progress=False)
    assert hist["lr"] == pytest.approx([0.1 * lr_factor(s, 10, 4, 0.1) for s in range(10)])
    hist = fit(model, ds, steps=5, lr=0.1, schedule="constant", eval_every=1, progress=False)
    assert hist["lr"] == pytest.approx([0.1] * 5)


def test_gradient_clipping_bounds_the_step_gradient(monkeypatch):
    ds = _data(64)
    torch.manual_seed(0)
    model = KAN([2, 3, 1], kind="c0", num_control_points=5)
    norms = []
    build = Trainer._build_optimizer

    def build_and_watch(self):
        opt = build(self)
        opt.register_step_pre_hook(lambda o, a, k: norms.append(
            math.sqrt(sum(float(p.grad.square().sum()) for g in o.param_groups for p in g["params"]))))
        return opt

    monkeypatch.setattr(Trainer, "_build_optimizer", build_and_watch)
    fit(model, ds["train_input"], 100 * ds["train_label"], steps=5, grad_clip=0.5, progress=False)
    assert len(norms) == 5 and max(norms) <= 0.5 + 1e-6


def test_lbfgs_runs_and_reduces_the_loss():
    ds = _data()
    torch.manual_seed(0)
    model = KAN([2, 3, 1], kind="c0", num_control_points=6)
    hist = fit(model, ds, steps=4, optimizer="lbfgs", lr=1.0, eval_every=1, grid_update_every=2, progress=False)
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    with pytest.raises(ValueError, match="lbfgs"):
        Trainer(model, optimizer="lbfgs", lr_spline=3.0)


@pytest.mark.parametrize("reg", ["auto", "coef", "smoothness", "edge_scale"])
@pytest.mark.parametrize("kind", ["bspline", "c0"])
def test_penalties_run_and_are_recorded(reg, kind):
    ds = _data(64)
    torch.manual_seed(0)
    model = KAN([2, 2, 1], kind=kind)
    hist = fit(model, ds, steps=4, reg_weight=1e-3, reg=reg, eval_every=2, batch_size=16, progress=False)
    assert all(r > 0 and math.isfinite(r) for r in hist["reg"])


def test_cross_entropy_classification():
    torch.manual_seed(0)
    x = torch.randn(200, 2)
    y = (x[:, 0] * x[:, 1] > 0).long()
    model = KAN([2, 4, 2], kind="c0", num_control_points=6)
    hist = fit(model, x, y, loss="cross_entropy", steps=80, lr=3e-2, eval_every=40, progress=False,
               validation=(x, y))
    assert hist["val_loss"][-1] < math.log(2) * 0.8
    with pytest.raises(ValueError, match="at least two outputs"):
        fit(KAN([2, 3, 1]), x, y, loss="cross_entropy", steps=1, progress=False)
    with pytest.raises(ValueError, match="integer class labels"):
        fit(model, x, y.double(), loss="cross_entropy", steps=1, progress=False)


def test_deprecated_names_warn_and_still_work():
    ds = _data()
    x_val, y_val = ds["test_input"], ds["test_label"]
    runs = {}
    for old in (True, False):
        torch.manual_seed(0)
        model = KAN([2, 3, 1])
        if old:
            with pytest.warns(FutureWarning, match="spline_lr_mult"):
                trainer = Trainer(model, lr=1e-2, spline_lr_mult=3.0, progress=False, eval_every=5)
            with pytest.warns(FutureWarning, match="X_val"):
                hist = trainer.fit(ds["train_input"], ds["train_label"], steps=10, X_val=x_val, y_val=y_val)
        else:
            trainer = Trainer(model, lr=1e-2, lr_spline=3e-2, progress=False, eval_every=5)
            hist = trainer.fit(ds["train_input"], ds["train_label"], steps=10, validation=(x_val, y_val))
        runs[old] = hist
    assert runs[True] == runs[False]
    with pytest.raises(ValueError, match="not both"):
        with pytest.warns(FutureWarning):
            fit(KAN([2, 3, 1]), ds, steps=1, progress=False, lr_spline=1.0, spline_lr_mult=2.0)


def test_epochs_val_fraction_and_the_history_keys():
    ds = _data()
    torch.manual_seed(0)
    model = KAN([2, 3, 1])
    n = ds["train_input"].shape[0]
    hist = fit(model, ds["train_input"], ds["train_label"], epochs=3, batch_size=64, val_fraction=0.25,
               eval_every=1, progress=False)
    per_epoch = math.ceil((n - round(0.25 * n)) / 64)
    assert hist["step"][-1] == 3 * per_epoch and hist["epoch"][-1] == 3.0
    assert len(hist["val_loss"]) == len(hist["step"]) and hist["stop_reason"] == "completed"
    assert hist["best_epoch"] == (hist["best_step"] - 1) // per_epoch
    assert set(hist) == set(kancore.training.HISTORY_KEYS)
    with pytest.raises(ValueError, match="steps or epochs"):
        fit(model, ds, steps=3, epochs=1, progress=False)
    with pytest.raises(ValueError, match="val_fraction"):
        fit(model, ds, steps=3, val_fraction=1.5, progress=False)


def test_fit_rejects_bad_arguments():
    model = KAN([2, 1], kind="c0")
    x, y = torch.zeros(4, 2), torch.zeros(4, 1)
    with pytest.raises(ValueError, match="validation set"):
        fit(model, x, y, patience=3, progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(model, optimizer="sgd")
    with pytest.raises(ValueError, match="rows"):
        fit(model, x, y[:3], progress=False)
    with pytest.raises(ValueError, match="grid updates"):
        Trainer(torch.nn.Linear(2, 1), grid_update_every=5)
    with pytest.raises(ValueError, match="regularization_loss"):
        Trainer(torch.nn.Linear(2, 1), reg_weight=1.0)
    with pytest.raises(ValueError, match="steps"):
        fit(model, x, y, steps=0, progress=False)


def test_create_dataset_shapes_ranges_and_seeding():
    f = lambda x: x[:, [0]] + x[:, [1]] ** 2  # noqa: E731
    a = create_dataset(f, n_var=2, train_num=50, test_num=20, seed=3)
    b = create_dataset(f, n_var=2, train_num=50, test_num=20, seed=3)
    c = create_dataset(f, n_var=2, train_num=50, test_num=20, seed=4)
    assert a["train_input"].shape == (50, 2) and a["train_label"].shape == (50, 1)
    assert a["test_input"].shape == (20, 2) and a["test_label"].shape == (20, 1)
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["train_input"], c["train_input"])
    assert not torch.equal(a["train_input"][:20], a["test_input"])  # train and test are different draws
    torch.testing.assert_close(a["train_label"], f(a["train_input"]))
    assert a["train_input"].min() >= -2 and a["train_input"].max() <= 2
    d = create_dataset(lambda x: x.sum(1), n_var=3, ranges=[(0, 1), (5, 6), (-1, 0)], train_num=100, test_num=5)
    lo, hi = d["train_input"].min(0).values, d["train_input"].max(0).values
    assert (lo >= torch.tensor([0.0, 5.0, -1.0])).all() and (hi <= torch.tensor([1.0, 6.0, 0.0])).all()
    assert d["train_label"].shape == (100, 1)
    with pytest.raises(ValueError, match="ranges"):
        create_dataset(f, ranges=(1, -1))
    with pytest.raises(ValueError, match="f must return"):
        create_dataset(lambda x: x[:3], train_num=10)


def test_lbfgs_divides_its_objective_when_the_loss_has_fallen_a_thousandfold():
    # torch's LBFGS drops curvature pairs with y.s <= 1e-10, which near a good fit is every
    # pair; the trainer rescales the objective instead (and restarts the history).
    model = KAN([2, 3, 1], grid_size=4)
    trainer = Trainer(model, optimizer="lbfgs", progress=False)
    trainer.optimizer = trainer._build_optimizer()
    assert trainer._lbfgs_rescale() == 1.0  # nothing measured yet
    trainer._lbfgs_last = 0.5
    first = trainer.optimizer
    assert trainer._lbfgs_rescale() == 1.0 and trainer.optimizer is first  # 0.5 * 1 >= 1e-3
    trainer._lbfgs_last = 2e-4
    assert trainer._lbfgs_rescale() == pytest.approx(5e3) and trainer.optimizer is not first
    second = trainer.optimizer
    trainer._lbfgs_last = 1e-6  # 1e-6 * 5e3 = 5e-3: not yet
    assert trainer._lbfgs_rescale() == pytest.approx(5e3) and trainer.optimizer is second
    # The history records the unscaled data loss.
    ds = _data()
    hist = kancore.fit(model, ds, optimizer="lbfgs", steps=30, progress=False, eval_every=1)
    with torch.no_grad():
        final = torch.nn.functional.mse_loss(model(ds["train_input"]), ds["train_label"]).item()
    assert hist["train_loss"][-1] >= final * 0.999 and hist["train_loss"][-1] < 1e-2


def test_linear_reg_schedule_ramps_the_penalty_weight_from_zero():
    ds = _data()
    torch.manual_seed(0)
    model = KAN([2, 3, 1], grid_size=4)
    trainer = Trainer(model, reg_weight=0.3, reg_schedule="linear", progress=False)
    factors = []
    objective = trainer._objective

    def spy(x, y):
        factors.append(trainer._reg_factor)
        return objective(x, y)

    trainer._objective = spy
    trainer.fit(ds, steps=5)
    assert factors == [0.0, 0.25, 0.5, 0.75, 1.0]
    ends = {}
    for sched, w in (("none", 0.0), ("linear", 0.05), ("constant", 0.05)):
        torch.manual_seed(0)
        m = KAN([2, 3, 1], grid_size=4)
        fit(m, ds, steps=200, lr=2e-2, reg_weight=w, reg_schedule="linear" if sched == "linear" else "constant",
            progress=False)
        ends[sched] = float(m.regularization_loss().detach())
    assert ends["linear"] < ends["none"] and ends["constant"] < ends["none"]
    with pytest.raises(ValueError, match="reg_schedule"):
        Trainer(model, reg_schedule="exponential")

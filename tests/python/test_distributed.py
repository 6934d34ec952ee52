"""Two-process DistributedDataParallel and FSDP2 (gloo, CPU) against one process on the same
global batch.

Each rank trains on its half of every global batch; DDP averages the gradients, so after N steps
the parameters and the losses must equal a single-process run on the whole batch (within float32
rounding: the gradient sums are split differently). Grid updates go through
``kancore.distributed.update_grid``, which adapts on the gathered samples; a run that updates
each rank's grids from its own half shows that the replicas then drift apart. FSDP2
(``fully_shard`` per layer) trains without grid updates, whose refit needs whole parameters.
"""
import os

import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
import torch.nn.functional as F  # noqa: E402

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

import kancore  # noqa: E402
import kancore.distributed  # noqa: E402

WORLD = 2
STEPS = 6
GRID_STEPS = (0, 3)  # steps that adapt the grids first
RUNS = ("c0", "bspline", "c0-unsynced", "c0-fsdp", "bspline-fsdp")


def _fsdp_available():
    try:
        from torch.distributed.device_mesh import init_device_mesh  # noqa: F401
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        return False
    return True


def _model(run):
    torch.manual_seed(0)
    if run.startswith("c0"):
        return kancore.KAN([3, 8, 2], kind="c0", num_control_points=9, layernorm=True)
    return kancore.KAN([3, 8, 2], grid_size=5)


def _global_batch(step):
    gen = torch.Generator().manual_seed(100 + step)
    x = torch.randn(64, 3, generator=gen) * 1.5
    y = torch.stack([torch.sin(x[:, 0]) * x[:, 1], torch.cos(x[:, 2])], dim=1)
    return x, y


def _train(model, step_fn, grid_fn, grid_steps=GRID_STEPS):
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for step in range(STEPS):
        x, y = _global_batch(step)
        if step in grid_steps:
            grid_fn(x)
        opt.zero_grad(set_to_none=True)
        loss = step_fn(x, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _worker(rank, store, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        for run in RUNS:
            if run.endswith("fsdp"):
                if _fsdp_available():
                    _fsdp_run(run, rank, out_dir)
                continue
            model = _model(run)
            ddp = torch.nn.parallel.DistributedDataParallel(model)

            def shard(t):
                return t.chunk(WORLD)[rank]

            def step_fn(x, y):
                return F.mse_loss(ddp(shard(x)), shard(y))

            def grid_fn(x):
                if run.endswith("unsynced"):
                    with torch.no_grad():  # each rank adapts to its own half: the replicas drift
                        model(shard(x), update_grid=True)
                else:
                    kancore.distributed.update_grid(ddp, shard(x))

            losses = _train(ddp, step_fn, grid_fn)
            torch.save({"losses": losses, "state": model.state_dict()}, os.path.join(out_dir, f"{run}-{rank}.pt"))
        dist.barrier()  # no rank tears the group down while the other still uses it
    finally:
        dist.destroy_process_group()
    # Success: leave without C++ static destructors (a joinable gloo thread there aborts the
    # process now and then under load; examples/ddp_train.py says more). Failures raise above.
    os._exit(0)


def _fsdp_run(run, rank, out_dir):
    """FSDP2 on the CPU: each layer's parameters sharded over the two ranks (no grid updates:
    kancore.distributed.update_grid needs whole parameters)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (WORLD,))
    model = _model(run)
    for layer in model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)

    def step_fn(x, y):
        return F.mse_loss(model(x.chunk(WORLD)[rank]), y.chunk(WORLD)[rank])

    losses = _train(model, step_fn, None, grid_steps=())
    state = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in model.state_dict().items()}
    torch.save({"losses": losses, "state": state}, os.path.join(out_dir, f"{run}-{rank}.pt"))


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(out / "store"), str(out)), nprocs=WORLD, join=True)
    return {(run, r): torch.load(out / f"{run}-{r}.pt") for run in RUNS for r in range(WORLD)
            if (out / f"{run}-{r}.pt").exists()}


def _single_process(run, grid_steps=GRID_STEPS):
    model = _model(run)

    def step_fn(x, y):
        return F.mse_loss(model(x), y)

    def grid_fn(x):
        with torch.no_grad():
            model(x, update_grid=True)

    return _train(model, step_fn, grid_fn, grid_steps), model.state_dict()


@pytest.mark.parametrize("run", ["c0", "bspline", "c0-fsdp", "bspline-fsdp"])
def test_two_processes_equal_one_process_on_the_global_batch(ddp_results, run):
    if (run, 0) not in ddp_results:
        pytest.skip("FSDP2 (torch.distributed.fsdp.fully_shard) is not in this torch")
    want_losses, want_state = _single_process(run, () if run.endswith("fsdp") else GRID_STEPS)
    ranks = [ddp_results[run, r] for r in range(WORLD)]
    for key, value in ranks[0]["state"].items():  # the replicas agree exactly
        assert torch.equal(value, ranks[1]["state"][key]), key
    # Equal halves: the global mean loss is the mean of the ranks' losses.
    got_losses = [sum(r["losses"][s] for r in ranks) / WORLD for s in range(STEPS)]
    torch.testing.assert_close(torch.tensor(got_losses), torch.tensor(want_losses), rtol=2e-5, atol=1e-7)
    assert want_state.keys() == ranks[0]["state"].keys()
    for key, want in want_state.items():
        torch.testing.assert_close(ranks[0]["state"][key], want, rtol=1e-4, atol=2e-5, msg=key)


def test_grid_updates_from_each_ranks_own_samples_make_the_replicas_drift(ddp_results):
    a, b = (ddp_results["c0-unsynced", r]["state"] for r in range(WORLD))
    assert any(not torch.equal(a[k], b[k]) for k in a), "unsynchronised grid updates left the ranks equal"


def test_update_grid_without_a_process_group_is_the_local_update():
    model, other = _model("c0"), _model("c0")
    x, _ = _global_batch(0)
    kancore.distributed.update_grid(model, x)
    with torch.no_grad():
        other(x, update_grid=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, other.state_dict()[key]), key
    assert torch.equal(kancore.distributed.gather_samples(x), x)
    with pytest.raises(TypeError, match="kancore.KAN"):
        kancore.distributed.update_grid(torch.nn.Linear(3, 2), x)


def test_the_torchrun_example_trains_and_saves_a_model_that_loads(tmp_path):
    import subprocess
    import sys

    import numpy as np

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = tmp_path / "ddp.safetensors"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          os.path.join(root, "examples", "ddp_train.py"), "--steps", "120", "--grid-every", "50",
                          "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    losses = [float(line.split()[-1]) for line in run.stdout.splitlines() if line.startswith("step")]
    assert len(losses) == 3 and losses[-1] < 0.5 * losses[0], run.stdout
    model = kancore.load(str(out))
    x = torch.rand(10, 3, dtype=torch.float32) * 4 - 2
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(kancore.NumpyKAN.load(str(out))(x.numpy()), want, rtol=1e-5, atol=1e-6)

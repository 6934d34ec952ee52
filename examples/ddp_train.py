"""Train a KAN with DistributedDataParallel on several processes, launched by torchrun.

    torchrun --standalone --nproc_per_node=2 examples/ddp_train.py            # CPU, gloo
    torchrun --standalone --nproc_per_node=4 examples/ddp_train.py --steps 2000  # one process per GPU, nccl

Each process takes its share of every batch (the global batch is --batch samples), DDP averages
the gradients, and every few hundred steps the grids adapt to the samples of all processes
(``kancore.distributed.update_grid``, a collective call: every rank calls it), so the replicas
stay identical. Rank 0 prints the losses and saves the model (``kancore.save``); the file loads
in one process, in NumPy (``kancore.NumpyKAN.load``) and in C++ like any other.

The task: fit f(x, y, z) = exp(-(x^2 + y^2) / 2) * sin(z) on [-2, 2]^3 (fresh samples each step).
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

import kancore
import kancore.distributed


def target(x: torch.Tensor) -> torch.Tensor:
    return (torch.exp(-(x[:, 0] ** 2 + x[:, 1] ** 2) / 2) * torch.sin(x[:, 2])).unsqueeze(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=1024, help="global batch, split over the processes")
    ap.add_argument("--grid-every", type=int, default=200, help="steps between grid updates (0: never)")
    ap.add_argument("--out", default="examples/output/ddp_kan.safetensors")
    a = ap.parse_args()

    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")  # torchrun sets RANK, WORLD_SIZE, ...
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))  # share the cores

    torch.manual_seed(0)  # the same initial model on every rank (DDP also broadcasts rank 0's)
    model = kancore.KAN([3, 8, 1], kind="c0", num_control_points=16, layernorm=True, device=device)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(ddp.parameters(), lr=3e-3)
    local = a.batch // world
    gen = torch.Generator(device=device).manual_seed(1000 + rank)  # each rank its own samples

    start = time.perf_counter()
    for step in range(a.steps):
        x = (torch.rand(local, 3, generator=gen, device=device) * 4 - 2)
        if a.grid_every and step % a.grid_every == 0:
            kancore.distributed.update_grid(ddp, x)  # collective: the grids of all samples
        loss = F.mse_loss(ddp(x), target(x))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == a.steps - 1:
            mean = loss.detach().clone()
            dist.all_reduce(mean)  # the global batch's loss
            if rank == 0:
                print(f"step {step:5d}  loss {mean.item() / world:.3e}", flush=True)

    if rank == 0:
        x = torch.rand(4096, 3, device=device) * 4 - 2
        with torch.no_grad():
            rmse = math.sqrt(F.mse_loss(model(x), target(x)).item())
        print(f"{world} processes, {a.steps} steps in {time.perf_counter() - start:.1f} s; "
              f"test RMSE {rmse:.3e}")
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        kancore.save(model, a.out)
        print(f"saved {a.out}")
    dist.barrier()  # every rank waits for rank 0's evaluation and save
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    # Leave without running C++ static destructors: with gloo, one of torch's background threads
    # can still be joinable then, and std::terminate would turn a finished run into SIGABRT
    # (seen under load, about one run in ten). Everything is written and flushed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

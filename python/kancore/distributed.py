"""Multi-process training: grid updates that every rank agrees on.

kancore trains inside PyTorch's own distributed engines (``DistributedDataParallel``, FSDP);
nothing here replaces them. DDP keeps the ranks' parameters equal by averaging gradients, but a
grid update (``update_grid``) rewrites the parameters and the grids from the samples a rank
sees, outside autograd: each rank would adapt to its own shard of the batch and the replicas
would drift apart. ``update_grid`` below gathers the samples of every rank, adapts on the whole
global batch (the grids a single process would get from that batch) and then copies rank 0's
result to the others, so the replicas stay bit-identical.

Changing the number of control points or the grid size (``refine``, ``update_grid`` with a new
``num_control_points``) replaces parameters: wrap the model in DDP again and rebuild the
optimizer afterwards (the layers' docstrings say the same for one process).

See docs/deploy.md and examples/ddp_train.py.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.distributed as dist
import torch.nn as nn

from .network import KAN

__all__ = ["gather_samples", "update_grid"]


def _ready() -> bool:
    return dist.is_available() and dist.is_initialized()


def gather_samples(x: torch.Tensor, group: Optional[Any] = None) -> torch.Tensor:
    """Concatenate the ranks' samples ``x`` (``(batch_r, ...)``, batch sizes may differ) in rank
    order, on every rank. Without an initialised process group, returns ``x``."""
    if not _ready():
        return x
    world = dist.get_world_size(group)
    # all_gather needs equal shapes: share the batch sizes, pad to the largest, trim.
    size = torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size, group=group)
    counts = [int(s.item()) for s in sizes]
    padded = x.new_zeros((max(counts),) + tuple(x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous(), group=group)
    return torch.cat([p[:n] for p, n in zip(parts, counts)])


@torch.no_grad()
def update_grid(model: nn.Module, x: torch.Tensor, group: Optional[Any] = None) -> None:
    """Adapt every layer's grid of a (DDP-wrapped) ``KAN`` to the samples of all ranks.

    Collective: every rank of ``group`` must call it, each with its own ``x``
    (``(batch_r, in_features)``). The layers adapt on the concatenation of all ranks' samples,
    as ``model(x_global, update_grid=True)`` would in one process; then every parameter and
    buffer is broadcast from the group's first rank, so no rank differs even by rounding.
    Without an initialised process group it updates the local model only.

    Parameters
    ----------
    model : KAN or DistributedDataParallel wrapping a KAN
        The network (FSDP-sharded models are not supported: their parameters are shards).
    x : torch.Tensor
        This rank's samples, on the model's device.
    group : ProcessGroup, optional
        The process group (default: the world).
    """
    module = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    if not isinstance(module, KAN):
        raise TypeError(f"expected a kancore.KAN (or DDP around one), got {type(module).__name__}")
    module(gather_samples(x, group), update_grid=True)
    if _ready():
        source = dist.get_global_rank(group, 0) if group is not None else 0
        for tensor in list(module.parameters()) + [b for b in module.buffers() if b is not None]:
            dist.broadcast(tensor.data, src=source, group=group)

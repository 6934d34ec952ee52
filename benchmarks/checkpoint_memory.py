#!/usr/bin/env python
"""Peak memory of one training step of a deep KAN with and without gradient checkpointing.

Each configuration runs in a fresh Python process, so its peak resident set size (VmHWM, which
never goes down) belongs to that step alone: the process builds the network and the batch,
runs one tiny step (which maps the code a step needs), records its resident size, runs ``model(x).square().mean().backward()`` once and reports the
peak minus that starting size. Parameters and their gradients are the same in every row, so the
differences are activations kept for the backward pass. CPU only (on CUDA use
``torch.cuda.max_memory_allocated``; the option works the same there).

Usage::

    python benchmarks/checkpoint_memory.py                  # both layer kinds, the default size
    python benchmarks/checkpoint_memory.py --layers 16 --width 128 --batch 8192 --json

Prints a markdown table (``--json``: one JSON object) of peak MiB per ``checkpoint`` setting.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

SETTINGS = ["False", "1", "True", "4"]


def _vm(field: str) -> float:
    """A /proc/self/status field in MiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def _one(kind: str, checkpoint: str, layers: int, width: int, batch: int) -> None:
    """Child process: one training step; prints the peak growth in MiB."""
    import torch

    import kancore

    torch.manual_seed(0)
    torch.set_num_threads(1)  # the same scratch memory in every row
    value = {"False": False, "True": True}.get(checkpoint)
    options = dict(kind="c0", num_control_points=8, layernorm=True) if kind == "c0" else dict(grid_size=5)
    model = kancore.KAN([width] * (layers + 1), checkpoint=int(checkpoint) if value is None else value,
                        **options)
    x = torch.randn(batch, width)
    # A tiny step first: the first backward pass maps code and starts threads (tens of MiB).
    small = kancore.KAN([4] * (layers + 1), checkpoint=model.checkpoint, **options)
    small(torch.randn(8, 4)).square().mean().backward()
    for p in model.parameters():  # allocate the gradients before measuring
        p.grad = torch.zeros_like(p)
    start = _vm("VmRSS")
    model(x).square().mean().backward()
    print(json.dumps({"peak_mib": _vm("VmHWM") - start}))


def measure(kind: str, checkpoint: str, layers: int, width: int, batch: int) -> float:
    # A fixed mmap threshold makes glibc map every large block and unmap it when freed, so the
    # resident size follows live tensors (its adaptive threshold would keep freed blocks on the
    # heap and count them in the peak).
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    out = subprocess.run([sys.executable, __file__, "--one", kind, checkpoint, "--layers", str(layers),
                          "--width", str(width), "--batch", str(batch)],
                         check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--kinds", default="c0,bspline")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="checkpoint values, the first is the baseline")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--one", nargs=2, metavar=("KIND", "CHECKPOINT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        _one(a.one[0], a.one[1], a.layers, a.width, a.batch)
        return
    activation = a.batch * a.width * 4 / 2**20
    settings = a.settings.split(",")
    results = {kind: {s: measure(kind, s, a.layers, a.width, a.batch) for s in settings}
               for kind in a.kinds.split(",")}
    if a.json:
        print(json.dumps({"layers": a.layers, "width": a.width, "batch": a.batch, "peak_mib": results}))
        return
    print(f"{a.layers} layers of width {a.width}, batch {a.batch}, float32 "
          f"(one activation = {activation:.1f} MiB); peak growth of one training step, MiB\n")
    print("| kind | " + " | ".join(f"checkpoint={s}" for s in settings) + " |")
    print("|---|" + "---:|" * len(settings))
    for kind, row in results.items():
        base = row[settings[0]]
        print(f"| {kind} | " + " | ".join(f"{v:.0f} ({v / base:.2f}x)" for v in row.values()) + " |")


if __name__ == "__main__":
    main()

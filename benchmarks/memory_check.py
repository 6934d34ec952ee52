#!/usr/bin/env python
"""kancore.memory_estimate against the measured memory of one training step, on the CPU.

Each model runs in a fresh process: it builds the model and a batch, runs a tiny step first (so
the code a step needs is mapped), records its resident size, runs one training step (forward,
backward, Adam step) and reports the peak resident size (VmHWM) minus that starting size. glibc's
mmap threshold is fixed so freed blocks leave the count. The model's parameters and buffers exist
before the start, so the measured growth is compared with the estimate's gradients + optimizer
state + activations + workspace (traced with ``input_shape``).

    python benchmarks/memory_check.py                 # the table
    python benchmarks/memory_check.py --json
    python benchmarks/memory_check.py --fit-to-memory # fit_to_memory's choice under two budgets

With ``--fit-to-memory``, ``kancore.fit_to_memory([64, 512, 512, 10], budget, 2048)`` picks a
network for each budget in a fresh process, which then measures its whole growth (model, one
training step) against the budget.

On a GPU, torch.cuda.max_memory_allocated is the measurement to compare with (not done here).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

MODELS = ("kan-c0", "kan-bspline", "transformer-kan-ffn", "cnn-kan-head")


def build(name):
    """(model, one sample's shape, batch size, loss function of (output, batch))."""
    import torch

    import kancore

    torch.manual_seed(0)
    if name == "kan-c0":
        return kancore.KAN([256] * 9, kind="c0", num_control_points=16, layernorm=True), (256,), 4096
    if name == "kan-bspline":
        return kancore.KAN([256] * 9, grid_size=5), (256,), 4096
    if name == "transformer-kan-ffn":
        class Block(torch.nn.Module):
            def __init__(self, d=128, heads=4):
                super().__init__()
                self.norm1, self.norm2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
                self.attn = torch.nn.MultiheadAttention(d, heads, batch_first=True)
                self.ffn = kancore.nn.KANFeedForward(d, 2 * d)

            def forward(self, x):
                h = self.norm1(x)
                x = x + self.attn(h, h, h, need_weights=False)[0]
                return x + self.ffn(self.norm2(x))

        return torch.nn.Sequential(Block(), Block()), (64, 128), 64
    if name == "cnn-kan-head":
        cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                  torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2))
        return torch.nn.Sequential(cnn, kancore.nn.KANClassifierHead(32 * 7 * 7, 10, hidden=(64,))), (1, 28, 28), 512
    raise ValueError(name)


def _vm(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("Linux only")


def _one(name):
    import torch

    import kancore

    torch.set_num_threads(1)
    kancore.set_num_threads(1)
    model, shape, batch = build(name)
    x = torch.randn(batch, *shape)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tiny, _, _ = build(name)
    t_opt = torch.optim.Adam(tiny.parameters(), lr=1e-3)
    tiny(torch.randn(2, *shape)).square().mean().backward()
    t_opt.step()
    del tiny, t_opt
    start = _vm("VmRSS")
    model(x).square().mean().backward()
    opt.step()
    measured = _vm("VmHWM") - start
    est = kancore.memory_estimate(model, batch, "adam", input_shape=shape)
    print(json.dumps({"measured": measured, "estimate": est}))


FIT_WIDTHS, FIT_BATCH, FIT_BUDGETS = [64, 512, 512, 10], 2048, (48 * 2 ** 20, 160 * 2 ** 20)


def _fit_one(budget):
    import torch

    import kancore

    torch.set_num_threads(1)
    kancore.set_num_threads(1)
    warm = kancore.KAN([4, 4, 2])  # map the code of a step
    w_opt = torch.optim.Adam(warm.parameters())
    warm(torch.randn(2, 4)).square().mean().backward()
    w_opt.step()
    x = torch.randn(FIT_BATCH, FIT_WIDTHS[0])
    start = _vm("VmRSS")
    model, report = kancore.fit_to_memory(FIT_WIDTHS, budget, FIT_BATCH)
    built = _vm("VmHWM") - start  # building includes the initial curve fits' temporaries
    with open("/proc/self/clear_refs", "w") as f:  # restart the peak (VmHWM) from the current size
        f.write("5")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for chunk in x.chunk(report["micro_batches"]):  # gradients accumulate over the chunks
        (model(chunk).square().sum() / FIT_BATCH).backward()
    opt.step()
    measured = _vm("VmHWM") - start
    print(json.dumps({"measured": measured, "built": built,
                      "report": {k: v for k, v in report.items() if k != "estimate"},
                      "estimate": report["estimate"]["total"]}))


def measure(name):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    out = subprocess.run([sys.executable, __file__, "--one", name], check=True, capture_output=True, text=True,
                         env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--fit-to-memory", action="store_true")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--fit-one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        _one(a.one)
        return
    if a.fit_one:
        _fit_one(a.fit_one)
        return
    if a.fit_to_memory:
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
        print(f"fit_to_memory({FIT_WIDTHS}, budget, batch {FIT_BATCH}); measured in a fresh process: the peak "
              "growth while building the model, and during one training step (the model included)\n")
        print("| budget | chosen widths | grid | checkpoint | micro-batches | parameters | estimate | building "
              "| training step |")
        print("|---:|---|---:|---|---:|---:|---:|---:|---:|")
        for budget in FIT_BUDGETS:
            out = subprocess.run([sys.executable, __file__, "--fit-one", str(budget)], check=True,
                                 capture_output=True, text=True, env=env).stdout
            r = json.loads(out.strip().splitlines()[-1])
            rep = r["report"]
            print(f"| {budget / 2 ** 20:.0f} MiB | {rep['widths']} | {rep['grid_size']} | {rep['checkpoint']} "
                  f"| {rep['micro_batches']} "
                  f"| {rep['parameters']} | {r['estimate'] / 2 ** 20:.1f} MiB | {r['built'] / 2 ** 20:.1f} MiB "
                  f"| {r['measured'] / 2 ** 20:.1f} MiB |")
        return
    rows = {name: measure(name) for name in a.models.split(",")}
    if a.json:
        print(json.dumps(rows))
        return
    mib = 2 ** 20
    print("| model | parameters | estimated step growth | measured step growth | error |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        e = r["estimate"]
        step = e["gradients"] + e["optimizer_state"] + e["activations"] + e["workspace"]
        err = (step - r["measured"]) / r["measured"]
        print(f"| {name} | {e['parameters'] / mib:.1f} MiB | {step / mib:.1f} MiB | {r['measured'] / mib:.1f} MiB "
              f"| {err:+.0%} |")


if __name__ == "__main__":
    main()

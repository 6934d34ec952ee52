#!/usr/bin/env python
"""KAN against MLPs matched by parameters and by FLOPs, on three real tasks, same training budget.

Tasks (all data offline):

* ``digits``: scikit-learn's bundled 8x8 digit images (1797, 10 classes, 25 % test split). A small
  CNN front end (Conv 1->8, ReLU, MaxPool) feeds a head: ``kancore.nn.KANClassifierHead`` [128, 32,
  10] or an MLP head. Metric: test accuracy.
* ``char-lm``: a character-level language model of this repository's own documentation (README.md
  and docs/*.md, about 95 KB; the last 10 % held out). A 2-layer pre-norm transformer (d = 64,
  4 heads, context 64) whose feed-forward blocks are ``kancore.nn.KANFeedForward(64, 64)`` or MLP
  blocks (GELU). Metric: held-out perplexity. Throughput at context lengths 32, 64 and 128.
* ``diabetes``: scikit-learn's bundled diabetes regression (442 patients, 10 features,
  standardised; 25 % test split). KAN [10, 8, 1] or an MLP. Metric: test RMSE (in the target's
  units).

For each task the KAN part is compared with an MLP of the same parameter count
(``kancore.mlp_with_same_parameters``-style widths) and one of the same forward FLOPs
(``kancore.flops`` counts both). Every model trains with AdamW (lr 3e-3, weight decay 1e-4,
warmup + cosine) for the same number of steps and batch size, over several seeds. Reported per
model: parameters, forward FLOPs per sample (per token for the language model), the estimated
training memory (``kancore.memory_estimate``, traced; it errs high by 15-40 %, see
benchmarks/memory_check.py), training throughput, and the metric as mean +- std over seeds.
CPU, one thread.

    python benchmarks/fair_comparison.py [--seeds 3] [--quick] [--out benchmarks/results]

Writes fair_comparison.json and fair_comparison.md to --out.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import kancore
from kancore.training import lr_factor

ROOT = Path(__file__).resolve().parents[1]


def _train(model, batches, steps, loss_fn, lr=3e-3):
    """AdamW with warmup + cosine; returns samples (or tokens) per second."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, steps, warm, 0.05))
    model.train()
    count, t0 = 0, time.perf_counter()
    for step in range(steps):
        x, y = batches(step)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        count += x.shape[0] * (x.shape[1] if x.dim() == 2 and x.dtype == torch.long else 1)
    return count / (time.perf_counter() - t0)


def _mlp_width_for(target, per_unit, fixed=0):
    return max(1, int(round((target - fixed) / per_unit)))


def _per_sample_flops(model, sample_shape, dtype=None):
    """Forward FLOPs one more sample costs (a KAN layer's once-per-call coefficient scaling left
    out): flops at two rows minus flops at one."""
    one = kancore.flops(model, (1, *sample_shape), backward=False, input_dtype=dtype)["forward"]
    two = kancore.flops(model, (2, *sample_shape), backward=False, input_dtype=dtype)["forward"]
    return two - one


def _describe(model, input_shape, dtype=None, per=1):
    f = _per_sample_flops(model, input_shape, dtype) // per
    mem = kancore.memory_estimate(model, 64, "adamw", input_shape=input_shape, input_dtype=dtype)["total"]
    return kancore.count_parameters(model), f, mem


# ---------------------------------------------------------------------------------------------
# digits: CNN front end, KAN or MLP head

def _digits_data(seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    idx_tr, idx_te = train_test_split(range(len(y)), test_size=0.25, random_state=seed, stratify=d.target)
    return x[idx_tr], y[idx_tr], x[idx_te], y[idx_te]


def _front():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())


def digits_models():
    kan_head = kancore.nn.KANClassifierHead(128, 10, hidden=(32,), kind="bspline", grid_size=5)
    p = kancore.count_parameters(kan_head)
    f = _per_sample_flops(kan_head, (128,))
    by_params = _mlp_width_for(p, 128 + 1 + 10, 10)  # (128+1) h + (h+1) 10
    by_flops = _mlp_width_for(f, 2 * (128 + 10))
    mlp = lambda h: nn.Sequential(nn.Linear(128, h), nn.SiLU(), nn.Linear(h, 10))  # noqa: E731
    return {"KAN head [128, 32, 10]": lambda: nn.Sequential(_front(), kancore.nn.KANClassifierHead(
                128, 10, hidden=(32,), kind="bspline", grid_size=5)),
            f"MLP head, same parameters (h={by_params})": lambda: nn.Sequential(_front(), mlp(by_params)),
            f"MLP head, same FLOPs (h={by_flops})": lambda: nn.Sequential(_front(), mlp(by_flops))}


def _run_rows(models, data, sample_shape, batch, loss_fn, lr, score, seeds, steps):
    """Every model trained on mini-batches of ``batch`` rows for each seed; ``data(seed)`` gives
    (x_train, y_train, x_test, y_test), ``score(model, x_test, y_test)`` the metric."""
    rows = {}
    for name, make in models.items():
        scores, speeds = [], []
        for seed in range(seeds):
            xtr, ytr, xte, yte = data(seed)
            torch.manual_seed(seed)
            model = make()
            gen = torch.Generator().manual_seed(seed)

            def batches(step):
                idx = torch.randint(0, len(ytr), (batch,), generator=gen)
                return xtr[idx], ytr[idx]

            speeds.append(_train(model, batches, steps, loss_fn, lr=lr))
            model.eval()
            with torch.no_grad():
                scores.append(score(model, xte, yte))
        params, fl, mem = _describe(model, sample_shape)
        rows[name] = {"parameters": params, "flops": fl, "memory": mem, "throughput": statistics.fmean(speeds),
                      "metric": scores}
    return rows


def run_digits(seeds, steps):
    rows = _run_rows(digits_models(), _digits_data, (1, 8, 8), 64, F.cross_entropy, 3e-3,
                     lambda m, x, y: float((m(x).argmax(1) == y).float().mean()), seeds, steps)
    return {"metric": "test accuracy", "higher_is_better": True, "unit": "samples/s", "rows": rows}


# ---------------------------------------------------------------------------------------------
# char-lm: transformer with KAN or MLP feed-forward blocks

class _Block(nn.Module):
    def __init__(self, d, heads, ffn):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ffn = ffn

    def forward(self, x):
        h = self.n1(x)
        L = x.shape[1]
        mask = torch.triu(torch.ones(L, L, dtype=torch.bool, device=x.device), 1)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.ffn(self.n2(x))


class _CharLM(nn.Module):
    def __init__(self, vocab, d, make_ffn, layers=2, heads=4, context=128):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(context, d))
        self.blocks = nn.Sequential(*[_Block(d, heads, make_ffn()) for _ in range(layers)])
        self.out = nn.Linear(d, vocab)

    def forward(self, idx):
        return self.out(self.blocks(self.emb(idx) + self.pos[: idx.shape[1]]))


def _corpus():
    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    cut = int(0.9 * len(data))
    return len(chars), data[:cut], data[cut:]


def charlm_models(d=64):
    kan = kancore.nn.KANFeedForward(d, d, kind="bspline", grid_size=5)
    p = kancore.count_parameters(kan)
    f = _per_sample_flops(kan, (d,))
    by_params = _mlp_width_for(p, 2 * d + 1, d)  # d h + h + h d + d
    by_flops = _mlp_width_for(f, 4 * d)

    def mlp(h):
        return lambda: nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, d))

    return {f"KAN FFN ({d} -> {d} -> {d})": lambda: kancore.nn.KANFeedForward(d, d, kind="bspline", grid_size=5),
            f"MLP FFN, same parameters (h={by_params})": mlp(by_params),
            f"MLP FFN, same FLOPs (h={by_flops})": mlp(by_flops)}


def run_charlm(seeds, steps, contexts=(32, 64, 128), context=64, d=64):
    vocab, train, held = _corpus()
    rows = {}
    for name, make_ffn in charlm_models(d).items():
        ppl, speeds = [], {}
        for seed in range(seeds):
            torch.manual_seed(seed)
            model = _CharLM(vocab, d, make_ffn)
            gen = torch.Generator().manual_seed(seed)

            def batches(step, L=context):
                starts = torch.randint(0, len(train) - L - 1, (32,), generator=gen)
                x = torch.stack([train[s:s + L] for s in starts])
                y = torch.stack([train[s + 1:s + L + 1] for s in starts])
                return x, y

            def loss_fn(logits, y):
                return F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))

            speed = _train(model, batches, steps, loss_fn)
            if seed == 0:
                speeds[context] = speed
                for L in contexts:  # throughput only: a few steps at each context length
                    if L != context:
                        speeds[L] = _train(model, lambda s, L=L: batches(s, L), max(3, steps // 20), loss_fn, lr=0.0)
            model.eval()
            with torch.no_grad():
                n = (len(held) - 1) // context
                x = held[: n * context].view(n, context)
                y = held[1: n * context + 1].view(n, context)
                ppl.append(math.exp(float(loss_fn(model(x), y))))
        params, fl, mem = _describe(model, (context,), torch.long, per=context)
        rows[name] = {"parameters": params, "flops": fl, "memory": mem, "throughput": speeds, "metric": ppl}
    return {"metric": "held-out perplexity", "higher_is_better": False, "unit": "tokens/s", "rows": rows}


# ---------------------------------------------------------------------------------------------
# diabetes: tabular regression

def _diabetes(seed):
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    X, y = load_diabetes(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=seed)
    mu, sd = Xtr.mean(0), Xtr.std(0)
    ym, ys = ytr.mean(), ytr.std()
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return t((Xtr - mu) / sd), t((ytr - ym) / ys).unsqueeze(1), t((Xte - mu) / sd), t(yte), ym, ys


def diabetes_models():
    kan = kancore.KAN([10, 8, 1], grid_size=5, grid_range=(-3, 3))
    p, f = kancore.count_parameters(kan), _per_sample_flops(kan, (10,))
    return {"KAN [10, 8, 1]": lambda: kancore.KAN([10, 8, 1], grid_size=5, grid_range=(-3, 3)),
            "MLP, same parameters": lambda: kancore.mlp_with_same_parameters([10, 8, 1], p),
            "MLP, same FLOPs": lambda: kancore.mlp_with_same_flops([10, 8, 1], f)}


def run_diabetes(seeds, steps):
    scaled = {}

    def data(seed):
        xtr, ytr, xte, yte, ym, ys = _diabetes(seed)
        scaled["mean"], scaled["std"] = ym, ys
        return xtr, ytr, xte, yte

    def rmse(model, x, y):  # in the target's units
        pred = model(x).squeeze(1) * scaled["std"] + scaled["mean"]
        return float(torch.sqrt(torch.mean((pred - y) ** 2)))

    rows = _run_rows(diabetes_models(), data, (10,), 32, F.mse_loss, 1e-2, rmse, seeds, steps)
    return {"metric": "test RMSE", "higher_is_better": False, "unit": "samples/s", "rows": rows}


# ---------------------------------------------------------------------------------------------

def _table(task, res):
    lines = [f"### {task}: {res['metric']} (mean +- std over seeds)", "",
             f"| model | parameters | forward FLOPs / {'token' if res['unit'] == 'tokens/s' else 'sample'} "
             f"| est. training memory (batch 64) "
             f"| throughput ({res['unit']}) | {res['metric']} |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in res["rows"].items():
        m = r["metric"]
        spread = statistics.stdev(m) if len(m) > 1 else 0.0
        tp = r["throughput"]
        tp = ", ".join(f"{v:.0f} @ {L}" for L, v in sorted(tp.items())) if isinstance(tp, dict) else f"{tp:.0f}"
        mem = f"{r['memory'] / 2 ** 20:.2f} MiB"
        lines.append(f"| {name} | {r['parameters']} | {r['flops']} | {mem} | {tp} | "
                     f"{statistics.fmean(m):.4g} +- {spread:.2g} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one seed, a few steps per task (a smoke run)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    kancore.set_num_threads(1)
    seeds = 1 if a.quick else a.seeds
    steps = {"digits": 20, "char-lm": 10, "diabetes": 20} if a.quick else \
        {"digits": 1500, "char-lm": 600, "diabetes": 1500}
    results = {"digits": run_digits(seeds, steps["digits"]),
               "char-lm": run_charlm(seeds, steps["char-lm"]),
               "diabetes": run_diabetes(seeds, steps["diabetes"])}
    text = "\n\n".join(_table(t, r) for t, r in results.items())
    text = (f"AdamW, the same steps and batch per task ({steps}), {seeds} seed(s), CPU, 1 thread, "
            f"torch {torch.__version__}.\n\n" + text)
    print(text)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"seeds": seeds, "steps": steps, "torch": torch.__version__, "machine": platform.machine(),
            "quick": a.quick}
    (out / "fair_comparison.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    (out / "fair_comparison.md").write_text(text + "\n")


if __name__ == "__main__":
    main()

"""Mutation run of the two model-file loaders against each other (not part of the test suite).

Starts from valid files that kancore.save writes (C0 and B-spline, float32 and float64, with and
without LayerNorm and fitted domains), applies random edits (byte flips, insertions, deletions,
truncations, header-JSON edits that keep the length field right), and loads every result with
kancore.load (Python) and NumpyKAN.load (C++). Each load must end in a model or a ValueError;
both loaders must give the same verdict; accepted files must predict the same in both.
Prints the counts and writes any disagreement under --out for a regression test. (Predictions
can differ for files whose mutated weights reach 1e15 or NaN in a network with LayerNorm:
torch's float32 LayerNorm overflows there, the C++ one sums in float64. Counted, not a failure.)

    python tests/fuzz/mutate_loaders.py [--n 20000] [--seed 0] [--out build/mutations]
"""
import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

import kancore
from kancore import KAN, NumpyKAN


def seeds():
    torch.manual_seed(0)
    models = [KAN([2, 3, 1], kind="c0", num_control_points=5, layernorm=True),
              KAN([3, 2], grid_size=3, spline_order=2, dtype=torch.float64),
              KAN([2, 2, 2], kind="c0", num_control_points=4)]
    models[0](torch.randn(32, 2), update_grid=True)
    models[2](torch.randn(32, 2), update_grid=True)
    out = []
    for m in models:
        path = Path("/tmp/kancore_mutation_seed.safetensors")
        kancore.save(m, path)
        out.append(path.read_bytes())
    return out


def mutate(raw: bytes, rng: random.Random) -> bytes:
    b = bytearray(raw)
    n = int.from_bytes(raw[:8], "little")
    kind = rng.randrange(6)
    if kind == 0:  # flip bytes anywhere
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 1:  # flip bytes in the header JSON only
        for _ in range(rng.randint(1, 3)):
            b[8 + rng.randrange(n)] = rng.choice(b'{}[]",:0123456789.-eE\\u tfnlasrNI\xff\xc0\x80 ')
    elif kind == 2:  # truncate
        b = b[:rng.randrange(len(b))]
    elif kind == 3:  # insert or delete inside the header, fixing the length field
        at = 8 + rng.randrange(n)
        if rng.random() < 0.5:
            ins = bytes(rng.choice(b'{}[]",:0123456789.-eE\\ud800NaN ') for _ in range(rng.randint(1, 6)))
            b[at:at] = ins
            n2 = n + len(ins)
        else:
            k = rng.randint(1, 6)
            del b[at:at + k]
            n2 = n - min(k, 8 + n - at)
        b[:8] = n2.to_bytes(8, "little")
    elif kind == 4:  # edit a JSON value of the parsed header or config
        header = json.loads(raw[8:8 + n])
        meta = header["__metadata__"]
        cfg = json.loads(meta["config"])
        choice = rng.randrange(4)
        values = [0, -1, 1.5, 1e308, -1e308, 2 ** 63, "x", None, True, [], {}, [1, 2], "F32", "\ud800"]
        if choice == 0:
            layer = rng.choice(cfg["layers"])
            layer[rng.choice(list(layer))] = rng.choice(values)
        elif choice == 1:
            cfg[rng.choice(list(cfg))] = rng.choice(values)
        elif choice == 2:
            name = rng.choice([k for k in header if k != "__metadata__"])
            entry = header[name]
            entry[rng.choice(["dtype", "shape", "data_offsets", "extra"])] = rng.choice(values)
        else:
            meta[rng.choice(["format", "format_version", "extra"])] = rng.choice(values[:7] + ["1"])
        meta["config"] = json.dumps(cfg)
        text = json.dumps(header).encode("utf-8", "surrogatepass")
        text += b" " * (-len(text) % 8)
        b = bytearray(len(text).to_bytes(8, "little") + text + raw[8 + n:])
    else:  # flip bytes in the data section (weights, knots, domains)
        if len(b) > 8 + n:
            for _ in range(rng.randint(1, 4)):
                b[8 + n + rng.randrange(len(b) - 8 - n)] = rng.randrange(256)
    return bytes(b)


def verdict(loader, path):
    try:
        return "ok", loader(path)
    except ValueError as e:
        return "ValueError", str(e)
    except Exception as e:  # anything else is a defect (wrong type)
        return f"{type(e).__name__}", str(e)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("build/mutations"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    bases = seeds()
    path = args.out / "current.safetensors"
    counts = {"tried": 0, "accepted by both": 0, "refused by both": 0, "disagreements": 0,
              "other exception types": 0, "different predictions": 0}
    x = np.random.default_rng(0).uniform(-2, 2, (8, 3))
    start = time.time()
    for i in range(args.n):
        data = mutate(rng.choice(bases), rng)
        path.write_bytes(data)
        counts["tried"] += 1
        py, py_obj = verdict(kancore.load, path)
        cc, cc_obj = verdict(NumpyKAN.load, path)
        if py not in ("ok", "ValueError") or cc not in ("ok", "ValueError"):
            counts["other exception types"] += 1
            (args.out / f"type_{i}.safetensors").write_bytes(data)
            print(f"{i}: python {py}: {str(py_obj)[:120]} | c++ {cc}: {str(cc_obj)[:120]}")
        elif py != cc:
            counts["disagreements"] += 1
            (args.out / f"disagree_{i}.safetensors").write_bytes(data)
            print(f"{i}: python {py}: {str(py_obj)[:160]} | c++ {cc}: {str(cc_obj)[:160]}")
        elif py == "ok":
            counts["accepted by both"] += 1
            xin = x[:, :py_obj.widths[0]]
            dt = next(py_obj.parameters()).dtype
            with torch.no_grad():
                a = py_obj(torch.as_tensor(xin, dtype=dt)).numpy()
            b = cc_obj.predict(xin)
            if not np.allclose(a, b, rtol=1e-4, atol=1e-5, equal_nan=True):
                counts["different predictions"] += 1
                (args.out / f"predict_{i}.safetensors").write_bytes(data)
        else:
            counts["refused by both"] += 1
    counts["seconds"] = round(time.time() - start, 1)
    print(json.dumps(counts, indent=1))


if __name__ == "__main__":
    main()

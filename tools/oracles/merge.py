"""Golden fixtures for `orrery merge`: model soup, task arithmetic and TIES computed with NumPy exactly as
`../shared/reference/posttraining-spec.md` section 4 defines them (mergekit `linear`, `task_arithmetic`, `ties`;
TIES arXiv 2306.01708), plus DARE-Linear and DARE-TIES at density 1 (where DARE keeps every entry, so the result
is deterministic: task arithmetic, and TIES's sign election and sum without trim or normalisation).

    tools/oracles/regenerate.sh merge
    # or, without the full reference stack:
    python3 -m venv /tmp/merge-venv && /tmp/merge-venv/bin/pip install numpy safetensors
    /tmp/merge-venv/bin/python tools/oracles/merge.py

Needs only NumPy (safetensors only to read back what this script writes). Three small random "models" and a base
with tensors of several shapes: float32 matrices, a bias, a 3-d tensor, a 0-d scalar (too small for TIES's top
20 %: it stays the base), an empty tensor, a vector whose task vectors take few distinct magnitudes (ties at the
top-k threshold, which are kept in element order: a stable descending argsort), and a bfloat16 matrix.

Every value is computed in float64 from the stored values, every sum over models runs in model order (the order
orrery uses), and the result is rounded to float32 (and from there to bfloat16, round to nearest even), so orrery
should match to the last bit; its test allows 1e-6 relative.

Writes testdata/merge/: base.safetensors, model{0,1,2}.safetensors, expected_<case>.safetensors and
cases.json (each case's method, weights, density and lambda).
"""

import json
import os
import struct
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "testdata" / "merge"


# --- bfloat16 as NumPy has no such type: its bits in a uint16 array ---------------------------------------------

def bf16_to_f64(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def f64_to_bf16(x: np.ndarray) -> np.ndarray:
    """float64 -> float32 -> bfloat16, each rounding to nearest even (no NaNs here)."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


class Bf16:
    """A bfloat16 tensor (bits) for the writer."""

    def __init__(self, bits: np.ndarray):
        self.bits = bits


def save(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    """A safetensors file: 8-byte header length, JSON header padded with spaces to 8 bytes, then the data."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name]
        if isinstance(t, Bf16):
            dtype, data, shape = "BF16", t.bits.astype("<u2").tobytes(), t.bits.shape
        else:
            assert t.dtype == np.float32, name
            dtype, data, shape = "F32", t.astype("<f4").tobytes(), t.shape
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    print(f"wrote {path.relative_to(REPO)} ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")


def as_f64(t) -> np.ndarray:
    return bf16_to_f64(t.bits) if isinstance(t, Bf16) else t.astype(np.float64)


def like(t, x: np.ndarray):
    """`x` (float64) stored as `t` is: float32 or bfloat16."""
    return Bf16(f64_to_bf16(x)) if isinstance(t, Bf16) else x.astype(np.float32)


# --- the models --------------------------------------------------------------------------------------------------

def make_models(rng: np.random.Generator):
    shapes = {
        "blocks.0.attn.to_q.weight": (16, 12),
        "blocks.0.attn.to_q.bias": (16,),
        "blocks.0.mlp.layer1.weight": (6, 5, 4),
        "scale": (),
        "empty": (0, 4),
    }
    base = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    models = [{k: (v + 0.05 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in base.items()}
              for _ in range(3)]
    # Dyadic values: the base in eighths, the task vectors from five magnitudes, so every difference is exact and
    # many task-vector entries tie at the top-k threshold.
    base["ties.dyadic"] = (rng.integers(-16, 16, 40) / 8).astype(np.float32)
    for m in models:
        m["ties.dyadic"] = base["ties.dyadic"] + rng.choice([-0.5, -0.25, 0.0, 0.25, 0.5, 1.0], 40).astype(np.float32)
    base["embed.weight"] = Bf16(f64_to_bf16(rng.standard_normal((24, 8))))
    for m in models:
        m["embed.weight"] = Bf16(f64_to_bf16(bf16_to_f64(base["embed.weight"].bits)
                                             + 0.05 * rng.standard_normal((24, 8))))
    return base, models


# --- the methods, per tensor, in float64 -------------------------------------------------------------------------

def soup(thetas, weights):
    total = 0.0
    for w in weights:
        total += w
    acc = np.zeros_like(thetas[0])
    for t, w in zip(thetas, weights):
        acc = acc + w * t
    return acc / total


def linear(base, deltas, weights, lam):
    acc = np.zeros_like(base)
    for d, w in zip(deltas, weights):
        acc = acc + w * d
    return base + lam * acc


def trim(tau, density):
    """TIES step 1: keep the top k = floor(density * numel) entries by |tau|, ties in element order."""
    flat = tau.ravel()
    n = flat.size
    k = min(int(np.floor(density * n)), n)
    keep = np.zeros(n, dtype=bool)
    if k > 0:
        keep[np.argsort(-np.abs(flat), kind="stable")[:k]] = True
    return np.where(keep, flat, 0.0).reshape(tau.shape)


def ties_combine(base, deltas, weights, lam, normalize):
    """TIES steps 2-5: weight, elect the sign (a zero sum elects +1), keep the agreeing entries (a zero entry has
    no sign), their sum divided by the sum of their weights (0 -> 1) when normalising; base + lambda * that."""
    weighted = [w * d for d, w in zip(deltas, weights)]
    total = np.zeros_like(base)
    for t in weighted:
        total = total + t
    positive = total >= 0
    agree = np.zeros_like(base)
    divisor = np.zeros_like(base)
    for t, w in zip(weighted, weights):
        m = (t != 0) & ((t > 0) == positive)
        agree = np.where(m, agree + t, agree)
        divisor = np.where(m, divisor + w, divisor)
    if normalize:
        agree = agree / np.where(divisor == 0, 1.0, divisor)
    return base + lam * agree


def merge(case, base, models):
    weights = case["weights"] or [1.0] * len(models)
    out = {}
    for name in base:
        b = as_f64(base[name])
        thetas = [as_f64(m[name]) for m in models]
        taus = [t - b for t in thetas]
        method = case["method"]
        if method == "soup":
            x = soup(thetas, weights)
        elif method in ("task-arithmetic", "dare-linear"):  # DARE at density 1 keeps every entry unchanged
            x = linear(b, taus, weights, case["lambda"])
        elif method == "ties":
            x = ties_combine(b, [trim(t, case["density"]) for t in taus], weights, case["lambda"], True)
        elif method == "dare-ties":
            assert case["density"] == 1.0
            x = ties_combine(b, taus, weights, case["lambda"], False)
        else:
            raise ValueError(method)
        out[name] = like(base[name], x)
    return out


CASES = [
    {"name": "soup_uniform", "method": "soup", "weights": None},
    {"name": "soup_weighted", "method": "soup", "weights": [1.0, 2.0, 0.5]},
    {"name": "task_arithmetic", "method": "task-arithmetic", "weights": [1.0, 0.5, 2.0], "lambda": 0.7},
    {"name": "ties_default", "method": "ties", "weights": None, "density": 0.2, "lambda": 1.0},
    {"name": "ties_weighted", "method": "ties", "weights": [1.0, 0.5, 2.0], "density": 0.5, "lambda": 0.8},
    {"name": "ties_negative_weight", "method": "ties", "weights": [0.3, -0.3, 0.4], "density": 0.7,
     "lambda": 1.2},
    {"name": "dare_linear_density1", "method": "dare-linear", "weights": [1.0, 0.5, 2.0], "density": 1.0,
     "lambda": 0.7},
    {"name": "dare_ties_density1", "method": "dare-ties", "weights": [1.0, 0.5, 2.0], "density": 1.0,
     "lambda": 0.9},
]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    base, models = make_models(np.random.default_rng(29))
    save(OUT / "base.safetensors", base)
    for i, m in enumerate(models):
        save(OUT / f"model{i}.safetensors", m)
    for case in CASES:
        save(OUT / f"expected_{case['name']}.safetensors", merge(case, base, models))
    (OUT / "cases.json").write_text(json.dumps(CASES, indent=1) + "\n")
    print(f"wrote {(OUT / 'cases.json').relative_to(REPO)}")
    # Read back what the hand-written writer produced, through the safetensors library (float32 tensors; its
    # NumPy loader has no bfloat16).
    from safetensors import safe_open
    with safe_open(str(OUT / "model0.safetensors"), framework="np") as f:
        for name, t in models[0].items():
            if not isinstance(t, Bf16):
                assert np.array_equal(f.get_tensor(name), t), name
    print("read back model0.safetensors through safetensors: ok")


if __name__ == "__main__":
    main()

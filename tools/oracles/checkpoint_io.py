"""Checkpoint files in every format orrery reads, and what PyTorch reports about them.

Writes testdata/checkpoint/:
  f32_extras.pt         torch.save of a flat f32 state dict with non-tensor entries (`_extra_state` as BytesIO and
                        None, python ints/floats), an int64 counter, a transposed view and a storage-sharing slice
  bf16_nested.pt        torch.save of {"state_dict": {...bf16/f16/i64...}, "step": int, "optimizer": {...}}
  plain.safetensors     one safetensors file
  sharded/              two shards + model.safetensors.index.json, as transformers writes them
  expected.json         per file: every tensor's name, dtype, shape and float64 sum, as PyTorch reads them
"""

import io
from collections import OrderedDict

import torch
from safetensors.torch import load_file, save_file

from common import fixture_dir, save_json, seed_everything

OUT = fixture_dir("checkpoint")


def describe(tensors: dict) -> list:
    return [
        {
            "name": name,
            "dtype": str(t.dtype).removeprefix("torch."),
            "shape": list(t.shape),
            "sum": float(t.to(torch.float64).sum()),
        }
        for name, t in sorted(tensors.items())
    ]


def flat_tensors(obj, prefix=""):
    """The tensors of a nested dict, named by dotted path (orrery's naming for nested checkpoints)."""
    out = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flat_tensors(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flat_tensors(v, f"{prefix}.{i}" if prefix else str(i)))
    return out


def main():
    seed_everything(0)
    expected = {}

    base = torch.randn(6, 4)
    f32 = OrderedDict()
    f32["net.blocks.0.self_attn.q_proj.weight"] = torch.randn(8, 8)
    f32["net.blocks.0.self_attn.q_norm.weight"] = torch.rand(4) + 0.5
    f32["net.blocks.0.self_attn.q_norm._extra_state"] = io.BytesIO(b"transformer-engine state")
    f32["net.blocks.0.self_attn.k_norm._extra_state"] = None
    f32["net.transposed.weight"] = base.t()  # non-contiguous view, strides (1, 4)
    f32["net.slice.weight"] = base[2:5]  # shares the storage of `base` at offset 8
    f32["net.accum_iteration"] = torch.tensor(1234, dtype=torch.int64)
    f32["net.scalar"] = torch.tensor(0.5)
    f32["net.empty"] = torch.zeros(0, 3)
    f32["lr"] = 3e-5
    f32["iteration"] = 7
    path = OUT / "f32_extras.pt"
    torch.save(f32, path)
    loaded = torch.load(path, weights_only=False)
    expected["f32_extras.pt"] = {"tensors": describe(flat_tensors(loaded)), "skipped": 4}

    nested = {
        "state_dict": {
            "layer.weight": torch.randn(16, 3).to(torch.bfloat16),
            "layer.bias": torch.randn(16).to(torch.bfloat16),
            "half.weight": torch.randn(2, 2, 3).to(torch.float16),
            "steps": torch.arange(5, dtype=torch.int64),
            "mask": torch.tensor([True, False, True]),
        },
        "step": 10,
        "optimizer": {"state": {0: {"exp_avg": torch.ones(3)}}, "param_groups": [{"lr": 0.1}]},
    }
    path = OUT / "bf16_nested.pt"
    torch.save(nested, path)
    loaded = torch.load(path, weights_only=False)
    expected["bf16_nested.pt"] = {"tensors": describe(flat_tensors(loaded)), "skipped": 2}
    expected["bf16_nested.pt#state_dict"] = {"tensors": describe(flat_tensors(loaded["state_dict"])), "skipped": 0}

    plain = {
        "encoder.conv1.weight": torch.randn(4, 3, 3, 3, 3),
        "encoder.conv1.bias": torch.randn(4),
        "scale": torch.randn(2).to(torch.bfloat16),
        "ids": torch.arange(6, dtype=torch.int64).reshape(2, 3),
    }
    path = OUT / "plain.safetensors"
    save_file(plain, str(path))
    expected["plain.safetensors"] = {"tensors": describe(load_file(str(path))), "skipped": 0}

    sharded_dir = OUT / "sharded"
    sharded_dir.mkdir(exist_ok=True)
    shard1 = {"model.layers.0.mlp.up_proj.weight": torch.randn(6, 4), "model.embed_tokens.weight": torch.randn(10, 4)}
    shard2 = {"model.layers.1.mlp.up_proj.weight": torch.randn(6, 4).to(torch.bfloat16), "model.norm.weight": torch.ones(4)}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    weight_map = {}
    for name, shard in zip(names, [shard1, shard2]):
        save_file(shard, str(sharded_dir / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
    total = sum(t.numel() * t.element_size() for t in {**shard1, **shard2}.values())
    save_json(sharded_dir / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})
    expected["sharded"] = {"tensors": describe({**shard1, **shard2}), "skipped": 0}

    save_json(OUT / "expected.json", expected)


if __name__ == "__main__":
    main()

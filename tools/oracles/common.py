"""Helpers shared by the oracle scripts: where fixtures go and how they are written."""

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]
TESTDATA = REPO / "testdata"


def fixture_dir(name: str) -> Path:
    path = TESTDATA / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def save_tensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    """Writes contiguous CPU copies; metadata values must be strings (safetensors' rule)."""
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    save_file(clean, str(path), metadata=metadata)
    print(f"wrote {path.relative_to(REPO)} ({os.path.getsize(path)} bytes, {len(clean)} tensors)")


def save_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path.relative_to(REPO)}")

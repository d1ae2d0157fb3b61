"""Golden fixtures for orrery-flow, from the official Cosmos-Predict2.5 scheduler.

    tools/oracles/.venv/bin/python tools/oracles/flow.py PATH/TO/cosmos-predict2.5

The official `FlowUniPCMultistepScheduler` (cosmos_predict2/_src/predict2/models/fm_solvers_unipc.py; it needs only
diffusers) is loaded from a checkout of github.com/nvidia-cosmos/cosmos-predict2.5, constructed as the official
model does (1000 training timesteps, shift 1), and asked for:
  - the 35-step Karras schedule (2B post-trained) and shift-5 schedules (35 and 10 steps): sigmas and timesteps;
  - full UniPC trajectories with a fixed, non-linear stand-in velocity model
    v(x, sigma) = 0.7 tanh(x) + sigma * c - 0.2 x   (c a fixed tensor),
    started from NumPy noise, as `generate_samples_from_batch` steps it;
  - NumPy `RandomState(seed).standard_normal(shape).astype(float32)` for a few seeds (`misc.arch_invariant_rand`).
Writes testdata/flow/.
"""

import sys
import types
from pathlib import Path

import numpy as np
import torch

from common import fixture_dir, save_json, save_tensors

OUT = fixture_dir("flow")


def load_official(repo: Path):
    path = repo / "cosmos_predict2/_src/predict2/models/fm_solvers_unipc.py"
    module = types.ModuleType("fm_solvers_unipc")
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    return module.FlowUniPCMultistepScheduler


def trajectory(scheduler_cls, steps, karras, shift, seed, shape):
    sched = scheduler_cls(num_train_timesteps=1000, shift=1, use_dynamic_shifting=False)
    sched.set_timesteps(steps, device="cpu", shift=shift, use_kerras_sigma=karras)
    noise = torch.from_numpy(np.random.RandomState(seed).standard_normal(shape).astype(np.float32))
    c = torch.linspace(-1, 1, int(np.prod(shape))).reshape(shape)
    latents = noise
    states = [latents]
    for t in sched.timesteps:
        sigma = float(t) / 1000.0  # what the network is fed (int timestep x 0.001)
        v = 0.7 * torch.tanh(latents) + sigma * c - 0.2 * latents
        latents = sched.step(v.unsqueeze(0), t, latents.unsqueeze(0), return_dict=False)[0].squeeze(0)
        states.append(latents)
    return sched, noise, torch.stack(states)


def main():
    scheduler_cls = load_official(Path(sys.argv[1]))
    schedules = {}
    for name, steps, karras, shift in [("karras35", 35, True, 5.0), ("shift5_35", 35, False, 5.0),
                                        ("shift5_10", 10, False, 5.0), ("shift3_7", 7, False, 3.0)]:
        sched, noise, states = trajectory(scheduler_cls, steps, karras, shift, seed=1, shape=(2, 3, 4, 5))
        schedules[name] = {"steps": steps, "karras": karras, "shift": shift,
                           "sigmas": [float(s) for s in sched.sigmas], "timesteps": [int(t) for t in sched.timesteps]}
        save_tensors(OUT / f"unipc_{name}.safetensors", {"noise": noise, "states": states})
    save_json(OUT / "schedules.json", schedules)
    noise = {f"seed{seed}": torch.from_numpy(np.random.RandomState(seed).standard_normal((3, 5, 7)).astype(np.float32))
             for seed in [0, 1, 42, 4294967295]}
    save_tensors(OUT / "numpy_noise.safetensors", noise)


if __name__ == "__main__":
    main()

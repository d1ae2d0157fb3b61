"""End-to-end golden fixtures for orrery-pipeline: the official Video2World sampling loop, in Python, on the tiny
DiT (testdata/dit_tiny) and tiny VAE (testdata/vae_tiny) with fixed prompt embeddings, in all three modes.

    tools/oracles/.venv/bin/python tools/oracles/pipeline.py PATH/TO/cosmos-predict2.5

The loop follows `generate_samples_from_batch` + `Video2WorldModelRectifiedFlow.denoise` +
`get_velocity_fn_from_batch`: NumPy `RandomState(seed)` noise; the official `FlowUniPCMultistepScheduler`
(loaded from the checkout; shift or Karras); conditioning frames substituted into x_t, flagged by the mask
channel, given timestep `conditional_frame_timestep` (scheduler units) when >= 0, their velocity replaced by
noise - gt; guidance `cond + g (cond - uncond)`; the network timestep is the scheduler's int64 timestep x 0.001.
Conditioning latents are the VAE means of the input frames, normalised with the VAE's latents_mean/std.
Writes testdata/pipeline/case_<mode>.safetensors: inputs (uint8 frames, embeddings), settings (metadata),
final latents and the decoded (unclamped) video.
"""

import json
import sys

import numpy as np
import torch
from diffusers import AutoencoderKLWan, CosmosTransformer3DModel
from safetensors.torch import load_file

from common import TESTDATA, fixture_dir, save_tensors
from flow import load_official
from vae import decode_unclamped

OUT = fixture_dir("pipeline")
FRAMES, H, W = 9, 32, 32

CASES = [
    dict(mode="text2world", n=0, steps=6, karras=False, shift=5.0, guidance=7.0, cond_t=-1.0, seed=3),
    dict(mode="image2world", n=1, steps=5, karras=True, shift=5.0, guidance=3.0, cond_t=0.1, seed=1),
    dict(mode="video2world", n=2, steps=4, karras=True, shift=5.0, guidance=7.0, cond_t=0.1, seed=0),
]


def load(cls, folder):
    model = cls.from_config(json.loads((TESTDATA / folder / "config.json").read_text()))
    model.load_state_dict(load_file(str(TESTDATA / folder / "diffusion_pytorch_model.safetensors")))
    return model.eval()


def main():
    scheduler_cls = load_official(__import__("pathlib").Path(sys.argv[1]))
    dit = load(CosmosTransformer3DModel, "dit_tiny")
    for name, module in dit.named_modules():
        if name.endswith("norm_q") or name.endswith("norm_k"):
            module.eps = 1e-6  # the official q/k RMSNorm epsilon
    vae = load(AutoencoderKLWan, "vae_tiny")
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    g = torch.Generator().manual_seed(11)
    text = torch.randn(1, 7, 64, generator=g)
    negative = torch.randn(1, 7, 64, generator=g)
    frames_u8 = torch.randint(0, 256, (6, H, W, 3), generator=g, dtype=torch.uint8)  # a 6-frame input video

    for case in CASES:
        n = case["n"]
        z, t_lat, h, w = vae.config.z_dim, 1 + (FRAMES - 1) // 4, H // 8, W // 8
        gt = torch.zeros(1, z, t_lat, h, w)
        if n:
            cond_frames = frames_u8[:1] if n == 1 else frames_u8[-5:]  # image = frame 0; video = last 5 frames
            clip = cond_frames.permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1.0
            with torch.no_grad():
                mu = vae.encode(clip).latent_dist.mean
            gt[:, :, :n] = (mu - mean) / std
        mask = torch.zeros(1, 1, t_lat, h, w)
        mask[:, :, :n] = 1.0
        sched = scheduler_cls(num_train_timesteps=1000, shift=1, use_dynamic_shifting=False)
        sched.set_timesteps(case["steps"], device="cpu", shift=case["shift"], use_kerras_sigma=case["karras"])
        noise = torch.from_numpy(np.random.RandomState(case["seed"]).standard_normal((1, z, t_lat, h, w)).astype(np.float32))
        latents = noise
        for t in sched.timesteps:
            frame_mask = mask.mean(dim=[1, 3, 4], keepdim=True)  # (1, 1, T, 1, 1)
            ts = t.float() * torch.ones_like(frame_mask)
            if case["cond_t"] >= 0:
                ts = case["cond_t"] * frame_mask + t.float() * (1 - frame_mask)
            ts = ts * 0.001

            def denoise(emb):
                xt = gt * mask + latents * (1 - mask)
                with torch.no_grad():
                    v = dit(hidden_states=xt, timestep=ts, encoder_hidden_states=emb, condition_mask=mask,
                            padding_mask=torch.zeros(1, 1, h, w), return_dict=False)[0].float()
                return (noise - gt) * mask + v * (1 - mask)

            cond = denoise(text)
            v = cond + case["guidance"] * (cond - denoise(negative))
            latents = sched.step(v, t, latents, return_dict=False)[0]
        with torch.no_grad():
            video = decode_unclamped(vae, latents * std + mean)
        settings = {k: v for k, v in case.items()}
        save_tensors(OUT / f"case_{case['mode']}.safetensors",
                     {"frames_u8": frames_u8, "text": text, "negative": negative, "latents": latents,
                      "video": video}, metadata={"settings": json.dumps(settings)})


if __name__ == "__main__":
    main()

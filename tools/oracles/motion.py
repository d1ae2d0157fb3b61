"""Golden fixture for orrery-eval's Physics-IQ motion-mask metrics.

Reference: the Physics-IQ benchmark (github.com/google-deepmind/physics-IQ-benchmark, code/binary_mask_generator.py
`generate_mask`, code/calculate_and_write_metrics_to_csv.py, code/calculate_iq_score.py): its per-frame mask
procedure run with OpenCV on in-memory frames (BGR, as cv2.VideoCapture gives them), its metric definitions and
its score formula, all at full precision (the benchmark's detour through lossy MP4 masks, quarter-size resizing and
CSV rounding is left out).

Writes testdata/motion/{clips.safetensors (u8 frames and masks), expected.json}.
"""

import json
import os

import cv2
import numpy as np
from safetensors.numpy import save_file

from common import fixture_dir


def generate_masks(frames_rgb, threshold_value=10):
    """The benchmark's generate_mask loop, on frames instead of a video file; masks as 0/1."""
    kernel = np.ones((5, 5), np.uint8)
    frames = [f[..., ::-1].copy() for f in frames_rgb]  # RGB -> BGR, as read by cv2
    gray = cv2.GaussianBlur(cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY), (5, 5), 0)
    avg = gray.astype("float")
    masks = [np.zeros_like(gray)]
    for frame in frames[1:]:
        gray = cv2.GaussianBlur(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (5, 5), 0)
        cv2.accumulateWeighted(gray, avg, 0.3)
        diff = cv2.absdiff(gray, cv2.convertScaleAbs(avg))
        _, binary = cv2.threshold(diff, threshold_value, 255, cv2.THRESH_BINARY)
        binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel)
        binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, kernel)
        masks.append(binary)
    return [(m > 127).astype(np.uint8) for m in masks]


def spatial(masks):
    return (np.max(masks, axis=0) > 0).astype(np.uint8)


def weighted_spatial(masks):
    return np.sum(masks, axis=0, dtype=np.uint16) / len(masks)


def weighted_iou(a, b):
    inter, union = np.minimum(a, b), np.maximum(a, b)
    valid = union > 0
    return 1.0 if np.sum(valid) == 0 else float(np.sum(inter[valid]) / np.sum(union[valid]))


def ious_per_frame(m1, m2):
    out = []
    for a, b in zip(m1, m2):
        union = np.logical_or(a, b).sum()
        out.append(1.0 if union == 0 else float(np.logical_and(a, b).sum() / union))
    return out


def mse_per_frame(v1, v2):
    return [float(np.mean(((a / 255.0) - (b / 255.0)) ** 2)) for a, b in zip(v1, v2)]


def scores(real, real_masks, gen, gen_masks):
    return {
        "spatial_iou": ious_per_frame([spatial(real_masks)], [spatial(gen_masks)])[0],
        "spatiotemporal_iou": float(np.mean(ious_per_frame(real_masks, gen_masks))),
        "weighted_spatial_iou": weighted_iou(weighted_spatial(real_masks), weighted_spatial(gen_masks)),
        "mse": float(np.mean(mse_per_frame(real, gen))),
    }


def iq_score(s, v):
    ious = (s["spatiotemporal_iou"] / v["spatiotemporal_iou"] + s["spatial_iou"] / v["spatial_iou"]
            + s["weighted_spatial_iou"] / v["weighted_spatial_iou"]) / 3
    return float(max(min(100 * (ious - (s["mse"] - v["mse"])), 100.0), 0.0))


def scene(rng, path, frames=14, w=48, h=40):
    """A noisy background with a falling ball and a sliding box; `path` perturbs the motion."""
    yy, xx = np.mgrid[:h, :w]
    clip = []
    for t in range(frames):
        f = np.zeros((h, w, 3)) + (35, 50, 85) + rng.normal(0, 3, (h, w, 3))
        f[32:] = (110, 100, 95)
        cy, cx = 6 + path[0] * t * t / 8, 12 + path[1] * t
        f[(yy - cy) ** 2 + (xx - cx) ** 2 < 16] = (230, 50, 40)
        bx = int(30 - path[2] * t)
        f[24:32, bx:bx + 7] = (40, 190, 70)
        clip.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(clip)


def main():
    rng = np.random.default_rng(99)
    clips = {
        "take1": scene(rng, (1.0, 1.0, 1.0)),
        "take2": scene(rng, (1.05, 0.9, 1.0)),
        "generated": scene(rng, (0.7, 1.4, 0.5)),
    }
    masks = {k: generate_masks(list(v)) for k, v in clips.items()}
    s = scores(clips["take1"], masks["take1"], clips["generated"], masks["generated"])
    v = scores(clips["take1"], masks["take1"], clips["take2"], masks["take2"])
    d = fixture_dir("motion")
    tensors = dict(clips)
    tensors.update({f"{k}_masks": np.stack(m) for k, m in masks.items()})
    save_file(tensors, os.path.join(d, "clips.safetensors"))
    expected = {"generated_vs_take1": s, "take2_vs_take1": v, "physics_iq": iq_score(s, v)}
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(json.dumps(expected, indent=1), "mask pixels", {k: int(np.sum(m)) for k, m in masks.items()})


if __name__ == "__main__":
    main()

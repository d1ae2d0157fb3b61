"""Media references: what ffmpeg decodes from the sample videos, and how Pillow and torchvision resize.

Reads the sample inputs in testdata/media/ (copies of the official repository's assets) and writes
testdata/media/:
  <video>.expected.json      ffprobe's frame count, size and rate, and ffmpeg's per-frame RGB channel means
  <video>.crops.safetensors  `crops` (F, 64, 64, 3) uint8: centre crops of frames `frame_ids` decoded by ffmpeg
                             to rgb24; `crops_exact`: the same from ffmpeg's YUV with exact BT.601 arithmetic
  resize.safetensors         Pillow BILINEAR resizes of the PNG sample to several sizes (`pil_{w}x{h}`), the
                             torchvision `resize_input` of the reference (`tv_cover_{w}x{h}`), and the decoded
                             JPEG sample (`jpeg_decoded`, Pillow/libjpeg)
Needs ffmpeg and ffprobe on the PATH.
"""

import json
import subprocess

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.numpy import save_file

from common import fixture_dir, save_json

OUT = fixture_dir("media")
VIDEOS = ["urban_freeway_front_tele_30fov.mp4", "video2world_nemo_2b.mp4"]
CROP = 64


def probe(path):
    out = subprocess.check_output([
        "ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
        "-show_entries", "stream=width,height,r_frame_rate,nb_read_frames", "-of", "json", str(path),
    ])
    s = json.loads(out)["streams"][0]
    num, den = s["r_frame_rate"].split("/")
    return int(s["width"]), int(s["height"]), float(num) / float(den), int(s["nb_read_frames"])


def decode_rgb(path, w, h):
    raw = subprocess.check_output(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def decode_exact_rgb(path, w, h):
    """ffmpeg's decoded YUV 4:2:0 planes converted with exact BT.601 limited-range arithmetic (float64, rounded,
    chroma shared by each 2x2 block). ffmpeg's own default rgb24 conversion is about one level darker."""
    raw = subprocess.check_output(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"])
    frames = np.frombuffer(raw, np.uint8).reshape(-1, w * h * 3 // 2).astype(np.float64)
    y = frames[:, : w * h].reshape(-1, h, w)
    u = frames[:, w * h : w * h * 5 // 4].reshape(-1, h // 2, w // 2).repeat(2, 1).repeat(2, 2) - 128
    v = frames[:, w * h * 5 // 4 :].reshape(-1, h // 2, w // 2).repeat(2, 1).repeat(2, 2) - 128
    luma = 255 / 219 * (y - 16)
    kr, kb = 0.299, 0.114
    kg = 1 - kr - kb
    r = luma + 255 / 224 * 2 * (1 - kr) * v
    g = luma - 255 / 224 * 2 * (1 - kb) * kb / kg * u - 255 / 224 * 2 * (1 - kr) * kr / kg * v
    b = luma + 255 / 224 * 2 * (1 - kb) * u
    return np.clip(np.floor(np.stack([r, g, b], -1) + 0.5), 0, 255).astype(np.uint8)


def videos():
    for name in VIDEOS:
        path = OUT / name
        w, h, fps, n = probe(path)
        frames = decode_rgb(path, w, h)
        assert frames.shape[0] == n
        ids = sorted({0, 1, 2, 3, n // 2, n - 1})
        y0, x0 = (h - CROP) // 2, (w - CROP) // 2
        crops = np.ascontiguousarray(frames[ids, y0:y0 + CROP, x0:x0 + CROP])
        exact = decode_exact_rgb(path, w, h)[ids, y0:y0 + CROP, x0:x0 + CROP]
        save_file({"crops": crops, "crops_exact": np.ascontiguousarray(exact)}, str(OUT / f"{name}.crops.safetensors"))
        save_json(OUT / f"{name}.expected.json", {
            "width": w, "height": h, "fps": fps, "frames": n,
            "frame_ids": ids, "crop_origin": [x0, y0], "crop_size": CROP,
            "channel_means": frames.reshape(n, -1, 3).mean(axis=1).tolist(),
        })


def resizes():
    src = Image.open(OUT / "droid_episode_000408.png").convert("RGB")
    out = {}
    for w, h in [(160, 120), (97, 61), (333, 250), (64, 64), (1000, 37)]:
        out[f"pil_{w}x{h}"] = np.asarray(src.resize((w, h), Image.BILINEAR))
    # The reference's resize_input (cosmos_predict2/_src/predict2/inference/video2world.py) on a uint8 tensor.
    import math
    frame = torch.from_numpy(np.array(src)).permute(2, 0, 1).unsqueeze(0)  # (1, 3, H, W), a writable copy
    for w, h in [(128, 64), (96, 96), (80, 144)]:
        ratio = max(w / frame.shape[3], h / frame.shape[2])
        size = (int(math.ceil(ratio * frame.shape[2])), int(math.ceil(ratio * frame.shape[3])))
        resized = torchvision.transforms.functional.resize(frame, size)
        cropped = torchvision.transforms.functional.center_crop(resized, [h, w])
        out[f"tv_cover_{w}x{h}"] = cropped[0].permute(1, 2, 0).contiguous().numpy()
    # Plain resizes in torchvision, including one where Pillow 13 runs its vertical pass first (smaller
    # intermediate) while torchvision, like older Pillow, always starts horizontally.
    for w, h in [(1000, 37), (97, 61)]:
        out[f"tv_{w}x{h}"] = torchvision.transforms.functional.resize(frame, [h, w])[0].permute(1, 2, 0).contiguous().numpy()
    out["jpeg_decoded"] = np.asarray(Image.open(OUT / "robot_welding.jpg").convert("RGB"))
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, str(OUT / "resize.safetensors"))
    print("wrote resize.safetensors", sorted(out))


if __name__ == "__main__":
    videos()
    resizes()

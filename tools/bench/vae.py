"""Side by side: orrery's Wan VAE against diffusers' AutoencoderKLWan (bit-identical to the official WanVAE_),
encode and decode, same configuration and input size, interleaved runs; prints medians and orrery/PyTorch ratios.

    tools/oracles/.venv/bin/python tools/bench/vae.py [--runs 5] [--frames 17] [--size 64x64] \
        [--config tiny|wan|CONFIG.json] [--decode-chunk whole|N]

`tiny` is the architecture of testdata/vae_tiny (base width 8); `wan` is the full Wan2.1 VAE (base width 96); a path
is a diffusers config.json (a bundle's vae/config.json). orrery decodes `--decode-chunk` latent frames per decoder
call (`whole`, as the pipeline does for clips within its pixel budget, or N); diffusers decodes frame by frame.
"""

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan

REPO = Path(__file__).resolve().parents[2]


def timed(fn):
    start = time.perf_counter()
    with torch.no_grad():
        fn()
    return (time.perf_counter() - start) * 1e3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--size", default="64x64")
    p.add_argument("--config", default="tiny")
    p.add_argument("--decode-chunk", default="whole")
    args = p.parse_args()
    w, h = map(int, args.size.split("x"))
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "orrery-vae", "--example", "vae_bench"], cwd=REPO,
                   check=True)
    if args.config == "wan":
        config_path = "wan"
        model = AutoencoderKLWan(base_dim=96, z_dim=16).eval()
    else:
        config_path = REPO / "testdata/vae_tiny/config.json" if args.config == "tiny" else Path(args.config)
        model = AutoencoderKLWan.from_config(json.loads(config_path.read_text())).eval()
    spatial = 2 ** (len(model.config.dim_mult) - 1)
    temporal = 2 ** sum(model.config.temperal_downsample)
    video = torch.rand(1, 3, args.frames, h, w) * 2 - 1
    latent = torch.randn(1, model.config.z_dim, 1 + (args.frames - 1) // temporal, h // spatial, w // spatial)
    encode = lambda: model.encode(video).latent_dist.mean
    decode = lambda: model.decode(latent)
    timed(encode), timed(decode)  # warm-up
    ours = {"encode": [], "decode": []}
    theirs = {"encode": [], "decode": []}
    for _ in range(args.runs):
        out = subprocess.run([str(REPO / "target/release/examples/vae_bench"), "--config", str(config_path),
                              "--frames", str(args.frames), "--size", args.size, "--runs", "2",
                              "--decode-chunk", args.decode_chunk],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        ours["encode"].append(r["encode_ms"][1])
        ours["decode"].append(r["decode_ms"][1])
        theirs["encode"].append(timed(encode))
        theirs["decode"].append(timed(decode))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.config}, {args.frames} frames "
          f"{args.size}")
    for mode in ["encode", "decode"]:
        o, t = statistics.median(ours[mode]), statistics.median(theirs[mode])
        print(f"{mode}: orrery {o:.1f} ms, PyTorch {t:.1f} ms, ratio {o / t:.2f}")


if __name__ == "__main__":
    main()

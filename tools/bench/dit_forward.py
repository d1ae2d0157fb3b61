"""Side by side: the orrery DiT forward pass against diffusers' CosmosTransformer3DModel (PyTorch), same
configurations, same machine, interleaved runs; prints each median and the orrery/PyTorch ratio.

    tools/oracles/.venv/bin/python tools/bench/dit_forward.py [--runs 5] [--sizes small,medium]

Needs the oracle virtual environment (tools/oracles/regenerate.sh creates it) and builds the Rust example
`dit_bench` in release mode. Both sides use float32, random weights, batch 1 and all of this machine's cores.
"""

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from diffusers import CosmosTransformer3DModel

REPO = Path(__file__).resolve().parents[2]

# Same sizes as crates/dit/benches/dit_forward.rs: (diffusers config, latent (T, H, W), text tokens).
BASE = dict(in_channels=17, out_channels=16, mlp_ratio=4.0, text_embed_dim=256, adaln_lora_dim=64,
            max_size=(128, 240, 240), patch_size=(1, 2, 2), rope_scale=(1.0, 3.0, 3.0), concat_padding_mask=True,
            extra_pos_embed_type=None, use_crossattn_projection=True, crossattn_proj_in_channels=512,
            encoder_hidden_states_channels=256)
SIZES = {
    "small": (dict(BASE, num_attention_heads=6, attention_head_dim=64, num_layers=4), (3, 16, 16), 64),
    "medium": (dict(BASE, num_attention_heads=12, attention_head_dim=64, num_layers=8), (5, 32, 32), 128),
}


def torch_run(model, feed):
    start = time.perf_counter()
    with torch.no_grad():
        model(**feed, return_dict=False)[0].sum().item()
    return (time.perf_counter() - start) * 1e3


def orrery_runs(config_path, latent, text, runs):
    cmd = [str(REPO / "target/release/examples/dit_bench"), "--config", str(config_path),
           "--latent", ",".join(map(str, latent)), "--text", str(text), "--runs", str(runs)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["runs_ms"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="small,medium")
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "orrery-dit", "--example", "dit_bench"], cwd=REPO,
                   check=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for size in args.sizes.split(","):
        config, (t, h, w), n = SIZES[size]
        model = CosmosTransformer3DModel(**config).eval()
        feed = dict(hidden_states=torch.randn(1, 16, t, h, w), timestep=torch.tensor([0.5]),
                    encoder_hidden_states=torch.randn(1, n, 512), condition_mask=torch.zeros(1, 1, t, h, w),
                    padding_mask=torch.zeros(1, 1, h, w))
        torch_run(model, feed)  # warm-up
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "config.json"
            path.write_text(json.dumps(dict(config, _class_name="CosmosTransformer3DModel")))
            ours, theirs = [], []
            # Interleave: one orrery process (warm-up run dropped) then the same number of PyTorch runs.
            for _ in range(args.runs):
                ours.append(min(orrery_runs(path, (t, h, w), n, 2)[1:]))
                theirs.append(torch_run(model, feed))
        o, p = statistics.median(ours), statistics.median(theirs)
        print(f"{size}: tokens {t * (h // 2) * (w // 2)}, orrery {o:.1f} ms, PyTorch {p:.1f} ms, "
              f"ratio {o / p:.2f}")


if __name__ == "__main__":
    main()

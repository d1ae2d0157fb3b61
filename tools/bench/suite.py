"""The CPU-kernel benchmark suite, side by side with PyTorch on the same machine:

  (a) 4 DiT blocks, width 384, 6 heads, 512 tokens, batch 2, float32: training step (forward, MSE loss,
      backward, AdamW) and forward;
  (b) the same DiT, 4,096 tokens, batch 1: forward;
  (c) the tiny Wan VAE (testdata/vae_tiny): encode and decode of 17 frames at 64x64.

    tools/oracles/.venv/bin/python tools/bench/suite.py [--runs 5] [--cases a,b,c]

Each case interleaves rounds: one orrery process (a warm-up run, dropped, then PER_ROUND timed runs) and
PER_ROUND runs of the warm PyTorch model; each round contributes each side's median, and the script prints the
medians over rounds and the orrery/PyTorch time ratio. Both sides use all of this machine's cores. Needs the
oracle virtual environment (tools/oracles/regenerate.sh).
"""

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, CosmosTransformer3DModel

REPO = Path(__file__).resolve().parents[2]

DIT = dict(in_channels=17,  # diffusers counts the condition-mask channel
            out_channels=16, num_attention_heads=6, attention_head_dim=64, num_layers=4,
           mlp_ratio=4.0, text_embed_dim=256, adaln_lora_dim=64, max_size=(128, 240, 240), patch_size=(1, 2, 2),
           rope_scale=(1.0, 3.0, 3.0), concat_padding_mask=True, extra_pos_embed_type=None,
           use_crossattn_projection=True, crossattn_proj_in_channels=512, encoder_hidden_states_channels=256)
TEXT_TOKENS = 64
# Timed runs per side and round, after warm-up (steady state on both sides).
PER_ROUND = 3
# (name, mode, batch, latent (T, H, W)); patch 2x2 gives T H W / 4 tokens.
DIT_CASES = {
    "a": [("(a) train step, 512 tokens, batch 2", "train", 2, (2, 32, 32)),
          ("(a) forward, 512 tokens, batch 2", "forward", 2, (2, 32, 32))],
    "b": [("(b) forward, 4096 tokens, batch 1", "forward", 1, (16, 32, 32))],
}


def timed(fn):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def torch_dit(mode, batch, latent):
    t, h, w = latent
    model = CosmosTransformer3DModel(**DIT)
    feed = dict(hidden_states=torch.randn(batch, 16, t, h, w), timestep=torch.full((batch,), 0.5),
                encoder_hidden_states=torch.randn(batch, TEXT_TOKENS, 512),
                condition_mask=torch.zeros(batch, 1, t, h, w), padding_mask=torch.zeros(1, 1, h, w))  # repeated over the batch inside
    if mode == "forward":
        model.eval()

        def run():
            with torch.no_grad():
                model(**feed, return_dict=False)[0].sum().item()
        return run
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.99), weight_decay=0.01)
    target = torch.randn(batch, 16, t, h, w)

    def step():
        optim.zero_grad(set_to_none=True)
        loss = (model(**feed, return_dict=False)[0] - target).pow(2).mean()
        loss.backward()
        optim.step()
        loss.item()
    return step


def orrery_dit(config_path, mode, batch, latent):
    cmd = [str(REPO / "target/release/examples/dit_train_bench"), "--config", str(config_path), "--mode", mode,
           "--batch", str(batch), "--latent", ",".join(map(str, latent)), "--text", str(TEXT_TOKENS),
           "--runs", str(PER_ROUND)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return statistics.median(json.loads(out.strip().splitlines()[-1])["runs_ms"])


def torch_vae():
    config = json.loads((REPO / "testdata/vae_tiny/config.json").read_text())
    model = AutoencoderKLWan.from_config(config).eval()
    video = torch.rand(1, 3, 17, 64, 64) * 2 - 1
    latent = torch.randn(1, model.config.z_dim, 5, 8, 8)

    def encode():
        with torch.no_grad():
            model.encode(video).latent_dist.mean.sum().item()

    def decode():
        with torch.no_grad():
            model.decode(latent).sample.sum().item()
    return {"encode": encode, "decode": decode}


def orrery_vae():
    out = subprocess.run([str(REPO / "target/release/examples/vae_bench"), "--config",
                          str(REPO / "testdata/vae_tiny/config.json"), "--frames", "17", "--size", "64x64",
                          "--runs", str(PER_ROUND + 1)], check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return {m: statistics.median(r[f"{m}_ms"][1:]) for m in ["encode", "decode"]}


def report(name, ours, theirs):
    o, p = statistics.median(ours), statistics.median(theirs)
    print(f"{name}: orrery {o:.1f} ms, PyTorch {p:.1f} ms, ratio {o / p:.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cases", default="a,b,c")
    args = parser.parse_args()
    cases = args.cases.split(",")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "orrery-train", "--example", "dit_train_bench",
                    "-p", "orrery-vae", "--example", "vae_bench"], cwd=REPO, check=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "config.json"
        config_path.write_text(json.dumps(dict(DIT, _class_name="CosmosTransformer3DModel")))
        for case in cases:
            for name, mode, batch, latent in DIT_CASES.get(case, []):
                run = torch_dit(mode, batch, latent)
                run()  # warm-up
                ours, theirs = [], []
                for _ in range(args.runs):
                    ours.append(orrery_dit(config_path, mode, batch, latent))
                    theirs.append(statistics.median(timed(run) for _ in range(PER_ROUND)))
                report(name, ours, theirs)
    if "c" in cases:
        runs = torch_vae()
        for fn in runs.values():
            fn()  # warm-up
        ours = {"encode": [], "decode": []}
        theirs = {"encode": [], "decode": []}
        for _ in range(args.runs):
            for mode, ms in orrery_vae().items():
                ours[mode].append(ms)
            for mode, fn in runs.items():
                theirs[mode].append(statistics.median(timed(fn) for _ in range(PER_ROUND)))
        for mode in ["encode", "decode"]:
            report(f"(c) tiny VAE {mode}, 17 frames 64x64", ours[mode], theirs[mode])


if __name__ == "__main__":
    main()

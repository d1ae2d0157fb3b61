"""Golden fixtures for the Cosmos-Predict2.5 DiT: a tiny random diffusers `CosmosTransformer3DModel`.

Configuration from the oracle notes (every path exercised, ~105k parameters): 2 heads x 24 (RoPE split 8/8/8),
2 layers, 4 latent channels + condition mask, padding mask concatenated, adaLN-LoRA 16, text projection 64 -> 32,
RoPE extrapolation (t, h, w) = (1, 3, 3). diffusers' q/k RMSNorm epsilon is patched to the official 1e-6.
All weights are re-randomised (std 0.02 for linears, 1 + 0.1 N(0,1) for norm weights) so no path is zero.

Writes testdata/dit_tiny/:
  config.json, diffusion_pytorch_model.safetensors   the model as diffusers saves it (diffusers names)
  official.safetensors                              the same weights under official names with the `net.` prefix
  case_<name>.safetensors                           inputs (`hidden_states`, `timestep`, `encoder_hidden_states`,
                                                    `condition_mask`, `padding_mask`), output `velocity`, the
                                                    float64 output `velocity_f64`, and taps: `rope_cos`, `rope_sin`
                                                    (L, head_dim), `temb`, `embedded_timestep`, `text_proj`
"""

import json

import torch
from diffusers import CosmosTransformer3DModel

from common import fixture_dir, save_tensors, seed_everything

OUT = fixture_dir("dit_tiny")

CONFIG = dict(
    in_channels=5,
    out_channels=4,
    num_attention_heads=2,
    attention_head_dim=24,
    num_layers=2,
    mlp_ratio=4.0,
    text_embed_dim=32,
    adaln_lora_dim=16,
    max_size=(16, 32, 32),
    patch_size=(1, 2, 2),
    rope_scale=(1.0, 3.0, 3.0),
    concat_padding_mask=True,
    extra_pos_embed_type=None,
    use_crossattn_projection=True,
    crossattn_proj_in_channels=64,
    encoder_hidden_states_channels=32,
)

# Substring rules of diffusers' scripts/convert_cosmos_to_diffusers.py (official -> diffusers), reversed here.
RENAME = [
    ("t_embedder.1", "time_embed.t_embedder"), ("t_embedding_norm", "time_embed.norm"), ("blocks", "transformer_blocks"),
    ("adaln_modulation_self_attn.1", "norm1.linear_1"), ("adaln_modulation_self_attn.2", "norm1.linear_2"),
    ("adaln_modulation_cross_attn.1", "norm2.linear_1"), ("adaln_modulation_cross_attn.2", "norm2.linear_2"),
    ("adaln_modulation_mlp.1", "norm3.linear_1"), ("adaln_modulation_mlp.2", "norm3.linear_2"),
    ("self_attn", "attn1"), ("cross_attn", "attn2"), ("q_proj", "to_q"), ("k_proj", "to_k"), ("v_proj", "to_v"),
    ("output_proj", "to_out.0"), ("q_norm", "norm_q"), ("k_norm", "norm_k"), ("mlp.layer1", "ff.net.0.proj"),
    ("mlp.layer2", "ff.net.2"), ("x_embedder.proj.1", "patch_embed.proj"),
    ("final_layer.adaln_modulation.1", "norm_out.linear_1"), ("final_layer.adaln_modulation.2", "norm_out.linear_2"),
    ("final_layer.linear", "proj_out"),
]


def to_official(name: str) -> str:
    for official, diffusers in reversed(RENAME):
        name = name.replace(diffusers, official)
    return "net." + name


def build():
    seed_everything(0)
    model = CosmosTransformer3DModel(**CONFIG).eval()
    for name, module in model.named_modules():
        if name.endswith("norm_q") or name.endswith("norm_k"):
            module.eps = 1e-6
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.02 * torch.randn_like(p) * (5.0 if p.ndim == 2 and p.shape[1] <= 64 else 1.0))
    return model


def inputs(case: str, dtype=torch.float32):
    g = torch.Generator().manual_seed({"t1d": 1, "perframe": 2, "padded": 3}[case])
    b, t, h, w = 2, 3, 8, 8
    x = torch.randn(b, 4, t, h, w, generator=g)
    text = torch.randn(b, 7, 64, generator=g)
    cond = torch.zeros(b, 1, t, h, w)
    pad = torch.zeros(1, 1, h, w)
    if case == "t1d":
        timestep = torch.tensor([0.7, 0.25])
    else:
        cond[:, :, 0] = 1.0
        timestep = torch.full((b, 1, t, 1, 1), 0.6)
        timestep[:, :, 0] = 1e-4
        timestep[1] *= 0.5
        timestep[1, :, 0] = 1e-4
    if case == "padded":
        pad = (torch.rand(1, 1, 2 * h, 2 * w, generator=g) > 0.5).float()  # pixel-sized, resized to latents
    return {k: v.to(dtype) for k, v in dict(hidden_states=x, timestep=timestep, encoder_hidden_states=text,
                                             condition_mask=cond, padding_mask=pad).items()}


def run(model, feed):
    taps = {}
    hooks = [
        model.rope.register_forward_hook(lambda m, i, o: taps.update(rope_cos=o[0], rope_sin=o[1])),
        model.time_embed.register_forward_hook(lambda m, i, o: taps.update(temb=o[0], embedded_timestep=o[1])),
        model.crossattn_proj.register_forward_hook(lambda m, i, o: taps.update(text_proj=o)),
    ]
    with torch.no_grad():
        out = model(**feed, return_dict=False)[0]
    for h in hooks:
        h.remove()
    return out, taps


def main():
    model = build()
    model.save_pretrained(OUT, safe_serialization=True)
    save_tensors(OUT / "official.safetensors", {to_official(k): v for k, v in model.state_dict().items()})
    model64 = build().double()
    for case in ["t1d", "perframe", "padded"]:
        feed = inputs(case)
        out, taps = run(model, feed)
        out64, _ = run(model64, inputs(case, torch.float64))
        err = (out.double() - out64).abs().max().item() / out64.abs().max().item()
        print(f"{case}: f32 vs f64 max error / max|out| = {err:.2e}")
        tensors = {**feed, "velocity": out, "velocity_f64": out64,
                   **{k: v.reshape(-1, v.shape[-1]) if k.startswith("rope") else v for k, v in taps.items()}}
        save_tensors(OUT / f"case_{case}.safetensors", tensors, metadata={"f32_vs_f64": f"{err:.3e}"})
    (OUT / "oracle.json").write_text(json.dumps({"config": CONFIG, "q_k_norm_eps": 1e-6}, indent=1) + "\n")


if __name__ == "__main__":
    main()

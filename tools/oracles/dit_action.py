"""Golden fixtures for the action-conditioned DiT (`robot/action-cond`): the official
`ActionChunkConditionedMinimalV1LVGDiT.forward`, run from the official source file, over a tiny random base network.

The official network file (`cosmos_predict2/_src/predict2/action/networks/action_conditioned_minimal_v1_lvg_dit.py`)
is executed as it is, with its three imports replaced: `log` (a no-op), `DataType` (VIDEO / IMAGE) and `MiniTrainDIT`,
which becomes a thin adapter over diffusers' `CosmosTransformer3DModel` (the same network as the official
`MiniTrainDIT`, to 2e-10 in float64 once the q/k RMSNorm epsilon is the official 1e-6; see
`shared/reference/oracles-and-assets.md`). So the action path (embedders, grouping, zero row, conditioning-frame mask,
adding to the time embedding before its RMSNorm and to the adaLN-LoRA term) is the official code itself.

Tiny configuration: the `dit_tiny` base (2 heads x 24, 2 blocks, 4 latent channels, text projection 64 -> 32), action
width 3 (any width works; the released model uses 7), 4 actions per latent frame, embedder hidden width 32,
`timestep_scale` 1 (orrery feeds the network timesteps already scaled by 0.001, as for the base model).

Usage: dit_action.py /path/to/cosmos-predict2.5 checkout. Writes testdata/dit_action/:
  model/config.json           the diffusers keys plus action_dim, temporal_compression_ratio,
                              hidden_dim_in_action_embedder
  model/action_cond.pt        every weight under its official name with the `net.` prefix, as the released `.pt`
                              stores it (a `torch.save` of a flat dict)
  case_<name>.safetensors     inputs (`hidden_states`, `timestep`, `encoder_hidden_states`, `condition_mask`,
                              `padding_mask`, `action`), output `velocity`, float64 output `velocity_f64`, and the
                              output with zero actions `velocity_zero_action`
"""

import enum
import json
import sys
import types
from pathlib import Path

import torch
from diffusers import CosmosTransformer3DModel
from torch import nn

from common import fixture_dir, save_json, save_tensors, seed_everything
from dit import CONFIG, to_official

OUT = fixture_dir("dit_action")
ACTION = dict(action_dim=3, temporal_compression_ratio=4, hidden_dim_in_action_embedder=32)
NETWORK_FILE = "cosmos_predict2/_src/predict2/action/networks/action_conditioned_minimal_v1_lvg_dit.py"


class DataType(enum.Enum):
    IMAGE = "image"
    VIDEO = "video"


class _Block(nn.Module):
    """An official block call (x (B,T,H,W,D), t_emb (B,T',D), context, rope, adaln_lora (B,T',3D)) on a diffusers
    block, which takes tokens (B, THW, D) and per-token embeddings."""

    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, x, t_emb, context, rope_emb_L_1_1_D=None, adaln_lora_B_T_3D=None, extra_per_block_pos_emb=None):
        b, t, h, w, d = x.shape
        out = self.block(x.flatten(1, 3), context, _per_token(t_emb, t, h, w), _per_token(adaln_lora_B_T_3D, t, h, w),
                         image_rotary_emb=rope_emb_L_1_1_D)
        return out.unflatten(1, (t, h, w))


def _per_token(e, t, h, w):
    """(B, T' in {1, T}, C) -> (B, T H W, C)."""
    b, tt, c = e.shape
    return e.view(b, tt, 1, 1, c).expand(b, t, h, w, c).flatten(1, 3)


class MiniTrainDIT(nn.Module):
    """The parts of the official `MiniTrainDIT` the action network's forward uses, over diffusers' model."""

    def __init__(self, **kwargs):
        super().__init__()
        self.inner = CosmosTransformer3DModel(**CONFIG).eval()
        for name, module in self.inner.named_modules():
            if name.endswith("norm_q") or name.endswith("norm_k"):
                module.eps = 1e-6  # the official q/k RMSNorm epsilon
        self.model_channels = CONFIG["num_attention_heads"] * CONFIG["attention_head_dim"]
        self.use_crossattn_projection = CONFIG["use_crossattn_projection"]
        self.crossattn_proj = self.inner.crossattn_proj
        self.t_embedding_norm = self.inner.time_embed.norm
        self.blocks = nn.ModuleList([_Block(b) for b in self.inner.transformer_blocks])
        self.extra_image_context_dim = None
        self.use_wan_fp32_strategy = False  # CUDA autocast; everything here runs in the model's own type

    def prepare_embedded_sequence(self, x_B_C_T_H_W, fps=None, padding_mask=None):
        b, _, t, h, w = x_B_C_T_H_W.shape
        pad = nn.functional.interpolate(padding_mask, size=(h, w), mode="nearest")
        x = torch.cat([x_B_C_T_H_W, pad.unsqueeze(2).repeat(b, 1, t, 1, 1)], dim=1)
        rope = self.inner.rope(x, fps=fps)
        self._grid = (t, h // CONFIG["patch_size"][1], w // CONFIG["patch_size"][2])
        return self.inner.patch_embed(x), rope, None

    def t_embedder(self, timesteps_B_T):
        b, t = timesteps_B_T.shape
        emb = self.inner.time_embed.time_proj(timesteps_B_T.flatten()).view(b, t, -1)
        emb = emb.to(self.inner.time_embed.norm.weight.dtype)
        return emb, self.inner.time_embed.t_embedder(emb)

    def final_layer(self, x, t_emb, adaln_lora_B_T_3D=None):
        b, t, h, w, d = x.shape
        out = self.inner.norm_out(x.flatten(1, 3), _per_token(t_emb, t, h, w), _per_token(adaln_lora_B_T_3D, t, h, w))
        return self.inner.proj_out(out)

    def unpatchify(self, out):
        # diffusers' own unpatchify (step 8 of CosmosTransformer3DModel.forward).
        p_t, p_h, p_w = CONFIG["patch_size"]
        t, h, w = self._grid
        out = out.unflatten(2, (p_h, p_w, p_t, -1)).unflatten(1, (t, h, w))
        return out.permute(0, 7, 1, 6, 2, 4, 3, 5).flatten(6, 7).flatten(4, 5).flatten(2, 3)


def load_official_network(repo: Path):
    """Executes the official network file with its imports replaced; returns the chunk-conditioned class."""
    stubs = {
        "cosmos_predict2._src.imaginaire.utils": dict(log=types.SimpleNamespace(info=print, warning=print)),
        "cosmos_predict2._src.predict2.conditioner": dict(DataType=DataType),
        "cosmos_predict2._src.predict2.networks.minimal_v4_dit": dict(MiniTrainDIT=MiniTrainDIT),
    }
    for name, attrs in stubs.items():
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
        for k, v in attrs.items():
            setattr(sys.modules[name], k, v)
    path = repo / NETWORK_FILE
    module = types.ModuleType("action_conditioned_minimal_v1_lvg_dit")
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    return module.ActionChunkConditionedMinimalV1LVGDiT


def build(cls):
    seed_everything(0)
    model = cls(in_channels=CONFIG["in_channels"] - 1, timestep_scale=1.0, **ACTION).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif p.ndim == 1:  # action embedder biases
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.02 * torch.randn_like(p) * (5.0 if p.ndim == 2 and p.shape[1] <= 64 else 1.0))
    return model


def official_state(model):
    out = {}
    for name, value in model.state_dict().items():
        if name.startswith("inner."):
            out[to_official(name[len("inner."):])] = value
        elif name.startswith("action_embedder"):
            out["net." + name] = value
    return out


def inputs(case: str, dtype=torch.float32):
    g = torch.Generator().manual_seed({"perframe": 11, "batch2": 12}[case])
    b, t, h, w = {"perframe": (1, 3, 8, 8), "batch2": (2, 4, 4, 6)}[case]
    n = ACTION["temporal_compression_ratio"] * (t - 1)
    x = torch.randn(b, 4, t, h, w, generator=g)
    text = torch.randn(b, 5, 64, generator=g)
    action = torch.randn(b, n, ACTION["action_dim"], generator=g)
    cond = torch.zeros(b, 1, t, h, w)
    pad = torch.zeros(1, 1, h, w)
    if case == "perframe":
        cond[:, :, 0] = 1.0
        timestep = torch.full((b, 1, t, 1, 1), 0.6)
        timestep[:, :, 0] = 1e-4
    else:
        cond[:, :, :2] = 1.0  # two conditioning frames: the action row of frame 1 is masked too
        timestep = torch.tensor([0.7, 0.25])
        pad = (torch.rand(1, 1, 2 * h, 2 * w, generator=g) > 0.5).float()
    feed = dict(hidden_states=x, timestep=timestep, encoder_hidden_states=text, condition_mask=cond,
                padding_mask=pad, action=action)
    return {k: v.to(dtype) for k, v in feed.items()}


def run(model, feed):
    ts = feed["timestep"]
    if ts.ndim == 5:
        ts = ts.flatten(1)  # (B, 1, T, 1, 1) -> (B, T)
    with torch.no_grad():
        return model(feed["hidden_states"], ts, feed["encoder_hidden_states"],
                     condition_video_input_mask_B_C_T_H_W=feed["condition_mask"], padding_mask=feed["padding_mask"],
                     data_type=DataType.VIDEO, action=feed["action"])


def check_adapter(cls):
    """With both embedders' outputs silenced, the official forward over the adapter must be diffusers' own."""
    model = build(cls).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("action_embedder") and ".fc2." in name:
                p.zero_()
    for case in ["perframe", "batch2"]:
        feed = inputs(case, torch.float64)
        ours = run(model, feed)
        with torch.no_grad():
            ref = model.inner(feed["hidden_states"], feed["timestep"], feed["encoder_hidden_states"],
                              condition_mask=feed["condition_mask"], padding_mask=feed["padding_mask"],
                              return_dict=False)[0]
        err = (ours - ref).abs().max().item()
        assert err < 1e-12, f"{case}: the adapter differs from diffusers' forward by {err}"


def main():
    cls = load_official_network(Path(sys.argv[1]))
    check_adapter(cls)
    model = build(cls)
    (OUT / "model").mkdir(exist_ok=True)
    state = {k: v.contiguous() for k, v in official_state(model).items()}
    torch.save(state, OUT / "model" / "action_cond.pt")
    print(f"wrote {OUT / 'model' / 'action_cond.pt'} ({len(state)} tensors)")
    config = {**{k: list(v) if isinstance(v, tuple) else v for k, v in CONFIG.items()},
              "_class_name": "CosmosTransformer3DModel", **ACTION}
    save_json(OUT / "model" / "config.json", config)
    model64 = build(cls).double()
    for case in ["perframe", "batch2"]:
        feed = inputs(case)
        out = run(model, feed)
        out64 = run(model64, inputs(case, torch.float64))
        zero = run(model, {**feed, "action": torch.zeros_like(feed["action"])})
        err = (out.double() - out64).abs().max().item() / out64.abs().max().item()
        moved = (out - zero).abs().max().item() / out.abs().max().item()
        print(f"{case}: f32 vs f64 max error / max|out| = {err:.2e}; zero actions change it by {moved:.2e}")
        save_tensors(OUT / f"case_{case}.safetensors",
                     {**feed, "velocity": out, "velocity_f64": out64, "velocity_zero_action": zero},
                     metadata={"f32_vs_f64": f"{err:.3e}"})


if __name__ == "__main__":
    main()

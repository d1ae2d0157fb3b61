"""Golden fixtures for LoRA on the DiT: a PEFT LoRA on the tiny DiT of testdata/dit_tiny, saved as diffusers saves it.

The base network is testdata/dit_tiny (config.json + diffusion_pytorch_model.safetensors, built by dit.py), loaded into
diffusers' CosmosTransformer3DModel with the official q/k RMSNorm eps 1e-6. A PEFT LoRA (r=4, lora_alpha=8, so
alpha/r = 2) targets the official defaults in diffusers names: attn1/attn2 `to_q,to_k,to_v,to_out.0` and
`ff.net.0.proj,ff.net.2` (posttraining-spec 1.1-1.2). `lora_A` keeps PEFT's kaiming-uniform init; `lora_B`, zero at
PEFT's init, is set to 0.05 N(0,1) so the adapter changes the output.

The adapter is written as diffusers' Cosmos LoRA training script writes it: `get_peft_model_state_dict` ->
`convert_state_dict_to_diffusers` (attention keys become `lora.down`/`lora.up`, FF keys stay `lora_A`/`lora_B`) ->
`CosmosLoraLoaderMixin.save_lora_weights` with the adapter's LoraConfig as `lora_adapter_metadata`. The outputs are
computed by loading that file back into a fresh base model with diffusers' own loader (`load_lora_into_transformer`),
at scale 1 and, through `set_adapters(weights=0.5)`, at scale 0.5; the in-memory PEFT model is checked to agree.

The other direction: `orrery_lora_weights.safetensors`, an adapter written by orrery's exporter (`save_lora_weights`,
rank 4, alpha 8 in its metadata; `ORRERY_WRITE_FIXTURES=1 cargo test -p orrery-dit --test lora an_adapter` writes it,
and `regenerate.sh` runs that first), is loaded by the same diffusers loader; the script checks that diffusers took
every tensor and orrery's rank and alpha, and stores diffusers' output as `velocity_orrery_lora` for orrery to match.

Writes testdata/dit_lora/:
  pytorch_lora_weights.safetensors   the adapter as diffusers writes it (keys `transformer.<module>.lora...`)
  official_with_lora.pt              torch.save of the base weights under official names (`net.` prefix) plus
                                     `net.<module>.lora_A.default.weight` / `lora_B.default.weight`, as the official
                                     DCP -> .pt conversion of a LoRA run leaves them (not merged)
  case.safetensors                   inputs (dit.py's `perframe` case), `velocity_scale1`, `velocity_scale0_5`,
                                     `velocity_base` (no adapter), `velocity_orrery_lora` (orrery's adapter loaded by
                                     diffusers) and the float64 outputs `*_f64`
"""

import json

import torch
from diffusers import CosmosTransformer3DModel
from diffusers.loaders.lora_pipeline import CosmosLoraLoaderMixin
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig, get_peft_model_state_dict

from common import TESTDATA, fixture_dir, save_json, save_tensors, seed_everything
from dit import inputs, to_official

BASE = TESTDATA / "dit_tiny"
OUT = fixture_dir("dit_lora")
RANK, ALPHA = 4, 8
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"]


def base_model(dtype=torch.float32):
    model = CosmosTransformer3DModel.from_pretrained(BASE, torch_dtype=dtype).eval()
    for name, module in model.named_modules():
        if name.endswith("norm_q") or name.endswith("norm_k"):
            module.eps = 1e-6
    return model


def forward(model, feed):
    with torch.no_grad():
        return model(**feed, return_dict=False)[0]


def train_like_adapter():
    """The base model with a fresh PEFT adapter whose B is non-zero."""
    seed_everything(29)
    model = base_model()
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, init_lora_weights=True, target_modules=TARGETS)
    model.add_adapter(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn_like(p))
    return model


ORRERY_ADAPTER = "orrery_lora_weights.safetensors"


def reloaded(dtype, weight_name="pytorch_lora_weights.safetensors"):
    """A fresh base model with a saved adapter file loaded by diffusers' own loader."""
    model = base_model(dtype)
    state_dict, metadata = CosmosLoraLoaderMixin.lora_state_dict(OUT, weight_name=weight_name,
                                                                  return_lora_metadata=True)
    CosmosLoraLoaderMixin.load_lora_into_transformer(state_dict, transformer=model, metadata=metadata,
                                                     adapter_name="default")
    return model.to(dtype)


def orrery_adapter_outputs(feed, feed64):
    """diffusers' output with the adapter orrery saved, after checking that diffusers read all of it as written."""
    model = reloaded(torch.float32, ORRERY_ADAPTER)
    config = model.peft_config["default"]
    assert (config.r, config.lora_alpha) == (RANK, ALPHA), f"diffusers read r={config.r}, alpha={config.lora_alpha}"
    loaded = get_peft_model_state_dict(model)
    from safetensors.torch import load_file
    written = load_file(OUT / ORRERY_ADAPTER)
    assert len(loaded) == len(written) == 40, (len(loaded), len(written))
    for key, value in written.items():  # `transformer.transformer_blocks.0.attn1.to_q.lora_A.weight`
        assert torch.equal(loaded[key.removeprefix("transformer.")], value), key
    return forward(model, feed), forward(reloaded(torch.float64, ORRERY_ADAPTER), feed64)


def rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def main():
    model = train_like_adapter()
    peft_state = get_peft_model_state_dict(model)
    metadata = model.peft_config["default"].to_dict()
    # PEFT keeps target_modules as a set, whose order changes with Python's hash seed: sorted, the file is the same
    # on every run (up to the order of the two header metadata keys, which safetensors keeps in a hash map).
    metadata["target_modules"] = sorted(metadata["target_modules"])
    CosmosLoraLoaderMixin.save_lora_weights(
        OUT, transformer_lora_layers=convert_state_dict_to_diffusers(peft_state),
        transformer_lora_adapter_metadata=metadata, weight_name="pytorch_lora_weights.safetensors",
    )
    print(f"wrote {(OUT / 'pytorch_lora_weights.safetensors').relative_to(TESTDATA.parent)}")

    # The official layout: base weights and adapter under official names, LoRA not merged.
    official = {to_official(k): v.clone() for k, v in base_model().state_dict().items()}
    for key, value in peft_state.items():  # `transformer_blocks.0.attn1.to_q.lora_A.weight`
        module, half = key.rsplit(".lora_", 1)
        official[f"{to_official(module)}.lora_{half.replace('.weight', '.default.weight')}"] = value.clone()
    torch.save(official, OUT / "official_with_lora.pt")
    print(f"wrote testdata/dit_lora/official_with_lora.pt ({len(official)} tensors)")

    feed = inputs("perframe")
    feed64 = inputs("perframe", torch.float64)
    tensors = dict(feed)
    tensors["velocity_base"] = forward(base_model(), feed)
    tensors["velocity_base_f64"] = forward(base_model(torch.float64), feed64)
    in_memory = forward(model, feed)
    errors = {}
    for dtype, suffix, f in [(torch.float32, "", feed), (torch.float64, "_f64", feed64)]:
        m = reloaded(dtype)
        tensors[f"velocity_scale1{suffix}"] = forward(m, f)
        m.set_adapters(["default"], weights=[0.5])
        tensors[f"velocity_scale0_5{suffix}"] = forward(m, f)
    tensors["velocity_orrery_lora"], tensors["velocity_orrery_lora_f64"] = orrery_adapter_outputs(feed, feed64)
    errors["orrery_lora_f32_vs_f64"] = rel(tensors["velocity_orrery_lora"], tensors["velocity_orrery_lora_f64"])
    errors["orrery_lora_effect"] = rel(tensors["velocity_orrery_lora"], tensors["velocity_base"])
    errors["reloaded_vs_in_memory"] = rel(tensors["velocity_scale1"], in_memory)
    errors["scale1_f32_vs_f64"] = rel(tensors["velocity_scale1"], tensors["velocity_scale1_f64"])
    errors["scale0_5_f32_vs_f64"] = rel(tensors["velocity_scale0_5"], tensors["velocity_scale0_5_f64"])
    errors["lora_effect"] = rel(tensors["velocity_scale1"], tensors["velocity_base"])
    for k, v in errors.items():
        print(f"{k}: max error / max|out| = {v:.2e}")
    assert errors["reloaded_vs_in_memory"] < 1e-6, "diffusers' loader disagrees with the in-memory PEFT model"
    assert errors["lora_effect"] > 1e-2, "the adapter barely changes the output"
    save_tensors(OUT / "case.safetensors", tensors,
                 metadata={"errors": json.dumps({k: f"{v:.3e}" for k, v in errors.items()}, sort_keys=True)})
    save_json(OUT / "oracle.json", {"rank": RANK, "lora_alpha": ALPHA, "targets": TARGETS, "case": "perframe",
                                    "lora_B_std": 0.05, "errors": {k: float(f"{v:.3e}") for k, v in errors.items()},
                                    "metadata": json.loads(json.dumps(metadata, default=list))})


if __name__ == "__main__":
    main()

"""Golden fixtures for the Reason1 text encoder: a tiny random transformers `Qwen2_5_VLForConditionalGeneration`
(text part: vocab 512, hidden 64, 3 layers, 4 heads / 2 KV heads; a minimal vision tower that is never run).

The Cosmos prompt embedding (spec section 6): hidden_states[1:] (layers 1..N, the last after the final RMSNorm,
transformers 5 convention), each normalised per token as (h - mean) / (std + 1e-8) with the unbiased std,
concatenated on the feature axis. No attention mask; positions 0..L-1.

Writes testdata/qwen_tiny/:
  config.json, model.safetensors        the model as transformers 5 saves it (older `model.layers.*` text keys)
  language_model_layout.safetensors     the same weights under the newer layout (`model.language_model.*`,
                                        `model.visual.*`), as recent Hugging Face Qwen2.5-VL folders store them
  case.safetensors                      `input_ids` (2, 24) int64, `hidden_state_<i>` for i = 0..3 (i = 0 the token
                                        embeddings), `prompt_embeds` (2, 24, 3 * 64), and `prompt_embeds_f64`
"""

import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from common import fixture_dir, save_tensors, seed_everything

OUT = fixture_dir("qwen_tiny")


def build():
    seed_everything(0)
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-6, rope_theta=1000000.0,
            tie_word_embeddings=False, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        ),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, fullatt_block_indexes=[0]),
        vocab_size=512,
    )
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and p.ndim == 1:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))
    return model


def cosmos_embedding(hidden_states):
    layers = []
    for h in hidden_states[1:]:
        mean = h.mean(dim=-1, keepdim=True)
        std = h.std(dim=-1, keepdim=True)  # unbiased (N - 1)
        layers.append((h - mean) / (std + 1e-8))
    return torch.cat(layers, dim=-1)


def main():
    model = build()
    model.save_pretrained(OUT, safe_serialization=True)
    newer = dict(model.state_dict())  # in memory transformers 5 uses the newer layout
    assert any(k.startswith("model.language_model.") for k in newer), sorted(newer)[:5]
    save_tensors(OUT / "language_model_layout.safetensors", newer)
    ids = torch.randint(0, 512, (2, 24), generator=torch.Generator().manual_seed(3))
    ids[:, -5:] = 0  # padding tokens, attended like any other (no attention mask)
    with torch.no_grad():
        out = model.model.language_model(input_ids=ids, output_hidden_states=True)
        out64 = build().double().model.language_model(input_ids=ids, output_hidden_states=True)
    hs = out.hidden_states
    embeds = cosmos_embedding(hs)
    embeds64 = cosmos_embedding(out64.hidden_states)
    err = (embeds.double() - embeds64).abs().max().item() / embeds64.abs().max().item()
    print(f"{len(hs)} hidden states, prompt_embeds {tuple(embeds.shape)}, f32 vs f64 {err:.2e}")
    tensors = {"input_ids": ids, "prompt_embeds": embeds, "prompt_embeds_f64": embeds64}
    tensors.update({f"hidden_state_{i}": h for i, h in enumerate(hs)})
    save_tensors(OUT / "case.safetensors", tensors, metadata={"f32_vs_f64": f"{err:.3e}"})


if __name__ == "__main__":
    main()

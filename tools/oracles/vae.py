"""Golden fixtures for the Wan2.1 causal video VAE: a tiny random diffusers `AutoencoderKLWan` with the real
block layout (base_dim 8, z_dim 4, dim_mult [1, 2, 4, 4], 2 res blocks, temporal downsampling [F, T, T]) and
non-trivial latent mean/std. diffusers' VAE is bit-identical to the official `WanVAE_` (oracle notes, section 2).

Writes testdata/vae_tiny/:
  config.json, diffusion_pytorch_model.safetensors   the model as diffusers saves it
  case_<frames>f.safetensors                        `video` (1, 3, T, 32, 32) in [-1, 1], `latent` (encoder mean,
                                                    unnormalised), `latent_f64`, `decoded` (decoder output of
                                                    `latent`, NOT clamped, as the official `WanVAE_.decode` returns it)
and testdata/vae_tiny_wide_decoder/: the same files (9 frames only) for the model with a wider decoder
(`decoder_base_dim` 12, Wan2.2's separate decoder width), the layout of our decoders trained on a frozen encoder.
"""

import torch
from diffusers import AutoencoderKLWan

from common import fixture_dir, save_tensors, seed_everything

def build(decoder_base_dim=None):
    seed_everything(0)
    g = torch.Generator().manual_seed(7)
    model = AutoencoderKLWan(
        base_dim=8, decoder_base_dim=decoder_base_dim, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True],
        latents_mean=(torch.randn(4, generator=g) * 0.5).tolist(),
        latents_std=(1.0 + torch.rand(4, generator=g)).tolist(),
    ).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) / fan_in**0.5)
    return model


def decode_unclamped(model, z):
    """diffusers' `_decode` without its final clamp: post_quant_conv, then one latent frame at a time."""
    model.clear_cache()
    x = model.post_quant_conv(z)
    outs = []
    for i in range(z.shape[2]):
        model._conv_idx = [0]
        outs.append(model.decoder(x[:, :, i:i + 1], feat_cache=model._feat_map, feat_idx=model._conv_idx, first_chunk=i == 0))
    model.clear_cache()
    return torch.cat(outs, 2)


def write(out, frame_counts, decoder_base_dim=None):
    model = build(decoder_base_dim)
    model.save_pretrained(out, safe_serialization=True)
    model64 = build(decoder_base_dim).double()
    for frames in frame_counts:
        g = torch.Generator().manual_seed(frames)
        video = torch.rand(1, 3, frames, 32, 32, generator=g) * 2 - 1
        with torch.no_grad():
            latent = model.encode(video).latent_dist.mean
            latent64 = model64.encode(video.double()).latent_dist.mean
            decoded = decode_unclamped(model, latent)
        err = (latent.double() - latent64).abs().max().item() / latent64.abs().max().item()
        print(f"{frames} frames: latent {tuple(latent.shape)}, f32 vs f64 {err:.2e}, decoded range "
              f"[{decoded.min():.2f}, {decoded.max():.2f}]")
        save_tensors(out / f"case_{frames}f.safetensors",
                     {"video": video, "latent": latent, "latent_f64": latent64, "decoded": decoded},
                     metadata={"f32_vs_f64": f"{err:.3e}"})


def main():
    write(fixture_dir("vae_tiny"), [1, 9, 17])
    write(fixture_dir("vae_tiny_wide_decoder"), [9], decoder_base_dim=12)


if __name__ == "__main__":
    main()

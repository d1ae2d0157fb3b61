"""Fixtures for orrery-nn's fused CPU kernels: outputs and gradients from PyTorch autograd (float64) for fixed
inputs, writing testdata/kernels/cases.safetensors.

Each case `name` stores its inputs `name.in.<arg>`, an upstream gradient `name.probe` (the loss is
sum(output * probe)), the output `name.out` and the gradient of every input `name.grad.<arg>`. Inputs are
float32; references are computed in float64 from those float32 values.
"""

import torch
import torch.nn.functional as F

from common import fixture_dir, save_tensors, seed_everything


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


def conv3d(stride_t, padding):
    """Frame-major video (B, T, C, H, W) through F.conv3d (B, C, T, H, W), no temporal padding."""
    def run(x, w):
        y = F.conv3d(x.permute(0, 2, 1, 3, 4), w, stride=(stride_t, 1, 1), padding=(0, *padding))
        return y.permute(0, 2, 1, 3, 4)
    return run


def modulate(x, shift, scale):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6) * (1 + scale) + shift


CASES = {
    # name: (function, {arg: shape}, input scale)
    "gelu_erf": (lambda x: F.gelu(x), {"x": (3, 700)}, 3.0),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), {"x": (3, 700)}, 3.0),
    "silu": (F.silu, {"x": (3, 700)}, 4.0),
    "softmax": (lambda x: torch.softmax(x, -1), {"x": (4, 5, 37)}, 5.0),
    "layer_norm": (lambda x: F.layer_norm(x, x.shape[-1:], eps=1e-6), {"x": (5, 7, 48)}, 2.0),
    "layer_norm_affine": (lambda x, w, b: F.layer_norm(x, x.shape[-1:], w, b, eps=1e-5),
                          {"x": (5, 7, 48), "w": (48,), "b": (48,)}, 2.0),
    "rms_norm": (lambda x, w: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w,
                 {"x": (2, 3, 5, 16), "w": (16,)}, 2.0),
    "modulate": (modulate, {"x": (2, 3, 10, 24), "shift": (2, 3, 1, 24), "scale": (2, 3, 1, 24)}, 1.0),
    "modulate_shared": (modulate, {"x": (2, 3, 10, 24), "shift": (2, 1, 1, 24), "scale": (2, 1, 1, 24)}, 1.0),
    "gated": (lambda x, y, gate: x + gate * y, {"x": (2, 3, 10, 24), "y": (2, 3, 10, 24), "gate": (2, 3, 1, 24)},
              1.0),
    "gated_shared": (lambda x, y, gate: x + gate * y,
                     {"x": (2, 3, 10, 24), "y": (2, 3, 10, 24), "gate": (2, 1, 1, 24)}, 1.0),
    # cos/sin are constant tables (no gradient); their values need not be a real rotation for the test.
    "rope": (rope, {"x": (2, 3, 10, 16), "cos": (10, 16), "sin": (10, 16)}, 1.0),
    "conv3d": (conv3d(1, (1, 1)), {"x": (2, 5, 3, 9, 11), "w": (4, 3, 3, 3, 3)}, 1.0),
    "conv3d_strided": (conv3d(2, (0, 0)), {"x": (1, 7, 3, 6, 5), "w": (2, 3, 3, 1, 1)}, 1.0),
    # More output pixels than one im2col tile (1024), an even kernel, padding in one direction only.
    "conv3d_tiled": (conv3d(1, (0, 1)), {"x": (1, 3, 2, 40, 33), "w": (3, 2, 2, 2, 3)}, 1.0),
    # More keys than one key block (512) and a partial query block (64): online softmax across blocks.
    "attention_cross": (F.scaled_dot_product_attention, {"q": (2, 3, 70, 16), "k": (2, 3, 600, 16),
                                                         "v": (2, 3, 600, 16)}, 1.5),
    "attention_self": (F.scaled_dot_product_attention, {"q": (1, 2, 130, 32), "k": (1, 2, 130, 32),
                                                        "v": (1, 2, 130, 32)}, 1.5),
}

# Arguments that are constants (no gradient is stored or expected).
CONSTANTS = {"cos", "sin"}


def main():
    seed_everything(0)
    out = {}
    for name, (fn, shapes, scale) in CASES.items():
        inputs = {a: (torch.randn(s) * scale).float() for a, s in shapes.items()}
        leaves = {a: t.double().requires_grad_(a not in CONSTANTS) for a, t in inputs.items()}
        y = fn(*leaves.values())
        probe = torch.randn(y.shape).float()
        (y * probe.double()).sum().backward()
        for a, t in inputs.items():
            out[f"{name}.in.{a}"] = t
            if a not in CONSTANTS:
                out[f"{name}.grad.{a}"] = leaves[a].grad.float()
        out[f"{name}.probe"] = probe
        out[f"{name}.out"] = y.detach().float()
    save_tensors(fixture_dir("kernels") / "cases.safetensors", out,
                 {"torch": torch.__version__, "note": "tools/oracles/kernels.py"})


if __name__ == "__main__":
    main()

"""The tiny DiT as a released checkpoint looks: a `torch.save` of a flat dict with `net.`-prefixed official names,
TransformerEngine `_extra_state` entries (BytesIO) and the bookkeeping buffers the released `.pt` files carry
(spec section 7). Reads testdata/dit_tiny/official.safetensors (written by dit.py), writes
testdata/dit_tiny/released_layout.pt.
"""

import io

import torch
from safetensors.torch import load_file

from common import fixture_dir

OUT = fixture_dir("dit_tiny")


def main():
    state = dict(load_file(str(OUT / "official.safetensors")))
    for name in list(state):
        if name.endswith("q_norm.weight") or name.endswith("k_norm.weight"):
            state[name.replace(".weight", "._extra_state")] = io.BytesIO(b"te-extra-state")
    state["net.accum_video_sample_counter"] = torch.tensor(12345, dtype=torch.int64)
    state["net.accum_iteration"] = torch.tensor(678, dtype=torch.int64)
    state["net.pos_embedder.seq"] = torch.arange(16, dtype=torch.float32)
    state["net.pos_embedder.dim_spatial_range"] = torch.arange(4, dtype=torch.float32) / 8
    torch.save(state, OUT / "released_layout.pt")
    print(f"wrote {OUT / 'released_layout.pt'} ({len(state)} entries)")


if __name__ == "__main__":
    main()

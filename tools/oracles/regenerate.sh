#!/usr/bin/env bash
# Rebuilds every golden fixture under testdata/ from the reference implementations.
# Usage: tools/oracles/regenerate.sh [script ...]   (default: all scripts)
# flow, pipeline and distilled load the official scheduler, dit_action the official action network, from a checkout of github.com/nvidia-cosmos/cosmos-predict2.5:
# set COSMOS_PREDICT2_5=/path/to/that/checkout (they are skipped, with a message, when it is not set).
# Needs Python 3.11 and ffmpeg/ffprobe (media fixtures). Creates tools/oracles/.venv on first use (~5 GB: the
# registry's torch is a CUDA build, which runs on CPU).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
  "$venv/bin/pip" install -q --no-deps torchvision==0.29.2
fi
scripts=("$@")
[ ${#scripts[@]} -gt 0 ] || scripts=(checkpoint_io media dit dit_pt dit_lora dit_action vae qwen qwen_tokenizer flow pipeline distilled metrics evalnets motion kernels merge)
cd "$here"
for s in "${scripts[@]}"; do
  echo "== $s"
  case "$s" in
    flow|pipeline|distilled|dit_action)
      if [ -z "${COSMOS_PREDICT2_5:-}" ]; then
        echo "   skipped: set COSMOS_PREDICT2_5 to a checkout of nvidia-cosmos/cosmos-predict2.5"
        continue
      fi
      "$venv/bin/python" "$s.py" "$COSMOS_PREDICT2_5" ;;
    dit_lora)
      # The adapter orrery's exporter writes, which the script loads with diffusers' loader.
      (cd "$here/../.." && ORRERY_WRITE_FIXTURES=1 cargo test -q -p orrery-dit --test lora an_adapter_orrery_saves)
      "$venv/bin/python" "$s.py" ;;
    *) "$venv/bin/python" "$s.py" ;;
  esac
done

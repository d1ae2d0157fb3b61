#!/usr/bin/env bash
# Rebuilds every golden fixture under testdata/ from the reference implementations.
# Usage: tools/oracles/regenerate.sh [script ...]   (default: all scripts)
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
[ ${#scripts[@]} -gt 0 ] || scripts=(checkpoint_io media dit dit_pt vae qwen qwen_tokenizer)
cd "$here"
for s in "${scripts[@]}"; do
  echo "== $s"
  "$venv/bin/python" "$s.py"
done

#!/usr/bin/env bash
# Times `orrery generate --device cuda` with the released 2B architecture (random weights from
# `orrery random-bundle`, no text encoder: random prompt embeddings) at 480p and 720p (93 frames, the 2B's
# default sampling: Karras, guidance 7 with the negative branch), printing each stage's time (load, sample,
# vae-decode: the `stage` lines of the log) and the peak GPU memory (nvidia-smi polled in the background). Builds
# nothing: it runs the `cuda` binary of tools/gpu/build-cuda.sh.
#
#   tools/gpu/bench-2b.sh                 # STEPS=1: the time of a DiT call, extrapolated to the official 35 steps
#   STEPS=35 RUN_TIMEOUT=3000 tools/gpu/bench-2b.sh   # the whole official sampling (36 calls of 2 DiT passes)
#
# With the defaults it ends within 10 minutes whatever the GPU: each of its three runs is cut at RUN_TIMEOUT.
#
# Settings (environment): ORRERY (the binary, default target/cuda/release/orrery), DEVICE (cuda, cuda:N or cpu),
# CONFIG (2b, 14b or tiny), STEPS, FRAMES (93), SIZES ("832x480 1280x704"), RUN_TIMEOUT (seconds per run, 180),
# WORK (the bundle and outputs, default target/gpu-bench), FLAGS (more `generate` flags, e.g. the memory options
# "--offload-blocks all --vae-tile 32"), TEXT=1 (a random Cosmos-Reason1-7B text encoder too, 14 GB written once:
# the prompt is encoded and the `text-encoder` stage timed; with FLAGS="--text-encoder-8bit" in 8 bits).
# `DEVICE=cpu CONFIG=tiny FRAMES=9 SIZES=64x64` checks the script on any machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${ORRERY:-target/cuda/release/orrery}"
device="${DEVICE:-cuda}"
config="${CONFIG:-2b}"
steps="${STEPS:-1}"
frames="${FRAMES:-93}"
sizes="${SIZES:-832x480 1280x704}"
limit="${RUN_TIMEOUT:-180}"
work="${WORK:-target/gpu-bench}"

if [ "$device" != cpu ]; then
  . tools/gpu/run-env.sh
fi
if [ ! -x "$bin" ]; then
  echo "no $bin: build it with tools/gpu/build-cuda.sh and carry it here" >&2
  exit 1
fi
mkdir -p "$work"

gpu="${device#cuda}"
gpu="${gpu#:}"
gpu="${gpu:-0}"
have_smi=false
if [ "$device" != cpu ] && command -v nvidia-smi > /dev/null; then
  have_smi=true
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader -i "$gpu"
fi
gpu_mib() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i "$gpu"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

read -r -a extra <<< "${FLAGS:-}"
bundle="$work/random-$config"
embeds=(--prompt-embeds "$bundle/prompt_embeds.safetensors")
text=()
if [ "${TEXT:-0}" = 1 ]; then
  bundle="$work/random-$config-text"
  embeds=()
  text=(--text-encoder testdata/qwen_tokenizer/tokenizer.json)
fi
if [ ! -f "$bundle/prompt_embeds.safetensors" ]; then
  start=$(date +%s.%N)
  "$bin" random-bundle --config "$config" --out "$bundle" "${text[@]}"
  echo "random $config bundle written in $(since "$start") s"
fi

# One `orrery generate`: NAME SIZE FRAMES STEPS. Prints its stages, its wall time and the peak GPU memory.
run() {
  local name=$1 size=$2 n=$3 s=$4
  local log="$work/$name.log" mem="$work/$name.mem" idle=0 poller=""
  if $have_smi; then
    idle=$(gpu_mib)
    (while :; do gpu_mib; sleep 0.2; done) > "$mem" 2> /dev/null &
    poller=$!
  fi
  local start rc=0
  start=$(date +%s.%N)
  RUST_LOG="${RUST_LOG:-info,orrery_pipeline::stage=debug}" timeout "$limit" "$bin" generate --model "$bundle" \
    --prompt "random weights" "${embeds[@]}" --device "$device" --frames "$n" --size "$size" --steps "$s" \
    --out "$work/$name.mp4" "${extra[@]}" > "$log" 2>&1 || rc=$?
  local wall
  wall=$(since "$start")
  if [ -n "$poller" ]; then
    kill "$poller" 2> /dev/null || true
    wait "$poller" 2> /dev/null || true
  fi
  echo "== $name: $n frames of $size, $s steps ($((s + 1)) calls of the DiT, each with the negative branch) ${extra[*]}"
  # The log's colours off, then its stage lines.
  sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o 'stage [a-z-]*: [0-9.]* s' | sed 's/^/   /' || true
  if [ "$rc" -eq 124 ]; then
    echo "   timed out after $limit s (RUN_TIMEOUT)"
  elif [ "$rc" -ne 0 ]; then
    echo "   failed (exit $rc); the end of $log:"
    tail -5 "$log" | sed 's/^/   | /'
  fi
  local sample
  sample=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | sed -n 's/.*stage sample: \([0-9.]*\) s.*/\1/p' | tail -1)
  if [ -n "$sample" ]; then
    awk -v t="$sample" -v c=$((s + 1)) \
      'BEGIN { printf "   per call: %.3f s; 35 steps (36 calls): %.1f s\n", t / c, t * 36 / c }'
  fi
  echo "   wall: $wall s (with start-up and MP4 encoding)"
  if $have_smi && [ -s "$mem" ]; then
    local peak
    peak=$(sort -n "$mem" | tail -1)
    echo "   peak GPU memory: $peak MiB ($((peak - idle)) MiB above the $idle MiB before the run)"
  fi
}

# PTX is compiled by the driver on first use: a small run first, so that the timed runs do not pay for it.
run warmup 64x64 9 1
for size in $sizes; do
  run "gen-$size" "$size" "$frames" "$steps"
done

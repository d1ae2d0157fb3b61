#!/usr/bin/env bash
# Checks `orrery generate --device cuda` against the CPU on a tiny bundle of random weights (seconds): Text2World,
# Image2World and Video2World in float32, the largest latent difference relative to the latents' scale (expected
# at float32 rounding, well below 1e-3; not yet run on a GPU), and the time of each run. Then the memory options
# on the device: DiT blocks kept in host memory (expected: the same latents as resident blocks, 0), tiled VAE
# decoding (a round trip's PSNR on both) and the 8-bit text encoder (against the CPU's; the CPU's Q8_0 product
# also rounds the activations to 8 bits, CUDA's may not: expect about 1e-2). Builds nothing: it runs the `cuda`
# binary of tools/gpu/build-cuda.sh. Run it before tools/gpu/bench-2b.sh.
#
#   tools/gpu/check-device.sh             # ORRERY, DEVICE (cuda or cuda:N), WORK as in bench-2b.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${ORRERY:-target/cuda/release/orrery}"
device="${DEVICE:-cuda}"
work="${WORK:-target/gpu-check}"

if [ "$device" != cpu ]; then
  . tools/gpu/run-env.sh
fi
if [ ! -x "$bin" ]; then
  echo "no $bin: build it with tools/gpu/build-cuda.sh and carry it here" >&2
  exit 1
fi
mkdir -p "$work"
bundle="$work/random-tiny"
[ -f "$bundle/text_encoder/model.safetensors" ] ||
  "$bin" random-bundle --config tiny --out "$bundle" --text-encoder testdata/qwen_tokenizer/tokenizer.json > /dev/null

# NAME DEVICE [FLAGS...]: one generation, its latents in $work/NAME.safetensors. The prompt's embedding is read
# from the bundle's file unless EMBEDS=encode (then the bundle's text encoder runs).
gen() {
  local name=$1 on=$2
  shift 2
  local start
  start=$(date +%s.%N)
  local embeds=(--prompt-embeds "$bundle/prompt_embeds.safetensors")
  [ "${EMBEDS:-file}" = encode ] && embeds=()
  "$bin" generate --model "$bundle" --prompt "random weights" "${embeds[@]}" \
    --dtype f32 --frames 17 --size 64x48 --steps 3 --device "$on" --save-latents "$work/$name.safetensors" \
    --out "$work/$name.mp4" "$@" > "$work/$name.log" 2>&1 || {
    echo "$name failed; the end of $work/$name.log:" >&2
    tail -5 "$work/$name.log" >&2
    exit 1
  }
  awk -v a="$start" -v b="$(date +%s.%N)" -v n="$name" 'BEGIN { printf "%s: %.2f s\n", n, b - a }'
}

# max |a - b| / max |a| of the float32 `latents` of two safetensors files (the format read by hand: an 8-byte
# header length, a JSON header, the data).
compare() {
  python3 - "$1" "$2" << 'EOF'
import json, struct, sys
def latents(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        entry = json.loads(f.read(n))["latents"]
        assert entry["dtype"] == "F32", entry
        start, end = entry["data_offsets"]
        f.seek(8 + n + start)
        data = f.read(end - start)
    return struct.unpack("<%df" % (len(data) // 4), data)
a, b = latents(sys.argv[1]), latents(sys.argv[2])
scale = max(abs(x) for x in a) or 1.0
print("%.2e" % (max(abs(x - y) for x, y in zip(a, b)) / scale))
EOF
}

image="testdata/media/robot_welding.jpg"
video="testdata/media/video2world_nemo_2b.mp4"
gen warmup "$device" > /dev/null # the driver compiles the PTX kernels on first use
for mode in t2w i2w v2w; do
  case $mode in
    t2w) flags=() ;;
    i2w) flags=(--image "$image") ;;
    v2w) flags=(--video "$video") ;;
  esac
  gen "$mode-cpu" cpu "${flags[@]}"
  gen "$mode-device" "$device" "${flags[@]}"
  diff=$(compare "$work/$mode-cpu.safetensors" "$work/$mode-device.safetensors")
  echo "$mode: latents differ by $diff of their scale"
done

# NAME REFERENCE: how far NAME's latents are from REFERENCE's.
report() {
  echo "$1: latents differ from $2 by $(compare "$work/$2.safetensors" "$work/$1.safetensors") of their scale"
}
gen offload-device "$device" --offload-blocks all
report offload-device t2w-device
for on in cpu "$device"; do
  psnr=$("$bin" vae roundtrip "$video" "$work/tiled-$on.mp4" --model "$bundle/vae" --size 64x48 --frames 17 \
    --tile 4 --device "$on" | grep -o 'PSNR.*')
  echo "vae roundtrip decoded in tiles of 4 on $on: $psnr (expected: the same on both)"
done
EMBEDS=encode gen text8-cpu cpu --text-encoder-8bit
EMBEDS=encode gen text8-device "$device" --text-encoder-8bit
report text8-device text8-cpu

#!/usr/bin/env bash
# Builds `orrery` with the `cuda` feature on a machine without a GPU or a system CUDA toolkit.
#
# The toolkit comes from NVIDIA's PyPI wheels (the CUDA 13.0 versions PyTorch 2.11 pins, whose driver interface
# cudarc 0.19 speaks); the driver library `libcuda.so.1` is replaced at link time by a stub exporting every driver
# entry point cudarc declares (on a GPU machine the real driver is loaded instead).
#
#   tools/gpu/build-cuda.sh [COMPUTE_CAP]      # default 90 (H100/H200)
#
# Output: target/cuda/release/orrery. To run it, the cuBLAS/cuRAND/cudart 13 libraries must be on
# LD_LIBRARY_PATH (PyTorch's nvidia wheels carry them; tools/gpu/run-env.sh does this).
set -euo pipefail
cd "$(dirname "$0")/../.."
cap="${1:-90}"
tree="$PWD/target/cuda/toolkit"
cuda="$tree/nvidia/cu13"

if [ ! -x "$cuda/bin/nvcc" ]; then
  python3 -m pip install --quiet --no-deps --target "$tree" \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96 \
    nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.1.0.3 nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88
fi

# The linker looks for unversioned names; the wheels ship only versioned ones.
for lib in cublas cublasLt cudart nvrtc; do ln -sf "lib$lib.so.13" "$cuda/lib/lib$lib.so"; done
ln -sf libcurand.so.10 "$cuda/lib/libcurand.so"

stub="$cuda/lib/stubs/libcuda.so"
if [ ! -f "$stub" ]; then
  cargo fetch --quiet
  sys=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.10 | head -1)/src/driver/sys/mod.rs
  mkdir -p "$(dirname "$stub")"
  # Each entry point returns CUDA_ERROR_STUB_LIBRARY (34): a binary that loads the stub fails cleanly.
  grep -o 'pub unsafe fn cu[A-Za-z0-9_]*' "$sys" | sed 's/pub unsafe fn //' | sort -u |
    awk '{print "int " $1 "(void) { return 34; }"}' > "$tree/libcuda_stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub" "$tree/libcuda_stub.c"
  ln -sf libcuda.so "$cuda/lib/stubs/libcuda.so.1"
fi

export CUDA_HOME="$cuda" PATH="$cuda/bin:$PATH" CUDA_COMPUTE_CAP="$cap"
export LIBRARY_PATH="$cuda/lib:$cuda/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
export RUSTFLAGS="${RUSTFLAGS:-} -L $cuda/lib -L $cuda/lib/stubs"
cargo build --release -p orrery --features cuda --target-dir target/cuda
ls -la target/cuda/release/orrery

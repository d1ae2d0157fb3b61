#!/usr/bin/env bash
# Source this on a GPU machine before running a `cuda` build of orrery: puts the cuBLAS/cuRAND/cudart 13
# libraries on LD_LIBRARY_PATH, from CUDA_LIBS if set, else from PyTorch's nvidia wheels. libcuda.so.1 comes from
# the NVIDIA driver.
#
#   . tools/gpu/run-env.sh && target/cuda/release/orrery train dit --config configs/nano-dit-p2.json --device cuda
libs="${CUDA_LIBS:-$(python3 -c "import nvidia,os;print(os.path.join(list(nvidia.__path__)[0],'cu13','lib'))" 2>/dev/null)}"
if [ -z "$libs" ] || [ ! -d "$libs" ]; then
  echo "no CUDA 13 libraries found: set CUDA_LIBS to a folder holding libcublas.so.13" >&2
  return 1 2>/dev/null || exit 1
fi
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

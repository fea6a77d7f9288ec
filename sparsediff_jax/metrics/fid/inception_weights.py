"""The pytorch-fid Inception weights: download, verify, read without torch, convert, cache.

One file: download, checksum, torch-free reading and the layout conversion
are one pipeline with one cache.

The reference FID network's weights are published by pytorch-fid as a torch state_dict
(`pt_inception-2015-12-05-6726825d.pth`, 95,628,359 bytes). On first use they are
downloaded into a cache directory, checked against their SHA-256, converted to the layout
of `sparsediff_jax.metrics.fid.inception.InceptionV3` and saved there as an .npz, so later
runs only read the .npz.

torch is never imported. `read_torch_state_dict` reads both on-disk formats of
`torch.save` (the zip archive used since torch 1.6 and the older "legacy" stream of
pickles) with a restricted unpickler: the only globals it resolves are OrderedDict,
torch's tensor-rebuild function and the storage type names, so a malicious file cannot run
code. Tensors come back as NumPy arrays of the stored dtype (float32 for every weight of
this network; num_batches_tracked counters are int64 and are dropped by the conversion).

Cache location: the `cache_dir` argument, else $SPARSEDIFF_CACHE, else
~/.cache/sparsediff_jax.
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
import urllib.request
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from sparsediff_jax import errors
from sparsediff_jax.runtime import caches
from sparsediff_jax.runtime.caches import sha256_file

__all__ = [
    "PT_INCEPTION_URL",
    "PT_INCEPTION_SHA256",
    "InceptionWeightsError",
    "cache_dir",
    "sha256_file",
    "verify_sha256",
    "read_torch_state_dict",
    "convert_state_dict",
    "download_weights",
    "load_params",
]

PT_INCEPTION_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                    "pt_inception-2015-12-05-6726825d.pth")
# The file name carries the first 8 hex digits (torch hub convention); the full digest is
# the one published for this file, 95,628,359 bytes.
PT_INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
_CONVERTED_VERSION = 1  # bump when the converted layout changes, to invalidate caches


# The weights file is missing, corrupt, truncated or not the expected one.
InceptionWeightsError = errors.InceptionWeightsError


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The cache directory: `path`, else $SPARSEDIFF_CACHE, else ~/.cache/sparsediff_jax."""
    return caches.cache_root(path)


def verify_sha256(path: str | os.PathLike, expected: str) -> str:
    """Returns the file's SHA-256; raises InceptionWeightsError if it is not `expected`."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise InceptionWeightsError(
            f"{path}: SHA-256 mismatch (expected {expected}, got {actual}, size "
            f"{os.path.getsize(path)} bytes). The file is truncated, corrupt or a different "
            f"file: delete it to download it again from {PT_INCEPTION_URL}, or set "
            "--config.eval.inception_sha256='' (expected_sha256=None in Python) to use your "
            "own weights knowingly.")
    return actual


# ----------------------------------------------------------------------------------------
# Reading torch.save files without torch.

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)


class _TensorRef:
    """A tensor whose storage bytes may only be known after unpickling (legacy format)."""

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    # Stands in for torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
    # requires_grad, backward_hooks[, metadata]); the trailing arguments are irrelevant here.
    return _TensorRef(storage, storage_offset, size, stride)


class _SafeUnpickler(pickle.Unpickler):
    """Resolves only the globals a tensor state_dict needs; anything else is refused."""

    def __init__(self, file, persistent_load):
        super().__init__(file)
        self._persistent_load = persistent_load

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (not a plain "
                                     "float tensor state_dict)")

    def persistent_load(self, pid):
        return self._persistent_load(pid)


def _storage_id(pid) -> tuple[str, np.dtype, tuple | None]:
    # pid = ('storage', storage_type, key, location, numel[, view_metadata])
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage")
            and isinstance(pid[1], _StorageType)):
        raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
    view = pid[5] if len(pid) > 5 else None
    return str(pid[2]), pid[1].dtype, view


def _materialize(ref: _TensorRef, storages: Mapping[str, tuple[np.dtype, bytes]]) -> np.ndarray:
    key, dtype, view = ref.storage
    _, data = storages[key]
    base = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"))
    if view is not None:  # legacy storage view: (view_key, offset, size) in elements
        base = base[view[1]:view[1] + view[2]]
    itemsize = base.dtype.itemsize
    needed = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride, strict=True)) + 1
    if min(ref.shape, default=1) > 0 and needed > base.size:
        raise InceptionWeightsError(f"tensor needs {needed} elements but storage {key} has {base.size}")
    arr = np.ndarray(ref.shape, base.dtype, base, ref.offset * itemsize,
                     tuple(s * itemsize for s in ref.stride))
    # np.array, not np.ascontiguousarray: the latter turns 0-d tensors into shape (1,).
    return np.array(arr, dtype=base.dtype.newbyteorder("="), order="C", copy=True)


def _read_zip(path: Path) -> tuple[Any, dict]:
    with zipfile.ZipFile(path) as zf:
        pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise InceptionWeightsError(f"{path}: zip archive without a single data.pkl record")
        prefix = pkl[0][: -len("data.pkl")]
        storages = {}

        def load(pid):
            key, dtype, view = _storage_id(pid)
            if key not in storages:
                storages[key] = (dtype, zf.read(f"{prefix}data/{key}"))
            return key, dtype, view

        if f"{prefix}byteorder" in zf.namelist() and zf.read(f"{prefix}byteorder") != b"little":
            raise InceptionWeightsError(f"{path}: big-endian torch files are not supported")
        with zf.open(pkl[0]) as f:
            obj = _SafeUnpickler(f, load).load()
    return obj, storages


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _read_legacy(path: Path) -> tuple[Any, dict]:
    # Layout: pickle(magic), pickle(protocol), pickle(sys_info), pickle(object) with
    # persistent storage ids, pickle(list of storage keys), then per key: int64 element
    # count followed by the raw little-endian elements.
    seen: dict[str, np.dtype] = {}

    def load(pid):
        key, dtype, view = _storage_id(pid)
        seen[key] = dtype
        return key, dtype, view

    with open(path, "rb") as f:
        plain = lambda: _SafeUnpickler(f, lambda pid: None).load()  # noqa: E731
        if plain() != _LEGACY_MAGIC or plain() != _LEGACY_PROTOCOL:
            raise InceptionWeightsError(f"{path}: not a torch.save file (bad magic number)")
        sys_info = plain()
        if not sys_info.get("little_endian", True):
            raise InceptionWeightsError(f"{path}: big-endian torch files are not supported")
        obj = _SafeUnpickler(f, load).load()
        storages = {}
        for key in plain():
            key = str(key)
            (count,) = struct.unpack("<q", f.read(8))
            nbytes = count * seen[key].itemsize
            data = f.read(nbytes)
            if len(data) != nbytes:
                raise EOFError(f"storage {key}: {len(data)} of {nbytes} bytes")
            storages[key] = (seen[key], data)
    return obj, storages


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a state_dict saved with torch.save (zip or legacy format) into NumPy arrays.

    Returns {name: array} with torch's names and shapes (e.g. OIHW conv kernels).
    Raises InceptionWeightsError for a truncated, corrupt or non-state_dict file.
    """
    path = Path(path)
    try:
        obj, storages = (_read_zip if zipfile.is_zipfile(path) else _read_legacy)(path)
        if not isinstance(obj, Mapping):
            raise InceptionWeightsError(f"{path}: top-level object is {type(obj).__name__}, "
                                        "not a state_dict")
        return {str(k): _materialize(v, storages) for k, v in obj.items()
                if isinstance(v, _TensorRef)}
    except InceptionWeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, KeyError, ValueError,
            struct.error, AttributeError, TypeError) as e:
        raise InceptionWeightsError(
            f"{path}: cannot read as a torch state_dict ({type(e).__name__}: {e}); the file "
            "is probably truncated or corrupt: delete it and download it again") from e


# ----------------------------------------------------------------------------------------
# Conversion to the InceptionV3 module layout.

# torch suffix -> (our suffix, transpose applied to the array)
_RENAMES = {
    "conv.weight": ("conv.kernel", (2, 3, 1, 0)),  # OIHW -> HWIO
    "bn.weight": ("bn.scale", None),
    "bn.bias": ("bn.bias", None),
    "bn.running_mean": ("bn.mean", None),
    "bn.running_var": ("bn.var", None),
    "fc.weight": ("fc.kernel", (1, 0)),  # [out, in] -> [in, out]
    "fc.bias": ("fc.bias", None),
}


def convert_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Maps pytorch-fid's state_dict to {dotted module path: float32 array} for InceptionV3.

    E.g. "Mixed_5b.branch1x1.conv.weight" [64, 192, 1, 1] -> "Mixed_5b.branch1x1.conv.kernel"
    [1, 1, 192, 64]. BatchNorm counters (num_batches_tracked) are dropped.
    """
    out = {}
    for name, value in state_dict.items():
        if name.endswith("num_batches_tracked"):
            continue
        for suffix, (new_suffix, axes) in _RENAMES.items():
            if name == suffix or name.endswith("." + suffix):
                array = np.asarray(value, np.float32)
                out[name[: len(name) - len(suffix)] + new_suffix] = np.ascontiguousarray(
                    array.transpose(axes) if axes else array)
                break
        else:
            raise InceptionWeightsError(f"unexpected state_dict entry {name!r}")
    return out


# ----------------------------------------------------------------------------------------
# Download and cache.


def download_weights(directory: str | os.PathLike | None = None, *, url: str = PT_INCEPTION_URL,
                     expected_sha256: str = PT_INCEPTION_SHA256) -> Path:
    """Returns the verified .pth in the cache directory, downloading it if absent.

    The download goes to a temporary name and is renamed only after its hash checks out,
    so an interrupted download never leaves a file that looks complete.
    """
    target = cache_dir(directory) / url.rsplit("/", 1)[-1]
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.part-{os.getpid()}")
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    f.write(chunk)
            verify_sha256(tmp, expected_sha256)
            os.replace(tmp, target)
        except OSError as e:
            raise InceptionWeightsError(f"could not download {url} to {target}: {e}; download "
                                        "it by hand and pass its path as "
                                        "--config.eval.inception_weights=PATH") from e
        finally:
            tmp.unlink(missing_ok=True)
    verify_sha256(target, expected_sha256)
    return target


def load_params(pth_path: str | os.PathLike | None = None, *,
                cache: str | os.PathLike | None = None,
                expected_sha256: str | None = PT_INCEPTION_SHA256) -> tuple[dict[str, np.ndarray], str]:
    """Converted Inception parameters and the SHA-256 of the .pth they came from.

    Args:
      pth_path: a local .pth; None downloads pytorch-fid's file into the cache.
      cache: cache directory (see `cache_dir`); the converted .npz is stored there, named
        by the source hash, and reused on later calls.
      expected_sha256: hash the .pth must have; None accepts any file (own weights).
    Returns:
      ({dotted module path: float32 array}, sha256 hex digest).
    """
    if pth_path is None:
        pth_path = download_weights(cache, expected_sha256=expected_sha256 or PT_INCEPTION_SHA256)
    pth_path = Path(pth_path)
    if not pth_path.is_file():
        raise InceptionWeightsError(f"{pth_path}: no such weights file")
    sha = verify_sha256(pth_path, expected_sha256) if expected_sha256 else sha256_file(pth_path)
    converted = cache_dir(cache) / f"inception-{sha[:16]}-v{_CONVERTED_VERSION}.npz"
    if converted.exists():
        try:
            with np.load(converted, allow_pickle=False) as f:
                if str(f["_source_sha256"]) == sha:
                    return {k: f[k] for k in f.files if k != "_source_sha256"}, sha
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # a damaged cache entry is simply rebuilt below
    params = convert_state_dict(read_torch_state_dict(pth_path))
    converted.parent.mkdir(parents=True, exist_ok=True)
    tmp = converted.with_name(f"{converted.stem}.part-{os.getpid()}.npz")
    np.savez(tmp, _source_sha256=np.array(sha), **params)
    os.replace(tmp, converted)
    return params, sha

"""Read a PyTorch ``state_dict`` file into numpy arrays without importing torch.

A ``.pth`` file is a pickle, and unpickling runs whatever callables the file
names. We therefore unpickle with :class:`_StateDictUnpickler`, which admits
only the handful of names a plain state dict needs (an ``OrderedDict``, the
tensor-rebuild helpers and the storage types) and refuses everything else with
:class:`UnsafeCheckpointError` before anything is called.

Both on-disk layouts are supported:

* the legacy layout (torch < 1.6): magic number, protocol, system info and the
  state-dict pickle, followed by the storages as raw little-endian bytes;
* the zip layout (torch >= 1.6): ``archive/data.pkl`` plus one raw file per
  storage in ``archive/data/``.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from os import PathLike
from typing import BinaryIO

import numpy as np

__all__ = ["UnsafeCheckpointError", "load_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": None,  # no numpy dtype; refused explicitly
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint names something a plain state dict never needs."""


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: just a dtype."""

    def __init__(self, name: str):
        dtype = _STORAGE_DTYPES[name]
        if dtype is None:
            raise UnsafeCheckpointError(f"storage type torch.{name} has no numpy equivalent")
        self.name = name
        self.dtype = np.dtype(dtype)


class _Storage:
    """A flat buffer filled once the raw bytes have been read."""

    def __init__(self, dtype: np.dtype, numel: int | None):
        self.dtype = dtype
        self.numel = numel
        self.array: np.ndarray | None = None


class _TensorRef:
    """A tensor whose storage may not be read yet (legacy layout)."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self) -> np.ndarray:
        flat = self.storage.array
        if flat is None:
            raise pickle.UnpicklingError("tensor storage was never read")
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view)  # own, contiguous copy


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(tensor, *_ignored):
    return tensor


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, storages: dict[str, _Storage], read_zip_record=None):
        super().__init__(file)
        self._storages = storages
        self._read_zip_record = read_zip_record

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeCheckpointError(
            f"refusing to load {module}.{name}: a state dict holds only tensors, "
            "so this file is not a plain PyTorch state dict"
        )

    def persistent_load(self, saved_id):
        if not isinstance(saved_id, tuple) or not saved_id or saved_id[0] != "storage":
            raise UnsafeCheckpointError(f"unexpected persistent id {saved_id!r}")
        storage_type, key, _location, numel = saved_id[1:5]
        if isinstance(storage_type, _StorageType):
            dtype = storage_type.dtype
        else:  # torch >= 2 zip files name the dtype through torch.<X>Storage too
            raise UnsafeCheckpointError(f"unexpected storage type {storage_type!r}")
        key = str(key)
        if key not in self._storages:
            storage = _Storage(dtype, numel)
            if self._read_zip_record is not None:
                storage.array = np.frombuffer(self._read_zip_record(key), dtype=dtype.newbyteorder("<"))
            self._storages[key] = storage
        return self._storages[key]


def _materialise(obj):
    if isinstance(obj, _TensorRef):
        return obj.to_numpy()
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
    raise UnsafeCheckpointError(f"state dict holds a {type(obj).__name__}, expected tensors")


def _load_legacy(f: BinaryIO) -> dict:
    plain = _RefusingUnpickler
    if plain(f).load() != _LEGACY_MAGIC:
        raise pickle.UnpicklingError("not a PyTorch checkpoint (bad magic number)")
    plain(f).load()  # protocol version
    sys_info = plain(f).load()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise pickle.UnpicklingError("big-endian checkpoints are not supported")
    storages: dict[str, _Storage] = {}
    result = _StateDictUnpickler(f, storages).load()
    keys = plain(f).load()
    for key in keys:
        storage = storages[str(key)]
        (numel,) = struct.unpack("<q", f.read(8))
        nbytes = numel * storage.dtype.itemsize
        buffer = f.read(nbytes)
        if len(buffer) != nbytes:
            raise pickle.UnpicklingError("checkpoint is truncated")
        storage.array = np.frombuffer(buffer, dtype=storage.dtype.newbyteorder("<"))
    return _materialise(result)


def _load_zip(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise pickle.UnpicklingError("zip checkpoint without a single data.pkl")
        prefix = pickles[0][: -len("data.pkl")]

        def read_record(key: str) -> bytes:
            return archive.read(f"{prefix}data/{key}")

        storages: dict[str, _Storage] = {}
        with archive.open(pickles[0]) as f:
            result = _StateDictUnpickler(io.BytesIO(f.read()), storages, read_record).load()
    return _materialise(result)


class _RefusingUnpickler(pickle.Unpickler):
    """For the legacy header records, which hold only plain Python values."""

    def find_class(self, module, name):
        raise UnsafeCheckpointError(f"refusing to load {module}.{name} from a checkpoint header")


def load_state_dict(path: str | PathLike) -> "collections.OrderedDict[str, np.ndarray]":
    """Read a PyTorch state dict as numpy arrays, refusing anything else.

    Parameters
    ----------
    path : str or path-like
        A ``.pth``/``.pt`` file saved with ``torch.save(model.state_dict())``.

    Returns
    -------
    OrderedDict of str to numpy.ndarray
        Parameter and buffer names mapped to arrays, in file order.

    Raises
    ------
    UnsafeCheckpointError
        If the pickle names any callable other than those a state dict needs.
    """
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    with open(path, "rb") as f:
        return _load_legacy(f)

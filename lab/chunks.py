"""Chunks: the independent, atomically written units a collection is made of.

A chunk is a folder ``chunks/<name>/`` holding a run of consecutive rows:

* ``embeddings.npy`` (n, d) and ``class_probabilities.npy`` (n, 1000), float16,
  memory-mappable;
* ``images.csv``: one row per image (path, size, mtime_ns, sha256, width, height).

A chunk is written completely into ``tmp/`` and renamed into ``chunks/``; it
becomes part of the collection only when the collection's manifest lists it
(the manifest is itself replaced atomically). A killed run therefore leaves at
most unlisted folders, which the next writer deletes. A chunk depends on
nothing but its own rows, so chunks can be computed anywhere (by the workers
of a distributed engine, say) and merged by listing them. No pickle is
involved: arrays are read with ``allow_pickle=False``.

Each chunk's manifest entry records the SHA-256 of its three files, taken when
the chunk is committed, so damage on disk is found by :mod:`lab.integrity`.
NaN or infinite features are refused before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .hashing import file_sha256

__all__ = [
    "CHUNK_FILES",
    "Chunk",
    "IMAGE_COLUMNS",
    "STORAGE_DTYPE",
    "atomic_write_json",
    "file_sha256",
    "merge_chunks",
    "npy_layout",
    "remove_unlisted",
    "write_chunk",
]

STORAGE_DTYPE = np.float16
IMAGE_COLUMNS = ["path", "size", "mtime_ns", "sha256", "width", "height"]
CHUNK_FILES = ("embeddings.npy", "class_probabilities.npy", "images.csv")
# File names are bytes; Python holds those that are not UTF-8 as lone surrogates
# (os.fsdecode). surrogateescape writes them back as the original bytes and reads
# them as the same string, so every path round-trips exactly (other paths: plain UTF-8).
_PATH_ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}
_PATH_ENCODING_READ = {"encoding": "utf-8", "encoding_errors": "surrogateescape"}
_IMAGE_DTYPES = {"path": str, "size": "int64", "mtime_ns": "int64", "sha256": str, "width": "int64", "height": "int64"}


@dataclass(frozen=True)
class Chunk:
    """A chunk folder on disk and its number of rows."""

    folder: Path
    n_rows: int
    checksums: dict | None = None  # file name -> SHA-256 at commit; None for chunks older than checksums

    @property
    def name(self) -> str:
        return self.folder.name

    def entry(self) -> dict:
        """The chunk's manifest entry: name, rows and (when known) checksums."""
        entry = {"name": self.name, "rows": self.n_rows}
        if self.checksums:
            entry["checksums"] = dict(self.checksums)
        return entry

    def array(self, kind: str) -> np.ndarray:
        """A read-only memory map of ``embeddings`` or ``class_probabilities``."""
        return np.load(self.folder / f"{kind}.npy", mmap_mode="r", allow_pickle=False)

    def images(self) -> pd.DataFrame:
        return pd.read_csv(self.folder / "images.csv", dtype=_IMAGE_DTYPES, keep_default_na=False, **_PATH_ENCODING_READ)


def npy_layout(path: Path) -> tuple[tuple, np.dtype, bool, int]:
    """Shape, dtype, Fortran order and expected file size of a ``.npy`` file, from its header alone.

    Raises
    ------
    ValueError
        When the header is not a valid ``.npy`` header.
    """
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(f)
        data_offset = f.tell()
    if dtype.hasobject:
        raise ValueError("holds Python objects")
    return shape, dtype, fortran_order, data_offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: Path, value) -> None:
    """Replace ``path`` with ``value`` as JSON: readers see the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)


def _new_tmp(root: Path) -> Path:
    tmp = root / "tmp" / uuid.uuid4().hex
    tmp.mkdir(parents=True)
    return tmp


def _commit(tmp: Path, root: Path, n_rows: int) -> Chunk:
    for name in os.listdir(tmp):
        _fsync(tmp / name)
    checksums = {name: file_sha256(tmp / name) for name in CHUNK_FILES}
    final = root / "chunks" / tmp.name
    final.parent.mkdir(exist_ok=True)
    os.rename(tmp, final)
    _fsync(final.parent)
    return Chunk(final, n_rows, checksums)


def _finite_rows(kind: str, values: np.ndarray) -> None:
    """Refuse rows with NaN or infinite values (also those float16 storage would overflow)."""
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad):
        raise ValueError(
            f"{len(bad)} row(s) of {kind} have NaN or infinite values (as float16), first at row {bad[0]}: "
            "such features are never stored"
        )


def write_chunk(root: Path, images: pd.DataFrame, embeddings: np.ndarray, class_probabilities: np.ndarray) -> Chunk:
    """Write one chunk folder (not yet listed in the manifest).

    Parameters
    ----------
    root : Path
        The collection folder.
    images : DataFrame
        With columns :data:`IMAGE_COLUMNS`.
    embeddings, class_probabilities : ndarray
        One row per image; stored as float16.
    """
    n = len(images)
    if len(embeddings) != n or len(class_probabilities) != n:
        raise ValueError(f"chunk of {n} images got {len(embeddings)} embeddings and {len(class_probabilities)} class rows")
    with np.errstate(over="ignore"):  # values float16 cannot hold become inf, refused below
        stored = {kind: np.asarray(values, STORAGE_DTYPE) for kind, values in (("embeddings", embeddings), ("class_probabilities", class_probabilities))}
    for kind, values in stored.items():
        _finite_rows(kind, values)
    tmp = _new_tmp(root)
    for kind, values in stored.items():
        np.save(tmp / f"{kind}.npy", values, allow_pickle=False)
    images[IMAGE_COLUMNS].to_csv(tmp / "images.csv", index=False, **_PATH_ENCODING)
    return _commit(tmp, root, n)


def merge_chunks(root: Path, chunks: list[Chunk], keep_rows: np.ndarray | None = None) -> Chunk:
    """Write the rows of several chunks as one new chunk, streaming through memory maps.

    Parameters
    ----------
    root : Path
        The collection folder.
    chunks : list of Chunk
        Consecutive chunks, in row order.
    keep_rows : ndarray of bool, optional
        Which of their rows to keep (False drops superseded rows).

    Returns
    -------
    Chunk
        The merged chunk, not yet listed; the inputs are left for the caller
        to unlist and delete.
    """
    total = sum(c.n_rows for c in chunks)
    keep = np.ones(total, bool) if keep_rows is None else np.asarray(keep_rows, bool)
    n_kept = int(keep.sum())
    tmp = _new_tmp(root)
    tables, offset, written = [], 0, 0
    for kind in ("embeddings", "class_probabilities"):
        width = chunks[0].array(kind).shape[1]
        out = np.lib.format.open_memmap(tmp / f"{kind}.npy", mode="w+", dtype=STORAGE_DTYPE, shape=(n_kept, width))
        offset = written = 0
        for chunk in chunks:
            mask = keep[offset : offset + chunk.n_rows]
            n = int(mask.sum())
            out[written : written + n] = chunk.array(kind)[mask]
            offset += chunk.n_rows
            written += n
        out.flush()
        del out
    offset = 0
    for chunk in chunks:
        tables.append(chunk.images()[keep[offset : offset + chunk.n_rows]])
        offset += chunk.n_rows
    pd.concat(tables, ignore_index=True)[IMAGE_COLUMNS].to_csv(tmp / "images.csv", index=False, **_PATH_ENCODING)
    return _commit(tmp, root, n_kept)


def remove_unlisted(root: Path, listed: set[str]) -> None:
    """Delete chunk folders the manifest does not list, and abandoned temporary folders."""
    folder = root / "chunks"
    if folder.exists():
        for entry in os.listdir(folder):
            if entry not in listed:
                shutil.rmtree(folder / entry, ignore_errors=True)
    shutil.rmtree(root / "tmp", ignore_errors=True)

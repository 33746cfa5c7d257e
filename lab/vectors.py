"""The two feature arrays every image has, and the vector helpers shared by every module.

A backbone gives each image a *transfer layer* vector (the embedding before
the classifier) and an *output layer* vector (the ``N_CLASSES`` ImageNet class
probabilities). :data:`LAYERS` names the layers the way the original system
did and maps each to the collection array that holds it.

>>> LAYERS["transfer"], LAYERS["output"]
('embeddings', 'class_probabilities')
>>> unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
[[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
"""

from __future__ import annotations

import mmap
from typing import Iterator

import numpy as np

__all__ = ["LAYERS", "N_CLASSES", "layer_array", "read_rows", "release_pages", "row_blocks", "unit_rows"]

N_CLASSES = 1000  # ImageNet-1k classes: the length of every output-layer vector
LAYERS = {"transfer": "embeddings", "output": "class_probabilities"}  # layer name -> array holding it


def layer_array(source, layer: str):
    """The array of ``layer`` held by ``source`` (anything with ``embeddings`` and ``class_probabilities``).

    Raises
    ------
    ValueError
        For a layer name other than those in :data:`LAYERS`.
    """
    if layer not in LAYERS:
        raise ValueError(f"layer must be 'transfer' (embeddings) or 'output' (class probabilities), got {layer!r}")
    return getattr(source, LAYERS[layer])


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32 (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def release_pages(array: np.ndarray) -> None:
    """Let go of the pages of a memory-mapped array this process has read (no-op for other arrays).

    A full pass over a memory map leaves every page of the file counted in
    the process's resident memory, although the kernel could drop them. After
    ``madvise(MADV_DONTNEED)`` they stay in the page cache (read again at
    memory speed) but leave the process's resident set, so a 10-million-row
    collection read end to end does not look like 45 GB of the process's own.
    """
    for part in getattr(array, "parts", [array]):  # a RowStack releases each of its arrays
        mapping = _mapping(part)
        if mapping is not None and not mapping.closed and hasattr(mapping, "madvise"):
            mapping.madvise(mmap.MADV_DONTNEED)


def _mapping(array) -> mmap.mmap | None:
    """The ``mmap`` behind a memory map or a view of one, else None."""
    while isinstance(array, np.ndarray):
        if isinstance(getattr(array, "_mmap", None), mmap.mmap):
            return array._mmap
        array = array.base
    return array if isinstance(array, mmap.mmap) else None


def row_blocks(array: np.ndarray, block_size: int = 50_000, dtype=np.float32) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, rows)`` for consecutive blocks of ``array``'s rows, as copies of ``dtype`` (None: as stored, no copy).

    A memory map's pages are released after each block (:func:`release_pages`),
    so a pass over any number of rows holds one block at a time.

    >>> [(start, block.shape) for start, block in row_blocks(np.zeros((5, 2), np.float16), 2)]
    [(0, (2, 2)), (2, (2, 2)), (4, (1, 2))]
    """
    for start in range(0, len(array), block_size):
        block = array[start : start + block_size]
        yield start, (np.asarray(block) if dtype is None else np.array(block, dtype=dtype))
        release_pages(array)  # once the caller is done with the block (a view of the map when dtype is None)


def read_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Some rows of a (memory-mapped) array as a float32 copy, read in row order; the map's pages are released after.

    >>> read_rows(np.arange(6, dtype=np.float16).reshape(3, 2), np.array([2, 0])).tolist()
    [[4.0, 5.0], [0.0, 1.0]]
    """
    rows = np.asarray(rows, np.int64)
    order = np.argsort(rows, kind="stable")  # a memory map reads best front to back
    values = np.empty((len(rows),) + array.shape[1:], np.float32)
    values[order] = array[rows[order]]
    release_pages(array)
    return values

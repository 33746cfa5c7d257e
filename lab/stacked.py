"""Rows of several arrays read as one, without copying them into one.

A collection is stored in segments (chunks merged per indexing run), each a
memory-mapped ``.npy`` file. Concatenating them would copy every row into
the process's memory: 4.5 GB at a million images. :class:`RowStack` answers
what the search code asks of an array (its length, shape and dtype, one row,
a slice, some rows) by reading only those rows from the segment that holds
them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RowStack", "stack_rows"]


class RowStack:
    """Several arrays of the same row width, read as one array of all their rows.

    Supports ``len``, ``shape``, ``dtype``, ``ndim``, ``size``, indexing by a
    row number, a slice, an integer or boolean array (optionally followed by
    column indexes), ``copy()``, ``astype()`` and ``np.asarray`` (which does
    copy every row: for small collections and notebooks).

    Parameters
    ----------
    parts : list of ndarray
        At least one; every part has the same trailing shape and dtype.

    Examples
    --------
    >>> stack = RowStack([np.arange(4).reshape(2, 2), np.arange(4, 10).reshape(3, 2)])
    >>> len(stack), stack.shape, stack[3].tolist(), stack[[4, 0]].tolist()
    (5, (5, 2), [6, 7], [[8, 9], [0, 1]])
    >>> stack[1:3].tolist(), stack[1:3, 0].tolist(), np.asarray(stack).sum()
    ([[2, 3], [4, 5]], [2, 4], np.int64(45))
    """

    def __init__(self, parts: list[np.ndarray]):
        if not parts:
            raise ValueError("a RowStack needs at least one array")
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [len(part) for part in self.parts])
        first = self.parts[0]
        if any(part.shape[1:] != first.shape[1:] or part.dtype != first.dtype for part in self.parts):
            raise ValueError("every part of a RowStack must have the same row shape and dtype")
        self.shape = (int(self.starts[-1]),) + tuple(first.shape[1:])
        self.dtype = first.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"RowStack(shape={self.shape}, dtype={self.dtype}, parts={len(self.parts)})"

    def __getitem__(self, key):
        if isinstance(key, tuple):
            rows, rest = key[0], key[1:]
            if not isinstance(rows, (int, np.integer, slice)) and any(not isinstance(r, (int, np.integer, slice)) for r in rest):
                raise IndexError("a RowStack takes rows first, then columns: index rows and columns in two steps")
            selected = self[rows]
            return selected[(slice(None),) + rest] if np.ndim(selected) == self.ndim else selected[rest]
        if isinstance(key, np.ndarray) and key.ndim == 0 and key.dtype.kind in "iu":
            key = int(key)
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            row = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= row < len(self):
                raise IndexError(f"index {int(key)} is out of bounds for {len(self)} rows")
            part = int(np.searchsorted(self.starts, row, side="right")) - 1
            return self.parts[part][row - self.starts[part]]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return self[np.arange(start, stop, step)]
            pieces = []
            for i, part in enumerate(self.parts):
                low, high = max(start, self.starts[i]), min(stop, self.starts[i + 1])
                if low < high:
                    pieces.append(part[low - self.starts[i] : high - self.starts[i]])
            return np.concatenate(pieces) if pieces else np.empty((0,) + self.shape[1:], self.dtype)
        rows = np.asarray(key)
        if rows.dtype == bool:
            if rows.shape != (len(self),):
                raise IndexError(f"a boolean index must have {len(self)} values, got {rows.shape}")
            rows = np.flatnonzero(rows)
        if rows.dtype.kind not in "iu" and len(rows):
            raise IndexError(f"rows must be integers or a boolean mask, got {rows.dtype}")
        rows = rows.astype(np.int64, copy=False)
        if rows.ndim != 1:
            raise IndexError("index rows with a 1-D array")
        rows = np.where(rows < 0, rows + len(self), rows)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row index out of bounds for {len(self)} rows")
        owner = np.searchsorted(self.starts, rows, side="right") - 1
        out = np.empty((len(rows),) + self.shape[1:], self.dtype)
        for i, part in enumerate(self.parts):
            mine = np.flatnonzero(owner == i)
            if len(mine):
                out[mine] = part[rows[mine] - self.starts[i]]
        return out

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("a RowStack cannot be turned into one array without copying its segments")
        return np.concatenate(self.parts, dtype=dtype)

    def copy(self) -> np.ndarray:
        """Every row, as one in-memory array."""
        return np.asarray(self)

    def astype(self, dtype) -> np.ndarray:
        return np.asarray(self, dtype=dtype)


def stack_rows(parts: list[np.ndarray], width: int, dtype) -> np.ndarray | RowStack:
    """The rows of ``parts`` as one array: the part itself when there is one, an empty array for none, else a :class:`RowStack`."""
    if not parts:
        return np.zeros((0, width), dtype)
    return parts[0] if len(parts) == 1 else RowStack(parts)

"""JSON for other programs: NaN and infinities become ``null``, numpy and pandas values plain ones.

Python's :mod:`json` writes ``NaN`` by default, which no JSON parser in a
browser or in most languages reads. What ``lab`` commands print with
``--json`` and the tables ``lab evaluate`` writes go through :func:`dumps`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["dumps", "json_ready"]


def json_ready(value: Any) -> Any:
    """``value`` in plain Python types, with every missing or non-finite number as ``None``.

    Dicts, lists, tuples and sets (as lists) are converted item by item;
    numpy scalars and arrays become Python numbers and lists; NaN, infinities,
    ``pd.NA`` and ``pd.NaT`` become ``None``. Anything else is left for
    :func:`dumps` to write as text.

    >>> json_ready({"map": float("nan"), "n": np.int64(3), "p": [np.float32(0.5), np.inf], "x": pd.NA})
    {'map': None, 'n': 3, 'p': [0.5, None], 'x': None}
    """
    if isinstance(value, dict):
        return {(key.item() if isinstance(key, np.generic) else key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.floating):  # float128 .item() stays numpy
        value = float(value)
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, indent: int | None = None) -> str:
    """Strict JSON text of :func:`json_ready` ``(value)``; objects JSON has no type for are written as their ``str``."""
    return json.dumps(json_ready(value), indent=indent, allow_nan=False, default=str)

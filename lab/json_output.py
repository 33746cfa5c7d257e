"""JSON for other programs: NaN and infinities become ``null``, numpy and pandas values plain ones.

Python's :mod:`json` writes ``NaN`` by default, which no JSON parser in a
browser or in most languages reads; every JSON ``lab`` prints or writes goes
through :func:`dumps`.
"""

from __future__ import annotations

import json
import math

import numpy as np

__all__ = ["dumps", "json_ready"]


def json_ready(value):
    """``value`` with every non-finite float replaced by ``None`` and numpy scalars and arrays made plain.

    >>> json_ready({"map": float("nan"), "n": np.int64(3), "p": [np.float32(0.5), np.inf]})
    {'map': None, 'n': 3, 'p': [0.5, None]}
    """
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value, **kwargs) -> str:
    """:func:`json.dumps` of :func:`json_ready` ``(value)``; refuses NaN rather than writing it; other objects as ``str``."""
    return json.dumps(json_ready(value), allow_nan=False, default=str, **kwargs)

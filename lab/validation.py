"""Checks of query arguments, made once where they enter (the Collection methods and the CLI).

Each function returns the value in the form the rest of the code expects, or
raises ``TypeError`` (wrong kind of value) or ``ValueError`` (right kind,
impossible value) with a message that names the argument, so a mistake is
reported where it was made rather than deep inside numpy or SQLite.
"""

from __future__ import annotations

import math
import operator
import os
from pathlib import Path

import numpy as np

__all__ = ["check_count", "check_image", "check_images", "check_relevant", "check_vector", "check_word"]


def check_count(value, name: str, minimum: int = 0) -> int:
    """A whole number at least ``minimum`` (``k``, ``offset``), as an int.

    >>> check_count(3, "k", 1)
    3
    >>> check_count(2.5, "k", 1)
    Traceback (most recent call last):
    TypeError: k must be a whole number, got 2.5 (float)
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a whole number, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be a whole number, got {value!r} ({type(value).__name__})") from None
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    return number


def check_word(value, name: str = "query") -> str:
    """A word or phrase in any script: a string with at least one letter.

    Returns it unchanged (normalising is :func:`lab.vocabulary.normalize_term`'s job).

    >>> check_word("猫")
    '猫'
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string (a word such as 'dog'), got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} is empty: type a word such as 'dog' or 'beach'")
    if not has_letters(value):
        raise ValueError(f"{name} {value!r} has no letters: type a word such as 'dog' or 'beach'")
    return value


def has_letters(text: str) -> bool:
    """Whether ``text`` holds a letter of any script ("dog", "猫", "собака"; not "123" or "?!")."""
    return any(ch.isalpha() for ch in text)


def check_relevant(value, name: str = "relevant") -> bool:
    """A real boolean (True/False, numpy bool, or the integers 0 and 1); strings such as "no" are refused."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


def check_vector(vector: np.ndarray, name: str = "query") -> np.ndarray:
    """A 1-D feature vector of finite numbers."""
    if not np.issubdtype(vector.dtype, np.number) or np.issubdtype(vector.dtype, np.complexfloating):
        raise TypeError(f"{name} must be a vector of real numbers, got dtype {vector.dtype}")
    if vector.size == 0:
        raise ValueError(f"{name} is an empty vector")
    finite = np.isfinite(vector)
    if not finite.all():
        raise ValueError(f"{name} has {int((~finite).sum())} NaN or infinite values out of {vector.size}: a query vector must be finite")
    return vector


def check_image(value, name: str = "image"):
    """An image argument of ``similar`` / ``teach`` / ``judge``: refuses what can never be an image.

    Row ids, paths, bytes, PIL images and arrays pass (arrays are checked for
    NaN/inf); an empty path, a folder, a pipe or device, a boolean or a
    float are refused.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a row id or an image, got {value!r}")
    if isinstance(value, (float, np.floating)):
        if math.isfinite(value) and float(value).is_integer():
            raise TypeError(f"{name} must be a row id (an int) or a path, got the float {value!r}: use int({value!r})")
        raise TypeError(f"{name} must be a row id (an int) or a path, got {value!r}")
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        if not text.strip():
            raise ValueError(f"{name} is an empty path: give a row id or an image file")
        if "\x00" in text:
            raise ValueError(f"{name} {text!r} contains a NUL character and cannot be a path")
        path = Path(text).expanduser()
        if path.is_dir():
            raise ValueError(f"{name} {text} is a folder, not an image file (to index a folder use `lab index` / Collection.add)")
        if path.exists() and not path.is_file():  # never opened: a pipe would block, /dev/zero never ends
            raise ValueError(f"{name} {text} is not a regular file (a pipe, device or socket), so not an image")
        return value
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) == 0:
        raise ValueError(f"{name} is empty (0 bytes)")
    if isinstance(value, np.ndarray):
        if value.ndim == 1:
            return check_vector(value, name)
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise ValueError(f"{name} has NaN or infinite values")
    return value


def check_images(values, name: str = "images") -> list:
    """A non-empty list of image arguments, each checked with :func:`check_image`."""
    if isinstance(values, (str, bytes, os.PathLike, np.ndarray)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a list of row ids or paths, got {type(values).__name__}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} is empty: give at least one image")
    return [check_image(v, f"{name}[{i}]") for i, v in enumerate(values)]

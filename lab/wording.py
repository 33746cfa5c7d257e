"""Short English for messages and reports: counted nouns and lists of names."""

from __future__ import annotations

import shlex
from typing import Iterable

__all__ = ["empty_collection", "listing", "plural"]


def plural(n: int, noun: str) -> str:
    """``n`` and ``noun``, with an ``s`` unless ``n`` is 1.

    >>> plural(1, "page"), plural(3, "image")
    ('1 page', '3 images')
    """
    return f"{n} {noun}{'' if n == 1 else 's'}"


def listing(items: Iterable, limit: int = 5) -> str:
    """The first ``limit`` items, comma-separated, and how many more there are.

    >>> listing(["a.jpg", "b.jpg"]), listing(range(8), limit=3)
    ('a.jpg, b.jpg', '0, 1, 2 and 5 more')
    """
    items = list(items)
    return ", ".join(map(str, items[:limit])) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def empty_collection(root) -> str:
    """What to do about a collection with no image, for a search or an evaluation asked of it.

    >>> empty_collection("my photos.lab")
    "the collection my photos.lab is empty: index images into it first (lab index FOLDER -c 'my photos.lab')"
    """
    return f"the collection {root} is empty: index images into it first (lab index FOLDER -c {shlex.quote(str(root))})"

"""Where `lab` keeps per-user files (converted weights): ``$LAB_HOME`` or a user cache dir."""

from __future__ import annotations

import os
from pathlib import Path


def lab_home() -> Path:
    """The per-user directory for cached files, created on first use.

    ``$LAB_HOME`` if set, else ``$XDG_CACHE_HOME/lab``, else ``~/.cache/lab``.
    """
    if os.environ.get("LAB_HOME"):
        home = Path(os.environ["LAB_HOME"])
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        home = Path(cache) / "lab"
    home.mkdir(parents=True, exist_ok=True)
    return home

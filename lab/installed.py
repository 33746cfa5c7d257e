"""What is installed: the versions a result was made with, and the extras a command needs.

>>> from lab.installed import versions_line
>>> versions_line().startswith("Versions: lab ")
True
"""

from __future__ import annotations

import importlib.util
import platform
import re
from importlib import metadata
from pathlib import Path

__all__ = ["EXTRAS", "MissingExtraError", "install_command", "require_extra", "versions", "versions_line"]

# the distributions whose versions decide a result, in the order they are reported
REPORTED = (
    "lab", "tensorflow-cpu", "tensorflow", "keras", "ai-edge-litert", "numpy", "pandas", "scikit-learn",
    "scikit-image", "pillow", "faiss-cpu", "umap-learn", "dask",
)  # fmt: skip

# extra -> the modules its commands import (see requirements-<extra>.txt)
EXTRAS = {
    "panel": ("voila",),
    "report": ("papermill", "nbconvert", "nbformat", "ipykernel"),
    "dask": ("dask", "distributed"),
}


class MissingExtraError(ImportError):
    """A command needs packages of an extra that is not installed; the message names the install."""


def versions(names: tuple[str, ...] = REPORTED) -> dict[str, str]:
    """Installed versions of ``names`` (those not installed are left out), plus Python's."""
    from . import __version__

    found = {}
    for name in names:
        if name == "lab":  # this code's own version, whatever pip last installed
            found[name] = __version__
            continue
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {**found, "python": platform.python_version()}


def versions_line() -> str:
    """One line for a results file, under its command: ``Versions: lab 0.1.0, tensorflow-cpu 2.21.0, ...``."""
    return "Versions: " + ", ".join(f"{name} {version}" for name, version in versions().items()) + "."


def require_extra(extra: str, command: str | None = None) -> None:
    """Raise :class:`MissingExtraError` unless the modules of ``extra`` can be imported.

    Parameters
    ----------
    extra : str
        A key of :data:`EXTRAS` ("panel", "report", "dask").
    command : str, optional
        What needs it, for the message (default ``"this"``).
    """
    missing = [module for module in EXTRAS[extra] if importlib.util.find_spec(module) is None]
    if missing:
        raise MissingExtraError(
            f"{command or 'this'} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed: "
            f"{install_command(extra)}"
        )


def install_command(extra: str) -> str:
    """The pip command that installs ``extra`` for this lab.

    The PyPI project called "lab" is someone else's, so never ``pip install
    'lab[panel]'``: from a source checkout (the usual install, editable) the
    checkout's folder with the extra, otherwise the extra's requirements as
    recorded in lab's installed metadata.
    """
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / f"requirements-{extra}.txt").is_file():
        return f"pip install -e '{root}[{extra}]'"
    marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    try:
        required = [r.split(";")[0].strip() for r in metadata.requires("lab") or [] if marker.search(r)]
    except metadata.PackageNotFoundError:
        required = []
    return "pip install " + " ".join(f"'{r}'" for r in required) if required else f"pip install the '{extra}' extra of lab"

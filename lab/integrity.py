"""Integrity of a collection on disk: cheap checks when it opens, a full check, and repair.

Three levels, from cheap to thorough:

* :func:`find_damage` with ``full=False`` (run by :meth:`lab.Collection.open`
  and whenever the manifest changes) reads only the manifest, file sizes, the
  ``.npy`` headers and the line count of each ``images.csv``: the manifest's
  schema, plain chunk names (never a path such as ``../../..``), row counts of
  the CSV and of both arrays, array widths against the manifest, truncated
  arrays.
* ``full=True`` (run before every write, and by :func:`check`) also compares
  each file with the SHA-256 recorded at commit and scans the arrays for NaN or
  infinite values.
* :func:`check` adds the feedback store (``PRAGMA integrity_check`` and the
  judgment count kept beside it, see :mod:`lab.feedback`) and returns a
  :class:`CheckReport`; :func:`repair` moves damaged chunks to ``damaged/``,
  re-extracts their images from the source files that still exist, and
  rebuilds a damaged feedback store from what can still be read.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .chunks import CHUNK_FILES, IMAGE_COLUMNS, STORAGE_DTYPE, Chunk, file_sha256, npy_layout
from .feedback import feedback_problems, repair_store
from .vectors import row_blocks

__all__ = ["CheckReport", "Problem", "RepairReport", "check", "damage_message", "find_damage", "non_finite_rows", "repair"]

_PLAIN_NAME = re.compile(r"[0-9A-Za-z_-]{1,128}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SCAN_ROWS = 65_536  # rows per block when scanning arrays for NaN


@dataclass(frozen=True)
class Problem:
    """One finding: where (``manifest``, a chunk name or ``feedback``), what, and whether it is damage."""

    where: str
    problem: str
    damaged: bool = True  # False: a note (e.g. an old chunk without checksums), nothing to repair


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def manifest_problems(manifest) -> list[Problem]:
    """Schema of a parsed manifest: required keys, types, chunk entries with plain, unique names."""
    if not isinstance(manifest, dict):
        return [Problem("manifest", "is not a JSON object")]
    problems = []
    for key, ok in (
        ("model", lambda v: isinstance(v, str) and v),
        ("embedding_size", lambda v: _is_count(v) and v > 0),
        ("n_classes", lambda v: _is_count(v) and v > 0),
        ("chunks", lambda v: isinstance(v, list)),
    ):
        if not ok(manifest.get(key)):
            problems.append(Problem("manifest", f"'{key}' is missing or invalid ({manifest.get(key)!r})"))
    if problems:
        return problems
    seen = set()
    for i, entry in enumerate(manifest["chunks"]):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name):
            problems.append(Problem(repr(name), f"chunk entry {i} has a name that is not a plain folder name ({name!r}); it is never read"))
            continue
        if name in seen:
            problems.append(Problem(name, "listed twice in the manifest"))
        seen.add(name)
        if not _is_count(entry.get("rows")):
            problems.append(Problem(name, f"row count {entry.get('rows')!r} is not a whole number"))
        checksums = entry.get("checksums")
        if checksums is not None and (
            not isinstance(checksums, dict) or set(checksums) != set(CHUNK_FILES) or not all(isinstance(v, str) and _SHA256.fullmatch(v) for v in checksums.values())
        ):
            problems.append(Problem(name, "its recorded checksums are malformed"))
    return problems


def _csv_rows(path: Path) -> int:
    """Rows of an ``images.csv``: its line count, or a real parse when quoted newlines make lines lie."""
    lines, quoted = 0, False
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            lines += block.count(b"\n")
            quoted = quoted or b'"' in block
    if not quoted:
        return max(lines - 1, 0)
    return len(pd.read_csv(path, usecols=["path"], dtype=str, keep_default_na=False))


def _chunk_layout_problems(chunk: Chunk, widths: dict) -> list[Problem]:
    name, problems = chunk.name, []
    if chunk.folder.is_symlink() or not chunk.folder.is_dir():
        return [Problem(name, "its folder is missing (or is not a folder)")]
    for kind, width in widths.items():
        path = chunk.folder / f"{kind}.npy"
        try:
            shape, dtype, fortran, expected_size = npy_layout(path)
            size = path.stat().st_size
        except (OSError, ValueError) as err:
            problems.append(Problem(name, f"{kind}.npy is unreadable: {err}"))
            continue
        if dtype != np.dtype(STORAGE_DTYPE) or fortran:
            problems.append(Problem(name, f"{kind}.npy holds {dtype}{' (Fortran order)' if fortran else ''}, not {np.dtype(STORAGE_DTYPE)}"))
        elif len(shape) != 2 or shape[1] != width:
            problems.append(Problem(name, f"{kind}.npy has shape {shape}: rows of {width} values expected (the manifest's size)"))
        elif shape[0] != chunk.n_rows:
            problems.append(Problem(name, f"{kind}.npy has {shape[0]} rows, the manifest lists {chunk.n_rows}"))
        elif size != expected_size:
            problems.append(Problem(name, f"{kind}.npy is {size:,} bytes, its header promises {expected_size:,} (truncated or padded)"))
    try:
        n_csv = _csv_rows(chunk.folder / "images.csv")
    except (OSError, ValueError) as err:
        problems.append(Problem(name, f"images.csv is unreadable: {err}"))
    else:
        if n_csv != chunk.n_rows:
            problems.append(Problem(name, f"images.csv has {n_csv} rows, the manifest lists {chunk.n_rows}"))
    return problems


def non_finite_rows(values: np.ndarray) -> int:
    """How many rows of a (memory-mapped) array hold NaN or infinite values, scanned in blocks (:func:`lab.vectors.row_blocks`)."""
    count = 0
    for _, block in row_blocks(values, _SCAN_ROWS, dtype=None):
        if block.dtype == np.float16:  # all exponent bits set means NaN or inf; several times faster than isfinite
            count += int(((block.view(np.uint16) & 0x7C00) == 0x7C00).any(axis=1).sum())
        else:
            count += int((~np.isfinite(block)).any(axis=1).sum())
    return count


def _chunk_content_problems(chunk: Chunk) -> list[Problem]:
    """Checksums, NaN/inf scan and the image table of a chunk whose layout is sound."""
    name, problems = chunk.name, []
    if not chunk.checksums:
        problems.append(Problem(name, "no checksum recorded (written by an older lab); NaN and table checks only", damaged=False))
    else:
        for file in CHUNK_FILES:
            if file_sha256(chunk.folder / file) != chunk.checksums[file]:
                problems.append(Problem(name, f"{file} differs from the checksum recorded at commit"))
    for kind in ("embeddings", "class_probabilities"):
        bad = non_finite_rows(chunk.array(kind))
        if bad:
            problems.append(Problem(name, f"{kind}.npy has {bad} row(s) with NaN or infinite values"))
    try:
        table = chunk.images()
    except (OSError, ValueError) as err:
        return problems + [Problem(name, f"images.csv cannot be parsed: {err}")]
    if list(table.columns) != IMAGE_COLUMNS:
        problems.append(Problem(name, f"images.csv has columns {list(table.columns)}, expected {IMAGE_COLUMNS}"))
    elif not table["sha256"].str.fullmatch(_SHA256.pattern).all() or not table["path"].map(os.path.isabs).all():
        problems.append(Problem(name, "images.csv has rows without an absolute path or a SHA-256"))
    return problems


def _chunk_signature(chunk: Chunk) -> tuple:
    stats = [os.stat(chunk.folder / file) for file in CHUNK_FILES]
    return (chunk.name, chunk.n_rows, tuple(sorted((chunk.checksums or {}).items())), tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats))


def find_damage(root: Path, manifest: dict, full: bool = False, verified: set | None = None) -> list[Problem]:
    """Problems of a collection's manifest and chunks (feedback store excluded).

    Parameters
    ----------
    root : Path
        The collection folder.
    manifest : dict
        Its parsed manifest.
    full : bool
        Also verify checksums, scan for NaN/inf and parse the image tables
        (reads every byte); otherwise only headers, sizes and line counts.
    verified : set, optional
        Signatures of chunks already fully verified (by this process; a chunk's
        files never change once committed); updated in place.

    Returns
    -------
    list of Problem
    """
    problems = manifest_problems(manifest)
    if any(p.where == "manifest" for p in problems):
        return problems
    bad_entries = {p.where for p in problems}
    widths = {"embeddings": manifest["embedding_size"], "class_probabilities": manifest["n_classes"]}
    for entry in manifest["chunks"]:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or name in bad_entries or repr(name) in bad_entries:
            continue
        chunk = Chunk(root / "chunks" / name, entry["rows"], entry.get("checksums"))
        found = _chunk_layout_problems(chunk, widths)
        if full and not found:
            signature = _chunk_signature(chunk)
            if verified is None or signature not in verified:
                found = _chunk_content_problems(chunk)
                if verified is not None and not any(p.damaged for p in found):
                    verified.add(signature)
        problems += found
    return problems


def damage_message(root: Path, problems: list[Problem]) -> str:
    """A message naming each damaged chunk and the fix."""
    damaged = [p for p in problems if p.damaged]
    lines = [f"the collection {root} is damaged:"]
    lines += [f"  {'chunk ' if p.where not in ('manifest', 'feedback') else ''}{p.where}: {p.problem}" for p in damaged[:10]]
    if len(damaged) > 10:
        lines.append(f"  ... and {len(damaged) - 10} more")
    quoted = shlex.quote(str(root))
    lines.append(f"run `lab repair -c {quoted}` (or col.repair()) to set damaged chunks aside and re-extract their images; `lab check -c {quoted}` lists everything")
    return "\n".join(lines)


@dataclass
class CheckReport:
    """What :func:`check` found: ``problems`` is a DataFrame with columns where, problem, damaged."""

    root: Path
    problems: pd.DataFrame
    n_chunks: int
    n_rows: int

    @property
    def ok(self) -> bool:
        """True when nothing is damaged (notes do not count)."""
        return not self.problems["damaged"].any()

    @property
    def damaged_chunks(self) -> list[str]:
        rows = self.problems[self.problems["damaged"] & ~self.problems["where"].isin(["manifest", "feedback"])]
        return list(dict.fromkeys(rows["where"]))

    def to_dict(self) -> dict:
        return {"path": str(self.root), "ok": self.ok, "n_chunks": self.n_chunks, "n_rows": self.n_rows, "problems": self.problems.to_dict(orient="records")}

    def __str__(self) -> str:
        head = f"{self.root}: {self.n_chunks} chunks, {self.n_rows} rows: " + ("no damage found" if self.ok else "DAMAGED")
        lines = [head] + [f"  {'damaged' if r.damaged else 'note'}: {r.where}: {r.problem}" for r in self.problems.itertuples()]
        if not self.ok:
            lines.append(f"run `lab repair -c {shlex.quote(str(self.root))}` to repair")
        return "\n".join(lines)


def check(root: Path, manifest: dict) -> CheckReport:
    """Verify everything: manifest, chunk layouts, checksums, NaN/inf, image tables, the feedback store."""
    problems = find_damage(root, manifest, full=True)
    problems += [Problem("feedback", text) for text in feedback_problems(root / "feedback.sqlite", thorough=True)]
    chunks = manifest.get("chunks", []) if isinstance(manifest, dict) else []
    n_rows = sum(c.get("rows", 0) for c in chunks if isinstance(c, dict) and _is_count(c.get("rows")))
    frame = pd.DataFrame([vars(p) for p in problems], columns=["where", "problem", "damaged"]).astype({"damaged": bool})
    return CheckReport(root, frame, len(chunks), n_rows)


@dataclass
class RepairReport:
    """What :func:`repair` did."""

    set_aside: list[dict] = field(default_factory=list)  # [{"chunk", "rows", "problem", "moved_to"}]
    reindexed: object = None  # the IndexReport of re-extracting the images, or None
    missing: list[str] = field(default_factory=list)  # source files that no longer exist: not recoverable
    unrecoverable: list[str] = field(default_factory=list)  # chunks whose image list could not be read
    feedback: dict | None = None  # see lab.feedback.repair_store

    @property
    def changed(self) -> bool:
        return bool(self.set_aside or self.unrecoverable or self.feedback)

    def to_dict(self) -> dict:
        reindexed = self.reindexed.to_dict() if self.reindexed is not None else None
        return {"set_aside": self.set_aside, "reindexed": reindexed, "missing": self.missing, "unrecoverable": self.unrecoverable, "feedback": self.feedback}

    def __str__(self) -> str:
        if not self.changed:
            return "nothing to repair"
        lines = [f"set aside {c['chunk']} ({c['rows']} rows: {c['problem']})" + (f" -> {c['moved_to']}" if c["moved_to"] else "") for c in self.set_aside]
        lines += [f"not recoverable: {text}" for text in self.unrecoverable]
        if self.reindexed is not None:
            lines.append(f"re-extracted from the source files: {self.reindexed}")
        if self.missing:
            lines.append(f"{len(self.missing)} source file(s) no longer exist and could not be re-extracted:")
            lines += [f"  missing: {path}" for path in self.missing]
        if self.feedback:
            f = self.feedback
            lines.append(
                f"feedback store rebuilt: kept {f['judgments']} judgments and {f['examples']} examples; "
                f"lost {f['lost_judgments']} judgments and {f['lost_examples']} examples; "
                + (f"the damaged file is kept as {f['moved_to']}" if f["moved_to"] else "there was no file to keep")
            )
        return "\n".join(lines)


def repair(col, progress: bool = True) -> RepairReport:
    """Set damaged chunks aside, re-extract their images from the source files, rebuild a damaged feedback store.

    Damaged chunk folders are moved to ``damaged/`` inside the collection
    (nothing is deleted); the images they listed are indexed again from their
    source files where these still exist; the others are reported. An entry
    whose name is not a plain folder name is only removed from the manifest:
    whatever it points to is never read.

    Parameters
    ----------
    col : Collection
        Opened with ``verify=False``.
    progress : bool
        Progress bar while re-extracting.

    Returns
    -------
    RepairReport
    """
    report = RepairReport()
    to_extract: list[str] = []
    with col._writer_lock(verify=False):
        manifest = col._manifest
        problems = find_damage(col.root, manifest, full=True)
        if any(p.where == "manifest" for p in problems):
            raise ValueError(damage_message(col.root, problems).split("\nrun")[0] + "\nthe manifest itself cannot be repaired: index the images into a new collection")
        damaged = {}
        for p in problems:
            if p.damaged:
                damaged.setdefault(p.where, p.problem)
        keep = []
        for entry in manifest["chunks"]:
            name = entry.get("name") if isinstance(entry, dict) else None
            problem = damaged.get(name if isinstance(name, str) and _PLAIN_NAME.fullmatch(name) else repr(name))
            if problem is None:
                keep.append(entry)
            elif not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name):
                report.unrecoverable.append(f"chunk entry {name!r} is not a plain name: removed from the manifest without reading it")
            else:
                to_extract += _set_aside(col.root, name, entry.get("rows"), problem, report)
        if len(keep) != len(manifest["chunks"]):
            col._list_chunks(keep)
    if to_extract:
        existing = [path for path in dict.fromkeys(to_extract) if Path(path).is_file()]
        report.missing = [path for path in dict.fromkeys(to_extract) if not Path(path).is_file()]
        if existing:
            report.reindexed = col.add(existing, progress=progress)
    if feedback_problems(col.root / "feedback.sqlite", thorough=True):
        report.feedback = repair_store(col.root / "feedback.sqlite", manifest["embedding_size"])
        col._cache.clear()
    return report


def _set_aside(root: Path, name: str, rows, problem: str, report: RepairReport) -> list[str]:
    """Move a damaged chunk to ``damaged/``; return the image paths it listed (if its table is readable)."""
    folder = root / "chunks" / name
    paths: list[str] = []
    try:
        paths = pd.read_csv(folder / "images.csv", usecols=["path"], dtype=str, keep_default_na=False)["path"].tolist()
    except (OSError, ValueError) as err:
        report.unrecoverable.append(f"chunk {name}: its image list is unreadable ({err}); index the source folder again to recover its images")
    named = [p for p in paths if p]
    if paths and isinstance(rows, int) and len(named) < rows:
        folders = sorted({os.path.dirname(p) for p in named})
        report.unrecoverable.append(
            f"chunk {name}: the manifest lists {rows} rows but its images.csv names {len(named)}; {rows - len(named)} image(s) "
            f"may be unnamed: index their folder{'s' if len(folders) > 1 else ''} again to recover them "
            f"({', '.join(folders[:5])}{' ...' if len(folders) > 5 else ''})"
        )
    target = root / "damaged" / name
    if folder.exists():
        target.parent.mkdir(exist_ok=True)
        os.rename(folder, target)
    report.set_aside.append({"chunk": name, "rows": rows, "problem": problem, "moved_to": str(target) if target.exists() else None})
    return named

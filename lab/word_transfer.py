"""Words that travel: a learned word's feedback in a small portable file, for another collection.

A words file is a zip of three members, readable without lab::

    words.json        format, backbone (model, weights checksum, embedding size),
                      one record per judgment and per taught example
                      (term, sha256, path or source, vote, user, time)
    judgments.npy     float32 (n_judgments, embedding_size): row i is judgment i's embedding
    examples.npy      float32 (n_examples, embedding_size)

Embeddings are stored with each record, so the words apply to whatever images
the other collection holds; they are only comparable between collections
built with the same backbone (model name and weights checksum), so any other
is refused. Arrays are read with ``allow_pickle=False``; nothing in the file
is ever unpickled. A folder holding the same three files imports as well.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .feedback import FeedbackStore

__all__ = ["FORMAT", "WordTransferError", "WordImport", "export_words", "import_words", "read_words"]

FORMAT = "lab-words"
VERSION = 1
_TABLES = ("judgments", "examples")
_MEMBERS = ("words.json", "judgments.npy", "examples.npy")


class WordTransferError(ValueError):
    """A words file cannot be written or imported as asked (unreadable, damaged, other backbone)."""


@dataclass
class WordImport:
    """What one :func:`import_words` added, per word."""

    source: str
    model: str
    table: pd.DataFrame = field(default_factory=pd.DataFrame)  # word, judgments, examples, already_here

    @property
    def n_added(self) -> int:
        return int(self.table[["judgments", "examples"]].to_numpy().sum()) if len(self.table) else 0

    def to_dict(self) -> dict:
        return {"source": self.source, "model": self.model, "added": self.n_added, "words": self.table.to_dict(orient="records")}

    def __str__(self) -> str:
        t = self.table
        n_judgments, n_examples, n_known = (int(t[c].sum()) if len(t) else 0 for c in ("judgments", "examples", "already_here"))
        if self.n_added:
            lines = [f"imported {_count(len(t), 'word')} from {self.source} ({self.model}): {_count(n_judgments, 'judgment')}, {_count(n_examples, 'example')}"]
        else:
            lines = [f"nothing new in {self.source}: its {n_known} judgments and examples are already here (imported before, or made here)"]
        for row in t.itertuples(index=False):
            added = [_count(n, noun) for n, noun in ((row.judgments, "judgment"), (row.examples, "example")) if n]
            known = [f"{row.already_here} already here"] if row.already_here else []
            lines.append(f"  {row.word}: {', '.join(added + known)}")
        return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _backbone(info: dict) -> dict:
    return {"model": info["model"], "weights_checksum": info["weights_checksum"], "embedding_size": int(info["embedding_size"])}


def export_words(store: FeedbackStore, info: dict, path: str | os.PathLike, terms: list[str] | None = None) -> Path:
    """Write the judgments and taught examples of ``terms`` (default: every word with feedback) to a words file.

    Parameters
    ----------
    store : FeedbackStore
        The collection's feedback.
    info : dict
        The collection's :meth:`~lab.Collection.info` (model, weights_checksum, embedding_size).
    path : path-like
        The zip file to write (replaced atomically if it exists).
    terms : list of str, optional
        Normalised terms to export.

    Returns
    -------
    Path
        The file written.
    """
    path = Path(path).expanduser()
    if terms is not None:
        known = set(store.terms()["term"])
        missing = [t for t in terms if t not in known]
        if missing:
            listed = ", ".join(sorted(known)) or "none yet"
            raise WordTransferError(f"no feedback for {', '.join(map(repr, missing))}; words with feedback: {listed}")
    tables = {name: store.rows(name, terms) for name in _TABLES}
    if not any(len(records) for records, _ in tables.values()):
        raise WordTransferError("there is no feedback to export: teach or judge a word first (`lab teach` / `lab judge`)")
    from . import __version__

    document = {
        "format": FORMAT,
        "version": VERSION,
        "lab_version": __version__,
        "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "backbone": _backbone(info),
        **{name: records.to_dict(orient="records") for name, (records, _) in tables.items()},
    }
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("words.json", json.dumps(document, indent=1))
            for name, (_, embeddings) in tables.items():
                buffer = io.BytesIO()
                np.save(buffer, np.ascontiguousarray(embeddings, dtype="<f4"), allow_pickle=False)
                archive.writestr(f"{name}.npy", buffer.getvalue())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_words(path: str | os.PathLike) -> tuple[dict, dict[str, tuple[pd.DataFrame, np.ndarray]]]:
    """Read and check a words file (zip or folder): its JSON document and, per table, records and embeddings.

    Raises
    ------
    WordTransferError
        The file is missing, not a words file, or its parts disagree.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise WordTransferError(f"no words file at {path}")
    try:
        members = _read_members(path)
        document = json.loads(members["words.json"])
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as err:
        raise WordTransferError(f"{path} is not a readable words file ({err}); make one with `lab words export`") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise WordTransferError(f"{path} is not a lab words file; make one with `lab words export`")
    if document.get("version", 0) > VERSION:
        raise WordTransferError(f"{path} has words-file version {document['version']}; this lab reads up to {VERSION}: upgrade lab")
    backbone = document.get("backbone")
    if not isinstance(backbone, dict) or not {"model", "weights_checksum", "embedding_size"} <= set(backbone):
        raise WordTransferError(f"{path}: words.json does not say which backbone made its embeddings (model, weights_checksum, embedding_size)")
    size = int(backbone["embedding_size"])
    tables = {}
    for name in _TABLES:
        try:
            embeddings = np.load(io.BytesIO(members[f"{name}.npy"]), allow_pickle=False)
        except ValueError as err:
            raise WordTransferError(f"{path}: {name}.npy is not a plain float array ({err})") from None
        records = _records(path, name, document.get(name, []))
        if embeddings.dtype != np.dtype("<f4") or embeddings.ndim != 2 or embeddings.shape != (len(records), size):
            raise WordTransferError(
                f"{path}: {name}.npy holds {embeddings.dtype} {embeddings.shape}, expected float32 ({len(records)}, {size})"
            )
        if not np.isfinite(embeddings).all():
            raise WordTransferError(f"{path}: {name}.npy has NaN or infinite values")
        tables[name] = (records, embeddings)
    return document, tables


def _records(path: Path, name: str, rows) -> pd.DataFrame:
    """One table's records, checked: the columns the store needs, as non-empty strings (votes as booleans)."""
    required = ["term", "sha256", "user", "created"] + (["relevant"] if name == "judgments" else [])
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise WordTransferError(f"{path}: '{name}' in words.json must be a list of records")
    records = pd.DataFrame(rows, columns=sorted({*required, "path", "source"} | {k for row in rows for k in row}))
    for column in required:
        kind = bool if column == "relevant" else str
        if not all(isinstance(value, kind) and (kind is bool or value or column == "user") for value in records[column]):
            raise WordTransferError(f"{path}: every record of '{name}' needs a {'true/false' if kind is bool else 'text'} '{column}'")
    return records


def _read_members(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return {name: (path / name).read_bytes() for name in _MEMBERS}
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in _MEMBERS}


def import_words(store: FeedbackStore, info: dict, path: str | os.PathLike) -> WordImport:
    """Add the feedback in a words file to a collection built with the same backbone.

    Judgments and examples keep their users and times; rows already in the
    collection (an earlier import of the same file, or the file's own source
    collection) are skipped, so importing twice never double-counts.

    Raises
    ------
    WordTransferError
        The file is unreadable, or was made with another backbone.
    """
    document, tables = read_words(path)
    theirs, ours = document["backbone"], _backbone(info)
    if (theirs.get("model"), theirs.get("weights_checksum")) != (ours["model"], ours["weights_checksum"]):
        raise WordTransferError(
            f"{path} holds embeddings of '{theirs.get('model')}' (weights {str(theirs.get('weights_checksum'))[:12]}), "
            f"this collection uses '{ours['model']}' (weights {ours['weights_checksum'][:12]}): they cannot be compared; "
            "import it into a collection built with the same model, or teach the words again here"
        )
    counts: dict[str, dict] = {}
    for name, (records, embeddings) in tables.items():
        if not len(records):
            continue
        added = store.import_rows(name, records, embeddings)
        for term, was_added in zip(records["term"], added):
            entry = counts.setdefault(term, {"word": term, "judgments": 0, "examples": 0, "already_here": 0})
            entry[name if was_added else "already_here"] += 1
    table = pd.DataFrame(list(counts.values()), columns=["word", "judgments", "examples", "already_here"])
    return WordImport(source=str(path), model=ours["model"], table=table.sort_values("word", ignore_index=True))

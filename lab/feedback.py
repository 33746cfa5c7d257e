"""Durable feedback: relevance judgments and taught examples, in SQLite.

The store is ``feedback.sqlite`` inside the collection folder, in WAL mode
with full synchronous commits, so a judgment is on disk when ``judge``
returns, readers never block writers, and several processes (two browser
sessions of the panel, a notebook and the CLI) can write at once. Images are
identified by content hash, so judgments survive moves and re-indexing and
apply to copies added later. Each row keeps the image's embedding as raw
float32 bytes (never a pickle), so a word can be learned even from an image
that is not in the collection.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["FeedbackError", "FeedbackStore", "SCHEMA", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS judgments (
    id INTEGER PRIMARY KEY,
    term TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    path TEXT,
    relevant INTEGER NOT NULL CHECK (relevant IN (0, 1)),
    user TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS judgments_by_term ON judgments (term, sha256);
CREATE TABLE IF NOT EXISTS examples (
    id INTEGER PRIMARY KEY,
    term TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    source TEXT,
    user TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS examples_by_term ON examples (term);
"""


class FeedbackError(RuntimeError):
    """A feedback store cannot be used as asked (written by a newer lab, ...)."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


class FeedbackStore:
    """Judgments and examples for one collection.

    Parameters
    ----------
    path : path-like
        The SQLite file (created if missing).
    embedding_size : int
        Length of the stored embeddings; a mismatch is refused.

    The file is opened (and created) on first use, not by the constructor;
    a file written by a newer schema version is refused with
    :class:`FeedbackError`.
    """

    def __init__(self, path: str | Path, embedding_size: int):
        self.path = Path(path)
        self.embedding_size = embedding_size
        self._ready = False

    @contextlib.contextmanager
    def _connect(self):
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=30000")
            if not self._ready:
                self._prepare(db)
            yield db
        finally:
            db.close()

    def _prepare(self, db: sqlite3.Connection) -> None:
        """Create the tables if missing and check the schema version (once per store object)."""
        db.executescript(SCHEMA)
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        (stored,) = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if int(stored) > SCHEMA_VERSION:
            raise FeedbackError(
                f"{self.path} has feedback schema version {stored}; this lab reads up to {SCHEMA_VERSION}: upgrade lab "
                "(the file is left as it is)"
            )
        self._ready = True

    def _blob(self, embedding) -> bytes:
        vector = np.asarray(embedding, dtype="<f4").reshape(-1)
        if vector.shape != (self.embedding_size,):
            raise ValueError(f"embedding must have {self.embedding_size} values, got {vector.size}")
        if not np.isfinite(vector).all():
            raise ValueError("embedding has NaN or infinite values")
        return vector.tobytes()

    def add_judgment(self, term: str, sha256: str, path: str | None, relevant: bool, user: str | None, embedding) -> int:
        """Record one judgment (committed and synced when this returns); returns its id."""
        return self.add_judgments([(term, sha256, path, relevant, user, embedding)])[0]

    def add_judgments(self, judgments) -> list[int]:
        """Record several judgments in one transaction: all are stored, or none (on any error).

        Parameters
        ----------
        judgments : iterable of tuple
            ``(term, sha256, path, relevant, user, embedding)`` as for :meth:`add_judgment`.

        Returns
        -------
        list of int
            The judgments' ids, in order.
        """
        rows = [(term, sha, path, int(bool(relevant)), user or "", _now(), self._blob(embedding)) for term, sha, path, relevant, user, embedding in judgments]
        ids = []
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    ids.append(int(db.execute("INSERT INTO judgments (term, sha256, path, relevant, user, created, embedding) VALUES (?, ?, ?, ?, ?, ?, ?)", row).lastrowid))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return ids

    def add_example(self, term: str, sha256: str, source: str | None, user: str | None, embedding) -> int:
        """Record an example image for a word (an inverse image query)."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO examples (term, sha256, source, user, created, embedding) VALUES (?, ?, ?, ?, ?, ?)",
                (term, sha256, source, user or "", _now(), self._blob(embedding)),
            )
            return int(cursor.lastrowid)

    def judgments(self, term: str | None = None) -> pd.DataFrame:
        """All judgments (of one term, if given) as a DataFrame, oldest first, without embeddings."""
        query = "SELECT id, term, sha256, path, relevant, user, created FROM judgments"
        params: tuple = ()
        if term is not None:
            query += " WHERE term = ?"
            params = (term,)
        with self._connect() as db:
            frame = pd.read_sql_query(query + " ORDER BY id", db, params=params)
        frame["relevant"] = frame["relevant"].astype(bool)
        return frame

    def votes(self, term: str) -> pd.DataFrame:
        """Per image: net votes (+1 relevant, -1 not) over users, each user's latest judgment counting once.

        Returns a DataFrame indexed by sha256 with columns ``net``, ``n_users``
        and ``embedding`` (float32 vectors of the latest judgment).
        """
        with self._connect() as db:
            rows = db.execute(
                """
                SELECT j.sha256, j.relevant, j.embedding, j.path FROM judgments j
                JOIN (SELECT MAX(id) AS id FROM judgments WHERE term = ? GROUP BY sha256, user) latest
                ON j.id = latest.id ORDER BY j.id
                """,
                (term,),
            ).fetchall()
        table: dict = {}
        for sha, relevant, blob, path in rows:
            entry = table.setdefault(sha, {"net": 0, "n_users": 0, "embedding": None, "path": path})
            entry["net"] += 1 if relevant else -1
            entry["n_users"] += 1
            entry["embedding"] = np.frombuffer(blob, dtype="<f4")
        frame = pd.DataFrame.from_dict(table, orient="index", columns=["net", "n_users", "embedding", "path"])
        frame.index.name = "sha256"
        return frame

    def examples(self, term: str) -> tuple[list[str], np.ndarray]:
        """Taught examples of a term: their hashes and embeddings (n, d)."""
        with self._connect() as db:
            rows = db.execute("SELECT sha256, embedding FROM examples WHERE term = ? ORDER BY id", (term,)).fetchall()
        if not rows:
            return [], np.zeros((0, self.embedding_size), np.float32)
        return [r[0] for r in rows], np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows])

    def version(self, term: str) -> tuple[int, int, int, int]:
        """A cheap fingerprint of a term's feedback, changing whenever a row is added.

        Judgments (count, last id) and examples (count, last id) of the term.
        """
        with self._connect() as db:
            j = db.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM judgments WHERE term = ?", (term,)).fetchone()
            e = db.execute("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM examples WHERE term = ?", (term,)).fetchone()
        return (j[0], j[1], e[0], e[1])

    def terms(self) -> pd.DataFrame:
        """Every term with feedback: judgment counts (relevant / not), examples, users, last change."""
        with self._connect() as db:
            frame = pd.read_sql_query(
                """
                SELECT term,
                       SUM(kind = 'j' AND relevant = 1) AS relevant,
                       SUM(kind = 'j' AND relevant = 0) AS not_relevant,
                       SUM(kind = 'e') AS examples,
                       COUNT(DISTINCT user) AS users,
                       MAX(created) AS last_change
                FROM (SELECT term, relevant, user, created, 'j' AS kind FROM judgments
                      UNION ALL SELECT term, 1, user, created, 'e' FROM examples)
                GROUP BY term ORDER BY term
                """,
                db,
            )
        for column in ("relevant", "not_relevant", "examples"):
            frame[column] = frame[column].astype(int)
        frame.insert(1, "judgments", frame["relevant"] + frame["not_relevant"])
        return frame

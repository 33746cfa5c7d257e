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

__all__ = ["FeedbackStore", "SCHEMA"]

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
    """

    def __init__(self, path: str | Path, embedding_size: int):
        self.path = Path(path)
        self.embedding_size = embedding_size
        with self._connect() as db:
            db.executescript(SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @contextlib.contextmanager
    def _connect(self):
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=30000")
            yield db
        finally:
            db.close()

    def _blob(self, embedding) -> bytes:
        vector = np.asarray(embedding, dtype="<f4").reshape(-1)
        if vector.shape != (self.embedding_size,):
            raise ValueError(f"embedding must have {self.embedding_size} values, got {vector.size}")
        if not np.isfinite(vector).all():
            raise ValueError("embedding has NaN or infinite values")
        return vector.tobytes()

    def add_judgment(self, term: str, sha256: str, path: str | None, relevant: bool, user: str | None, embedding) -> int:
        """Record one judgment (committed and synced when this returns); returns its id."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO judgments (term, sha256, path, relevant, user, created, embedding) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (term, sha256, path, int(bool(relevant)), user or "", _now(), self._blob(embedding)),
            )
            return int(cursor.lastrowid)

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

        "Latest" is by the time a judgment was made, so judgments imported from
        another collection (:meth:`import_rows`) do not override newer ones here.

        Returns a DataFrame indexed by sha256 with columns ``net``, ``n_users``
        and ``embedding`` (float32 vectors of the latest judgment).
        """
        with self._connect() as db:
            rows = db.execute(
                """
                SELECT sha256, relevant, embedding, path FROM (
                    SELECT id, sha256, relevant, embedding, path,
                           ROW_NUMBER() OVER (PARTITION BY sha256, user ORDER BY created DESC, id DESC) AS recency
                    FROM judgments WHERE term = ?)
                WHERE recency = 1 ORDER BY id
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

    def version(self, term: str) -> tuple[int, int]:
        """A cheap fingerprint of a term's feedback: changes whenever a row is added."""
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

    # ------------------------------------------------------------ transfer
    def rows(self, table: str, terms: list[str] | None = None) -> tuple[pd.DataFrame, np.ndarray]:
        """Every row of ``table`` ("judgments" or "examples"), of ``terms`` if given, with its embedding.

        Returns
        -------
        records : DataFrame
            The table's columns except ``id`` and ``embedding``, oldest first.
        embeddings : ndarray (n, embedding_size) float32
            Row ``i`` is the embedding of ``records.iloc[i]``.
        """
        columns = _transfer_columns(table)
        query = f"SELECT {', '.join(columns)}, embedding FROM {table}"
        params: tuple = ()
        if terms is not None:
            query += f" WHERE term IN ({', '.join('?' * len(terms))})"
            params = tuple(terms)
        with self._connect() as db:
            fetched = db.execute(query + " ORDER BY id", params).fetchall()
        records = pd.DataFrame([row[:-1] for row in fetched], columns=list(columns))
        if table == "judgments":
            records["relevant"] = records["relevant"].astype(bool)
        embeddings = (
            np.stack([np.frombuffer(row[-1], dtype="<f4") for row in fetched]) if fetched else np.zeros((0, self.embedding_size), np.float32)
        )
        return records, embeddings

    def import_rows(self, table: str, records: pd.DataFrame, embeddings: np.ndarray) -> np.ndarray:
        """Add rows of ``table`` made elsewhere, keeping their users and times; rows already here are skipped.

        A row is already here when one with the same term, image, user, time
        (and vote, for judgments) exists, so importing the same file twice
        changes nothing. All rows are added in one transaction: a bad row
        (wrong embedding size, NaN) leaves the store as it was.

        Returns
        -------
        ndarray of bool
            Per row of ``records``: whether it was added.
        """
        columns = _transfer_columns(table)
        key = _TRANSFER_KEYS[table]
        blobs = [self._blob(vector) for vector in np.asarray(embeddings)]
        if len(blobs) != len(records):
            raise ValueError(f"{len(records)} {table} but {len(blobs)} embeddings")
        added = np.zeros(len(records), bool)
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for i, row in enumerate(records[list(columns)].itertuples(index=False)):
                    values = dict(zip(columns, row))
                    if table == "judgments":
                        values["relevant"] = int(bool(values["relevant"]))
                    match = " AND ".join(f"{column} = ?" for column in key)
                    if db.execute(f"SELECT 1 FROM {table} WHERE {match} LIMIT 1", [values[c] for c in key]).fetchone():
                        continue
                    db.execute(
                        f"INSERT INTO {table} ({', '.join(columns)}, embedding) VALUES ({', '.join('?' * (len(columns) + 1))})",
                        [values[c] for c in columns] + [blobs[i]],
                    )
                    added[i] = True
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return added


_TRANSFER_COLUMNS = {
    "judgments": ("term", "sha256", "path", "relevant", "user", "created"),
    "examples": ("term", "sha256", "source", "user", "created"),
}
_TRANSFER_KEYS = {
    "judgments": ("term", "sha256", "relevant", "user", "created"),
    "examples": ("term", "sha256", "user", "created"),
}


def _transfer_columns(table: str) -> tuple[str, ...]:
    if table not in _TRANSFER_COLUMNS:
        raise ValueError(f"table must be 'judgments' or 'examples', got {table!r}")
    return _TRANSFER_COLUMNS[table]

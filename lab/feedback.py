"""Durable feedback: relevance judgments and taught examples, in SQLite.

The store is ``feedback.sqlite`` inside the collection folder, in WAL mode
with full synchronous commits, so a judgment is on disk when ``judge``
returns, readers never block writers, and several processes (two browser
sessions of the panel, a notebook and the CLI) can write at once. Images are
identified by content hash, so judgments survive moves and re-indexing and
apply to copies added later. Each row keeps the image's embedding as raw
float32 bytes (never a pickle), so a word can be learned even from an image
that is not in the collection.

Integrity: ``feedback.count.json`` beside the store keeps how many judgments
and examples it has ever held. It is rewritten atomically after every write,
under a lock file (``.feedback.sqlite.lock``) so concurrent writers only ever
raise it. It is a separate file rather than a manifest entry because judging
must not wait for the collection's writer lock (held for the whole of an
indexing run), and because it must outlive the store it vouches for. A store
holding fewer rows than recorded (cut to 0 bytes, deleted, restored from an old
copy) or that SQLite reports as damaged is refused with a
:class:`FeedbackStoreError` saying how to repair it (``lab repair``, see
:func:`repair_store`); query by example does not need the store at all.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import shlex
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd

from .wording import plural

__all__ = ["FeedbackError", "FeedbackStore", "FeedbackStoreError", "SCHEMA", "SCHEMA_VERSION", "feedback_problems", "repair_store"]

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


_TABLES = ("judgments", "examples")
_UNREADABLE_COUNTS = "is unreadable: lost judgments cannot be detected until the next judgment rewrites it"


class FeedbackError(RuntimeError):
    """A feedback store cannot be used as asked (written by a newer lab, damaged, ...)."""


class FeedbackStoreError(FeedbackError):
    """The feedback store is damaged or has lost rows it had; ``lab repair`` rebuilds it."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def _count_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.count.json")


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def _recorded_counts(path: Path) -> dict | None:
    """The counts kept beside the store; None when there are none (a store from an older lab)."""
    try:
        counts = json.loads(_count_path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return {t: int(counts[t]) for t in _TABLES if isinstance(counts, dict) and isinstance(counts.get(t), int)}


def _write_counts(path: Path, counts: dict) -> None:
    """Replace the counts file atomically. Not fsynced: after a crash it may lag behind (a weaker
    check) but never runs ahead of what the store has committed (a false alarm)."""
    target = _count_path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(counts))
    os.replace(tmp, target)


@contextlib.contextmanager
def _locked(path: Path):
    """The store's lock file, held while the counts file is updated or the store created or rebuilt."""
    with open(_lock_path(path), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _raise_counts(path: Path, db) -> None:
    """Raise the counts kept beside the store to what it holds now (never lower them); hold the lock."""
    counts = _counts(db)
    recorded = _recorded_counts(path) or {}
    raised = {t: max(counts[t], recorded.get(t, 0)) for t in _TABLES}
    if raised != recorded:
        _write_counts(path, raised)


def _counts(db) -> dict:
    return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in _TABLES}


def _is_damage(err: sqlite3.Error) -> bool:
    """SQLite errors that mean a damaged file, not a busy database or a refused row."""
    if isinstance(err, sqlite3.IntegrityError):
        return False
    return isinstance(err, sqlite3.DatabaseError) and not any(w in str(err).lower() for w in ("locked", "busy"))


def feedback_problems(path: str | Path, thorough: bool = False) -> list[str]:
    """What is wrong with a feedback store: damage SQLite sees, or fewer rows than were recorded.

    Parameters
    ----------
    path : path-like
        The SQLite file.
    thorough : bool
        Run ``PRAGMA integrity_check`` (reads the whole file); otherwise only
        count the rows and compare with ``feedback.count.json``.

    Returns
    -------
    list of str
        Empty when the store is sound (or does not exist and never held anything).
    """
    path = Path(path)
    recorded = _recorded_counts(path)
    problems = [] if recorded != {} else [f"{_count_path(path).name} {_UNREADABLE_COUNTS}"]
    recorded = recorded or {}
    if not path.exists() or path.stat().st_size == 0:
        counts = {t: 0 for t in _TABLES}
        state = "is missing, so it holds" if not path.exists() else "is empty (0 bytes), so it holds"
    else:
        state = "holds"
        try:
            db = sqlite3.connect(path, timeout=30.0)
            try:
                if thorough:
                    result = [row[0] for row in db.execute("PRAGMA integrity_check").fetchall()]
                    if result != ["ok"]:
                        problems.append(f"{path.name} is damaged: integrity_check says {'; '.join(result[:3])}")
                counts = _counts(db)
            finally:
                db.close()
        except sqlite3.Error as err:
            if not _is_damage(err):
                raise
            return problems + [f"{path.name} is damaged: {err}"]
    for table in _TABLES:
        if counts[table] < recorded.get(table, 0):
            problems.append(
                f"{path.name} {state} {counts[table]} {table} but {recorded[table]} were recorded in {_count_path(path).name}: "
                f"{plural(recorded[table] - counts[table], table.removesuffix('s'))} lost"
            )
    return problems


def _salvage(path: Path, embedding_size: int) -> dict:
    """Every row of each table that can still be read from a damaged store (block by block, then row by row)."""
    rows: dict = {t: [] for t in _TABLES}
    if not path.exists() or path.stat().st_size == 0:
        return rows
    try:
        db = sqlite3.connect(path)
    except sqlite3.Error:
        return rows
    try:
        for table in _TABLES:
            columns = "id, term, sha256, path, relevant, user, created, embedding" if table == "judgments" else "id, term, sha256, source, user, created, embedding"
            try:
                rows[table] = db.execute(f"SELECT {columns} FROM {table} ORDER BY id").fetchall()
                continue
            except sqlite3.Error:
                pass
            try:
                last = db.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0] or 0
            except sqlite3.Error:
                continue
            for start in range(0, last + 1, 256):
                try:
                    rows[table] += db.execute(f"SELECT {columns} FROM {table} WHERE id BETWEEN ? AND ?", (start, start + 255)).fetchall()
                except sqlite3.Error:
                    for row_id in range(start, start + 256):
                        with contextlib.suppress(sqlite3.Error):
                            rows[table] += db.execute(f"SELECT {columns} FROM {table} WHERE id = ?", (row_id,)).fetchall()
    finally:
        db.close()
    return {t: [r for r in found if isinstance(r[-1], bytes) and len(r[-1]) == 4 * embedding_size] for t, found in rows.items()}


def repair_store(path: str | Path, embedding_size: int) -> dict:
    """Rebuild a damaged feedback store from the rows that can still be read.

    The damaged file is kept, renamed ``feedback.damaged-<time>.sqlite``; a new
    store receives every readable row (same ids), and the recorded counts are
    reset to what it holds, so the loss is reported once, here.

    Returns
    -------
    dict
        ``judgments`` and ``examples`` kept, ``lost_judgments`` and
        ``lost_examples`` (against the recorded counts), ``moved_to``.
    """
    path = Path(path)
    recorded = _recorded_counts(path) or {}
    with _locked(path):
        moved = path.with_name(f"{path.stem}.damaged-{_dt.datetime.now(_dt.timezone.utc):%Y%m%dT%H%M%S%f}{path.suffix}")
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{path}{suffix}").exists():
                os.rename(f"{path}{suffix}", f"{moved}{suffix}")
        rows = _salvage(moved, embedding_size)
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            db.execute("BEGIN")
            db.executemany("INSERT INTO judgments (id, term, sha256, path, relevant, user, created, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows["judgments"])
            db.executemany("INSERT INTO examples (id, term, sha256, source, user, created, embedding) VALUES (?, ?, ?, ?, ?, ?, ?)", rows["examples"])
            db.execute("COMMIT")
            counts = _counts(db)
        finally:
            db.close()
        _write_counts(path, counts)
    return {
        "judgments": counts["judgments"],
        "examples": counts["examples"],
        "lost_judgments": max(recorded.get("judgments", 0) - counts["judgments"], 0),
        "lost_examples": max(recorded.get("examples", 0) - counts["examples"], 0),
        "moved_to": str(moved) if moved.exists() else None,
    }


class FeedbackStore:
    """Judgments and examples for one collection.

    Parameters
    ----------
    path : path-like
        The SQLite file (created if missing).
    embedding_size : int
        Length of the stored embeddings; a mismatch is refused.

    The file is checked and opened (created) on first use, not by the
    constructor.
    """

    def __init__(self, path: str | Path, embedding_size: int):
        self.path = Path(path)
        self.embedding_size = embedding_size
        self._ready = False

    def _prepare(self) -> None:
        """Check and create the store on first use (once per store object).

        Under the lock, so another process creating the store is never caught
        half-way (no tables yet); a damaged store, or one that lost rows it
        had, is refused with :class:`FeedbackStoreError`; a newer schema
        version with :class:`FeedbackError`.
        """
        with _locked(self.path):
            problems = [p for p in feedback_problems(self.path) if not p.endswith(_UNREADABLE_COUNTS)]
            if problems:
                raise self._damaged("; ".join(problems))
            with self._opened() as db:
                db.executescript(SCHEMA)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                (stored,) = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if int(stored) > SCHEMA_VERSION:
                    raise FeedbackError(
                        f"{self.path} has feedback schema version {stored}; this lab reads up to {SCHEMA_VERSION}: upgrade lab "
                        "(the file is left as it is)"
                    )
                _raise_counts(self.path, db)
        self._ready = True

    def _damaged(self, problem: str) -> FeedbackStoreError:
        return FeedbackStoreError(
            f"the feedback store is damaged: {problem}. Query by example still works; judgments and taught words cannot be "
            f"used until it is repaired: run `lab repair -c {shlex.quote(str(self.path.parent))}` (it keeps the damaged file and rebuilds "
            "the store from every row that can still be read)"
        )

    @contextlib.contextmanager
    def _opened(self):
        """A connection (WAL, synced commits); SQLite errors that mean a damaged file become :class:`FeedbackStoreError`."""
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=30000")
            yield db
        except sqlite3.Error as err:
            if _is_damage(err):
                raise self._damaged(str(err)) from None
            raise
        finally:
            db.close()

    @contextlib.contextmanager
    def _connect(self):
        """A connection to the store, checked and created on first use."""
        if not self._ready:
            self._prepare()
        with self._opened() as db:
            yield db

    def _record_counts(self, db) -> None:
        with _locked(self.path):
            _raise_counts(self.path, db)

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
            self._record_counts(db)
        return ids

    def add_example(self, term: str, sha256: str, source: str | None, user: str | None, embedding) -> int:
        """Record an example image for a word (an inverse image query)."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO examples (term, sha256, source, user, created, embedding) VALUES (?, ?, ?, ?, ?, ?)",
                (term, sha256, source, user or "", _now(), self._blob(embedding)),
            )
            self._record_counts(db)
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

"""A collection: a folder of images indexed by one backbone, stored on disk, growing over time.

Layout of a collection folder::

    manifest.json     schema version, model, weights checksum, embedding size, chunk list
    chunks/<name>/    embeddings.npy, class_probabilities.npy, images.csv (see lab.chunks)
    feedback.sqlite   judgments and taught examples (see lab.feedback)

Indexing proceeds in chunks; each finished chunk is listed in the manifest by
an atomic replace, so a run killed at any point (even ``kill -9``) resumes
where it stopped, with no half-written or duplicated row. Adding a folder again
extracts only files that are new or whose content changed; a file whose bytes
are already in the collection under another path reuses the stored features.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .chunks import IMAGE_COLUMNS, STORAGE_DTYPE, Chunk, atomic_write_json, merge_chunks, remove_unlisted, write_chunk
from .image_decoding import find_images

__all__ = ["Collection", "CollectionError", "IndexReport", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
_FORMAT = "lab-collection"
_MAX_SEGMENTS = 8


class CollectionError(RuntimeError):
    """A collection cannot be opened or written as asked (wrong model, damaged, ...)."""


@dataclass
class IndexReport:
    """What one :meth:`Collection.add` did."""

    added: int = 0
    unchanged: int = 0
    failed: list[dict] = field(default_factory=list)  # [{"path": ..., "reason": ...}]
    total: int = 0  # images in the collection afterwards
    reused: int = 0  # of ``added``: identical bytes already indexed under another path

    def to_dict(self) -> dict:
        return {"added": self.added, "unchanged": self.unchanged, "failed": self.failed, "total": self.total, "reused": self.reused}

    def __str__(self) -> str:
        lines = [f"added {self.added}, unchanged {self.unchanged}, failed {len(self.failed)}; {self.total} images in the collection"]
        lines += [f"  failed: {item['path']}: {item['reason']}" for item in self.failed]
        return "\n".join(lines)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class Collection:
    """An on-disk collection of images with their CNN features.

    Use :meth:`Collection.open`; the constructor is internal.

    Examples
    --------
    >>> from lab import Collection                              # doctest: +SKIP
    >>> col = Collection.open("photos.lab", create=True)        # doctest: +SKIP
    >>> report = col.add("~/photos")                            # doctest: +SKIP
    >>> len(col), col.embeddings.shape                          # doctest: +SKIP
    (1234, (1234, 1280))
    """

    def __init__(self, root: Path, manifest: dict):
        self.root = root
        self._manifest = manifest
        self._backbone = None
        self._cache: dict = {}

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike, create: bool = False, model: str | None = None) -> "Collection":
        """Open the collection at ``path``, or create it.

        Parameters
        ----------
        path : str or path-like
            The collection folder.
        create : bool
            Create an empty collection if there is none at ``path``.
        model : str, optional
            Backbone name (see :func:`lab.models.available_models`); default
            ``"efficientnet-lite0"`` for a new collection. For an existing
            one it must match the model the collection was built with.

        Raises
        ------
        FileNotFoundError
            No collection at ``path`` and ``create`` is false.
        CollectionError
            The folder is not a collection, has a newer schema, or was built
            with a different model than ``model``.
        """
        from .models import DEFAULT_MODEL, available_models

        root = Path(path).expanduser().resolve()
        manifest_path = root / "manifest.json"
        if manifest_path.exists():
            try:
                manifest = json.loads(manifest_path.read_text())
            except (OSError, ValueError) as err:
                raise CollectionError(f"{manifest_path} is unreadable: {err}") from None
            if manifest.get("format") != _FORMAT:
                raise CollectionError(f"{root} is not a lab collection")
            if manifest.get("schema_version", 0) > SCHEMA_VERSION:
                raise CollectionError(
                    f"{root} has schema version {manifest['schema_version']}; this lab reads up to {SCHEMA_VERSION}: upgrade lab"
                )
            if model is not None and model != manifest["model"]:
                raise CollectionError(
                    f"collection {root} holds features from model '{manifest['model']}', not '{model}'; "
                    "features of different models cannot be mixed: use another collection folder for this model"
                )
            return cls(root, manifest)
        if not create:
            raise FileNotFoundError(f"no collection at {root} (pass create=True, or run `lab index IMAGES -c {path}`)")
        if root.exists() and any(root.iterdir()):
            raise CollectionError(f"{root} exists and is not empty; choose a new folder for the collection")
        model = model or DEFAULT_MODEL
        if model not in available_models():
            raise ValueError(f"unknown model {model!r}; choose one of {', '.join(available_models())}")
        from .models import load_model

        backbone = load_model(model)
        manifest = {
            "format": _FORMAT,
            "schema_version": SCHEMA_VERSION,
            "model": model,
            "weights_checksum": backbone.weights_checksum,
            "embedding_size": backbone.embedding_size,
            "n_classes": 1000,
            "storage_dtype": np.dtype(STORAGE_DTYPE).name,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "chunks": [],
        }
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(manifest_path, manifest)
        col = cls(root, manifest)
        col._backbone = backbone
        return col

    # ---------------------------------------------------------------- reading
    @property
    def model_name(self) -> str:
        """Name of the backbone that made this collection's features."""
        return self._manifest["model"]

    @property
    def backbone(self):
        """The loaded backbone (loaded on first use, default runtime), checked against the manifest's weights."""
        if self._backbone is None:
            self._backbone = self.load_backbone()
        return self._backbone

    def load_backbone(self, runtime: str | None = None):
        """This collection's backbone on ``runtime`` ("litert" or "keras", default litert), checked against the manifest's weights."""
        from .models import DEFAULT_RUNTIME, load_model

        backbone = load_model(self.model_name, runtime=runtime or DEFAULT_RUNTIME)
        if backbone.weights_checksum != self._manifest["weights_checksum"]:
            raise CollectionError(
                f"the installed weights of '{self.model_name}' differ from those this collection was built with "
                f"(checksum {backbone.weights_checksum[:12]} vs {self._manifest['weights_checksum'][:12]}); "
                "re-index into a new collection"
            )
        return backbone

    def _chunks(self) -> list[Chunk]:
        return [Chunk(self.root / "chunks" / c["name"], c["rows"]) for c in self._manifest["chunks"]]

    def _reload(self) -> None:
        self._manifest = json.loads((self.root / "manifest.json").read_text())
        self._cache.clear()

    def _all_rows(self) -> pd.DataFrame:
        """Every stored row, superseded ones included."""
        if "all_rows" not in self._cache:
            tables = [chunk.images() for chunk in self._chunks()]
            self._cache["all_rows"] = (
                pd.concat(tables, ignore_index=True) if tables else pd.DataFrame({c: pd.Series(dtype=object if c in ("path", "sha256") else "int64") for c in IMAGE_COLUMNS})
            )
        return self._cache["all_rows"]

    def _live(self) -> np.ndarray | None:
        """Stored row numbers still current (the last row of each path), or None when all are."""
        if "live" not in self._cache:
            rows = self._all_rows()
            superseded = rows["path"].duplicated(keep="last").to_numpy()
            self._cache["live"] = np.flatnonzero(~superseded) if superseded.any() else None
        return self._cache["live"]

    def _stored(self, kind: str) -> np.ndarray:
        key = f"array:{kind}"
        if key not in self._cache:
            chunks = self._chunks()
            width = self._manifest["embedding_size"] if kind == "embeddings" else self._manifest["n_classes"]
            if not chunks:
                values = np.zeros((0, width), STORAGE_DTYPE)
            elif len(chunks) == 1:
                values = chunks[0].array(kind)
            else:
                values = np.concatenate([chunk.array(kind) for chunk in chunks])
            live = self._live()
            self._cache[key] = values if live is None else values[live]
        return self._cache[key]

    def __len__(self) -> int:
        live = self._live()
        return len(self._all_rows()) if live is None else len(live)

    def __repr__(self) -> str:
        return f"Collection({str(self.root)!r}, model={self.model_name!r}, n_images={len(self)})"

    @property
    def images(self) -> pd.DataFrame:
        """One row per image, in row order: id, path, size, mtime_ns, sha256, width, height."""
        if "images" not in self._cache:
            rows = self._all_rows()
            live = self._live()
            table = (rows if live is None else rows.iloc[live]).reset_index(drop=True)
            table.insert(0, "id", np.arange(len(table)))
            self._cache["images"] = table
        return self._cache["images"]

    @property
    def paths(self) -> list[str]:
        """Absolute image paths, in row order."""
        return self.images["path"].tolist()

    @property
    def embeddings(self) -> np.ndarray:
        """The transfer-layer embeddings, shape (n_images, embedding_size), float16, read-only."""
        return self._stored("embeddings")

    @property
    def class_probabilities(self) -> np.ndarray:
        """ImageNet-1k class probabilities, shape (n_images, 1000), float16, read-only."""
        return self._stored("class_probabilities")

    def info(self) -> dict:
        """The manifest's facts plus counts, as a JSON-friendly dict."""
        info = {k: v for k, v in self._manifest.items() if k != "chunks"}
        info.update(path=str(self.root), n_images=len(self), n_chunks=len(self._manifest["chunks"]))
        return info

    # ----------------------------------------------------------------- search
    def _engine(self):
        if "engine" not in self._cache:
            from .search import SearchEngine

            self._cache["engine"] = SearchEngine(self)
        return self._cache["engine"]

    def search(self, query: str, k: int = 20, offset: int = 0, exclude_judged: bool = False, explore: bool = False) -> pd.DataFrame:
        """Images that show ``query``, best first.

        Parameters
        ----------
        query : str
            An English noun or noun phrase ("dog", "sports car", "beach") or a
            word taught through :meth:`judge` / :meth:`teach`.
        k : int
            Page size.
        offset : int
            Rank of the first row returned (for paging).
        exclude_judged : bool
            Leave out images already judged for this word.
        explore : bool
            While nothing is learned about the word and the evidence does not
            fill the page, or a page's worth of it was judged not relevant,
            fill the page (at least half of it in the second case) with
            typical images of groups unlike any judged so far (reason
            "exploring: ...", see :mod:`lab.exploration`), so a user can find
            first examples.

        Returns
        -------
        DataFrame
            Columns ``id``, ``path``, ``score``, ``prior`` (vocabulary),
            ``learned`` (from feedback, NaN without), ``votes`` (net
            relevance votes), ``reason``. ``frame.attrs`` holds ``term``,
            ``kind`` ("imagenet", "related" or "unknown"), ``n_matches``,
            ``n_explored`` (rows added by ``explore``) and a ``message`` for
            the user when evidence is thin or absent.
        """
        return self._engine().search(query, k=k, offset=offset, exclude_judged=exclude_judged, explore=explore)

    def similar(self, query, k: int = 20, metric: str = "cosine", layer: str = "transfer") -> pd.DataFrame:
        """The ``k`` images most similar to ``query`` (a reverse image query).

        Parameters
        ----------
        query : int, path-like, bytes, PIL.Image, ndarray
            A row id, an image path (inside the collection or not), encoded
            image bytes, a PIL image, pixels (H, W, 3) uint8, or a 1-D feature
            vector of the chosen layer. Outside images are not added.
        metric : {"cosine", "euclidean", "manhattan"}
        layer : {"transfer", "output"}
            Embeddings or ImageNet class probabilities.

        Returns
        -------
        DataFrame
            ``id``, ``path``, ``score`` (higher is closer), ``distance``,
            ``reason``; the query image itself is left out.
        """
        return self._engine().similar(query, k=k, metric=metric, layer=layer)

    def row_of(self, image) -> int | None:
        """The row of an image given as a row id or a path; None for a path that is not in the collection.

        Raises
        ------
        IndexError
            For a row id out of range.
        """
        if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
            row = int(image)
            if not 0 <= row < len(self):
                raise IndexError(f"row id {row} is out of range: the collection has {len(self)} images")
            return row
        path = str(Path(image).expanduser().resolve())
        matches = np.flatnonzero(self.images["path"].to_numpy() == path)
        return int(matches[0]) if len(matches) else None

    def _image_in_collection(self, image) -> tuple[int, str]:
        if not isinstance(image, (int, np.integer, str, os.PathLike)) or isinstance(image, bool):
            raise TypeError(f"an image must be a row id or a path, got {type(image).__name__}")
        row = self.row_of(image)
        if row is None:
            raise ValueError(f"{image} is not in the collection; index it first, or use teach() for an outside image")
        return row, self.images["path"].iat[row]

    def judge(self, query: str, image, relevant: bool = True, user: str | None = None) -> int:
        """Record that ``image`` is (or is not) relevant to ``query``.

        The judgment is durable when this returns, counts for every user and
        session, and is used by the next :meth:`search` for the word. A user's
        later judgment of the same image for the same word replaces their
        earlier one.

        Parameters
        ----------
        query : str
        image : int or path-like
            Row id or path of an image in the collection.
        relevant : bool
        user : str, optional
            Who judged; each user's votes count once per image.

        Returns
        -------
        int
            The judgment's id.
        """
        engine = self._engine()
        term = engine.resolve_term(query).term
        row, path = self._image_in_collection(image)
        sha = self.images["sha256"].iat[row]
        return engine.feedback.add_judgment(term, sha, path, bool(relevant), user, np.asarray(self.embeddings[row], np.float32))

    def teach(self, word: str, image, user: str | None = None) -> int:
        """Give an example image of ``word`` (an inverse image query).

        ``image`` may be inside the collection or outside it (path, bytes, PIL
        image, pixels); outside images are not added to the collection.
        Returns the example's id.
        """
        engine = self._engine()
        term = engine.resolve_term(word).term
        found = engine.query_image(image)
        return engine.feedback.add_example(term, found.sha256, found.source, user, found.embedding)

    def judgments(self, query: str | None = None) -> pd.DataFrame:
        """Every judgment (of one word, if given): id, term, sha256, path, relevant, user, created."""
        store = self._engine().feedback
        return store.judgments(None if query is None else self._engine().resolve_term(query).term)

    def terms(self) -> pd.DataFrame:
        """Words with feedback, with counts: judgments, relevant, not_relevant, examples, users, last_change."""
        return self._engine().feedback.terms()

    # ---------------------------------------------------------------- writing
    @contextlib.contextmanager
    def _writer_lock(self):
        with open(self.root / ".lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CollectionError(f"another process is writing to {self.root}; try again when it has finished") from None
            try:
                self._reload()
                remove_unlisted(self.root, {c["name"] for c in self._manifest["chunks"]})
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _list_chunks(self, chunks: list[dict]) -> None:
        """Make ``chunks`` the collection's content: the one atomic commit step."""
        manifest = dict(self._manifest, chunks=chunks)
        atomic_write_json(self.root / "manifest.json", manifest)
        self._manifest = manifest
        self._cache.clear()

    def add(
        self,
        sources: str | os.PathLike | Iterable[str | os.PathLike],
        batch_size: int = 32,
        chunk_size: int = 512,
        n_workers: int | None = None,
        progress: bool = True,
        runtime: str | None = None,
        client=None,
    ) -> IndexReport:
        """Index image files and folders (recursively) into the collection.

        Only new files and files whose content changed are run through the
        network. Files that cannot be read are reported with the reason and
        skipped; they never stop the run.

        Parameters
        ----------
        sources : path-like or iterable of path-like
            Image files and/or folders.
        batch_size : int
            Images per network call.
        chunk_size : int
            Images per committed chunk: a killed run loses at most this many.
        n_workers : int, optional
            Decoding threads (default: number of CPU cores).
        progress : bool
            Show a progress bar with images per second.
        runtime : {"litert", "keras"}, optional
            What runs the network (default litert; see :func:`lab.models.load_model`).
        client : dask.distributed.Client, optional
            Extract on this Dask cluster instead of in this process: one task
            per chunk of ``chunk_size`` files, committed here as each finishes
            (see :mod:`lab.distributed`). Workers must see the images and the
            collection at the same paths.

        Returns
        -------
        IndexReport
            Counts of added, unchanged and failed files (with reasons).
        """
        from tqdm.auto import tqdm

        from .extraction import extract_batches

        files = find_images(sources)
        report = IndexReport()
        with self._writer_lock():
            known = self._all_rows().drop_duplicates("path", keep="last").set_index("path")
            to_check = []
            for path in files:
                key = str(path)
                if key in known.index:
                    stat = path.stat()
                    row = known.loc[key]
                    if stat.st_size == row["size"] and stat.st_mtime_ns == row["mtime_ns"]:
                        report.unchanged += 1
                        continue
                to_check.append(path)
            hashes = self._hash_files(to_check, n_workers)
            by_hash = {sha: i for i, sha in enumerate(self._all_rows()["sha256"])}
            to_extract, to_reuse = [], []
            for path, sha in zip(to_check, hashes):
                if sha is None:
                    to_extract.append(path)  # unreadable now: let the decoder report why
                elif str(path) in known.index and known.loc[str(path), "sha256"] == sha:
                    report.unchanged += 1  # touched, not changed
                elif sha in by_hash:
                    to_reuse.append((path, by_hash[sha]))
                else:
                    to_extract.append(path)

            n_before = len(self._manifest["chunks"])
            if to_reuse:
                self._add_reused(to_reuse)
                report.added += len(to_reuse)
                report.reused = len(to_reuse)
            bar = tqdm(total=len(to_extract), unit="img", desc="indexing", disable=not progress or not to_extract)
            if client is not None and to_extract:
                from .distributed import extract_on_cluster

                extract_on_cluster(self, client, to_extract, report, bar, runtime=runtime, batch_size=batch_size, chunk_size=chunk_size)
            elif to_extract:
                pending = _PendingChunk()
                for batch in extract_batches(to_extract, self.load_backbone(runtime), batch_size=batch_size, n_workers=n_workers):
                    report.failed += [{"path": str(r.path), "reason": r.error} for r in batch.failures]
                    pending.extend(batch)
                    while len(pending) >= chunk_size:
                        self._append_chunk(*pending.take(chunk_size))
                    bar.update(len(batch.images) + len(batch.failures))
                if len(pending):
                    self._append_chunk(*pending.take(len(pending)))
            bar.close()
            report.added += len(to_extract) - len(report.failed)
            self._compact(n_before)
            report.total = len(self)
        return report

    def add_features(self, images: pd.DataFrame, embeddings: np.ndarray, class_probabilities: np.ndarray) -> None:
        """Append rows whose features were computed elsewhere (another machine, a distributed worker).

        Parameters
        ----------
        images : DataFrame
            Columns path, size, mtime_ns, sha256, width, height.
        embeddings : ndarray (n, embedding_size)
        class_probabilities : ndarray (n, 1000)
            Made by this collection's model; the caller vouches for that.
        """
        missing = set(IMAGE_COLUMNS) - set(images.columns)
        if missing:
            raise ValueError(f"images lacks columns {sorted(missing)}")
        expected = (self._manifest["embedding_size"], self._manifest["n_classes"])
        if np.shape(embeddings)[1:] != expected[:1] or np.shape(class_probabilities)[1:] != expected[1:]:
            raise ValueError(f"features must have shapes (n, {expected[0]}) and (n, {expected[1]})")
        with self._writer_lock():
            n_before = len(self._manifest["chunks"])
            self._append_chunk(images.reset_index(drop=True), embeddings, class_probabilities)
            self._compact(n_before)

    def compact(self) -> None:
        """Merge every segment into one (dropping superseded rows), so the arrays are single memory maps."""
        with self._writer_lock():
            chunks = self._chunks()
            if len(chunks) > 1 or self._live() is not None:
                self._merge_all(chunks)
            remove_unlisted(self.root, {c["name"] for c in self._manifest["chunks"]})

    def _hash_files(self, paths: list[Path], n_workers: int | None) -> list[str | None]:
        def safe_hash(path):
            try:
                return _sha256(path)
            except OSError:
                return None

        with ThreadPoolExecutor(max_workers=n_workers or os.cpu_count() or 2) as pool:
            return list(pool.map(safe_hash, paths))

    def _append_chunk(self, images: pd.DataFrame, embeddings: np.ndarray, probabilities: np.ndarray) -> None:
        chunk = write_chunk(self.root, images, embeddings, probabilities)
        self._list_chunks(self._manifest["chunks"] + [{"name": chunk.name, "rows": chunk.n_rows}])

    def _commit_chunk(self, name: str, rows: int) -> None:
        """List a chunk written elsewhere (a Dask worker) into ``chunks/``, once."""
        if any(c["name"] == name for c in self._manifest["chunks"]):
            return
        if not (self.root / "chunks" / name / "images.csv").exists():
            raise CollectionError(f"chunk {name} was written by a worker but is not in {self.root / 'chunks'}: workers must share this folder")
        self._list_chunks(self._manifest["chunks"] + [{"name": name, "rows": int(rows)}])

    def _add_reused(self, items: list[tuple[Path, int]]) -> None:
        rows = self._all_rows()
        stored = [int(i) for _, i in items]
        images = rows.iloc[stored].copy()
        images["path"] = [str(p) for p, _ in items]
        stats = [p.stat() for p, _ in items]
        images["size"] = [s.st_size for s in stats]
        images["mtime_ns"] = [s.st_mtime_ns for s in stats]
        self._append_chunk(images.reset_index(drop=True), self._stored_rows("embeddings", stored), self._stored_rows("class_probabilities", stored))

    def _stored_rows(self, kind: str, rows: list[int]) -> np.ndarray:
        """Some stored rows (superseded ones included), read from each chunk's memory map."""
        chunks = self._chunks()
        starts = np.cumsum([0] + [c.n_rows for c in chunks])
        rows = np.asarray(rows, np.int64)
        owner = np.searchsorted(starts, rows, side="right") - 1
        width = chunks[0].array(kind).shape[1]
        values = np.empty((len(rows), width), np.float32)
        for i, chunk in enumerate(chunks):
            mine = np.flatnonzero(owner == i)
            if len(mine):
                values[mine] = chunk.array(kind)[rows[mine] - starts[i]]
        return values

    def _compact(self, n_before: int) -> None:
        """Merge this run's chunks into one segment; rewrite everything when segments pile up."""
        chunks = self._chunks()
        listed = self._manifest["chunks"]
        new = chunks[n_before:]
        if len(new) > 1:
            merged = merge_chunks(self.root, new)
            self._list_chunks(listed[:n_before] + [{"name": merged.name, "rows": merged.n_rows}])
            chunks = self._chunks()
        superseded = self._live() is not None
        if len(chunks) > _MAX_SEGMENTS or superseded:
            self._merge_all(chunks)
        remove_unlisted(self.root, {c["name"] for c in self._manifest["chunks"]})

    def _merge_all(self, chunks: list[Chunk]) -> None:
        keep = None
        if self._live() is not None:
            keep = np.zeros(sum(c.n_rows for c in chunks), bool)
            keep[self._live()] = True
        merged = merge_chunks(self.root, chunks, keep)
        self._list_chunks([{"name": merged.name, "rows": merged.n_rows}])


class _PendingChunk:
    """Extracted rows waiting to fill a chunk."""

    def __init__(self):
        self.images: list = []
        self.embeddings: list[np.ndarray] = []
        self.probabilities: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.images)

    def extend(self, batch) -> None:
        self.images += [
            {"path": str(r.path), "size": r.size, "mtime_ns": r.mtime_ns, "sha256": r.sha256, "width": r.width, "height": r.height}
            for r in batch.images
        ]
        self.embeddings += list(batch.embeddings)
        self.probabilities += list(batch.class_probabilities)

    def take(self, n: int):
        images = pd.DataFrame(self.images[:n], columns=IMAGE_COLUMNS)
        embeddings = np.stack(self.embeddings[:n])
        probabilities = np.stack(self.probabilities[:n])
        del self.images[:n], self.embeddings[:n], self.probabilities[:n]
        return images, embeddings, probabilities

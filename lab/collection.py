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

Opening checks what is cheap (see :mod:`lab.integrity`) and refuses a damaged
collection with a message naming the chunk and the fix (``lab repair``);
every write first verifies the checksums recorded at commit. A collection
opened before another process re-indexed or compacted it notices the new
manifest at its next query (:meth:`Collection.refresh`) and reads the new
chunks; memory maps it already holds stay valid after their files are deleted.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import shlex
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .chunks import IMAGE_COLUMNS, STORAGE_DTYPE, Chunk, atomic_write_json, merge_chunks, remove_unlisted, write_chunk
from .feedback import FeedbackStore
from .image_decoding import ImageDecodeError, display_path, file_sha256, open_image_file, scan_images
from .integrity import Problem, damage_message, find_damage, non_finite_rows
from .search.config import SearchConfig
from .stacked import stack_rows
from .validation import check_count, check_image, check_images, check_relevant, check_word
from .vectors import N_CLASSES, read_rows
from .wording import plural

__all__ = ["Collection", "CollectionError", "IndexReport", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
_FORMAT = "lab-collection"
_MAX_SEGMENTS = 8
_LISTED_PER_REASON = 20  # skipped files named per reason in str(IndexReport)


class CollectionError(RuntimeError):
    """A collection cannot be opened or written as asked (wrong model, damaged, ...)."""


@dataclass
class IndexReport:
    """What one :meth:`Collection.add` did.

    ``failed`` lists the files that were read but could not be indexed
    (corrupt, truncated, too large, ...); ``skipped`` lists the entries that
    were never opened (unknown extension, symlink loop, dangling symlink, FIFO
    or device, unreadable folder), each under its own path. Paths are kept
    exactly (file names that are not UTF-8 included); ``str(report)`` shows
    them with ``\\xNN`` escapes.
    """

    added: int = 0
    unchanged: int = 0
    failed: list[dict] = field(default_factory=list)  # [{"path": ..., "reason": ...}]
    total: int = 0  # images in the collection afterwards
    reused: int = 0  # of ``added``: identical bytes already indexed under another path
    skipped: list[dict] = field(default_factory=list)  # [{"path": ..., "reason": ...}]
    missing: list[str] = field(default_factory=list)  # images of the collection under the indexed folders whose files are gone
    collection: str = ""  # the collection's folder, to name the command that removes ``missing``

    def skipped_by_reason(self) -> dict[str, int]:
        """How many entries were skipped for each reason, most frequent first."""
        return dict(Counter(item["reason"] for item in self.skipped).most_common())

    def to_dict(self) -> dict:
        return {
            "added": self.added,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "total": self.total,
            "reused": self.reused,
            "skipped": self.skipped,
            "skipped_by_reason": self.skipped_by_reason(),
            "missing": self.missing,
        }

    def __str__(self) -> str:
        lines = [
            f"added {self.added}, unchanged {self.unchanged}, failed {len(self.failed)}, skipped {len(self.skipped)}; "
            f"{self.total} image{'s' if self.total != 1 else ''} in the collection"
        ]
        lines += [f"  failed: {display_path(item['path'])}: {item['reason']}" for item in self.failed]
        for reason, count in self.skipped_by_reason().items():
            paths = [item["path"] for item in self.skipped if item["reason"] == reason]
            lines.append(f"  skipped {count}: {reason}")
            lines += _listed(paths)
        if self.missing:
            n = len(self.missing)
            lines.append(f"  {plural(n, 'image')} of the collection {'are' if n != 1 else 'is'} no longer on disk (moved, renamed or deleted) "
                         f"and still searched: `lab prune -c {shlex.quote(self.collection)} --dry-run` lists, without it removes {'them' if n != 1 else 'it'}")
            lines += _listed(self.missing)
        return "\n".join(lines)


def _listed(paths: list[str]) -> list[str]:
    """Report lines naming the first ``_LISTED_PER_REASON`` of ``paths``, and how many more there are."""
    lines = [f"    {display_path(path)}" for path in paths[:_LISTED_PER_REASON]]
    if len(paths) > _LISTED_PER_REASON:
        lines.append(f"    ... and {len(paths) - _LISTED_PER_REASON} more (--json lists every one)")
    return lines


def _resolved(image: str | os.PathLike) -> Path:
    """An absolute path, with a clear error for a symlink loop (``Path.resolve`` raises RuntimeError)."""
    try:
        return Path(image).expanduser().resolve()
    except RuntimeError:
        raise ValueError(f"cannot use {display_path(image)}: a symlink loop") from None


def _sha256(path: Path) -> str:
    with open_image_file(path) as f:
        return file_sha256(f)


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

    def __init__(self, root: Path, manifest: dict, manifest_bytes: bytes | None = None, config: SearchConfig | None = None):
        self.root = root
        self._manifest = manifest
        self._manifest_bytes = manifest_bytes
        self._backbone = None
        self._feedback: FeedbackStore | None = None
        self._config = config or SearchConfig()
        self._cache: dict = {}
        self._verified: set = set()  # signatures of chunks whose checksums this process verified

    @property
    def config(self) -> SearchConfig:
        """Tuning of search in this collection (:class:`lab.search.SearchConfig`); assign a new one to change it."""
        return self._config

    @config.setter
    def config(self, config: SearchConfig) -> None:
        if not isinstance(config, SearchConfig):
            raise TypeError(f"config must be a SearchConfig, got {type(config).__name__}")
        self._config = config
        self._cache.pop("search", None)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls, path: str | os.PathLike, create: bool = False, model: str | None = None, config: SearchConfig | None = None, verify: bool = True
    ) -> "Collection":
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
        config : SearchConfig, optional
            Tuning of search (default ``SearchConfig()``); not stored.
        verify : bool
            Refuse a damaged collection (cheap checks: manifest schema, chunk
            names, row counts and array sizes from the files' headers). Only
            :meth:`check` and :meth:`repair` need ``False``.

        Raises
        ------
        FileNotFoundError
            No collection at ``path`` and ``create`` is false.
        CollectionError
            The folder is not a collection, has a newer schema, was built
            with a different model than ``model``, or is damaged (the message
            names the chunk and the fix, ``lab repair``).
        """
        from .models import DEFAULT_MODEL, available_models

        root = Path(path).expanduser().resolve()
        manifest_path = root / "manifest.json"
        if manifest_path.exists():
            try:
                raw = manifest_path.read_bytes()
                manifest = json.loads(raw)
            except (OSError, ValueError) as err:
                raise CollectionError(f"{manifest_path} is unreadable: {err}") from None
            if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
                raise CollectionError(f"{root} is not a lab collection")
            if not isinstance(manifest.get("schema_version", 0), int) or manifest.get("schema_version", 0) > SCHEMA_VERSION:
                raise CollectionError(
                    f"{root} has schema version {manifest['schema_version']}; this lab reads up to {SCHEMA_VERSION}: upgrade lab"
                )
            if model is not None and model != manifest.get("model"):
                raise CollectionError(
                    f"collection {root} holds features from model '{manifest.get('model')}', not '{model}'; "
                    "features of different models cannot be mixed: use another collection folder for this model"
                )
            if verify:
                _refuse_damage(root, manifest)
            return cls(root, manifest, raw, config)
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
            "n_classes": N_CLASSES,
            "storage_dtype": np.dtype(STORAGE_DTYPE).name,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "chunks": [],
        }
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(manifest_path, manifest)
        col = cls(root, manifest, manifest_path.read_bytes(), config)
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
        return [Chunk(self.root / "chunks" / c["name"], c["rows"], c.get("checksums")) for c in self._manifest["chunks"]]

    def _reload(self, raw: bytes | None = None, verify: bool = True) -> None:
        raw = (self.root / "manifest.json").read_bytes() if raw is None else raw
        try:
            manifest = json.loads(raw)
        except ValueError as err:
            raise CollectionError(f"{self.root / 'manifest.json'} is unreadable: {err}") from None
        if verify:
            _refuse_damage(self.root, manifest)
        self._manifest, self._manifest_bytes = manifest, raw
        self._cache.clear()

    def refresh(self) -> bool:
        """Re-read the collection if another process changed it (re-indexed, compacted); True when it did.

        Every query calls this first, so a long-lived reader (a notebook, the
        panel) sees images added elsewhere. Row ids may change when the
        collection is compacted; paths and content hashes do not.
        """
        try:
            raw = (self.root / "manifest.json").read_bytes()
        except FileNotFoundError:
            raise CollectionError(f"the collection {self.root} has been deleted (manifest.json is gone)") from None
        if raw == self._manifest_bytes:
            return False
        self._reload(raw)
        return True

    def _snapshot(self) -> tuple[list[pd.DataFrame], dict]:
        """The image tables and array memory maps of every listed chunk, opened together.

        A writer in another process may replace the manifest and delete the
        chunks it listed at any moment; when a file has vanished, the new
        manifest is read and everything is opened again from it, so rows and
        arrays always come from one manifest. Open memory maps survive the
        deletion of their files.
        """
        if "snapshot" not in self._cache:
            for _ in range(20):
                chunks = self._chunks()
                try:
                    tables = [chunk.images() for chunk in chunks]
                    arrays = {kind: [chunk.array(kind) for chunk in chunks] for kind in ("embeddings", "class_probabilities")}
                    break
                except FileNotFoundError as err:
                    if not self.refresh():
                        raise CollectionError(f"{err}\n{damage_message(self.root, find_damage(self.root, self._manifest))}") from None
            else:
                raise CollectionError(f"{self.root} keeps changing under this reader; try again")
            for chunk, table, embeddings, probabilities in zip(chunks, tables, arrays["embeddings"], arrays["class_probabilities"]):
                if not len(table) == len(embeddings) == len(probabilities) == chunk.n_rows:
                    _refuse_damage(self.root, self._manifest, always=True)
            self._cache["snapshot"] = (tables, arrays)
        return self._cache["snapshot"]

    def _all_rows(self) -> pd.DataFrame:
        """Every stored row, superseded ones included."""
        if "all_rows" not in self._cache:
            tables = self._snapshot()[0]
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

    def _all_stored(self, kind: str) -> np.ndarray:
        """Every stored row of ``embeddings`` or ``class_probabilities``, superseded ones included: segments are read where they lie, never concatenated."""
        width = self._manifest["embedding_size"] if kind == "embeddings" else self._manifest["n_classes"]
        return stack_rows(self._snapshot()[1][kind], width, STORAGE_DTYPE)

    def _stored(self, kind: str) -> np.ndarray:
        key = f"array:{kind}"
        if key not in self._cache:
            arrays = self._snapshot()[1][kind]
            for chunk, values in zip(self._chunks(), arrays):  # damage after commit must not become NaN scores
                if non_finite_rows(values):
                    raise CollectionError(damage_message(self.root, [Problem(chunk.name, f"{kind}.npy has rows with NaN or infinite values")]))
            values = self._all_stored(kind)
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
        """The transfer-layer embeddings, shape (n_images, embedding_size), float16, read-only.

        A memory map, or a :class:`lab.stacked.RowStack` of them when the
        collection has several segments (rows, slices and ``np.asarray`` work
        the same).
        """
        return self._stored("embeddings")

    @property
    def class_probabilities(self) -> np.ndarray:
        """ImageNet-1k class probabilities, shape (n_images, 1000), float16, read-only (stored like :attr:`embeddings`)."""
        return self._stored("class_probabilities")

    def info(self) -> dict:
        """The manifest's facts plus counts, as a JSON-friendly dict."""
        self.refresh()
        info = {k: v for k, v in self._manifest.items() if k != "chunks"}
        info.update(path=str(self.root), n_images=len(self), n_chunks=len(self._manifest["chunks"]))
        return info

    # ----------------------------------------------------------------- search
    @property
    def feedback(self) -> FeedbackStore:
        """The collection's judgments and taught examples (``feedback.sqlite``, opened on first use)."""
        if self._feedback is None:
            self._feedback = FeedbackStore(self.root / "feedback.sqlite", self._manifest["embedding_size"])
        return self._feedback

    @contextlib.contextmanager
    def scratch_feedback(self):
        """Judgments and examples made inside go to a throw-away store; the collection's own is untouched.

        Evaluations (``lab evaluate``) run their simulated users inside one.

        >>> with col.scratch_feedback():                       # doctest: +SKIP
        ...     col.judge("dog", 3, relevant=False)            # forgotten on leaving
        """
        import tempfile

        saved = self._feedback
        with tempfile.TemporaryDirectory(prefix="lab-scratch-feedback-") as folder:
            self._feedback = FeedbackStore(Path(folder) / "feedback.sqlite", self._manifest["embedding_size"])
            self._cache.pop("search", None)
            try:
                yield self
            finally:
                self._feedback = saved
                self._cache.pop("search", None)

    def _search(self):
        """The search core of the current collection state (dropped whenever the collection changes)."""
        self.refresh()  # a query sees what other processes committed
        if "search" not in self._cache:
            from .extraction import featurize_image
            from .search import SearchEngine

            def featurize(image):
                return featurize_image(image, self.backbone)

            self._cache["search"] = SearchEngine(
                self.embeddings, self.class_probabilities, self.images["sha256"].to_numpy(), self.feedback, featurize, self.config
            )
        return self._cache["search"]

    def search(self, word: str, k: int = 20, offset: int = 0, exclude_judged: bool = False, explore: bool = False, exclude=None) -> pd.DataFrame:
        """Images that show ``word``, best first.

        Parameters
        ----------
        word : str
            An English noun or noun phrase ("dog", "sports car", "beach") or a
            word taught through :meth:`judge` / :meth:`teach`.
        k : int
            Page size.
        offset : int
            Rank of the first row returned (for paging).
        exclude_judged : bool
            Leave out images already judged for this word.
        explore : bool
            For a user judging pages (:class:`lab.session.SearchSession`):
            every page is full. While no image is known to show the word, its
            evidence is interleaved with typical images of groups unlike any
            judged so far (reason "exploring: ...", see :mod:`lab.exploration`),
            the evidence's share falling with each rejection
            (:func:`lab.search.ranking.prior_share`). A page is always a
            slice of one ranking: ``k`` never changes it. (A learned word's
            ranking, explore or not, goes on in the learned order once the
            evidence runs out: images with ``score`` 0 come last.)
        exclude : array of int, optional
            Rows to leave out as if judged (the pages a session has shown).

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
        check_word(word)
        k, offset = check_count(k, "k", 1), check_count(offset, "offset")
        return self._with_paths(self._search().search(word, k=k, offset=offset, exclude_judged=exclude_judged, explore=explore, exclude=exclude))

    def similar(self, query, k: int = 20, metric: str = "cosine", layer: str = "transfer") -> pd.DataFrame:
        """The ``k`` images most similar to ``query`` (a reverse image query).

        Parameters
        ----------
        query : int, path-like, bytes, PIL.Image, ndarray
            A row id, an image path (inside the collection or not), encoded
            image bytes, a PIL image, pixels (H, W, 3) uint8, or a 1-D feature
            vector of the chosen layer. Outside images are not added.
        metric : {"cosine", "euclidean", "manhattan"}
            See :data:`lab.neighbors.METRICS`.
        layer : {"transfer", "output"}
            Embeddings or ImageNet class probabilities (:data:`lab.vectors.LAYERS`).

        Returns
        -------
        DataFrame
            ``id``, ``path``, ``score`` (higher is closer), ``distance``,
            ``reason``; the query image itself is left out.
        """
        query, k = check_image(query, "query"), check_count(k, "k", 1)
        search = self._search()
        search.check_similar(k, metric, layer)  # before any image is read
        if not (isinstance(query, np.ndarray) and query.ndim == 1):
            query = self._query_image(query)
        return self._with_paths(search.similar(query, k=k, metric=metric, layer=layer))

    def _with_paths(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame.insert(1, "path", self.images["path"].to_numpy()[frame["id"].to_numpy()] if len(self) else np.array([], str))
        return frame

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
        path = str(_resolved(image))
        matches = np.flatnonzero(self.images["path"].to_numpy() == path)
        return int(matches[0]) if len(matches) else None

    def _query_image(self, image):
        """A query image's features: by row for a row id or a path in the collection, else through the backbone."""
        if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
            row = self.row_of(image)
            return self._search().query_image(row)
        if isinstance(image, (str, os.PathLike)):
            path = _resolved(image)
            row = self.row_of(path)
            if row is not None:
                return self._search().query_image(row, source=str(path))
            if not path.exists():
                raise FileNotFoundError(f"no such image: {image}")
            return self._search().query_image(path, source=str(path))
        return self._search().query_image(image)

    def _image_in_collection(self, image) -> tuple[int, str]:
        if not isinstance(image, (int, np.integer, str, os.PathLike)) or isinstance(image, bool):
            raise TypeError(f"an image must be a row id or a path, got {type(image).__name__}")
        row = self.row_of(image)
        if row is None:
            raise ValueError(f"{image} is not in the collection; index it first, or use teach() for an outside image")
        return row, self.images["path"].iat[row]

    def judge(self, word: str, image, relevant: bool = True, user: str | None = None) -> int:
        """Record that ``image`` is (or is not) relevant to ``word``.

        The judgment is durable when this returns, counts for every user and
        session, and is used by the next :meth:`search` for the word. A user's
        later judgment of the same image for the same word replaces their
        earlier one.

        Parameters
        ----------
        word : str
        image : int or path-like, or a list of them
            Row id or path of an image in the collection. For a list, every
            image is checked before anything is written, and all judgments
            are stored in one transaction (all or none).
        relevant : bool
            True or False (numpy booleans and the integers 0/1 too); anything
            else, such as the string "no", raises ``TypeError``.
        user : str, optional
            Who judged; each user's votes count once per image.

        Returns
        -------
        int or list of int
            The judgment's id (a list of ids for a list of images).
        """
        check_word(word)
        relevant = check_relevant(relevant)
        if isinstance(image, (list, tuple)):
            return self._judge_many(word, check_images(image), relevant, user)
        return self._judge_many(word, [image], relevant, user)[0]

    def _judge_many(self, word: str, images: list, relevant: bool, user: str | None) -> list[int]:
        """Judge images: every image is checked first, then all are written in one transaction."""
        self.refresh()  # rows as other processes last committed them
        term = self._term(word)  # a bad word is refused before any image is looked up
        rows = [self._image_in_collection(image) for image in images]
        sha = self.images["sha256"].to_numpy()
        items = [(term, sha[row], display_path(path), relevant, user, np.asarray(self.embeddings[row], np.float32)) for row, path in rows]
        return self.feedback.add_judgments(items)

    def _term(self, word: str) -> str:
        """The vocabulary's term for a query word (:func:`lab.search.keywords.resolve_word`); needs no arrays."""
        from .search.keywords import resolve_word
        from .vocabulary import load_vocabulary

        return resolve_word(word, load_vocabulary()).term

    def teach(self, word: str, image, user: str | None = None) -> int:
        """Give an example image of ``word`` (an inverse image query).

        ``image`` may be inside the collection or outside it (path, bytes, PIL
        image, pixels); outside images are not added to the collection.
        Returns the example's id.
        """
        word, image = check_word(word, "word"), check_image(image)
        self._term(word)  # a bad word is refused before the image is read
        found = self._query_image(image)
        found.source = display_path(found.source)
        return self._search().teach(word, found, user)

    def judgments(self, word: str | None = None) -> pd.DataFrame:
        """Every judgment (of one word, if given): id, term, sha256, path, relevant, user, created."""
        return self.feedback.judgments(None if word is None else self._term(word))

    def terms(self) -> pd.DataFrame:
        """Words with feedback, with counts: judgments, relevant, not_relevant, examples, users, last_change."""
        return self.feedback.terms()

    # -------------------------------------------------------------- integrity
    def check(self):
        """Verify everything: checksums, NaN/inf, image tables, row counts, the feedback store.

        Returns
        -------
        lab.integrity.CheckReport
            ``.ok``, ``.problems`` (a DataFrame: where, problem, damaged),
            ``.damaged_chunks``; printing it gives a readable report.
        """
        from .integrity import check

        self._reload(verify=False)
        report = check(self.root, self._manifest)
        if report.ok:  # not damage, but worth knowing: images searched whose files are gone
            missing = _missing(self.paths)
            if len(missing):
                n = len(missing)
                note = (f"{n} image{'s' if n != 1 else ''}' file{'s are' if n != 1 else ' is'} no longer on disk (moved, renamed or deleted), "
                        f"e.g. {display_path(missing['path'].iloc[0])}: `lab prune -c {shlex.quote(str(self.root))} --dry-run` lists them")
                report.problems = pd.concat([report.problems, pd.DataFrame([{"where": "images", "problem": note, "damaged": False}])], ignore_index=True)
        return report

    def repair(self, progress: bool = True):
        """Set damaged chunks aside (in ``damaged/``), re-extract their images, rebuild a damaged feedback store.

        Returns
        -------
        lab.integrity.RepairReport
            What was set aside, re-extracted, and what could not be recovered.
        """
        from .integrity import repair

        return repair(self, progress=progress)

    def export_words(self, path: str | os.PathLike, words: Iterable[str] | None = None) -> Path:
        """Write learned words (judged and taught examples, with embeddings, votes, users, times) to a portable zip.

        Another collection built with the same backbone can :meth:`import_words`
        it; see :mod:`lab.word_transfer` for the format (JSON and ``.npy``).

        Parameters
        ----------
        path : path-like
            The file to write, e.g. ``"words.zip"``.
        words : iterable of str, optional
            The words to export; default every word with feedback.

        Returns
        -------
        Path
            The file written.
        """
        from .word_transfer import export_words

        terms = None if words is None else [self._term(word) for word in ([words] if isinstance(words, str) else words)]
        return export_words(self.feedback, self.info(), path, terms)

    def import_words(self, path: str | os.PathLike):
        """Add the words in a file written by :meth:`export_words`; rows already here are skipped.

        Returns
        -------
        lab.word_transfer.WordImport
            Per word: judgments and examples added, and rows already here.

        Raises
        ------
        lab.word_transfer.WordTransferError
            The file is unreadable, or was made with another backbone.
        """
        from .word_transfer import import_words

        return import_words(self.feedback, self.info(), path)

    def clusters(self, n: int | None = None, n_examples: int = 6, random_state: int = 0) -> pd.DataFrame:
        """k-means clusters of the embeddings, named (see :mod:`lab.clusters`).

        Parameters
        ----------
        n : int, optional
            Number of clusters; default about sqrt(n_images / 2).
        n_examples : int
            Example rows per cluster, the most typical first.

        Returns
        -------
        DataFrame
            One row per cluster, largest first: cluster, size, name, source
            ("wordnet" or "learned word"), confidence, wordnet_name, wnid,
            n_classes, examples (row ids), words (learned words claiming the cluster).
        """
        from .clusters import name_clusters

        return name_clusters(self, n, n_examples=n_examples, random_state=random_state)

    # ---------------------------------------------------------------- writing
    @contextlib.contextmanager
    def _writer_lock(self, verify: bool = True):
        with open(self.root / ".lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CollectionError(f"another process is writing to {self.root}; try again when it has finished") from None
            try:
                self._reload(verify=verify)
                if verify:  # never build on damaged chunks, nor call their rows "unchanged"
                    problems = find_damage(self.root, self._manifest, full=True, verified=self._verified)
                    if any(p.damaged for p in problems):
                        raise CollectionError(damage_message(self.root, problems))
                remove_unlisted(self.root, {c["name"] for c in self._manifest["chunks"]})
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _list_chunks(self, chunks: list[dict]) -> None:
        """Make ``chunks`` the collection's content: the one atomic commit step."""
        manifest = dict(self._manifest, chunks=chunks)
        atomic_write_json(self.root / "manifest.json", manifest)
        self._manifest, self._manifest_bytes = manifest, (self.root / "manifest.json").read_bytes()
        self._cache.clear()

    def add(
        self,
        sources: str | os.PathLike | Iterable[str | os.PathLike],
        batch_size: int = 32,
        chunk_size: int = 512,
        n_jobs: int | None = None,
        progress: bool = True,
        runtime: str | None = None,
        client=None,
    ) -> IndexReport:
        """Index image files and folders (recursively) into the collection.

        Only new files and files whose content changed are run through the
        network. Files that cannot be read are reported with the reason and
        skipped; they never stop the run. Entries that are not taken at all
        (unknown extension, symlink loop, dangling symlink, FIFO or device,
        unreadable folder; see :func:`lab.image_decoding.scan_images`) are
        listed in the report's ``skipped``. Memory stays bounded whatever
        ``n_jobs`` is: decodes share one budget
        (:data:`lab.image_decoding.DECODE_MEMORY_BYTES`, 1 GiB).

        Parameters
        ----------
        sources : path-like or iterable of path-like
            Image files and/or folders.
        batch_size : int
            Images per network call.
        chunk_size : int
            Images per committed chunk: a killed run loses at most this many.
        n_jobs : int, optional
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
            Counts of added and unchanged files; failed and skipped files
            with their reasons.
        """
        from tqdm.auto import tqdm

        from .extraction import extract_batches

        scan = scan_images(sources)
        files = scan.files
        report = IndexReport(skipped=scan.skipped)
        with self._writer_lock():
            known = self._all_rows().drop_duplicates("path", keep="last").set_index("path")
            to_check = []
            for path in files:
                key = str(path)
                if key in known.index:
                    try:
                        stat = path.stat()
                    except OSError:
                        stat = None  # gone since the scan: the decoder reports why
                    row = known.loc[key]
                    if stat is not None and stat.st_size == row["size"] and stat.st_mtime_ns == row["mtime_ns"]:
                        report.unchanged += 1
                        continue
                to_check.append(path)
            unchanged_by_stat = report.unchanged
            stored_sha256 = known["sha256"].to_dict()
            by_hash = {sha: i for i, sha in enumerate(self._all_rows()["sha256"])}

            def needs_network(path: Path, sha: str) -> bool:
                """Neither touched without changing, nor identical bytes already indexed under another path."""
                return stored_sha256.get(str(path)) != sha and sha not in by_hash

            n_before = len(self._manifest["chunks"])
            to_reuse: list[tuple[Path, int]] = []
            if client is not None:
                hashes = self._hash_files(to_check, n_jobs)
                to_extract = [path for path, sha in zip(to_check, hashes) if sha is None or needs_network(path, sha)]
                settled = [(path, sha) for path, sha in zip(to_check, hashes) if sha is not None and not needs_network(path, sha)]
                to_reuse = _unchanged_or_reused(settled, stored_sha256, by_hash, report)
                if to_reuse:
                    self._add_reused(to_reuse)
            else:
                to_extract = to_check  # hashed by the decoding threads, from the read that decodes them
            bar = tqdm(total=len(to_extract), unit="img", desc="indexing", disable=not progress or not to_extract)
            if client is not None and to_extract:
                from .distributed import extract_on_cluster

                extract_on_cluster(self, client, to_extract, report, bar, runtime=runtime, batch_size=batch_size, chunk_size=chunk_size)
            elif to_extract:
                pending = _PendingChunk()
                batches = extract_batches(to_extract, self.load_backbone(runtime), batch_size=batch_size, n_jobs=n_jobs, wanted=needs_network)
                for batch in batches:
                    report.failed += [{"path": str(r.path), "reason": r.error} for r in batch.failures]
                    to_reuse += _unchanged_or_reused([(r.path, r.sha256) for r in batch.unwanted], stored_sha256, by_hash, report)
                    finite = _finite_rows(batch)
                    report.failed += [
                        {"path": str(r.path), "reason": "the network gave NaN or infinite features; not stored"}
                        for r, ok in zip(batch.images, finite)
                        if not ok
                    ]
                    pending.extend(batch, finite)
                    while len(pending) >= chunk_size:
                        self._append_chunk(*pending.take(chunk_size))
                    bar.update(len(batch.images) + len(batch.failures) + len(batch.unwanted))
                if len(pending):
                    self._append_chunk(*pending.take(len(pending)))
                if to_reuse:
                    self._add_reused(to_reuse)
            bar.close()
            report.reused = len(to_reuse)
            report.added += len(to_check) - len(report.failed) - (report.unchanged - unchanged_by_stat)
            self._compact(n_before)
            report.total = len(self)
            report.missing = _missing(self.paths, scan.folders)["path"].tolist()  # only under the folders given
            report.collection = str(self.root)
        return report

    def missing_files(self, within: Iterable[str | os.PathLike] | None = None) -> pd.DataFrame:
        """The collection's images whose files are gone (moved, renamed or deleted since they were indexed).

        Only a file the system reports as not found counts (a permission or
        I/O error does not). They are still searched, and their results point
        at nothing; :meth:`prune` takes them out.

        Parameters
        ----------
        within : path-likes, optional
            Only images under these folders.

        Returns
        -------
        DataFrame
            Columns ``path`` and ``folder_gone``: whether the image's folder is
            gone too (a renamed folder, or a drive not mounted).
        """
        self.refresh()
        return _missing(self.paths, within)

    def prune(self, within: Iterable[str | os.PathLike] | None = None, folders_gone: bool = False, dry_run: bool = False) -> pd.DataFrame:
        """Remove the images whose files are gone (:meth:`missing_files`), decided and done under the writer lock.

        An image whose folder is gone as well is kept unless ``folders_gone``:
        an unplugged drive or an unmounted share looks the same as deleted
        files, and re-indexing them would cost a network pass each. Their
        judgments and taught examples stay in the feedback store (it keeps
        them by content), so they apply again if the same image is indexed
        again. The rows are dropped by rewriting the collection as one
        segment, committed atomically like :meth:`compact`.

        Returns
        -------
        DataFrame
            The missing images (:meth:`missing_files`) with a column
            ``removed``.
        """
        with self._writer_lock():
            missing = _missing(self._all_rows()["path"].drop_duplicates(keep="last").tolist(), within)
            missing["removed"] = (folders_gone | ~missing["folder_gone"]) & (not dry_run)
            if missing["removed"].any():
                self._merge_all(self._chunks(), drop_paths=set(missing.loc[missing["removed"], "path"]))
                remove_unlisted(self.root, {c["name"] for c in self._manifest["chunks"]})
        return missing

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

    def _hash_files(self, paths: list[Path], n_jobs: int | None) -> list[str | None]:
        def safe_hash(path):
            try:
                return _sha256(path)
            except (OSError, ImageDecodeError):
                return None

        with ThreadPoolExecutor(max_workers=n_jobs or os.cpu_count() or 2) as pool:
            return list(pool.map(safe_hash, paths))

    def _append_chunk(self, images: pd.DataFrame, embeddings: np.ndarray, probabilities: np.ndarray) -> None:
        chunk = write_chunk(self.root, images, embeddings, probabilities)
        self._list_chunks(self._manifest["chunks"] + [chunk.entry()])

    def _commit_chunk(self, entry: dict) -> None:
        """List a chunk written elsewhere (a Dask worker) into ``chunks/``, once; ``entry`` is its manifest entry (name, rows, checksums)."""
        name = entry["name"]
        if any(c["name"] == name for c in self._manifest["chunks"]):
            return
        if not (self.root / "chunks" / name / "images.csv").exists():
            raise CollectionError(f"chunk {name} was written by a worker but is not in {self.root / 'chunks'}: workers must share this folder")
        self._list_chunks(self._manifest["chunks"] + [dict(entry)])

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
        """Some stored rows (superseded ones included), as float32, read from the segments' memory maps."""
        return read_rows(self._all_stored(kind), np.asarray(rows, np.int64))

    def _compact(self, n_before: int) -> None:
        """Merge this run's chunks into one segment; rewrite everything when segments pile up."""
        chunks = self._chunks()
        listed = self._manifest["chunks"]
        new = chunks[n_before:]
        if len(new) > 1:
            merged = merge_chunks(self.root, new)
            self._list_chunks(listed[:n_before] + [merged.entry()])
            chunks = self._chunks()
        superseded = self._live() is not None
        if len(chunks) > _MAX_SEGMENTS or superseded:
            self._merge_all(chunks)
        remove_unlisted(self.root, {c["name"] for c in self._manifest["chunks"]})

    def _merge_all(self, chunks: list[Chunk], drop_paths: set[str] = frozenset()) -> None:
        """Rewrite every segment as one, without superseded rows and without the images at ``drop_paths``."""
        keep = None
        if self._live() is not None or drop_paths:
            keep = np.zeros(sum(c.n_rows for c in chunks), bool)
            keep[slice(None) if self._live() is None else self._live()] = True
            keep &= ~self._all_rows()["path"].isin(drop_paths).to_numpy()
        self._list_chunks([merge_chunks(self.root, chunks, keep).entry()] if keep is None or keep.any() else [])


def _is_gone(path: str) -> bool:
    """Whether the system says ``path`` does not exist (a permission or I/O error is not "gone")."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def _missing(paths: list[str], within=None) -> pd.DataFrame:
    """Which of ``paths`` (under ``within`` folders, if given) are gone, and whether their folders are gone too."""
    if within is not None:
        prefixes = tuple(os.path.join(os.path.realpath(os.path.expanduser(os.fspath(folder))), "") for folder in within)
        paths = [path for path in paths if path.startswith(prefixes)]
    gone = [path for path in paths if _is_gone(path)]
    folders = {folder: _is_gone(folder) for folder in {os.path.dirname(path) for path in gone}}
    return pd.DataFrame({"path": pd.Series(gone, dtype=object), "folder_gone": pd.Series([folders[os.path.dirname(p)] for p in gone], dtype=bool)})


def _unchanged_or_reused(settled, stored_sha256: dict, by_hash: dict, report: IndexReport) -> list[tuple[Path, int]]:
    """Files whose bytes are already indexed: count those unchanged at their own path, return the others with the row to copy."""
    to_reuse = []
    for path, sha in settled:
        if stored_sha256.get(str(path)) == sha:
            report.unchanged += 1  # touched, not changed
        else:
            to_reuse.append((path, by_hash[sha]))
    return to_reuse


def _finite_rows(batch) -> np.ndarray:
    """Which rows of an extracted batch have finite features once stored as float16."""
    finite = np.ones(len(batch.images), bool)
    for values in (batch.embeddings, batch.class_probabilities):
        if len(values):
            with np.errstate(over="ignore"):
                finite &= np.isfinite(np.asarray(values, STORAGE_DTYPE)).all(axis=1)
    return finite


def _refuse_damage(root: Path, manifest: dict, always: bool = False) -> None:
    """Raise a CollectionError naming the damaged chunks and the fix, after the cheap checks."""
    problems = [p for p in find_damage(root, manifest) if p.damaged]
    if problems or always:
        raise CollectionError(damage_message(root, problems) if problems else f"the collection {root} changed while being read; try again")


class _PendingChunk:
    """Extracted rows waiting to fill a chunk."""

    def __init__(self):
        self.images: list = []
        self.embeddings: list[np.ndarray] = []
        self.probabilities: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.images)

    def extend(self, batch, keep: np.ndarray) -> None:
        self.images += [
            {"path": str(r.path), "size": r.size, "mtime_ns": r.mtime_ns, "sha256": r.sha256, "width": r.width, "height": r.height}
            for r, ok in zip(batch.images, keep)
            if ok
        ]
        self.embeddings += list(batch.embeddings[keep])
        self.probabilities += list(batch.class_probabilities[keep])

    def take(self, n: int):
        images = pd.DataFrame(self.images[:n], columns=IMAGE_COLUMNS)
        embeddings = np.stack(self.embeddings[:n])
        probabilities = np.stack(self.probabilities[:n])
        del self.images[:n], self.embeddings[:n], self.probabilities[:n]
        return images, embeddings, probabilities

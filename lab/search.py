"""The search engine behind :class:`lab.Collection`: keywords, query by example, feedback.

* Keyword search scores every image by the probability mass the network puts
  on the ImageNet classes a word covers (the vocabulary's prior), blended
  with a per-word classifier learned from judgments and taught examples.
* Ranking: images judged relevant first (by net votes across users), images
  judged not relevant never shown, then the score; images with no evidence at
  all are not listed, so ties never fall back to storage order.
* Query by example ranks by cosine, euclidean or manhattan distance on the
  transfer layer (embeddings) or the output layer (class probabilities).
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .exploration import Explorer
from .feedback import FeedbackStore
from .image_decoding import ImageDecodeError, decode_image
from .neighbors import METRICS, NeighborIndex
from .term_model import TermClassifier, unit_rows
from .vocabulary import Resolution, load_vocabulary, normalize_term

__all__ = ["QueryImage", "SearchEngine", "LAYERS"]

LAYERS = ("transfer", "output")
MIN_SCORE = 0.01  # below this an image shows no evidence for the word
CALIBRATION_Z = 4.0
EVIDENCE_Z = 2.0  # a learned score counts as evidence only this many robust deviations above the median
PCA_THRESHOLD = 50_000  # above this many images, word models score PCA-reduced vectors
PCA_DIMENSIONS = 256
PRIOR_FLOOR = 1e-3
N_EXPANSION = 5
EXPANSION_WEIGHT = 0.5
# how fast learned evidence takes over from the vocabulary prior, by kind of word:
# weight of the learned score = n / (n + PRIOR_STRENGTH[kind]) for n positive examples. For a word
# ImageNet does not cover, the vocabulary's classes are only a place to start: once there is an
# example it takes over (on Caltech-101, one-example P@20 0.766 with strength 0.25, 0.785 with 0)
PRIOR_STRENGTH = {"imagenet": 3.0, "related": 0.0, "unknown": 0.0}


@dataclass
class QueryImage:
    """An image given as a query: its features, and its row if it is in the collection."""

    embedding: np.ndarray  # (d,) float32
    class_probabilities: np.ndarray  # (1000,) float32
    sha256: str
    row: int | None
    source: str


def _term_of(query: str) -> str:
    if not isinstance(query, str):
        raise TypeError(f"a query must be a string, got {type(query).__name__}")
    term = normalize_term(query)
    if not term:
        raise ValueError("the query is empty: type a word such as 'dog' or 'beach'")
    if not re.search(r"[a-z]", term):
        raise ValueError(f"the query {query!r} has no letters: type a word such as 'dog' or 'beach'")
    return term


class SearchEngine:
    """Search state for one collection: caches of normalised vectors, indexes and learned words.

    Built and cached by :class:`lab.Collection`; its caches are dropped
    whenever the collection changes.
    """

    def __init__(self, collection):
        self.col = collection
        self.vocabulary = load_vocabulary()
        self.feedback = FeedbackStore(collection.root / "feedback.sqlite", collection.info()["embedding_size"])
        self._scoring: tuple | None = None
        self._classes = None
        self._indexes: dict = {}
        self._models: dict = {}
        self._row_of_sha: dict | None = None
        self._explorer: Explorer | None = None

    # ------------------------------------------------------------- helpers
    def scoring_space(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Vectors the learned word models score, and the projection into them.

        Up to ``PCA_THRESHOLD`` images: the unit-length embeddings themselves
        (projection None). Above: the unit embeddings projected on their top
        ``PCA_DIMENSIONS`` principal axes (fitted on a sample), computed in
        chunks straight from the float16 store, which makes scoring a word
        several times cheaper in time and memory at 100,000+ images.
        """
        if self._scoring is None:
            embeddings = self.col.embeddings
            n = len(embeddings)
            if n <= PCA_THRESHOLD:
                self._scoring = (unit_rows(embeddings), None)
            else:
                rng = np.random.default_rng(0)
                sample = unit_rows(embeddings[np.sort(rng.choice(n, size=min(n, 20_000), replace=False))])
                mean = sample.mean(axis=0)
                # principal axes of the (uncentred) unit vectors: dot products are preserved
                _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
                axes = np.ascontiguousarray(vt[:PCA_DIMENSIONS].T, dtype=np.float32)  # (d, r)
                projected = np.empty((n, axes.shape[1]), np.float32)
                for start in range(0, n, 50_000):
                    projected[start : start + 50_000] = (unit_rows(embeddings[start : start + 50_000]) - mean) @ axes
                self._scoring = (projected, (axes, mean))
        return self._scoring

    def class_matrix(self):
        """Class probabilities as a sparse (column-major) float32 matrix, entries below ``PRIOR_FLOOR`` dropped.

        A word's prior is then one sparse matrix-vector product; the dropped
        tail (classes an image gives under 0.1% each) cannot lift an image
        over ``MIN_SCORE`` on its own.
        """
        if self._classes is None:
            from scipy import sparse

            probabilities = self.col.class_probabilities
            blocks = []
            for start in range(0, len(probabilities), 50_000):
                block = np.asarray(probabilities[start : start + 50_000], np.float32)
                block[block < PRIOR_FLOOR] = 0.0
                blocks.append(sparse.csr_matrix(block))
            # column-major, so a word's prior reads only its classes' entries
            self._classes = sparse.vstack(blocks, format="csc") if blocks else sparse.csc_matrix((0, 1000), dtype=np.float32)
        return self._classes

    def rows_of_sha(self) -> dict:
        if self._row_of_sha is None:
            table: dict = {}
            for row, sha in enumerate(self.col.images["sha256"]):
                table.setdefault(sha, []).append(row)
            self._row_of_sha = table
        return self._row_of_sha

    def resolve_term(self, query: str) -> Resolution:
        term = _term_of(query)
        return self.vocabulary.resolve(term)

    def query_image(self, image) -> QueryImage:
        """Features of a query given as row id, path, bytes, PIL image, pixel array or feature vector."""
        if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
            row = self.col.row_of(image)
            return self._row_query(row, f"row {row}")
        if isinstance(image, (str, os.PathLike)):
            path = Path(image).expanduser().resolve()
            row = self.col.row_of(path)
            if row is not None:
                return self._row_query(row, str(path))
            if not path.exists():
                raise FileNotFoundError(f"no such image: {image}")
            return self._outside_query(path.read_bytes(), str(path))
        if isinstance(image, (bytes, bytearray, memoryview)):
            return self._outside_query(bytes(image), "uploaded image")
        if isinstance(image, Image.Image):
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "PNG")
            return self._outside_query(buffer.getvalue(), "image")
        if isinstance(image, np.ndarray):
            if image.ndim in (2, 3) and image.dtype == np.uint8:
                buffer = io.BytesIO()
                Image.fromarray(image).convert("RGB").save(buffer, "PNG")
                return self._outside_query(buffer.getvalue(), "pixel array")
            raise ValueError(
                f"an array query must be image pixels (H, W[, 3]) of dtype uint8, got shape {image.shape} and dtype {image.dtype}; "
                "to search with a feature vector use similar_to_vector"
            )
        raise TypeError(f"cannot use a {type(image).__name__} as a query image")

    def _row_query(self, row: int, source: str) -> QueryImage:
        col = self.col
        return QueryImage(
            np.asarray(col.embeddings[row], np.float32),
            np.asarray(col.class_probabilities[row], np.float32),
            col.images["sha256"].iat[row],
            row,
            source,
        )

    def _outside_query(self, encoded: bytes, source: str) -> QueryImage:
        import hashlib

        backbone = self.col.backbone
        try:
            pixels = backbone.preprocess(decode_image(encoded, min_side=backbone.image_size))
        except ImageDecodeError as err:
            raise ValueError(f"cannot use {source} as a query: {err}") from None
        embeddings, probabilities = backbone.predict(pixels[None])
        return QueryImage(embeddings[0], probabilities[0], hashlib.sha256(encoded).hexdigest(), None, source)

    # ------------------------------------------------------------ similar
    def _index(self, metric: str, layer: str) -> NeighborIndex:
        key = (metric, layer)
        if key not in self._indexes:
            vectors = self.col.embeddings if layer == "transfer" else self.col.class_probabilities
            self._indexes[key] = NeighborIndex(metric=metric).fit(vectors)
        return self._indexes[key]

    def similar(self, query, k: int = 20, metric: str = "cosine", layer: str = "transfer") -> pd.DataFrame:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        if layer not in LAYERS:
            raise ValueError(f"layer must be 'transfer' (embeddings) or 'output' (class probabilities), got {layer!r}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if len(self.col) == 0:
            raise ValueError("the collection is empty: add images first (col.add or `lab index`)")
        if isinstance(query, np.ndarray) and query.ndim == 1:
            vector, row, source = query, None, "feature vector"
            expected = self.col.embeddings.shape[1] if layer == "transfer" else 1000
            if vector.shape[0] != expected:
                raise ValueError(f"a {layer}-layer feature vector must have {expected} values, got {vector.shape[0]}")
        else:
            found = self.query_image(query)
            vector = found.embedding if layer == "transfer" else found.class_probabilities
            row, source = found.row, found.source
        index = self._index(metric, layer)
        distances, rows = index.kneighbors(vector[None], k + (row is not None))
        distances, rows = distances[0], rows[0]
        keep = (rows >= 0) & (rows != (row if row is not None else -1))
        distances, rows = distances[keep][:k], rows[keep][:k]
        frame = pd.DataFrame(
            {
                "id": rows,
                "path": self.col.images["path"].to_numpy()[rows],
                "score": -distances if metric != "cosine" else 1.0 - distances,
                "distance": distances,
                "reason": [f"{metric} distance {d:.3g} on the {layer} layer" for d in distances],
            }
        )
        frame.attrs.update(query=source, metric=metric, layer=layer, algorithm=index.algorithm_)
        return frame

    # ------------------------------------------------------------ keywords
    def prior_scores(self, resolution: Resolution) -> np.ndarray:
        """Probability mass each image puts on the word's ImageNet classes (weighted as the vocabulary says)."""
        if len(resolution.classes) == 0 or len(self.col) == 0:
            return np.zeros(len(self.col), np.float32)
        matrix = self.class_matrix()
        spans = [np.arange(matrix.indptr[c], matrix.indptr[c + 1]) for c in resolution.classes]
        entries = np.concatenate(spans) if spans else np.zeros(0, np.int64)
        weights = np.repeat(resolution.weights, [len(span) for span in spans])
        return np.bincount(matrix.indices[entries], weights=matrix.data[entries] * weights, minlength=len(self.col)).astype(np.float32)

    def term_model(self, term: str) -> tuple[TermClassifier | None, pd.DataFrame, int]:
        """The learned classifier of a term (None without positives), its votes, and its number of examples."""
        key = (term, self.feedback.version(term), len(self.col))
        cached = self._models.get(term)
        if cached is not None and cached[0] == key:
            return cached[1]
        votes = self.feedback.votes(term)
        example_shas, examples = self.feedback.examples(term)
        positives = [np.stack(votes.loc[votes["net"] > 0, "embedding"].to_list())] if (votes["net"] > 0).any() else []
        if len(examples):
            positives.append(examples)
        model = None
        if positives:
            negatives = np.stack(votes.loc[votes["net"] < 0, "embedding"].to_list()) if (votes["net"] < 0).any() else None
            model = TermClassifier().fit(np.vstack(positives), negatives)
        result = (model, votes, len(examples))
        self._models[term] = (key, result)
        return result

    def similarity_to(self, examples: np.ndarray, limit: int = 32) -> np.ndarray:
        """How much each image stands out as like its closest of ``examples`` (the last ``limit``), in (0, 1)."""
        vectors, projection = self.scoring_space()
        directions = unit_rows(examples[-limit:])
        if projection is not None:
            directions = directions @ projection[0]
        return self._calibrate((vectors @ directions.T).max(axis=1))

    @staticmethod
    def _calibrate(decision: np.ndarray) -> np.ndarray:
        """Robust z-scores against the collection -> (0, 1); under ``EVIDENCE_Z`` deviations counts as none."""
        # median and MAD of the collection, from a fixed sample above 20,000 images (same answer, far cheaper)
        sample = decision if len(decision) <= 20_000 else decision[np.random.default_rng(0).integers(0, len(decision), 20_000)]
        center = np.median(sample)
        spread = 1.4826 * np.median(np.abs(sample - center)) + 1e-6
        z = (decision - center) / spread
        scores = 1.0 / (1.0 + np.exp(-(z - CALIBRATION_Z)))
        scores[z < EVIDENCE_Z] = 0.0
        return scores

    def learned_scores(self, model: TermClassifier, exclude: np.ndarray | None = None) -> np.ndarray:
        """The learned model's scores in (0, 1) over the collection.

        Two steps. Query expansion: the ``N_EXPANSION`` images closest to the
        learned direction (not in ``exclude``, the rows judged not relevant)
        are averaged into it, which on Caltech-101 raised one-example P@20 by
        about 3 points. Calibration: with a handful of examples, cosines of
        relevant images sit well above the bulk of the collection but far
        from 1; what matters is how far an image stands out, so cosines
        become robust z-scores against the whole collection (median, MAD) and
        an image scores 0.5 at ``CALIBRATION_Z`` robust deviations above the
        median.
        """
        vectors, projection = self.scoring_space()
        direction = model.coef_ if projection is None else model.coef_ @ projection[0]
        decision = vectors @ direction
        if N_EXPANSION and len(decision) > N_EXPANSION:
            ranked = decision.copy()
            if exclude is not None:
                ranked[exclude] = -np.inf
            top = np.argpartition(-ranked, N_EXPANSION)[:N_EXPANSION]
            decision = vectors @ (direction + EXPANSION_WEIGHT * vectors[top].mean(axis=0))
        return self._calibrate(decision)

    def _net_votes(self, votes: pd.DataFrame, judged: bool = False) -> np.ndarray:
        """Net votes per collection row (or 1 for every judged row); images judged under any path count."""
        net = np.zeros(len(self.col), np.int64)
        rows_of = self.rows_of_sha()
        for sha, vote in votes["net"].items():
            for row in rows_of.get(sha, []):
                net[row] = 1 if judged else vote
        return net

    def explore(self, k: int, avoid: np.ndarray) -> np.ndarray:
        """``k`` varied, typical rows, none in ``avoid``, from groups unlike those rows (:class:`lab.exploration.Explorer`).

        For a word nothing is known about yet, so a user can find and mark
        the first examples.
        """
        if self._explorer is None:
            vectors, _ = self.scoring_space()
            self._explorer = Explorer().fit(vectors, self.col.class_probabilities)
        vectors, _ = self.scoring_space()
        return self._explorer.propose(k, avoid, vectors)

    def search(self, query: str, k: int = 20, offset: int = 0, exclude_judged: bool = False, explore: bool = False) -> pd.DataFrame:
        if k < 1 or offset < 0:
            raise ValueError("k must be at least 1 and offset at least 0")
        resolution = self.resolve_term(query)
        term = resolution.term
        col = self.col
        n = len(col)
        prior = self.prior_scores(resolution)
        model, votes, n_examples = self.term_model(term)
        n_positive = int((votes["net"] > 0).sum()) + n_examples
        net = self._net_votes(votes)
        learned = None
        if model is not None and n:
            learned = self.learned_scores(model, exclude=np.flatnonzero(net < 0))
            weight = n_positive / (n_positive + PRIOR_STRENGTH[resolution.kind])
            score = (1.0 - weight) * prior + weight * learned
        elif (votes["net"] < 0).any() and n:
            # only "not relevant" so far: keep the prior, but push down images like the rejected ones
            score = prior * (1.0 - self.similarity_to(np.stack(votes.loc[votes["net"] < 0, "embedding"].to_list())))
        else:
            score = prior.copy()
        judged = self._net_votes(votes, judged=True).astype(bool)

        eligible = (net >= 0) & ((score >= MIN_SCORE) | (net > 0))
        if exclude_judged:
            eligible &= ~judged
        candidates = np.flatnonzero(eligible)
        # judged relevant first (more net votes first), then by score (<= 1); row id only breaks exact ties
        key = np.maximum(net[candidates], 0) * 2.0 + score[candidates]
        wanted = min(len(candidates), offset + k)
        if wanted < len(candidates):
            head = np.argpartition(-key, wanted - 1)[:wanted]
        else:
            head = np.arange(len(candidates))
        head = head[np.lexsort((candidates[head], -key[head]))]
        page = candidates[head][offset : offset + k]
        explored = np.zeros(0, np.int64)
        n_explore = k - len(page)  # nothing learned yet and too little evidence to fill the page
        if (net < 0).sum() >= k:  # a page's worth rejected and nothing accepted: the prior is not this word
            n_explore = max(n_explore, k // 2)
        if explore and model is None and n_explore > 0 and n:
            page = page[: k - n_explore]
            avoid = np.union1d(np.flatnonzero(judged), page)
            explored = self.explore(n_explore, avoid)
            page = np.concatenate([page, explored])
        explored_rows = set(explored.tolist())

        frame = pd.DataFrame(
            {
                "id": page,
                "path": col.images["path"].to_numpy()[page] if n else np.array([], str),
                "score": score[page].astype(float),
                "prior": prior[page].astype(float),
                "learned": learned[page].astype(float) if learned is not None else np.nan,
                "votes": net[page],
                "reason": [
                    "exploring: a typical image of a group unlike anything judged so far" if row in explored_rows
                    else self._reason(row, resolution, net[row], learned is not None, votes, n_examples)
                    for row in page
                ],
            }
        )
        message = self._message(resolution, len(candidates), model is not None, n)
        frame.attrs.update(
            term=term, kind=resolution.kind, n_matches=len(candidates), n_explored=len(explored), message=message, senses=resolution.senses
        )
        return frame

    def _reason(self, row: int, resolution: Resolution, net: int, has_model: bool, votes: pd.DataFrame, n_examples: int) -> str:
        parts = []
        if net > 0:
            parts.append(f"judged relevant (net {net:+d} vote{'s' if abs(net) != 1 else ''})")
        if len(resolution.classes):
            probabilities = self.col.class_probabilities[row, resolution.classes].astype(np.float32)
            top = np.argsort(-probabilities)[:2]
            shown = [f"{self.vocabulary.class_label(resolution.classes[i])} {probabilities[i]:.2f}" for i in top if probabilities[i] >= 0.01]
            if shown:
                parts.append(("related classes: " if resolution.kind == "related" else "") + ", ".join(shown))
        if has_model:
            n_judgments = len(votes)
            parts.append(f"learned from {n_judgments} judgment{'s' if n_judgments != 1 else ''}" + (f" and {n_examples} example{'s' if n_examples != 1 else ''}" if n_examples else ""))
        return "; ".join(parts) or "weak evidence"

    @staticmethod
    def _message(resolution: Resolution, n_matches: int, learned: bool, n_images: int) -> str:
        term = resolution.term
        if n_images == 0:
            return "the collection is empty: add images first (col.add or `lab index`)"
        if resolution.kind == "unknown" and not learned:
            return (
                f"no evidence for '{term}': it is not an ImageNet term and nobody has taught it yet. "
                f"Teach it with an example image (col.teach('{term}', image) or `lab teach`), "
                "or judge results of a related word."
            )
        if n_matches == 0:
            return f"no image shows evidence of '{term}': teach it with an example image (col.teach('{term}', image) or `lab teach`)"
        if resolution.kind == "related" and not learned:
            return f"'{term}' is not an ImageNet class; showing images of related classes. Judge them to teach it."
        return ""

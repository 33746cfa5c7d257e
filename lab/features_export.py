"""Plain-file exports for the original system's three scripts.

``get_inception_output.py`` and ``get_transfer_layer.py`` write one ``.npy``
array plus ``image_names.csv``; ``compute_distances.py`` writes the k nearest
neighbours of every image as ``neighbors.npy`` and ``distances.npy``. Only
numpy's ``.npy`` (read back with ``allow_pickle=False``) and CSV are used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .extraction import extract_batches
from .image_decoding import find_images
from .models import DEFAULT_MODEL, DEFAULT_RUNTIME, load_model
from .vectors import LAYERS, N_CLASSES, layer_array

__all__ = ["compute_neighbors", "export_features", "export_features_cli", "load_features"]


def export_features(image_path, output_path, layer: str, model: str | None = None, batch_size: int = 32, runtime: str = DEFAULT_RUNTIME) -> dict:
    """Extract one layer for every image under ``image_path`` into ``output_path``.

    Parameters
    ----------
    image_path : path-like
        An image file or a folder (searched recursively).
    output_path : path-like
        Output folder (created); receives ``<layer>.npy`` and ``image_names.csv``.
    layer : {"output", "transfer"}
        ``"output"``: the 1000 ImageNet class probabilities; ``"transfer"``:
        the embedding before the classifier.
    model : str, optional
        Backbone name; default ``efficientnet-lite0``.
    batch_size : int
        Images per network call.
    runtime : {"litert", "keras"}
        What runs the network (see :func:`lab.models.load_model`).

    Returns
    -------
    dict
        ``{"written": n, "failed": [{"path", "reason"}], "array": path}``.
    """
    if layer not in LAYERS:
        raise ValueError(f"layer must be 'output' or 'transfer', got {layer!r}")
    from tqdm.auto import tqdm

    backbone = load_model(model or DEFAULT_MODEL, runtime=runtime)
    files = find_images(image_path)
    names, rows, failed = [], [], []
    with tqdm(total=len(files), unit="img", desc=f"{layer} layer") as bar:
        for batch in extract_batches(files, backbone, batch_size=batch_size):
            names += [str(r.path) for r in batch.images]
            rows.append(layer_array(batch, layer))
            failed += [{"path": str(r.path), "reason": r.error} for r in batch.failures]
            bar.update(len(batch.images) + len(batch.failures))
    width = N_CLASSES if layer == "output" else backbone.embedding_size
    values = np.concatenate(rows) if rows else np.zeros((0, width), np.float32)
    out = Path(output_path)
    out.mkdir(parents=True, exist_ok=True)
    array_path = out / f"{LAYERS[layer]}.npy"
    np.save(array_path, values.astype(np.float32), allow_pickle=False)
    pd.DataFrame({"image": names}).to_csv(out / "image_names.csv", index=False)
    return {"written": len(names), "failed": failed, "array": str(array_path)}


def load_features(features_path) -> tuple[np.ndarray, Path]:
    """Read a features ``.npy`` file, or the single ``.npy`` in a folder, without pickle."""
    path = Path(features_path)
    if path.is_dir():
        candidates = sorted(p for p in path.glob("*.npy") if p.stem in LAYERS.values())
        if len(candidates) != 1:
            raise FileNotFoundError(f"{path} must hold exactly one of embeddings.npy / class_probabilities.npy")
        path = candidates[0]
    return np.load(path, allow_pickle=False), path


def compute_neighbors(features_path, output_dir, metric: str, n_neighbors: int, n_jobs: int = 4) -> dict:
    """Exact k-nearest-neighbour table of every image against all others.

    Writes ``neighbors.npy`` (n, k) int64 row indices and ``distances.npy``
    (n, k) float32 into ``output_dir``; the image itself is excluded.
    ``n_jobs`` threads compute distances (-1: all cores), as in scikit-learn.
    """
    from sklearn.neighbors import NearestNeighbors

    features, path = load_features(features_path)
    if n_neighbors < 1:
        raise ValueError("n_neighbors must be at least 1")
    if n_neighbors >= len(features):
        raise ValueError(f"n_neighbors must be smaller than the number of images ({len(features)})")
    index = NearestNeighbors(n_neighbors=n_neighbors + 1, metric=metric, algorithm="brute", n_jobs=n_jobs)
    index.fit(features.astype(np.float32))
    distances, neighbors = index.kneighbors(features.astype(np.float32))
    # drop each image itself (normally column 0; with exact duplicates it may sit elsewhere)
    own = neighbors == np.arange(len(features))[:, None]
    keep = ~own
    keep[~own.any(axis=1), -1] = False  # no self hit: drop the farthest instead
    neighbors = neighbors[keep].reshape(len(features), n_neighbors)
    distances = distances[keep].reshape(len(features), n_neighbors)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "neighbors.npy", neighbors.astype(np.int64), allow_pickle=False)
    np.save(out / "distances.npy", distances.astype(np.float32), allow_pickle=False)
    names = path.parent / "image_names.csv"
    if names.exists() and names.resolve() != (out / "image_names.csv").resolve():
        (out / "image_names.csv").write_bytes(names.read_bytes())
    return {"n_images": len(features), "metric": metric, "n_neighbors": n_neighbors, "output_dir": str(out)}


def export_features_cli(layer: str, description: str) -> None:
    """Command line of get_inception_output.py / get_transfer_layer.py: ``image_path output_path [--model]``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("image_path", help="an image file or a folder of images")
    parser.add_argument("output_path", help="output folder")
    parser.add_argument("--model", default=None, help="backbone (default efficientnet-lite0)")
    parser.add_argument("--runtime", default="litert", choices=["litert", "keras"], help="what runs the network (default litert)")
    args = parser.parse_args()
    from .models import WeightsUnavailableError

    try:
        result = export_features(args.image_path, args.output_path, layer=layer, model=args.model, runtime=args.runtime)
    except (WeightsUnavailableError, FileNotFoundError, ValueError) as err:  # a user's mistake or a missing download: one line
        sys.exit(f"{parser.prog}: error: {' '.join(str(err).split())}")
    for item in result["failed"]:
        print(f"skipped {item['path']}: {item['reason']}", file=sys.stderr)
    print(f"wrote {result['written']} row{'s' if result['written'] != 1 else ''} to {result['array']}")

"""Figures for notebooks and the lab report: image grids, metric charts, feedback curves."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["feedback_curves", "figure_sheet", "image_grid", "metric_chart", "save_figure", "top_class_captions"]

# the original system's reported feedback result: P@20 = 0.75 after 6 rounds of judged pages
ORIGINAL_ROUNDS, ORIGINAL_P_AT_20 = 6, 0.75


def image_grid(paths, captions=None, columns: int = 6, size: float = 2.2):
    """A grid of thumbnails with optional captions; returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    from PIL import Image

    from .thumbnails import thumbnail

    paths = list(paths)
    rows = max(1, -(-len(paths) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * size, rows * (size + 0.4)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, path in enumerate(paths):
        ax = axes.flat[i]
        ax.imshow(Image.open(BytesIO(thumbnail(str(path), 192))))
        if captions is not None:
            ax.set_title(str(captions[i])[:60], fontsize=7)
    figure.tight_layout()
    return figure


def top_class_captions(col, rows, n: int = 2) -> list[str]:
    """"name 0.83, name 0.10" for each row's most probable ImageNet classes."""
    from .vocabulary import load_vocabulary

    names = load_vocabulary().class_names
    probabilities = np.asarray(col.class_probabilities[list(rows)], np.float32)
    captions = []
    for p in probabilities:
        top = np.argsort(-p)[:n]
        captions.append("\n".join(f"{names[i]} {p[i]:.2f}" for i in top))
    return captions


def metric_chart(table: pd.DataFrame, value: str = "p@20", ax=None, title: str | None = None):
    """Grouped bars: one group per layer (and model), one bar per metric."""
    import matplotlib.pyplot as plt

    group = [c for c in ("model", "layer") if c in table.columns]
    pivot = table.pivot_table(index=group, columns="metric", values=value)
    ax = pivot.plot.bar(ax=ax, figsize=(8, 4) if ax is None else None, rot=0, ylim=(0, 1))
    ax.set_ylabel(value)
    ax.set_title(title or f"Query by example, {value}")
    ax.legend(title="metric", fontsize=8)
    plt.tight_layout()
    return ax


def feedback_curves(rounds: pd.DataFrame, value: str = "first_page_p@20", ax=None, baseline: bool = True, title: str | None = None):
    """Per-word (thin) and mean (thick) precision by feedback round, with the original system's line."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for _, frame in rounds.groupby("word"):
        ax.plot(frame["round"], frame[value], color="lightsteelblue", linewidth=0.8)
    mean = rounds.groupby("round")[value].mean()
    ax.plot(mean.index, mean.values, color="navy", linewidth=2.5, marker="o", label=f"lab, mean {value}")
    if baseline:
        label = f"original: p@20 = {ORIGINAL_P_AT_20} after {ORIGINAL_ROUNDS} rounds"
        ax.scatter([ORIGINAL_ROUNDS], [ORIGINAL_P_AT_20], color="crimson", zorder=5, label=label)
        ax.axhline(ORIGINAL_P_AT_20, color="crimson", linestyle=":", linewidth=1)
    ax.set_xlabel("feedback round (pages of 20 judged)")
    ax.set_ylabel(value)
    ax.set_ylim(0, 1.02)
    ax.set_title(title or "Learning a word from feedback")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def save_figure(figure, folder, name: str, formats=(".png", ".svg")) -> list[Path]:
    """Save as PNG (150 dpi) and SVG into ``folder``; returns the paths.

    ``formats=(".png",)`` for figures made of photos, where an SVG only wraps the same pixels.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, options in ((".png", {"dpi": 150}), (".svg", {})):
        if suffix not in formats:
            continue
        path = folder / f"{name}{suffix}"
        figure.savefig(path, bbox_inches="tight", **options)
        written.append(path)
    return written


def figure_sheet(paths, titles=None, columns: int = 2, size: float = 7.0):
    """Saved figures (PNG files) side by side on one sheet, each under its title; returns the figure."""
    import matplotlib.pyplot as plt
    from PIL import Image

    paths = [Path(p) for p in paths]
    rows = max(1, -(-len(paths) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * size, rows * size * 0.75), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, path, title in zip(axes.flat, paths, titles or [p.stem for p in paths]):
        ax.imshow(Image.open(path))
        ax.set_title(title, fontsize=11)
    figure.tight_layout()
    return figure

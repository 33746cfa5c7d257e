"""Labeled sample photos that ship inside installed packages, for demos and tests.

scikit-image and scikit-learn carry a handful of photos; foolbox 3.3.4 (if
installed, ``pip install --no-deps foolbox==3.3.4``) carries 20 ImageNet
validation photos whose ImageNet-1k class index is the last number of the file
name. :func:`write_sample_folder` writes them into a folder, named
``<label>__<source>.<ext>`` so tests and notebooks can read the label back.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["label_of", "reference_images", "write_sample_folder"]


def reference_images() -> dict[str, Image.Image]:
    """The packaged photos with a clear subject, as RGB PIL images, by ``label__name``."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = {
        "cat__chelsea": data.chelsea(),
        "coffee__coffee": data.coffee(),
        "person__astronaut": data.astronaut(),
        "rocket__rocket": data.rocket(),
        "motorcycle__stereo_motorcycle": data.stereo_motorcycle()[0],
    }
    sklearn_images = load_sample_images()
    for filename, pixels in zip(sklearn_images.filenames, sklearn_images.images):
        stem = Path(filename).stem
        photos[{"china": "temple__china", "flower": "flower__flower"}[stem]] = pixels
    return {name: Image.fromarray(np.asarray(pixels, np.uint8)).convert("RGB") for name, pixels in photos.items()}


def _foolbox_imagenet_photos() -> list[Path]:
    try:
        import importlib.util

        spec = importlib.util.find_spec("foolbox")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    return sorted(folder.glob("imagenet_*.jpg"))


def write_sample_folder(folder: str | Path, include_foolbox: bool = True) -> list[Path]:
    """Write the packaged sample photos into ``folder`` (created if needed).

    Parameters
    ----------
    folder : str or Path
        Destination; existing files with the same names are overwritten.
    include_foolbox : bool
        Also copy foolbox's 20 ImageNet photos when foolbox is installed, as
        ``imagenet<class index>__<n>.jpg``.

    Returns
    -------
    list of Path
        The files written, sorted.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image in reference_images().items():
        path = folder / f"{name}.jpg"
        image.save(path, quality=92)
        written.append(path)
    if include_foolbox:
        for source in _foolbox_imagenet_photos():
            _, number, class_index = source.stem.split("_")
            path = folder / f"imagenet{int(class_index)}__{number}.jpg"
            shutil.copyfile(source, path)
            written.append(path)
    return sorted(written)


def label_of(path: str | Path) -> str:
    """The label encoded in a sample file name (the part before ``__``)."""
    return Path(path).stem.split("__")[0]

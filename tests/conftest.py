"""Shared fixtures: a folder of real photos from installed packages, and a collection of it."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("LAB_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_lab_home(tmp_path_factory):
    """Converted weights go to a fresh folder: every run tests the conversion from scratch."""
    home = tmp_path_factory.mktemp("lab_home")
    previous = os.environ.get("LAB_HOME")
    os.environ["LAB_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("LAB_HOME", None)
    else:
        os.environ["LAB_HOME"] = previous


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """27 labeled photos shipped by scikit-image, scikit-learn and foolbox."""
    from lab.sample_images import write_sample_folder

    folder = tmp_path_factory.mktemp("photos")
    write_sample_folder(folder)
    return folder


@pytest.fixture(scope="session")
def messy_folder(tmp_path_factory, photo_folder) -> Path:
    """The photos plus the broken files a real folder holds."""
    folder = tmp_path_factory.mktemp("messy")
    for path in photo_folder.iterdir():
        shutil.copy(path, folder / path.name)
    jpeg = (photo_folder / "cat__chelsea.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("these are my notes, not a picture")
    (folder / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    return folder


@pytest.fixture(scope="session")
def photo_collection(tmp_path_factory, photo_folder):
    """A collection of :func:`photo_folder`, built once per test session."""
    from lab import Collection

    col = Collection.open(tmp_path_factory.mktemp("collections") / "photos", create=True)
    col.add(photo_folder, progress=False)
    return col


def varied_copies(photo_folder: Path, folder: Path, n: int) -> list[Path]:
    """``n`` distinct real photos: crops and flips of the packaged ones (all different bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(photo_folder.glob("*.jpg"))
    rng = np.random.default_rng(0)
    written = []
    for i in range(n):
        with Image.open(sources[i % len(sources)]) as image:
            image = image.convert("RGB")
            w, h = image.size
            left, top = int(rng.integers(0, w // 5)), int(rng.integers(0, h // 5))
            image = image.crop((left, top, w - int(rng.integers(0, w // 5)), h - int(rng.integers(0, h // 5))))
            if i % 2:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
            path = folder / f"{i:04d}.jpg"
            image.save(path, quality=90)
            written.append(path)
    return written


@pytest.fixture(scope="session")
def caltech101(tmp_path_factory) -> Path:
    """The shared Caltech-101 set, unpacked once; skipped where ../shared is absent."""
    return _unpacked("caltech101", tmp_path_factory.mktemp("caltech"))


def _unpacked(name: str, target: Path) -> Path:
    """A shared dataset unpacked into ``target``: its folder; the test is skipped where ../shared is absent."""
    archive = SHARED_DATASETS / f"{name}.tar.gz"
    if not archive.exists():
        pytest.skip(f"shared dataset not found: {archive}")
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return next(p for p in target.iterdir() if p.is_dir())


@pytest.fixture(scope="session")
def flower_photos(tmp_path_factory):
    """flower_photos_600 (5 species x 120, only daisy an ImageNet class) unpacked and indexed once; skipped where ../shared is absent."""
    from lab import Collection
    from lab.datasets import labels_by_path

    target = tmp_path_factory.mktemp("flowers")
    folder = _unpacked("flower_photos_600", target)
    col = Collection.open(target / "flowers.lab", create=True)
    col.add(folder / "images", progress=False)
    return col, labels_by_path(folder / "labels.csv"), folder


@pytest.fixture(scope="session")
def grouped(tmp_path_factory, photo_folder):
    """A collection of 81 photos in 27 groups of three (each photo, a crop and a flip), and the group of each row."""
    from lab import Collection

    folder = tmp_path_factory.mktemp("grouped")
    sources = sorted(photo_folder.glob("*.jpg"))
    for path in sources:
        shutil.copy(path, folder / f"source-{path.name}")
    copies = varied_copies(photo_folder, folder / "copies", 2 * len(sources))
    col = Collection.open(tmp_path_factory.mktemp("collections") / "grouped", create=True)
    col.add(folder, progress=False)
    group_of_path = {str((folder / f"source-{p.name}").resolve()): i for i, p in enumerate(sources)}
    group_of_path.update({str(p.resolve()): i % len(sources) for i, p in enumerate(copies)})
    groups = np.array([group_of_path[p] for p in col.paths])
    return col, groups

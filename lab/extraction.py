"""Batched feature extraction that overlaps image decoding with the network.

Worker threads read, hash and decode files (Pillow releases the GIL while
decoding) while the main thread runs the network on the previous batch, so the
CPU cores are busy with the network instead of waiting for JPEG decoding.
Only a bounded window of decoded images is held at any time, so memory stays
flat however many files there are, and the decodes in flight share one memory
budget (:data:`lab.image_decoding.DECODE_MEMORY_BYTES`), so huge images cannot
add up however many threads decode them.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .image_decoding import ImageDecodeError, decode_image_with_size, file_sha256, open_image_file, read_image_file
from .models.base import Backbone

__all__ = ["DecodedImage", "ExtractedBatch", "decode_for_model", "extract_batches", "featurize_image"]


@dataclass
class DecodedImage:
    """One file after reading: its pixels ready for the network, or why not."""

    path: Path
    size: int = 0
    mtime_ns: int = 0
    sha256: str = ""
    width: int = 0
    height: int = 0
    pixels: np.ndarray | None = None  # (S, S, 3) uint8
    error: str | None = None
    wanted: bool = True  # False: hashed, then left undecoded (see ``wanted`` of extract_batches)


@dataclass
class ExtractedBatch:
    """The network's outputs for a batch of decoded images, in input order."""

    images: list[DecodedImage]  # successfully decoded ones only
    embeddings: np.ndarray  # (B, D) float32
    class_probabilities: np.ndarray  # (B, 1000) float32
    failures: list[DecodedImage]
    unwanted: list[DecodedImage] = field(default_factory=list)  # hashed, not decoded: ``wanted`` said no


def decode_for_model(path: str | os.PathLike, backbone: Backbone, wanted: Callable[[Path, str], bool] | None = None) -> DecodedImage:
    """Read, hash and decode one file into the backbone's input; never raises for bad files.

    The file is opened once through :func:`lab.image_decoding.open_image_file`
    (regular files only, at most ``MAX_FILE_BYTES``), hashed in 1 MB blocks
    and decoded from the same open file, so its bytes are never held in memory whole; the
    decode itself draws on the process-wide decode memory budget
    (``lab.image_decoding.DECODE_MEMORY_BYTES``), which bounds memory
    whatever the number of threads. When ``wanted(path, sha256)`` is false
    the file is not decoded and the record says so (``wanted`` False).
    """
    path = Path(path)
    record = DecodedImage(path=path)
    try:
        with open_image_file(path) as file:
            stat = os.fstat(file.fileno())
            record.size, record.mtime_ns = stat.st_size, stat.st_mtime_ns
            record.sha256 = file_sha256(file)
            if wanted is not None and not wanted(path, record.sha256):
                record.wanted = False
                return record
            file.seek(0)
            image, (record.width, record.height) = decode_image_with_size(file, min_side=backbone.image_size)
        record.pixels = backbone.preprocess(image)
    except ImageDecodeError as err:
        record.error = str(err)
    except OSError as err:
        record.error = f"cannot read file: {err.strerror or err}"
    except Exception as err:  # a decoder bug must not stop a long run
        record.error = f"unexpected {type(err).__name__}: {err}"
    return record


def _model_input(encoded: bytes, backbone: Backbone) -> tuple[np.ndarray, tuple[int, int]]:
    """Encoded image bytes -> the backbone's input pixels, and the image's width and height."""
    image, size = decode_image_with_size(encoded, min_side=backbone.image_size)
    return backbone.preprocess(image), size


def featurize_image(image, backbone: Backbone) -> tuple[np.ndarray, np.ndarray, str]:
    """Embedding, class probabilities and content hash of one image from outside a collection.

    Parameters
    ----------
    image : path-like, bytes, PIL.Image or ndarray
        An image file, encoded image bytes, a PIL image, or pixels
        (H, W[, 3]) uint8. A PIL image or pixels are hashed as PNG bytes.
    backbone : Backbone

    Raises
    ------
    OSError
        For a file that cannot be read.
    ValueError
        For bytes that are not a readable image, or an array that is not pixels.
    TypeError
        For anything else.
    """
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        encoded, source = read_image_file(path), str(path)  # regular files only, size-capped
    elif isinstance(image, (bytes, bytearray, memoryview)):
        encoded, source = bytes(image), "uploaded image"
    elif isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "PNG")
        encoded, source = buffer.getvalue(), "image"
    elif isinstance(image, np.ndarray):
        if not (image.ndim in (2, 3) and image.dtype == np.uint8):
            raise ValueError(
                f"an array query must be image pixels (H, W[, 3]) of dtype uint8, got shape {image.shape} and dtype {image.dtype}; "
                "a 1-D feature vector is a query for similar() only"
            )
        buffer = io.BytesIO()
        Image.fromarray(image).convert("RGB").save(buffer, "PNG")
        encoded, source = buffer.getvalue(), "pixel array"
    else:
        raise TypeError(f"cannot use a {type(image).__name__} as a query image")
    try:
        pixels, _ = _model_input(encoded, backbone)
    except ImageDecodeError as err:
        raise ValueError(f"cannot use {source} as a query: {err}") from None
    embeddings, probabilities = backbone.predict(pixels[None])
    return embeddings[0], probabilities[0], hashlib.sha256(encoded).hexdigest()


def _decoded_in_order(paths: Iterable, backbone: Backbone, n_jobs: int, window: int, wanted) -> Iterator[DecodedImage]:
    """Decode with a thread pool, yielding in input order with at most ``window`` in flight."""
    with ThreadPoolExecutor(max_workers=n_jobs, thread_name_prefix="lab-decode") as pool:
        pending: deque = deque()
        for path in paths:
            pending.append(pool.submit(decode_for_model, path, backbone, wanted))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def extract_batches(
    paths: Iterable[str | os.PathLike],
    backbone: Backbone,
    batch_size: int = 32,
    n_jobs: int | None = None,
    wanted: Callable[[Path, str], bool] | None = None,
) -> Iterator[ExtractedBatch]:
    """Yield the network's outputs batch by batch for a stream of image files.

    Parameters
    ----------
    paths : iterable of path-like
        Image files, in the order results are wanted.
    backbone : Backbone
        From :func:`lab.models.load_model`.
    batch_size : int
        Images per network call.
    n_jobs : int, optional
        Decoding threads; default the number of CPU cores.
    wanted : callable, optional
        ``wanted(path, sha256)`` is asked, in a decoding thread, once a file
        is hashed: when false the file is neither decoded nor run through the
        network but listed in the batch's ``unwanted`` with its hash (a file
        whose content is already known), so hashing and decoding share one
        read of the file. Must be thread-safe; default every file is wanted.

    Yields
    ------
    ExtractedBatch
        Each batch lists the images that decoded (with their outputs), the
        files that failed, with the reason, and the unwanted files.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n_jobs = n_jobs or os.cpu_count() or 2
    decoded = _decoded_in_order(paths, backbone, n_jobs, window=2 * batch_size + n_jobs, wanted=wanted)
    # The network runs batch k on its own thread while this one gathers batch k + 1
    # and the caller stores batch k - 1, so the network never waits for either.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lab-network") as network:
        running: deque = deque()
        for good, failed, unwanted in _grouped(decoded, batch_size):
            pixels = np.stack([image.pixels for image in good]) if good else np.zeros((0, backbone.image_size, backbone.image_size, 3), np.uint8)
            for image in good:
                image.pixels = None  # the batch holds them now
            running.append(network.submit(_run_network, backbone, pixels, good, failed, unwanted))
            if len(running) > 1:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()


def _grouped(decoded: Iterator[DecodedImage], batch_size: int) -> Iterator[tuple[list[DecodedImage], ...]]:
    """Batches of up to ``batch_size`` decoded images, each with the failed and unwanted files met since the previous one.

    A batch is also closed once ``batch_size`` unwanted files wait, so a long
    run of them neither piles up nor stalls the progress bar.
    """
    good: list[DecodedImage] = []
    failed: list[DecodedImage] = []
    unwanted: list[DecodedImage] = []
    for record in decoded:
        (failed if record.error else good if record.wanted else unwanted).append(record)
        if len(good) == batch_size or len(unwanted) == batch_size:
            yield good, failed, unwanted
            good, failed, unwanted = [], [], []
    if good or failed or unwanted:
        yield good, failed, unwanted


def _run_network(backbone: Backbone, pixels: np.ndarray, good: list, failed: list, unwanted: list) -> ExtractedBatch:
    embeddings, probabilities = backbone.predict(pixels)
    return ExtractedBatch(good, embeddings, probabilities, failed, unwanted)

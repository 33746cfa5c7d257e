"""The interface every backbone offers: preprocessing plus (embedding, class probabilities)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..hashing import file_sha256  # noqa: F401  (re-exported: lab.models.file_sha256)

from ..vectors import N_CLASSES


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights for a model are not on this machine and cannot be fetched."""


def center_crop(image: Image.Image, size: int, crop_fraction: float = 0.875) -> np.ndarray:
    """Resize the short side to ``size / crop_fraction`` and cut out the centre square.

    The resize runs as Pillow runs it, one horizontal pass then one vertical
    pass, but as two calls, with the columns cropped in between: the vertical
    pass then computes only the columns kept. The pixels are identical to
    resizing the whole image and cropping it (Pillow's ``box=`` would skip more
    work but shifts the sampling grid by float32 rounding, which changes pixels
    by one level and the logits by up to 0.06), at about 85 % of the cost.

    Returns
    -------
    ndarray of shape (size, size, 3), uint8
    """
    short = max(1, round(size / crop_fraction))
    width, height = image.size
    scale = short / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    if new_w != width:
        image = image.resize((new_w, height), Image.BILINEAR)  # horizontal pass
    image = image.crop((left, 0, left + size, height))
    if new_h != height:
        image = image.resize((size, new_h), Image.BILINEAR)  # vertical pass, on the kept columns only
    return np.asarray(image.crop((0, top, size, top + size)), dtype=np.uint8)


@dataclass
class Backbone:
    """A pretrained ImageNet network together with its preprocessing.

    ``load_model(name)`` returns one; the preprocessing and the network travel
    together so that images are always prepared the way the weights expect.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"efficientnet-lite0"``.
    image_size : int
        Side of the square input, in pixels.
    embedding_size : int
        Length of the "transfer layer" vector (global average pool of the last
        convolutional features).
    weights_checksum : str
        SHA-256 of the weights file, stored in collection manifests.
    crop_fraction : float
        Central crop kept at evaluation time (the ImageNet convention 0.875:
        resize the short side to ``image_size / 0.875``, crop the centre).
    """

    name: str
    image_size: int
    embedding_size: int
    weights_checksum: str
    network: object = field(repr=False)
    outputs_probabilities: bool = False  # True when the network ends in a softmax
    crop_fraction: float = 0.875
    runtime = "keras"  # what runs predict (class attribute; see lab.models.litert)

    def __post_init__(self):
        import tensorflow as tf

        network = self.network
        self._forward = tf.function(lambda x: network(x, training=False), reduce_retracing=True)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """Resize and centre-crop an RGB PIL image to ``(size, size, 3)`` uint8."""
        return center_crop(image, self.image_size, self.crop_fraction)

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and class probabilities for a batch of preprocessed images.

        Parameters
        ----------
        images : ndarray of shape (n, image_size, image_size, 3)
            RGB, uint8 or float in [0, 255], as returned by :meth:`preprocess`.

        Returns
        -------
        embeddings : ndarray of shape (n, embedding_size), float32
        class_probabilities : ndarray of shape (n, 1000), float32
            ImageNet-1k class probabilities, each row summing to 1.
        """
        images = np.asarray(images)
        expected = (self.image_size, self.image_size, 3)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(f"images must have shape (n, {expected[0]}, {expected[1]}, 3), got {images.shape}")
        if len(images) == 0:
            return np.zeros((0, self.embedding_size), np.float32), np.zeros((0, N_CLASSES), np.float32)
        embeddings, scores = self._forward(images.astype(np.float32, copy=False))
        embeddings, scores = np.asarray(embeddings, np.float32), np.asarray(scores, np.float64)
        if not self.outputs_probabilities:
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores /= scores.sum(axis=1, keepdims=True)
        return embeddings, scores.astype(np.float32)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Raw class scores before the softmax (only for networks that expose them)."""
        if self.outputs_probabilities:
            raise ValueError(f"{self.name} ends in a softmax and exposes no logits")
        return np.asarray(self._forward(np.asarray(images, np.float32))[1], np.float32)


def cached_weights_path(name: str, checksum: str) -> Path:
    """Where the converted Keras weights of ``name`` are cached."""
    from ..paths import lab_home

    folder = lab_home() / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}-{checksum[:16]}.weights.h5"

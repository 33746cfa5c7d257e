"""Decode image files robustly into RGB PIL images, or say exactly why not.

Everything a folder of real photos throws at an indexer is handled here:
EXIF orientation, greyscale / CMYK / palette / alpha / 16-bit modes, the first
frame of animations, JPEG draft-mode decoding at reduced size (much faster for
large photos), and files that are corrupt, truncated, empty, not images, or
decompression bombs. Failures become :class:`ImageDecodeError` with a reason
meant for a person.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_EXTENSIONS", "ImageDecodeError", "MAX_PIXELS", "decode_image", "decode_image_with_size", "find_images"]

# A 40,000 x 40,000 image is beyond any photo and would need 4.8 GB as RGB.
MAX_PIXELS = 178_956_970  # Pillow's own default bomb threshold (2 x 89.5 MP)
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".ico"}
)


class ImageDecodeError(ValueError):
    """An image could not be read; ``str(err)`` is the reason."""


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing transparency on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(pixels.max()), 1.0)
        if image.mode in ("I", "F") and pixels.max() <= 255:
            top = 255.0
        image = Image.fromarray(np.clip(pixels / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB") if image.mode != "RGB" else image


def decode_image(source, min_side: int | None = None) -> Image.Image:
    """Open an image file (or bytes, or a file object) as an upright RGB image.

    See :func:`decode_image_with_size`, which also returns the full size.
    """
    return decode_image_with_size(source, min_side)[0]


def decode_image_with_size(source, min_side: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """Open an image file (or bytes, or a file object) as an upright RGB image.

    Parameters
    ----------
    source : str, path-like, bytes or binary file object
        The encoded image.
    min_side : int, optional
        The smallest side the caller needs. JPEGs are then decoded in draft
        mode at the smallest power-of-two reduction that keeps both sides at
        least this large, which is several times faster for large photos.

    Returns
    -------
    image : PIL.Image.Image
        Mode ``RGB``, EXIF orientation applied, first frame of an animation.
    size : tuple of int
        ``(width, height)`` of the upright image at full resolution (draft
        mode may have decoded it smaller).

    Raises
    ------
    ImageDecodeError
        With a reason: empty file, not an image, truncated or corrupt data,
        too many pixels.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageDecodeError("empty file (0 bytes)")
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        try:
            size = os.path.getsize(source)
        except OSError as err:
            raise ImageDecodeError(f"cannot read file: {err.strerror or err}") from None
        if size == 0:
            raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
            if image.width * image.height > MAX_PIXELS // 2:
                raise ImageDecodeError(
                    f"too many pixels ({image.width} x {image.height}); refusing a possible decompression bomb"
                )
            full_width, full_height = image.size
            if min_side and image.format == "JPEG":
                scale = min(image.width, image.height) / float(min_side)
                if scale >= 2:
                    image.draft("RGB", (max(1, image.width // int(scale)), max(1, image.height // int(scale))))
            image.seek(0)  # first frame of animations
            image.load()
            try:
                upright = ImageOps.exif_transpose(image)
            except Exception:  # a broken EXIF block should not lose the picture
                upright = image
            if (upright.width > upright.height) != (image.width > image.height):
                full_width, full_height = full_height, full_width
            return _to_rgb(upright), (full_width, full_height)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image (unrecognised format)") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise ImageDecodeError(f"too many pixels; refusing a possible decompression bomb ({err})") from None
    except OSError as err:
        message = str(err) or type(err).__name__
        if "truncated" in message.lower():
            raise ImageDecodeError(f"truncated image: {message}") from None
        raise ImageDecodeError(f"corrupt image: {message}") from None
    except (ValueError, SyntaxError, EOFError, struct.error) as err:
        raise ImageDecodeError(f"corrupt image: {err or type(err).__name__}") from None


def find_images(paths) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of image files.

    Files named explicitly are kept whatever their extension (the decoder then
    says whether they are images); inside folders only files with a known
    image extension are taken, and hidden files and folders are skipped.

    Raises
    ------
    FileNotFoundError
        If a given path does not exist.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: set[Path] = set()
    for entry in paths:
        entry = Path(entry).expanduser()
        if entry.is_dir():
            for root, dirs, files in os.walk(entry):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in files:
                    if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                        found.add(Path(root, name).resolve())
        elif entry.exists():
            found.add(entry.resolve())
        else:
            raise FileNotFoundError(f"no such file or folder: {entry}")
    return sorted(found)

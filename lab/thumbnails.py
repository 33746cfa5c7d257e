"""Thumbnails of image files as JPEG bytes, cached: for the panel's cards and for figures."""

from __future__ import annotations

import io
from collections import OrderedDict

from PIL import Image

from .image_decoding import ImageDecodeError, decode_image

__all__ = ["thumbnail"]

CACHE_SIZE = 4000  # thumbnails kept (about 5 KB each at 160 px)
_THUMBNAILS: "OrderedDict[tuple, bytes]" = OrderedDict()


def thumbnail(path: str, size: int = 160) -> bytes:
    """JPEG bytes of a thumbnail (cached); a grey tile if the file is unreadable now."""
    key = (path, size)
    if key in _THUMBNAILS:
        _THUMBNAILS.move_to_end(key)
        return _THUMBNAILS[key]
    try:
        image = decode_image(path, min_side=size)
    except ImageDecodeError:
        image = Image.new("RGB", (size, size), (200, 200, 200))
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    _THUMBNAILS[key] = buffer.getvalue()
    if len(_THUMBNAILS) > CACHE_SIZE:
        _THUMBNAILS.popitem(last=False)
    return _THUMBNAILS[key]

"""SHA-256 of a file, read in 1 MB blocks: weights checksums and chunk checksums use this one helper.

Image files are hashed while they are read for decoding, under the image size
cap, by :func:`lab.image_decoding.file_sha256` (an open file, not a path).
"""

from __future__ import annotations

import hashlib
import os

__all__ = ["file_sha256"]


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()

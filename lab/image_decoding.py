"""Read and decode image files robustly into RGB PIL images, or say exactly why not.

Everything a folder of real photos throws at an indexer is handled here:
EXIF orientation, greyscale / CMYK / palette / alpha / 16-bit modes, the first
frame of animations, JPEG draft-mode decoding at reduced size (much faster for
large photos), and files that are corrupt, truncated, empty, not images, or
decompression bombs. Failures become :class:`ImageDecodeError` with a reason
meant for a person.

Files are opened only by :func:`open_image_file` (or :func:`read_image_file`),
which refuses anything but a regular file before opening it (a FIFO named
``x.jpg`` would block forever, ``/dev/zero`` never ends) and files larger than
:data:`MAX_FILE_BYTES`. :func:`scan_images` walks folders and reports every
entry it does not take (unknown extension, symlink loop, dangling symlink,
FIFO or device, unreadable folder) with the reason, under its own path.

Limits, and why:

* :data:`MAX_PIXELS` (178,956,970) bounds the pixels actually decoded. JPEGs
  are decoded in draft mode when the caller needs only ``min_side`` pixels, up
  to 8 times smaller per side, so a 12000 x 9000 (108 MP) photo decodes as
  1500 x 1125 and counts as 1.7 MP; a PNG/TIFF/WebP is decoded whole. The
  number is Pillow's own hard limit (2 x ``Image.MAX_IMAGE_PIXELS``), which
  Pillow also applies to the size a file states when it is opened, so no file
  stating more is decoded at all. It keeps one decode under 1.5 GB (Pillow
  holds 4 bytes a pixel, plus one converted copy) and lets the largest camera
  sensors (150 MP) through. Pillow's warning threshold, half of it (89.5 MP),
  used to be treated as the limit and refused 108 MP camera JPEGs.
* :data:`DECODE_MEMORY_BYTES` (1 GiB) is shared by every decode running in the
  process, whatever the number of threads: a decode first reserves its
  estimate (pixels x (bytes a pixel + 4)) and waits while others hold the
  budget, and an image larger than the whole budget runs alone; memory a large
  decode freed is handed back to the system before the next one starts. Pixels
  being decoded therefore take at most ``max(DECODE_MEMORY_BYTES, largest
  image's estimate)``: eight 88 MP PNGs decoded by eight threads grow the
  process by 352 MB, 2,590 MB without the budget
  (``results/bench_decode_memory.md``).
* :data:`MAX_FILE_BYTES` (1 GiB) caps every read, so a runaway file cannot
  exhaust memory when a query image is read whole.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import stat
import struct
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DECODE_MEMORY_BYTES",
    "IMAGE_EXTENSIONS",
    "ImageDecodeError",
    "ImageScan",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "decode_image",
    "decode_image_with_size",
    "display_path",
    "existing_source",
    "file_sha256",
    "find_images",
    "open_image_file",
    "read_capped",
    "read_image_file",
    "scan_images",
]

MAX_PIXELS = 178_956_970  # = 2 x Image.MAX_IMAGE_PIXELS, Pillow's hard limit; see the module docstring
MAX_FILE_BYTES = 1 << 30
DECODE_MEMORY_BYTES = 1 << 30
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".ico"}
)
_JPEG_FORMATS = ("JPEG", "MPO")  # cameras write multi-picture JPEGs, which Pillow calls MPO


class ImageDecodeError(ValueError):
    """An image could not be read; ``str(err)`` is the reason."""


def display_path(path: str | os.PathLike) -> str:
    """A path as a printable string: bytes that are not UTF-8 shown as ``\\xNN`` escapes.

    File names on Linux are bytes; Python keeps undecodable ones as lone
    surrogates, which ``print`` refuses. Use this wherever a path is shown.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


# ----------------------------------------------------------------- files
_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind_of(mode: int) -> str:
    return next((name for test, name in _FILE_KINDS if test(mode)), "an unknown kind of file")


def _stat_failure(path, err: OSError) -> str:
    """Why ``os.stat(path)`` failed, in words (a symlink loop or a dangling symlink named as such)."""
    if err.errno == errno.ELOOP:
        return "symlink loop"
    if err.errno == errno.ENOENT and os.path.islink(path):
        return "dangling symlink (its target does not exist)"
    return f"cannot read file: {err.strerror or err}"


def open_image_file(path: str | os.PathLike, max_bytes: int | None = None) -> BinaryIO:
    """Open a file for reading after checking it is a regular file of a sane size.

    FIFOs, devices (``/dev/zero``), sockets and folders are refused before
    anything opens them; so are files larger than ``max_bytes``. The file is
    opened non-blocking, and checked again once open, so swapping it for a
    FIFO in between cannot make a reader hang.

    Parameters
    ----------
    path : str or path-like
    max_bytes : int, optional
        Size limit; default :data:`MAX_FILE_BYTES`.

    Returns
    -------
    binary file object
        Positioned at the start; the caller closes it.

    Raises
    ------
    ImageDecodeError
        With the reason: symlink loop, dangling symlink, not a regular file,
        file too large, or the operating system's error.
    """
    limit = MAX_FILE_BYTES if max_bytes is None else max_bytes
    try:
        info = os.stat(path)
    except OSError as err:
        raise ImageDecodeError(_stat_failure(path, err)) from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageDecodeError(f"not a regular file ({_kind_of(info.st_mode)}); not opened")
    if info.st_size > limit:
        raise ImageDecodeError(f"file too large ({info.st_size:,} bytes; the limit is {limit:,})")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise ImageDecodeError(_stat_failure(path, err)) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # replaced between the two checks
        os.close(fd)
        raise ImageDecodeError(f"not a regular file ({_kind_of(info.st_mode)})")
    return os.fdopen(fd, "rb")


def read_capped(file: BinaryIO, max_bytes: int | None = None, block_size: int = 1 << 20):
    """Yield a file's bytes in blocks, raising once more than ``max_bytes`` were read (a growing file)."""
    limit = MAX_FILE_BYTES if max_bytes is None else max_bytes
    total = 0
    while block := file.read(block_size):
        total += len(block)
        if total > limit:
            raise ImageDecodeError(f"file too large (more than {limit:,} bytes)")
        yield block


def file_sha256(file: BinaryIO, max_bytes: int | None = None) -> str:
    """Hex SHA-256 of an open file's bytes from where it stands, read through :func:`read_capped`."""
    digest = hashlib.sha256()
    for block in read_capped(file, max_bytes):
        digest.update(block)
    return digest.hexdigest()


def read_image_file(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """The bytes of an image file, read through :func:`open_image_file`'s checks and size cap.

    Raises
    ------
    ImageDecodeError
        "cannot read <path>: <reason>" for a FIFO, a device, a symlink loop, a
        dangling symlink, a file over ``max_bytes`` (default
        :data:`MAX_FILE_BYTES`) or a read error.
    """
    try:
        with open_image_file(path, max_bytes) as f:
            return b"".join(read_capped(f, max_bytes))
    except ImageDecodeError as err:
        raise ImageDecodeError(f"cannot read {display_path(path)}: {err}") from None
    except OSError as err:
        raise ImageDecodeError(f"cannot read {display_path(path)}: {err.strerror or err}") from None


@dataclass
class ImageScan:
    """What :func:`scan_images` found: image files, and every entry it did not take with the reason."""

    files: list[Path] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # [{"path": ..., "reason": ...}], sorted by path
    folders: list[Path] = field(default_factory=list)  # the folders given, resolved


def existing_source(path: str | os.PathLike) -> str:
    """``path`` made absolute (``~`` expanded); FileNotFoundError naming it when nothing is there, not even a symlink."""
    entry = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.lexists(entry):
        raise FileNotFoundError(f"no such file or folder: {display_path(entry)}")
    return entry


def scan_images(paths) -> ImageScan:
    """Expand files and folders (recursively) into image files, reporting what is left out.

    Inside folders, files with a known image extension (:data:`IMAGE_EXTENSIONS`,
    any case) that are regular files (or symlinks to one) are taken; files
    named explicitly are taken whatever their extension (the decoder then says
    whether they are images). Hidden files and folders (name starting with
    ``.``) are left out silently. Everything else is listed in ``skipped``
    under its own absolute path (a symlink is not resolved) with a reason:
    ``unknown extension .heic``, ``symlink loop``, ``dangling symlink (...)``,
    ``not a regular file (a FIFO)``, ``cannot read folder: ...``,
    ``symlink to a folder (not followed)``. Nothing is opened.

    Returns
    -------
    ImageScan
        ``files``: sorted, resolved paths; ``skipped``: dicts with ``path``
        and ``reason``.

    Raises
    ------
    FileNotFoundError
        If a given path does not exist at all (not even as a symlink).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: set[Path] = set()
    skipped: dict[str, str] = {}

    real_folders: dict[str, str] = {}
    given_folders: list[Path] = []

    def resolved(full: str) -> Path:
        """``Path(full).resolve()``, resolving each folder once: only a symlinked file needs its own walk up the folders."""
        if os.path.islink(full):
            return Path(full).resolve()
        folder, name = os.path.split(full)
        if folder not in real_folders:
            real_folders[folder] = os.path.realpath(folder)
        return Path(real_folders[folder], name)

    def consider(full: str, explicit: bool) -> None:
        if not explicit:
            suffix = os.path.splitext(full)[1].lower()
            if suffix not in IMAGE_EXTENSIONS:
                skipped[full] = f"unknown extension {display_path(suffix)}" if suffix else "no file extension"
                return
        try:
            info = os.stat(full)
        except OSError as err:
            skipped[full] = _stat_failure(full, err)
            return
        if stat.S_ISREG(info.st_mode):
            found.add(resolved(full))
        else:
            skipped[full] = f"not a regular file ({_kind_of(info.st_mode)}); not opened"

    def unreadable(err: OSError) -> None:
        skipped[os.path.abspath(err.filename)] = f"cannot read folder: {err.strerror or err}"

    for entry in paths:
        entry = existing_source(entry)
        if not os.path.isdir(entry):
            consider(entry, explicit=True)
            continue
        given_folders.append(Path(os.path.realpath(entry)))
        for root, dirs, files in os.walk(entry, onerror=unreadable):
            for name in dirs:
                if not name.startswith(".") and os.path.islink(os.path.join(root, name)):
                    skipped[os.path.join(root, name)] = "symlink to a folder (not followed)"
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in files:
                if not name.startswith("."):
                    consider(os.path.join(root, name), explicit=False)
    return ImageScan(sorted(found), [{"path": p, "reason": skipped[p]} for p in sorted(skipped)], given_folders)


def find_images(paths) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of image files.

    The ``files`` of :func:`scan_images`; use that to learn what was left out and why.

    Raises
    ------
    FileNotFoundError
        If a given path does not exist.
    """
    return scan_images(paths).files


# ---------------------------------------------------------------- decoding
class _MemoryBudget:
    """Bytes reserved by the decodes running now, across threads; see :data:`DECODE_MEMORY_BYTES`."""

    def __init__(self):
        self._condition = threading.Condition()
        self.in_use = 0

    @contextlib.contextmanager
    def reserve(self, n_bytes: int):
        with self._condition:
            # an image larger than the whole budget waits until it can run alone
            while self.in_use and self.in_use + n_bytes > DECODE_MEMORY_BYTES:
                self._condition.wait()
            self.in_use += n_bytes
        try:
            yield
        finally:
            with self._condition:
                self.in_use -= n_bytes
                self._condition.notify_all()


_BUDGET = _MemoryBudget()


def _decode_estimate(image: Image.Image) -> int:
    """Bytes a decode may hold at once: the pixels as Pillow stores them plus one 4-byte-a-pixel copy."""
    mode = image.mode
    native = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    return image.width * image.height * (native + 4)


_TRIM_ABOVE_BYTES = 32 << 20


def _return_freed_memory() -> None:
    """Hand memory freed by a large decode back to the operating system.

    glibc keeps freed memory in the arena of the thread that freed it (blocks
    under its 32 MB mmap threshold), so without this every decoding thread
    would keep about one large image's worth of memory, and peak memory would
    grow with the number of threads even though the budget lets only one
    large image decode at a time. ``malloc_trim`` returns it; elsewhere this
    does nothing.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


def _reduce(image: Image.Image, min_side: int) -> Image.Image:
    """Shrink by an integer factor (box filter) while both sides stay at least ``2 * min_side``."""
    factor = min(image.width, image.height) // (2 * min_side)
    if factor < 2:
        return image
    if image.mode.startswith("I;16"):
        return image.convert("I").reduce(factor).convert(image.mode)
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB").reduce(factor)
    if image.mode == "1":
        return image.convert("L").reduce(factor)
    return image.reduce(factor)


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
        The encoded image. A path is opened with :func:`open_image_file`
        (regular files only, size-capped).
    min_side : int, optional
        The smallest side the caller needs. JPEGs are then decoded in draft
        mode at the smallest power-of-two reduction that keeps both sides at
        least this large, which is several times faster for large photos; other
        formats are decoded whole and then shrunk by an integer factor while
        both sides stay at least ``2 * min_side``, so the conversions that
        follow work on small images.

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
        With a reason: not a regular file, file too large, empty file, not an
        image, truncated or corrupt data, too many pixels (more than
        :data:`MAX_PIXELS` to decode). Nothing else, whatever the bytes.

    Notes
    -----
    The decode reserves its memory from a budget shared by all threads (see
    the module docstring), so many threads decoding huge images wait for each
    other instead of exhausting memory.
    """
    if isinstance(source, (str, os.PathLike)):
        with open_image_file(source) as file:
            return decode_image_with_size(file, min_side)
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    if source.seekable():
        start = source.tell()
        if source.seek(0, io.SEEK_END) == start:
            raise ImageDecodeError("empty file (0 bytes)")
        source.seek(start)
    try:
        with warnings.catch_warnings():
            # Pillow warns above 89.5 MP (and we used to refuse there); MAX_PIXELS decides instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
            full_width, full_height = image.size
            if min_side and image.format in _JPEG_FORMATS:
                scale = min(image.width, image.height) / float(min_side)
                if scale >= 2:
                    image.draft("RGB", (max(1, image.width // int(scale)), max(1, image.height // int(scale))))
            if image.width * image.height > MAX_PIXELS:
                raise ImageDecodeError(
                    f"too many pixels to decode ({image.width} x {image.height}, limit {MAX_PIXELS:,}); "
                    "refusing a possible decompression bomb"
                )
            estimate = _decode_estimate(image)
            with _BUDGET.reserve(estimate):
                image.seek(0)  # first frame of animations
                image.load()
                rotated = image.size
                try:
                    ImageOps.exif_transpose(image, in_place=True)
                except Exception:  # a broken EXIF block should not lose the picture
                    pass
                if (image.width > image.height) != (rotated[0] > rotated[1]):
                    full_width, full_height = full_height, full_width
                if min_side:
                    image = _reduce(image, min_side)
                result = _to_rgb(image)
                del image
                if estimate >= _TRIM_ABOVE_BYTES:
                    _return_freed_memory()
                return result, (full_width, full_height)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image (unrecognised format)") from None
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(f"too many pixels; refusing a possible decompression bomb ({err})") from None
    except MemoryError:
        raise ImageDecodeError("not enough memory to decode this image") from None
    except OSError as err:
        message = str(err) or type(err).__name__
        if "truncated" in message.lower():
            raise ImageDecodeError(f"truncated image: {message}") from None
        raise ImageDecodeError(f"corrupt image: {message}") from None
    except (ValueError, SyntaxError, EOFError, struct.error) as err:
        raise ImageDecodeError(f"corrupt image: {err or type(err).__name__}") from None
    except Exception as err:  # Pillow's plugins raise many kinds of errors on malformed data
        raise ImageDecodeError(f"corrupt image ({type(err).__name__}: {err})") from None

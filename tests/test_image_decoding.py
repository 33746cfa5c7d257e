"""Decoding real-world files: odd modes, orientation, animations, and broken files."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import lab.image_decoding as decoding
from lab.image_decoding import ImageDecodeError, decode_image, decode_image_with_size, find_images


@pytest.fixture(scope="module")
def cat() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())  # 451 x 300


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA", "LA", "I;16", "1"])
def test_every_mode_becomes_rgb(cat, mode):
    if mode == "I;16":
        pixels = (np.asarray(cat.convert("L"), np.uint16) * 257).astype(np.uint16)
        image = Image.fromarray(pixels)  # mode I;16
        fmt = "PNG"
    else:
        image = cat.convert(mode)
        fmt = "JPEG" if mode in ("L", "CMYK") else ("TIFF" if mode == "LA" else "PNG")
    decoded = decode_image(_encode(image, fmt))
    assert decoded.mode == "RGB" and decoded.size == cat.size
    if mode == "I;16":  # 16-bit scaled down, not clipped to white
        grey = np.asarray(cat.convert("L"), float)
        assert abs(np.asarray(decoded, float)[..., 0] - grey).mean() < 1.0


def test_transparent_pixels_become_white(cat):
    rgba = cat.convert("RGBA")
    rgba.putalpha(0)
    decoded = np.asarray(decode_image(_encode(rgba, "PNG")))
    assert (decoded == 255).all()


def test_exif_orientation_is_applied(cat):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    encoded = _encode(cat, "JPEG", exif=exif)
    image, size = decode_image_with_size(encoded)
    assert image.size == (300, 451) and size == (300, 451)


def test_first_frame_of_an_animation(cat):
    red, blue = Image.new("RGB", (64, 48), (255, 0, 0)), Image.new("RGB", (64, 48), (0, 0, 255))
    encoded = _encode(red, "GIF", save_all=True, append_images=[blue], duration=100)
    pixels = np.asarray(decode_image(encoded))
    assert pixels[..., 0].mean() > 200 and pixels[..., 2].mean() < 50


def test_large_jpeg_is_decoded_in_draft_mode_but_reports_full_size(cat):
    big = cat.resize((2400, 1600))
    image, size = decode_image_with_size(_encode(big, "JPEG"), min_side=224)
    assert size == (2400, 1600)
    assert 224 <= min(image.size) < 1600


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty file"),
        (b"hello, I am a text file", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt|not an image"),
    ],
)
def test_broken_bytes_raise_with_a_reason(content, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image(content)


def test_truncated_jpeg_is_reported(cat):
    encoded = _encode(cat, "JPEG")
    with pytest.raises(ImageDecodeError, match="truncated|corrupt"):
        decode_image(encoded[: len(encoded) // 2])


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageDecodeError, match="too many pixels"):
        decode_image(_png_header(60_000, 60_000))


def test_pixel_limit_is_a_module_setting(cat, monkeypatch):
    monkeypatch.setattr(decoding, "MAX_PIXELS", 1000)
    with pytest.raises(ImageDecodeError, match="too many pixels"):
        decode_image(_encode(cat, "PNG"))


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ImageDecodeError, match="cannot read"):
        decode_image(tmp_path / "nope.jpg")


def test_find_images_walks_folders_and_skips_hidden_and_non_images(tmp_path, cat):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    cat.save(tmp_path / "a" / "b" / "deep.JPG")
    cat.save(tmp_path / ".hidden" / "secret.jpg")
    cat.save(tmp_path / "top.png")
    (tmp_path / "readme.txt").write_text("x")
    found = find_images(tmp_path)
    assert [p.name for p in found] == ["deep.JPG", "top.png"]
    assert find_images([tmp_path / "readme.txt"]) == [(tmp_path / "readme.txt").resolve()]
    with pytest.raises(FileNotFoundError):
        find_images(tmp_path / "missing")

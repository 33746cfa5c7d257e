"""Decoding real-world files: odd modes, orientation, animations, and broken files."""

import io
import json
import os
import select
import struct
import subprocess
import sys
import zlib
from pathlib import Path

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


# A child process decodes what the fuzzer sends, so that a hang, a crash of the
# interpreter or runaway memory is seen by the test instead of taking it down.
_FUZZ_WORKER = r"""
import json, struct, sys
import lab.image_decoding as decoding
decoding.MAX_PIXELS = int(sys.argv[1])
stdin, stdout = sys.stdin.buffer, sys.stdout
while header := stdin.read(8):
    size, min_side = struct.unpack("<II", header)
    data = stdin.read(size)
    try:
        image, full = decoding.decode_image_with_size(data, min_side=min_side or None)
        outcome = {"ok": True, "size": list(image.size), "mode": image.mode}
    except decoding.ImageDecodeError as err:
        outcome = {"ok": False, "error": "ImageDecodeError", "message": str(err)}
    except BaseException as err:
        outcome = {"ok": False, "error": type(err).__name__, "message": repr(err)}
    # VmHWM, not getrusage: ru_maxrss carries over the parent's peak through fork and exec
    with open("/proc/self/status") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    outcome["max_rss_mb"] = peak_kb / 1024
    stdout.write(json.dumps(outcome) + "\n")
    stdout.flush()
"""


class _DecoderProcess:
    """A child decoding one input at a time, with a time limit per input."""

    def __init__(self, max_pixels: int):
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        command = [sys.executable, "-c", _FUZZ_WORKER, str(max_pixels)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def decode(self, data: bytes, min_side: int, seconds: float) -> dict:
        self.process.stdin.write(struct.pack("<II", len(data), min_side) + data)
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], seconds)
        if not ready:
            self.process.kill()
            raise AssertionError(f"decoding took over {seconds} s (a hang) on {len(data)} bytes: {data[:64]!r}...")
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the decoder process died (exit {self.process.wait()}) on {len(data)} bytes: {data[:64]!r}...")
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.mark.slow
def test_fuzzed_images_only_ever_raise_the_decode_error(cat):
    """300 mutated JPEG/PNG/GIF/WebP/TIFF/BMP files and random bytes: ImageDecodeError or an RGB image, never
    another exception, a crash, a hang (10 s a file) or memory beyond what MAX_PIXELS allows."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    small = cat.resize((48, 32))
    seeds = {
        "JPEG": _encode(small, "JPEG"),
        "PNG": _encode(small.convert("P"), "PNG"),
        "GIF": _encode(small, "GIF", save_all=True, append_images=[small.rotate(90)]),
        "WEBP": _encode(small, "WEBP"),
        "TIFF": _encode(small, "TIFF", compression="tiff_lzw"),
        "BMP": _encode(small, "BMP"),
    }
    max_pixels = 20_000_000  # the child's limit: 20 MP x 8 bytes at most for one decode
    memory_cap_mb = 600  # the interpreter with numpy and Pillow (~100 MB) plus one 160 MB decode, with room

    @st.composite
    def mutated(draw):
        if draw(st.integers(0, 9)) == 0:
            return draw(st.binary(min_size=1, max_size=4096))
        data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
        header = min(len(data), 128)  # sizes, modes and chunk lengths live there
        for _ in range(draw(st.integers(1, 8))):
            where = draw(st.integers(0, header - 1) | st.integers(0, len(data) - 1))
            data[where] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            where = draw(st.integers(0, len(data) - 4))
            data[where : where + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x00\x01\x00\x00"]))
        if draw(st.integers(0, 4)) == 0:
            data = data[: draw(st.integers(1, len(data)))]
        return bytes(data)

    worker = _DecoderProcess(max_pixels)
    outcomes: list[dict] = []

    @settings(max_examples=300, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(data=mutated(), min_side=st.sampled_from([0, 224]))
    def check(data, min_side):
        outcome = worker.decode(data, min_side, seconds=10)
        assert outcome["ok"] or outcome["error"] == "ImageDecodeError", outcome
        if outcome["ok"]:
            assert outcome["mode"] == "RGB"
        assert outcome["max_rss_mb"] < memory_cap_mb, outcome
        outcomes.append(outcome)

    try:
        check()
    finally:
        worker.close()
    decoded = sum(o["ok"] for o in outcomes)
    assert 0 < decoded < len(outcomes)  # the mutations reached both the decoders and the error paths

"""Run every case of issue 9 against the current code and write results/reliability.md.

    python scripts/check_reliability.py [--output results/reliability.md] [--timeout 120] [--only WORD]

Each case builds what it needs in a temporary folder (from the 27 packaged
sample photos, :mod:`lab.sample_images`) and really runs the code: indexing
odd files, opening and querying damaged collections, readers during a
re-index, bad query arguments in Python and on the command line, and
``lab panel`` as a server. A case's verdict is "ok" when the behaviour the
issue asks for is observed, "not fixed" otherwise (also when the case raises,
hangs past its time limit or grows memory past a limit: that is reported,
and the next case runs), "not checked" when it cannot run here (say, as
root, who reads every folder).

Cases run one after another in a worker process (TensorFlow is loaded once);
a worker that hangs or grows too large is killed and replaced.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import io
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

MARK = "@@case-result "
MEMORY_LIMIT = 4 * 2**30  # a worker above this is killed (the case "grows memory")
CLEAR_ERRORS = ("ValueError", "TypeError", "CollectionError", "FileNotFoundError", "IndexError", "OSError", "PermissionError", "ImageDecodeError", "IsADirectoryError", "RuntimeError", "FeedbackError", "FeedbackStoreError")

CASES: list[tuple[str, str, str]] = []  # (name, section, description)
_FUNCS: dict = {}
_TIMEOUTS: dict = {}
CODE = Path(os.environ.get("LAB_RELIABILITY_CODE", ROOT)).resolve()  # the checkout whose lab is tested (--code)


def case(section: str, description: str, timeout: float = 90):
    """Register a case; ``timeout`` seconds without a result count as a hang."""

    def register(func):
        CASES.append((func.__name__, section, description))
        _FUNCS[func.__name__] = func
        _TIMEOUTS[func.__name__] = timeout
        return func

    return register


# ------------------------------------------------------------------ helpers (in the worker)
class Ctx:
    """Shared material: the sample photos and a clean collection of them, built once per run."""

    def __init__(self, work: Path):
        self.work = work
        self.photos = work / "photos"
        self.base = work / "base.lab"

    def ensure_base(self):
        from lab import Collection
        from lab.sample_images import write_sample_folder

        if not self.photos.exists():
            write_sample_folder(self.photos)
        if not (self.base / "manifest.json").exists():
            shutil.rmtree(self.base, ignore_errors=True)
            Collection.open(self.base, create=True).add(self.photos, progress=False)

    def folder(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.work))

    def photo_copy(self, name: str) -> Path:
        folder = self.folder(name) / "photos"
        shutil.copytree(self.photos, folder)
        return folder

    def collection_copy(self, name: str) -> Path:
        target = self.folder(name) / "col.lab"
        shutil.copytree(self.base, target)
        return target


def lab_cli(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(CODE), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "lab.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, cwd=CODE)


_TF_NOISE = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} |.*oneDNN custom operations)")


def stderr_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip() and not _TF_NOISE.match(line)]


def one_clear_line(result) -> tuple[bool, str]:
    lines = stderr_lines(result)
    ok = result.returncode != 0 and len(lines) == 1 and "Traceback" not in result.stderr
    shown = lines[-1] if lines else "(nothing on stderr)"
    return ok, f"exit {result.returncode}, {len(lines)} stderr line(s): {shown[:160]}"


def attempt(func):
    """(value, None) or (None, exception)."""
    try:
        return func(), None
    except Exception as err:  # noqa: BLE001 - we report what happened
        return None, err


def describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"


def clear(err: BaseException | None, *words: str) -> bool:
    """A deliberate error of a known kind whose message holds the given words (case-insensitive)."""
    if err is None or type(err).__name__ not in CLEAR_ERRORS:
        return False
    text = str(err).lower()
    if "numpy" in text or "traceback" in text:
        return False
    return all(w.lower() in text for w in words)


def refused(err: BaseException | None, *words: str) -> bool:
    """A deliberate refusal of a damaged collection: a clear error that names the chunk or file, not a raw OS/numpy error."""
    if not clear(err, *words):
        return False
    text = str(err).lower()
    return "[errno" not in text and "mmap" not in text and any(w in text for w in ("chunk", "manifest", "feedback", "damaged", "repair"))


def report_text(report) -> str:
    """Everything an index report says, whatever fields it grows."""
    parts = [str(report)]
    with contextlib.suppress(Exception):
        parts.append(json.dumps(report.to_dict(), default=str, ensure_ascii=False))
    with contextlib.suppress(Exception):
        parts.append(json.dumps(vars(report), default=str, ensure_ascii=False))
    return "\n".join(parts)


def index(folder, collection, **kwargs):
    """col.add with warnings and stderr captured; returns (report, text) or raises."""
    from lab import Collection

    col = Collection.open(collection, create=True)
    stderr = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(stderr):
        warnings.simplefilter("always")
        report = col.add(folder, progress=False, **kwargs)
    return report, report_text(report) + "\n" + stderr.getvalue() + "\n".join(str(w.message) for w in caught)


def summary(report) -> str:
    return f"added {report.added}, failed {len(report.failed)}, total {report.total}"


def variant(source: Path, target: Path, seed: int) -> None:
    """A different photo (a crop) with its own bytes."""
    from PIL import Image

    with Image.open(source) as image:
        w, h = image.size
        image.convert("RGB").crop((seed % 7, seed % 5, w - 3, h - 2)).save(target, "JPEG", quality=90)


# ------------------------------------------------------------------ indexing odd files
S_FILES = "Indexing odd files"


@case(S_FILES, "file name with non-UTF-8 bytes (chunks of 8)", timeout=45)
def non_utf8_name(ctx):
    folder = ctx.photo_copy("non-utf8")
    name = os.path.join(os.fsencode(folder), b"caf\xe9__chat.jpg")
    variant(folder / "cat__chelsea.jpg", Path(os.fsdecode(name)), 1)
    report, text = index(folder, folder.parent / "col.lab", chunk_size=8)
    ok = report.total == 28 or (report.total == 27 and ("caf" in text and "chat" in text))
    return ok, f"{summary(report)} (27 photos + 1 with a non-UTF-8 name)"


@case(S_FILES, "symlink loop a.jpg -> b.jpg -> a.jpg", timeout=45)
def symlink_loop(ctx):
    folder = ctx.photo_copy("loop")
    os.symlink("b.jpg", folder / "a.jpg")
    os.symlink("a.jpg", folder / "b.jpg")
    report, text = index(folder, folder.parent / "col.lab")
    ok = report.total == 27 and "a.jpg" in text and "b.jpg" in text
    return ok, f"{summary(report)}; loop {'reported' if 'a.jpg' in text else 'not reported'}"


@case(S_FILES, "FIFO named pipe.jpg in a folder", timeout=45)
def fifo(ctx):
    folder = ctx.photo_copy("fifo")
    os.mkfifo(folder / "pipe.jpg")
    report, text = index(folder, folder.parent / "col.lab")
    reason = next((f["reason"] for f in report.failed if "pipe.jpg" in f["path"]), None)
    ok = report.total == 27 and "pipe.jpg" in text
    return ok, f"{summary(report)}; pipe.jpg: {reason or ('mentioned' if 'pipe.jpg' in text else 'not reported')}"


@case(S_FILES, "symlink zero.jpg -> /dev/zero in a folder", timeout=45)
def dev_zero_index(ctx):
    folder = ctx.photo_copy("devzero")
    os.symlink("/dev/zero", folder / "zero.jpg")
    report, text = index(folder, folder.parent / "col.lab")
    ok = report.total == 27 and "zero.jpg" in text
    return ok, f"{summary(report)}; zero.jpg {'reported' if 'zero.jpg' in text else 'not reported'}"


@case(S_FILES, "similar() with an outside path that links to /dev/zero", timeout=30)
def dev_zero_similar(ctx):
    from lab import Collection

    link = ctx.folder("devzero-query") / "zero.jpg"
    os.symlink("/dev/zero", link)
    _, err = attempt(lambda: Collection.open(ctx.base).similar(link))
    return clear(err), describe(err) if err else "returned results"


@case(S_FILES, "valid 12000 x 9000 JPEG (108 MP)")
def big_jpeg(ctx):
    from PIL import Image

    folder = ctx.folder("bigjpeg") / "photos"
    folder.mkdir()
    Image.linear_gradient("L").resize((12000, 9000)).convert("RGB").save(folder / "panorama.jpg", quality=80)
    report, text = index(folder, folder.parent / "col.lab")
    reason = report.failed[0]["reason"] if report.failed else ""
    return report.added == 1 and not report.failed, f"{summary(report)} {reason[:120]}".strip()


@case(S_FILES, "unreadable subfolder")
def unreadable_folder(ctx):
    if os.geteuid() == 0:
        return None, "running as root, which reads every folder"
    folder = ctx.photo_copy("unreadable")
    secret = folder / "secret"
    secret.mkdir()
    variant(folder / "cat__chelsea.jpg", secret / "hidden_cat.jpg", 2)
    secret.chmod(0)
    try:
        report, text = index(folder, folder.parent / "col.lab")
    finally:
        secret.chmod(0o755)
    return "secret" in text, f"{summary(report)}; the folder is {'reported' if 'secret' in text else 'skipped silently'}"


@case(S_FILES, ".heic and other unknown extensions in a folder", timeout=45)
def unknown_extensions(ctx):
    folder = ctx.photo_copy("heic")
    (folder / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(100))
    (folder / "scan.xyz").write_bytes(bytes(100))
    report, text = index(folder, folder.parent / "col.lab")
    named = [n for n in ("phone.heic", "scan.xyz") if n in text]
    return len(named) == 2, f"{summary(report)}; reported as skipped: {', '.join(named) or 'none'}"


@case(S_FILES, "dangling symlink gone.jpg -> missing_target.jpg", timeout=45)
def dangling_symlink(ctx):
    folder = ctx.photo_copy("dangling")
    os.symlink(folder.parent / "missing_target.jpg", folder / "gone.jpg")
    report, text = index(folder, folder.parent / "col.lab")
    paths = [f["path"] for f in report.failed + getattr(report, "skipped", [])]
    ok = any(p.endswith("gone.jpg") for p in paths)
    return ok, f"{summary(report)}; reported as {', '.join(Path(p).name for p in paths) or 'nothing'}"


@case(S_FILES, "eight 88 MP PNGs at once, 8 workers: peak memory")
def big_pngs_memory(ctx):
    import psutil
    from PIL import Image

    from lab import Collection

    folder = ctx.folder("bigpng") / "photos"
    folder.mkdir()
    Image.linear_gradient("L").resize((10800, 8150)).convert("RGB").save(folder / "big0.png", compress_level=1)
    data = (folder / "big0.png").read_bytes()
    for i in range(1, 8):  # different bytes (trailing padding), the same picture
        (folder / f"big{i}.png").write_bytes(data + bytes(i))
    col = Collection.open(folder.parent / "col.lab", create=True)
    col.backbone  # loaded before the baseline
    me = psutil.Process()
    baseline, peak, done = me.memory_info().rss, [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], me.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        report = col.add(folder, progress=False, n_jobs=8)
    finally:
        done.set()
        sampler.join()
    grown = (peak[0] - baseline) / 2**30
    return grown < 1.5 and report.added == 8, f"{summary(report)}; peak memory +{grown:.2f} GB over the loaded model (limit for ok: 1.5 GB)"


@case(S_FILES, "decoder fuzz: 400 mutated JPEG/PNG/GIF/WebP/TIFF headers and random bytes")
def decoder_fuzz(ctx):
    import random

    from PIL import Image

    from lab.image_decoding import ImageDecodeError, decode_image

    with Image.open(ctx.photos / "cat__chelsea.jpg") as image:
        small = image.convert("RGB").resize((64, 48))
    seeds = []
    for fmt in ("JPEG", "PNG", "GIF", "WEBP", "TIFF"):
        buffer = io.BytesIO()
        small.save(buffer, fmt)
        seeds.append(buffer.getvalue())
    rng = random.Random(0)
    crashes, slowest = [], 0.0
    for i in range(400):
        data = bytearray(rng.choice(seeds))
        kind = i % 4
        if kind == 0:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(min(len(data), 64))] = rng.randrange(256)
        elif kind == 1:
            data = data[: rng.randrange(1, len(data))]
        elif kind == 2:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        else:
            data = bytearray(rng.randbytes(rng.randint(0, 2000)))
        start = time.perf_counter()
        try:
            decode_image(bytes(data), min_side=32)
        except ImageDecodeError:
            pass
        except Exception as err:  # noqa: BLE001
            crashes.append(type(err).__name__)
        slowest = max(slowest, time.perf_counter() - start)
    names = sorted(set(crashes))
    return not crashes and slowest < 5, f"{len(crashes)} of 400 raised something else than ImageDecodeError ({', '.join(names) or 'none'}); slowest {slowest:.2f} s"


# ------------------------------------------------------------------ damaged collections
S_DAMAGE = "A damaged collection"


def only_chunk(path: Path) -> Path:
    manifest = json.loads((path / "manifest.json").read_text())
    return path / "chunks" / manifest["chunks"][0]["name"]


def aligned(path: Path, base: Path) -> tuple[int, int]:
    """How many rows hold the embedding of their own path (compared with the clean collection)."""
    import numpy as np

    from lab import Collection

    clean, col = Collection.open(base), Collection.open(path)
    by_path = dict(zip(clean.paths, range(len(clean))))
    good = sum(
        1 for row, p in enumerate(col.paths)
        if p in by_path and np.allclose(np.asarray(col.embeddings[row], np.float32), np.asarray(clean.embeddings[by_path[p]], np.float32), atol=1e-3)
    )
    return good, len(col)


def open_and_query(path: Path):
    """Open, then run what a user runs; (what happened, error)."""
    from lab import Collection

    def run():
        col = Collection.open(path)
        col.similar(0, k=5)
        col.search("cat", k=5)
        return len(col)

    return attempt(run)


def delete_csv_line(path: Path) -> None:
    csv = only_chunk(path) / "images.csv"
    lines = csv.read_text().splitlines(keepends=True)
    csv.write_text("".join(lines[:5] + lines[6:]))


def truncate_embeddings(path: Path) -> None:
    npy = only_chunk(path) / "embeddings.npy"
    npy.write_bytes(npy.read_bytes()[: npy.stat().st_size // 2])


def edit_first_chunk(path: Path, **fields) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["chunks"][0].update(fields)
    (path / "manifest.json").write_text(json.dumps(manifest))


def refused_on_open(ctx, name: str, damage, accepted: str) -> tuple[bool, str]:
    """Damage a copy of the clean collection, then open and query it: ok when it is refused clearly."""
    path = ctx.collection_copy(name)
    damage(path)
    n, err = open_and_query(path)
    return refused(err), f"refused: {describe(err)}" if err else accepted.format(n=n)


def reindex_damaged(ctx, name: str, damage):
    """Damage a copy of the clean collection, then index the photos into it again: (path, report, error)."""
    from lab import Collection

    path = ctx.collection_copy(name)
    damage(path)
    report, err = attempt(lambda: Collection.open(path).add(ctx.photos, progress=False))
    return path, report, err


@case(S_DAMAGE, "a line deleted from a chunk's images.csv")
def csv_line_deleted(ctx):
    path = ctx.collection_copy("csv-line")
    delete_csv_line(path)
    n, err = open_and_query(path)
    if err is not None:
        return refused(err), f"refused: {describe(err)}"
    good, total = aligned(path, ctx.base)
    return False, f"opened silently: {total} rows, {total - good} point at the wrong image"


@case(S_DAMAGE, "re-indexing after a deleted images.csv line")
def csv_line_reindex(ctx):
    path, _, err = reindex_damaged(ctx, "csv-reindex", delete_csv_line)
    if err is not None:
        return refused(err), f"refused: {describe(err)}"
    good, total = aligned(path, ctx.base)
    return good == total == 27, f"{total} rows after re-indexing, {total - good} with another image's features"


@case(S_DAMAGE, "a truncated embeddings.npy")
def truncated_npy(ctx):
    return refused_on_open(ctx, "truncated", truncate_embeddings, "opened and queried {n} images")


@case(S_DAMAGE, "re-indexing after a truncated .npy never says 'unchanged' for damaged rows")
def truncated_reindex(ctx):
    path, report, err = reindex_damaged(ctx, "truncated-reindex", truncate_embeddings)
    if err is not None:
        return refused(err), f"refused: {describe(err)}"
    _, after = open_and_query(path)
    return report.unchanged == 0 and after is None, f"added {report.added}, unchanged {report.unchanged}; then {describe(after) if after else 'queries work'}"


@case(S_DAMAGE, "a chunk named ../../.. in the manifest")
def chunk_name_traversal(ctx):
    return refused_on_open(ctx, "traversal", lambda path: edit_first_chunk(path, name="../../.."), "opened ({n} images)")


@case(S_DAMAGE, "wrong row count in the manifest (5 more than stored)")
def wrong_row_count(ctx):
    def damage(path):
        edit_first_chunk(path, rows=json.loads((path / "manifest.json").read_text())["chunks"][0]["rows"] + 5)

    return refused_on_open(ctx, "rows", damage, "accepted ({n} images)")


@case(S_DAMAGE, "embeddings of the wrong size (100 instead of 1280 columns)")
def wrong_embedding_size(ctx):
    import numpy as np

    def damage(path):
        npy = only_chunk(path) / "embeddings.npy"
        np.save(npy, np.zeros((len(np.load(npy, mmap_mode="r", allow_pickle=False)), 100), np.float16))

    return refused_on_open(ctx, "width", damage, "accepted ({n} images)")


@case(S_DAMAGE, "NaN rows in embeddings.npy and class_probabilities.npy")
def nan_rows(ctx):
    import numpy as np

    from lab import Collection

    path = ctx.collection_copy("nan")
    for kind in ("embeddings", "class_probabilities"):
        npy = only_chunk(path) / f"{kind}.npy"
        values = np.load(npy, allow_pickle=False)
        values[3:6] = np.nan
        np.save(npy, values)

    def queries():
        col = Collection.open(path)
        frames = [col.similar(row, k=26, metric=m, layer=layer) for row in (0, 4) for m in ("cosine", "euclidean", "manhattan") for layer in ("transfer", "output")]
        frames += [col.search(word, k=26) for word in ("cat", "vehicle")]
        col.teach("vehicle", 0)  # a clean row: the learned word model now reads every row
        return frames, col.search("vehicle", k=26)

    found, err = attempt(queries)
    if err is not None:
        return refused(err) or clear(err, "nan"), f"refused: {describe(err)}"
    frames, taught = found
    nan_scores = sum(int(f["score"].isna().sum()) for f in frames + [taught])
    return nan_scores == 0 and len(taught) > 0, (
        f"{nan_scores} NaN scores over 12 similar() calls (from a clean row and a NaN row) and 3 searches; "
        f"'vehicle' taught with a clean row then lists {len(taught)} images"
    )


@case(S_DAMAGE, "`lab check` on a clean and a damaged collection (NaN rows)")
def lab_check(ctx):
    import numpy as np

    clean = lab_cli("check", "-c", ctx.base)
    path = ctx.collection_copy("check")
    npy = only_chunk(path) / "embeddings.npy"
    values = np.load(npy, allow_pickle=False)
    values[3] = np.nan
    np.save(npy, values)
    damaged = lab_cli("check", "-c", path)
    said = (damaged.stdout + damaged.stderr).strip().splitlines()
    ok = clean.returncode == 0 and damaged.returncode != 0 and "nan" in (damaged.stdout + damaged.stderr).lower()
    return ok, f"clean: exit {clean.returncode}; damaged: exit {damaged.returncode}, {(said[-1] if said else '')[:140]}"


@case(S_DAMAGE, "`lab repair` after a deleted images.csv line re-extracts the chunk")
def lab_repair(ctx):
    path = ctx.collection_copy("repair")
    delete_csv_line(path)
    result = lab_cli("repair", "-c", path, timeout=300)
    said = (result.stdout + result.stderr).strip().splitlines()
    if result.returncode != 0:
        return False, f"exit {result.returncode}: {(said[-1] if said else '')[:160]}"
    good, total = aligned(path, ctx.base)
    # the image whose line was deleted is named nowhere any more: repair must say so (index the folder again)
    lost_reported = total == 27 or any(w in " ".join(said).lower() for w in ("not recovered", "no longer", "index"))
    return good == total >= 26 and lost_reported, f"exit 0; {good} of {total} rows hold their own image's features; {(said[-1] if said else '')[:120]}"


@case(S_DAMAGE, "a damaged feedback.sqlite: query by example and keyword search")
def damaged_feedback(ctx):
    from lab import Collection

    path = ctx.collection_copy("feedback")
    Collection.open(path).judge("cat", 0)
    store = path / "feedback.sqlite"
    for extra in ("-wal", "-shm"):
        Path(str(store) + extra).unlink(missing_ok=True)
    data = bytearray(store.read_bytes())
    data[0:100] = b"this is not a database" * 4 + bytes(12)
    store.write_bytes(bytes(data))
    similar, err_similar = attempt(lambda: Collection.open(path).similar(0, k=5))
    found, err_search = attempt(lambda: Collection.open(path).search("cat", k=5))
    message = describe(err_search) if err_search else (found.attrs.get("message") or "results without a word")
    ok_search = (err_search is not None and clear(err_search, "repair") and "feedback" in str(err_search).lower()) or (
        err_search is None and "feedback" in message.lower()
    )
    return err_similar is None and ok_search, f"similar: {'works' if err_similar is None else describe(err_similar)}; search: {message[:150]}"


@case(S_DAMAGE, "feedback.sqlite cut to 0 bytes after 3 judgments")
def emptied_feedback(ctx):
    from lab import Collection

    path = ctx.collection_copy("feedback-empty")
    for row in range(3):
        Collection.open(path).judge("cat", row)
    store = path / "feedback.sqlite"
    for extra in ("-wal", "-shm"):
        Path(str(store) + extra).unlink(missing_ok=True)
    store.write_bytes(b"")
    stderr = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(stderr):
        warnings.simplefilter("always")
        found, err = attempt(lambda: Collection.open(path).search("cat", k=5))
    said = " ".join([describe(err) if err else (found.attrs.get("message") or ""), stderr.getvalue(), *(str(w.message) for w in caught)])
    check = lab_cli("check", "-c", path)
    said_check = check.stdout + check.stderr
    ok = ("judgment" in said.lower() and ("lost" in said.lower() or "missing" in said.lower())) or (
        check.returncode != 0 and "judgment" in said_check.lower()
    )
    return ok, f"search: {' '.join(said.split())[:110] or 'nothing said'}; lab check: exit {check.returncode}"


# ------------------------------------------------------------------ readers while the collection changes
S_READERS = "Readers while the collection changes"


def _new_cats(ctx, name: str, n: int = 3) -> Path:
    folder = ctx.folder(name) / "more"
    folder.mkdir()
    for i in range(n):
        variant(ctx.photos / "cat__chelsea.jpg", folder / f"cat__new{i}.jpg", 10 + i)
    return folder


@case(S_READERS, "a reader opened before a re-index and compact")
def reader_during_reindex(ctx):
    from lab import Collection

    path = ctx.collection_copy("reader")
    reader = Collection.open(path)
    reader.search("dog", k=5)
    writer = Collection.open(path)
    writer.add(_new_cats(ctx, "reader-new"), progress=False)
    writer.compact()
    n, err = attempt(lambda: (reader.similar(0, k=5), reader.search("cat", k=5), len(reader))[-1])
    if err is not None:
        return False, f"the old reader fails: {describe(err)}"
    return n == 30, f"the old reader works and sees {n} images (30 after the re-index)"


@case(S_READERS, "a panel session during a re-index shows the new images")
def panel_during_reindex(ctx):
    from lab import Collection
    from lab.panel import SearchPanel

    path = ctx.collection_copy("panel-reader")
    panel = SearchPanel(Collection.open(path), page_size=8)
    panel.run_search("cat")
    writer = Collection.open(path)
    writer.add(_new_cats(ctx, "panel-new"), progress=False)
    writer.compact()
    results = panel.run_search("cat")
    status = html.unescape(re.sub("<[^>]+>", "", panel.status.value))
    new = [p for p in results.get("path", []) if "cat__new" in p]
    expected = sum("cat__new" in p for p in Collection.open(path).search("cat", k=50)["path"])
    return bool(new) and "error" not in status.lower(), f"status '{status[:100]}'; {len(new)} of the {expected} new cat images a fresh reader finds are listed"


# ------------------------------------------------------------------ queries and the CLI
S_QUERIES = "Queries and the CLI"


@case(S_QUERIES, 'search("dog", k=2.5) and offset=-1')
def search_k_float(ctx):
    from lab import Collection

    col = Collection.open(ctx.base)
    _, err_k = attempt(lambda: col.search("dog", k=2.5))
    _, err_offset = attempt(lambda: col.search("dog", offset=-1))
    ok = clear(err_k, "k") and str(err_k).startswith("k ") and clear(err_offset, "offset")
    return ok, f"{describe(err_k) if err_k else 'accepted'}; {describe(err_offset) if err_offset else 'offset -1 accepted'}"


@case(S_QUERIES, 'similar("") in Python and `lab similar ""`')
def similar_empty(ctx):
    from lab import Collection

    _, err = attempt(lambda: Collection.open(ctx.base).similar(""))
    cli_ok, cli = one_clear_line(lab_cli("similar", "-c", ctx.base, ""))
    return clear(err) and cli_ok, f"{describe(err) if err else 'returned results'}; CLI {cli}"


@case(S_QUERIES, "similar(a folder) in Python and on the CLI")
def similar_folder(ctx):
    from lab import Collection

    _, err = attempt(lambda: Collection.open(ctx.base).similar(ctx.photos))
    cli_ok, cli = one_clear_line(lab_cli("similar", "-c", ctx.base, ctx.photos))
    return clear(err, "folder") and cli_ok, f"{describe(err) if err else 'returned results'}; CLI {cli}"


@case(S_QUERIES, "a NaN or inf query vector")
def nan_query_vector(ctx):
    import numpy as np

    from lab import Collection

    col = Collection.open(ctx.base)
    outcomes = []
    for bad in (np.nan, np.inf):
        vector = np.asarray(col.embeddings[0], np.float32).copy()
        vector[0] = bad
        result, err = attempt(lambda: col.similar(vector))
        outcomes.append((clear(err), describe(err) if err else f"{len(result)} results"))
    return all(o for o, _ in outcomes), "; ".join(text for _, text in outcomes)


@case(S_QUERIES, 'judge(..., relevant="no")')
def judge_relevant_string(ctx):
    from lab import Collection

    col = Collection.open(ctx.collection_copy("relevant"))
    _, err = attempt(lambda: col.judge("cat", 0, relevant="no"))
    stored = col.judgments("cat")
    if err is None:
        return False, f"stored as relevant={bool(stored['relevant'].iloc[-1])}"
    return clear(err, "relevant") and len(stored) == 0, f"{describe(err)}; {len(stored)} stored"


@case(S_QUERIES, 'teach and search the word "猫"')
def non_latin_word(ctx):
    from lab import Collection

    col = Collection.open(ctx.collection_copy("cjk"))
    row = col.paths.index(str(ctx.photos.resolve() / "cat__chelsea.jpg"))
    _, err = attempt(lambda: col.teach("猫", row))
    if err is not None:
        return False, f"teach refused: {describe(err)}"
    found, err = attempt(lambda: col.search("猫", k=5))
    if err is not None:
        return False, f"search refused: {describe(err)}"
    return row in found["id"].tolist(), f"taught; search('猫') lists the example at rank {found['id'].tolist().index(row) + 1 if row in found['id'].tolist() else 'none'}"


@case(S_QUERIES, "`lab judge cat 25 26 27` on 27 images (27 is out of range)")
def judge_all_or_none(ctx):
    from lab import Collection

    path = ctx.collection_copy("judge-many")
    result = lab_cli("judge", "-c", path, "cat", "25", "26", "27")
    ok_line, said = one_clear_line(result)
    stored = len(Collection.open(path).judgments())
    return ok_line and stored == 0, f"{said}; {stored} judgments stored"


@case(S_QUERIES, "CLI: user errors are one line on stderr, no traceback, non-zero exit")
def cli_errors(ctx):
    base = str(ctx.base)
    commands = [
        ("search", "-c", base, "dog", "-k", "0"),
        ("search", "-c", base, "?!"),
        ("similar", "-c", base, "/no/such/image.jpg"),
        ("similar", "-c", base, "999"),
        ("teach", "-c", base, "dog", ""),
        ("info", "-c", str(ctx.work / "no-collection-here")),
        ("similar", "-c", base, "0", "--metric", "hamming"),
    ]
    bad = []
    for command in commands:
        ok, said = one_clear_line(lab_cli(*command))
        if not ok:
            bad.append(f"`lab {' '.join(command[:1] + command[3:])}`: {said}")
    return not bad, f"{len(commands) - len(bad)} of {len(commands)} one clear line" + (f"; {bad[0][:150]}" if bad else "")


# ------------------------------------------------------------------ the panel as a server
S_PANEL = "The panel as a server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _panel(collection: Path, *extra):
    """`lab panel` on a free port; yields (process, port, url); stops it and every child after."""
    import psutil

    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(CODE), TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "panel", "-c", str(collection), "--port", str(port), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, env=env, cwd=CODE,
    )
    seen: dict = {}
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"lab panel exited: {' '.join(process.stderr.read().decode().split())[-300:]}")
            try:
                urllib.request.urlopen(url, timeout=60).read()
                break
            except urllib.error.HTTPError:
                raise
            except OSError:
                if time.time() > deadline:
                    raise TimeoutError("lab panel did not answer in 120 s")
                time.sleep(0.5)
        yield process, port, url, seen
    finally:
        seen.update({p.pid: p for p in _family(process.pid)})
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL) if process.poll() is None else None
        for p in seen.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        process.wait(timeout=30)


def _family(pid: int) -> list:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _kernels(pid: int) -> list:
    return [p for p in _family(pid) if "ipykernel" in " ".join(_cmdline(p))]


def _cmdline(p) -> list:
    try:
        return p.cmdline()
    except Exception:  # noqa: BLE001
        return []


def _alive(processes) -> list:
    import psutil

    out = []
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
    return out


def _supports(option: str) -> bool:
    return option in lab_cli("panel", "--help").stdout


@case(S_PANEL, "the page loaded 10 times: kernels after the idle timeout (--cull-idle 4)")
def panel_kernels_culled(ctx):
    if not _supports("--cull-idle"):
        with _panel(ctx.base) as (process, port, url, seen):
            for _ in range(9):
                urllib.request.urlopen(url, timeout=60).read()
            time.sleep(10)
            n = len(_kernels(process.pid))
        return False, f"no --cull-idle option; {n} kernels 10 s after 10 loads"
    with _panel(ctx.base, "--cull-idle", "4") as (process, port, url, seen):
        most = 0
        for _ in range(9):
            urllib.request.urlopen(url, timeout=60).read()
            most = max(most, len(_kernels(process.pid)))
        deadline = time.time() + 30
        while len(_kernels(process.pid)) > 2 and time.time() < deadline:
            time.sleep(1)
        n = len(_kernels(process.pid))
    return n <= 2, f"up to {most} kernels while loading; {n} left once idle past the timeout"


def _stop_case(ctx, how) -> tuple[bool, str]:
    with _panel(ctx.base) as (process, port, url, seen):
        urllib.request.urlopen(url, timeout=60).read()
        family = _family(process.pid)
        n_kernels = len(_kernels(process.pid))
        process.send_signal(how)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = "none (still running after 60 s)"
        deadline = time.time() + 20
        while _alive(family) and time.time() < deadline:
            time.sleep(0.5)
        left = _alive(family)
        with socket.socket() as s:
            listening = s.connect_ex(("127.0.0.1", port)) == 0
        orphans = [p for p in left if p.ppid() == 1]
        seen.update({p.pid: p for p in family})
    said = f"{n_kernels} kernels; lab panel exit {code}; {len(left)} processes left ({len(orphans)} with parent PID 1); port {'still open' if listening else 'closed'}"
    return not left and not listening, said


@case(S_PANEL, "SIGTERM to `lab panel`")
def panel_sigterm(ctx):
    return _stop_case(ctx, signal.SIGTERM)


@case(S_PANEL, "Ctrl-C (SIGINT) to `lab panel`")
def panel_sigint(ctx):
    return _stop_case(ctx, signal.SIGINT)


@case(S_PANEL, 'a collection path containing " (and a space, an apostrophe, é)')
def panel_quoted_path(ctx):
    target = ctx.folder("quoted") / 'my "best" photos' / "l'été"
    shutil.copytree(ctx.base, target)
    try:
        with _panel(target) as (process, port, url, seen):
            with urllib.request.urlopen(url, timeout=60) as response:
                page = response.read().decode("utf-8", "replace")
                status = response.status
    except urllib.error.HTTPError as err:
        return False, f"HTTP {err.code}"
    failed = "Traceback" in page
    return status == 200 and not failed, f"HTTP {status}{'; the page shows a traceback' if failed else ''}"


@case(S_PANEL, "uploads of 55 MB and 77 MB in Chromium, then a photo", timeout=150)
def panel_uploads(ctx):
    if not Path("/usr/bin/chromium").exists():
        return None, "Chromium is not installed (Debian packages chromium, chromium-driver)"
    import numpy as np
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from panel_driver import launch, open_panel, serial

    folder = ctx.folder("uploads")
    pixels = np.random.default_rng(0).integers(0, 256, (4400, 4400, 3), dtype=np.uint8)  # noise: 55 MB as PNG
    Image.fromarray(pixels).save(folder / "big.png", compress_level=1)
    with open(folder / "huge.png", "wb") as f:  # 77 MB of a PNG signature and zeros: refused or not by its size alone
        f.write(b"\x89PNG\r\n\x1a\n")
        f.truncate(77 * 2**20)
    files = {"big.png": folder / "big.png", "huge.png": folder / "huge.png"}

    def upload(page, path, before):
        """Upload a file; returns the status line once new results show or the status says why not."""
        with page.expect_file_chooser() as chooser:
            page.locator(".lab-upload").click()
        chooser.value.set_files(str(path))
        deadline = time.time() + 40
        while time.time() < deadline:
            status = page.locator(".lab-status").inner_text()
            busy = status.rstrip().endswith("...")  # the panel's busy line; the page may update before it is replaced
            if (serial(page) != before and status.strip() and not busy) or (path.name in status and "MB" in status) or "error" in status.lower():
                return status
            time.sleep(0.5)
        return f"nothing happened in 40 s (status '{page.locator('.lab-status').inner_text()}')"

    outcomes = {}
    with _panel(ctx.base) as (process, port, url, seen), sync_playwright() as playwright:
        browser = launch(playwright)
        page = open_panel(browser, url)
        outcomes["big.png"] = upload(page, files["big.png"], serial(page))
        outcomes["huge.png"] = upload(page, files["huge.png"], serial(page))
        outcomes["then a photo"] = upload(page, ctx.photos / "coffee__coffee.jpg", serial(page))
        browser.close()
    sizes = {n: f"{p.stat().st_size / 2**20:.0f} MB" for n, p in files.items()}
    ok = (
        "similar to" in outcomes["big.png"]
        and "MB" in outcomes["huge.png"] and "similar to" not in outcomes["huge.png"]
        and "similar to" in outcomes["then a photo"]
    )
    said = "; ".join(f"{name}{' (' + sizes[name] + ')' if name in sizes else ''}: {text[:70]}" for name, text in outcomes.items())
    return ok, said


# ------------------------------------------------------------------ worker and runner
def worker(work: Path) -> None:
    """Run the cases named on stdin, one per line; print one marked JSON result line each."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the code prints goes to stderr, not into the results
    sys.path.insert(0, str(CODE))
    ctx = Ctx(work)
    ctx.ensure_base()  # the sample photos and a clean collection of them, once per run
    out.write(MARK + json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        name = line.strip()
        started = time.perf_counter()
        try:
            ok, happened = _FUNCS[name](ctx)
        except Exception as err:  # noqa: BLE001 - a case that raises is reported, never stops the run
            ok, happened = False, f"raised {describe(err)} at {traceback.extract_tb(err.__traceback__)[-1].name}"
        happened = " ".join(str(happened).split()).replace(str(work), "$TMP")  # the same text from run to run
        result = {"case": name, "ok": ok, "happened": happened, "seconds": round(time.perf_counter() - started, 1)}
        out.write(MARK + json.dumps(result, ensure_ascii=False) + "\n")


class Runner:
    """Feeds cases to a worker process; kills and replaces it when a case hangs or grows too large."""

    def __init__(self, work: Path, log):
        self.work, self.log, self.process = work, log, None

    def _start(self):
        env = dict(os.environ, PYTHONPATH=str(CODE), TF_CPP_MIN_LOG_LEVEL="3", LAB_RELIABILITY_CODE=str(CODE))
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(self.work)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env, start_new_session=True,
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, args=(self.process, self.lines), daemon=True).start()
        try:
            ready = self.lines.get(timeout=600)
        except queue.Empty:
            ready = None
        if not (isinstance(ready, dict) and ready.get("ready")):
            raise RuntimeError(f"the worker could not build the sample collection (see {self.log.name})")

    @staticmethod
    def _read(process, lines):
        for line in process.stdout:
            if line.startswith(MARK):
                lines.put(json.loads(line[len(MARK):]))
        lines.put(None)

    def _kill(self):
        import psutil

        for p in reversed(_family(self.process.pid)):
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def run(self, name: str, timeout: float | None = None) -> dict:
        timeout = timeout or _TIMEOUTS[name]
        import psutil

        if self.process is None or self.process.poll() is not None:
            self._start()
        self.process.stdin.write(name + "\n")
        self.process.stdin.flush()
        started = time.perf_counter()
        peak = 0
        while True:
            try:
                result = self.lines.get(timeout=0.5)
            except queue.Empty:
                result = "waiting"
            if result is None:
                code = self.process.wait()
                self.process = None
                return {"case": name, "ok": False, "happened": f"the worker died (exit {code}) during the case", "seconds": round(time.perf_counter() - started, 1)}
            if isinstance(result, dict):
                return result
            rss = 0
            for p in _family(self.process.pid):
                with contextlib.suppress(psutil.NoSuchProcess):
                    rss += p.memory_info().rss
            peak = max(peak, rss)
            elapsed = time.perf_counter() - started
            if rss > MEMORY_LIMIT:
                self._kill()
                return {"case": name, "ok": False, "happened": f"memory grew past {MEMORY_LIMIT / 2**30:.0f} GB after {elapsed:.0f} s: killed", "seconds": round(elapsed, 1)}
            if elapsed > timeout:
                self._kill()
                return {"case": name, "ok": False, "happened": f"hung: no result after {timeout:.0f} s (memory {peak / 2**30:.1f} GB): killed", "seconds": round(elapsed, 1)}

    def close(self):
        if self.process is not None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._kill()


def write_table(results: list[dict], output: Path, command: str, seconds: float) -> None:
    sections = {name: (section, description) for name, section, description in CASES}
    verdict = {True: "ok", False: "not fixed", None: "not checked"}
    counts = {v: sum(1 for r in results if verdict[r["ok"]] == v) for v in verdict.values()}
    lines = [
        "# Reliability: the cases of issue 9 against the current code",
        "",
        f"Written by `{command}` ({len(results)} cases in {seconds:.0f} s).",
        "Every case builds its inputs in a temporary folder from the 27 packaged sample photos and runs the",
        "code; \"not fixed\" also covers a case that raised, hung past its time limit or grew past the memory",
        "limit (both said in the row).",
        "",
        f"**{counts['ok']} ok, {counts['not fixed']} not fixed, {counts['not checked']} not checked.**",
        "",
    ]
    current = None
    for result in results:
        section, description = sections[result["case"]]
        if section != current:
            lines += ([""] if current else []) + [f"## {section}", "", "| case | what happens | verdict |", "|---|---|---|"]
            current = section
        happened = result["happened"].replace("|", "\\|")
        lines.append(f"| {description.replace('|', '/')} | {happened} | {verdict[result['ok']]} |")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(ROOT / "results" / "reliability.md"))
    parser.add_argument("--timeout", type=float, default=None, help="seconds per case before it counts as hung (default: each case's own, 30 to 150)")
    parser.add_argument("--code", default=None, help="test the lab package of another checkout (default: this one)")
    parser.add_argument("--only", default=None, help="run only cases whose name contains this")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(Path(args.worker))
        return 0
    if args.code:
        global CODE
        CODE = Path(args.code).resolve()
        os.environ["LAB_RELIABILITY_CODE"] = str(CODE)
    from tqdm import tqdm

    chosen = [c for c in CASES if args.only is None or args.only in c[0]]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lab-reliability-") as work, open(Path(work).parent / f"{Path(work).name}.log", "w") as log:
        runner = Runner(Path(work), log)
        results = []
        bar = tqdm(chosen, unit="case")
        for name, section, description in bar:
            bar.set_postfix_str(name)
            results.append(runner.run(name, args.timeout))
            tqdm.write(f"{'ok' if results[-1]['ok'] else 'not checked' if results[-1]['ok'] is None else 'NOT FIXED':>11}  {name}: {results[-1]['happened'][:150]}")
        runner.close()
        log_path = log.name
    command = "python scripts/check_reliability.py" + "".join(f" --{k} {v}" for k, v in (("only", args.only), ("code", args.code)) if v)
    if args.only is None or args.output != parser.get_default("output"):
        write_table(results, Path(args.output), command, time.perf_counter() - started)
        print(f"wrote {args.output} (worker log: {log_path})")
    else:
        print(f"--only runs print only (worker log: {log_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Small helpers shared by the benchmark scripts: resident memory, median timings, baseline code, reports."""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux ``/proc``; NaN elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def memory_mb() -> dict:
    """Resident memory split into anonymous (the process's own) and file-backed (mapped files, page cache) MB."""
    fields = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                    fields[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return fields


class OwnMemoryPeak:
    """Highest anonymous resident memory (the process's own, without mapped file pages) while inside, in MB.

    ``VmHWM`` counts every file page ever mapped, which the kernel can drop;
    this samples ``RssAnon`` every ``interval`` seconds from a thread.

    >>> with OwnMemoryPeak() as peak:
    ...     block = bytearray(50 * 2**20)
    >>> peak.mb >= 0
    True
    """

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.mb = 0.0

    def _sample(self) -> None:
        while True:
            self.mb = max(self.mb, memory_mb().get("RssAnon", 0.0))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "OwnMemoryPeak":
        import threading

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.mb = max(self.mb, memory_mb().get("RssAnon", 0.0))


def median_ms(function: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``function()`` in milliseconds, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def baseline_package(ref: str, folder: Path) -> str:
    """Extract the ``lab`` package of git ``ref`` into ``folder``; returns the PYTHONPATH that imports it."""
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(root), "archive", ref, "lab"], check=True, capture_output=True).stdout
    Path(folder).mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return str(folder)


def publish(text: str, out: Path | None) -> None:
    """Print a report and write it to ``out`` (when given)."""
    if out:
        Path(out).write_text(text)
    print(text)

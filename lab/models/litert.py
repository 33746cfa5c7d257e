"""The LiteRT runtime: the same Keras weights converted once to ``.tflite``, run by XNNPACK.

The Keras model stays the reference (tests compare against it, notebooks can
inspect its layers); extraction runs the converted network on the
``ai-edge-litert`` interpreter: one single-threaded interpreter per core, each
running its share of the batch one image per call, which was the fastest
layout (about 2 x the Keras model on 2 cores; ``scripts/bench_extract.py``
measures all layouts, see ``results/bench_extract_caltech101.md``).

The conversion (``tf.lite.TFLiteConverter.from_keras_model``, float32, no
quantisation) happens once per machine: the ``.tflite`` file is cached next to
the converted Keras weights, named by the weights checksum and written
atomically, so a killed conversion leaves nothing half-written and a changed
weights package gets a new file. Once the file exists, loading it needs
neither TensorFlow nor Keras.
"""

from __future__ import annotations

import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .base import Backbone, N_CLASSES

__all__ = ["LiteRTBackbone", "LiteRTRunner", "convert_to_tflite", "cached_tflite_path", "default_threads"]


def default_threads() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cached_tflite_path(name: str, checksum: str) -> Path:
    """Where the converted ``.tflite`` network of ``name`` is cached (beside the Keras weights)."""
    from .base import cached_weights_path

    keras_weights = cached_weights_path(name, checksum)
    return keras_weights.with_name(keras_weights.name.replace(".weights.h5", ".tflite"))


def convert_to_tflite(network, path: str | os.PathLike) -> Path:
    """Convert a Keras model to a float32 ``.tflite`` file, written atomically.

    Parameters
    ----------
    network : keras.Model
        Any Keras 3 model of the TensorFlow backend.
    path : path-like
        Destination; a temporary file in the same folder is renamed onto it,
        so concurrent conversions (several workers) cannot corrupt it.
    """
    import contextlib
    import io

    import tensorflow as tf

    path = Path(path)
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints its saved-model signature
        flatbuffer = tf.lite.TFLiteConverter.from_keras_model(network).convert()
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    with open(tmp, "wb") as f:
        f.write(flatbuffer)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


class LiteRTRunner:
    """Run a ``.tflite`` network of one input and two outputs on a batch, with XNNPACK.

    Parameters
    ----------
    model_path : path-like
        The ``.tflite`` file.
    embedding_size : int
        Width of the embedding output (the other output has 1000 classes).
    n_threads : int, optional
        CPU threads; default the cores this process may use.
    per_thread : bool
        True: one single-threaded interpreter per thread, running in parallel
        (the interpreter releases the GIL). False: one interpreter using
        ``n_threads`` threads inside each call.
    call_batch : int, optional
        With ``per_thread``, images per interpreter call (1 gives "batch 1 per
        thread"); the interpreters take calls from one shared queue, so none
        waits while another still has a backlog. Default: each interpreter
        runs a fixed slice of the batch in one call.
    """

    def __init__(self, model_path, embedding_size: int, n_threads: int | None = None, per_thread: bool = True, call_batch: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.model_path = str(model_path)
        self.embedding_size = embedding_size
        self.n_threads = max(1, n_threads or default_threads())
        self.per_thread = per_thread
        self.call_batch = call_batch
        n_interpreters, threads_each = (self.n_threads, 1) if per_thread else (1, self.n_threads)
        self._interpreters = [Interpreter(model_path=self.model_path, num_threads=threads_each) for _ in range(n_interpreters)]
        self._shapes = [None] * n_interpreters
        first = self._interpreters[0]
        self._input = first.get_input_details()[0]["index"]
        outputs = {int(d["shape_signature"][-1]): d["index"] for d in first.get_output_details()}
        if set(outputs) != {embedding_size, N_CLASSES}:
            raise ValueError(f"{model_path} has outputs of widths {sorted(outputs)}, expected {embedding_size} and {N_CLASSES}")
        self._embedding, self._logits = outputs[embedding_size], outputs[N_CLASSES]
        self._pool = ThreadPoolExecutor(n_interpreters, thread_name_prefix="lab-litert") if n_interpreters > 1 else None
        self._lock = threading.Lock()  # one batch at a time: each interpreter is used by one thread

    def _invoke(self, which: int, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        interpreter = self._interpreters[which]
        if self._shapes[which] != images.shape:
            interpreter.resize_tensor_input(self._input, images.shape)
            interpreter.allocate_tensors()
            self._shapes[which] = images.shape
        interpreter.set_tensor(self._input, images)
        interpreter.invoke()
        return interpreter.get_tensor(self._embedding), interpreter.get_tensor(self._logits)

    def _run_slice(self, which: int, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        step = self.call_batch or len(images)
        parts = [self._invoke(which, images[i : i + step]) for i in range(0, len(images), step)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _run_shared(self, which: int, images: np.ndarray, starts: Iterator[int], embeddings: np.ndarray, logits: np.ndarray) -> None:
        """Take the next ``call_batch`` images until none are left, writing their outputs in place.

        The interpreters share one queue of calls instead of owning a fixed
        slice each, so one that was slowed down (the cores are shared with
        image decoding) does not leave the others waiting at the end of the batch.
        """
        for start in starts:  # next() on a shared iterator is atomic under the GIL
            stop = start + self.call_batch
            embeddings[start:stop], logits[start:stop] = self._invoke(which, images[start:stop])

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and logits of a float32 batch ``(n, size, size, 3)``."""
        images = np.ascontiguousarray(images, np.float32)
        with self._lock:
            if self._pool is None or len(images) == 1:
                return self._run_slice(0, images)
            if self.call_batch:
                return self._run_queue(images)
            slices = [s for s in np.array_split(images, min(len(self._interpreters), len(images))) if len(s)]
            parts = list(self._pool.map(self._run_slice, range(len(slices)), slices))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _run_queue(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every interpreter takes calls of ``call_batch`` images from one queue (see :meth:`_run_shared`)."""
        embeddings = np.empty((len(images), self.embedding_size), np.float32)
        logits = np.empty((len(images), N_CLASSES), np.float32)
        starts = iter(range(0, len(images), self.call_batch))
        n_workers = min(len(self._interpreters), -(-len(images) // self.call_batch))
        futures = [self._pool.submit(self._run_shared, i, images, starts, embeddings, logits) for i in range(n_workers)]
        for future in futures:
            future.result()
        return embeddings, logits


@dataclass
class LiteRTBackbone(Backbone):
    """A :class:`Backbone` whose :meth:`predict` runs the converted network on LiteRT.

    ``network`` is None: the Keras reference is ``load_model(name, runtime="keras")``.
    """

    model_path: Path = field(default=None)
    n_threads: int | None = None
    per_thread: bool = True
    call_batch: int | None = 1  # batch 1 per thread: fastest in results/bench_extract_caltech101.md

    runtime = "litert"

    def __post_init__(self):
        self._forward = LiteRTRunner(self.model_path, self.embedding_size, self.n_threads, self.per_thread, self.call_batch)


def load_litert(name: str, checksum: str, build_keras, **runner_options) -> LiteRTBackbone:
    """The LiteRT backbone of a Lite model, converting its Keras network on first use.

    Parameters
    ----------
    name : str
        Registry name.
    checksum : str
        SHA-256 of the weights file (names the cache file).
    build_keras : callable
        Returns the Keras :class:`Backbone` (called only when the cache is missing).
    **runner_options
        ``n_threads``, ``per_thread``, ``call_batch`` of :class:`LiteRTRunner`.
    """
    path = cached_tflite_path(name, checksum)
    if not path.exists():
        reference = build_keras()
        convert_to_tflite(reference.network, path)
        size, embedding = reference.image_size, reference.embedding_size
    else:
        from .efficientnet_lite import LITE_SPECS

        size, embedding = LITE_SPECS[name].image_size, 1280
    return LiteRTBackbone(name, size, embedding, checksum, None, model_path=path, **runner_options)

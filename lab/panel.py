"""The search panel: an ipywidgets app to search, query by image, rate and teach.

In JupyterLab: ``SearchPanel(Collection.open(path)).widget``. As a web page:
``lab panel -c COLLECTION`` serves the same widget with Voila (see
:func:`serve`). Every browser session gets its own kernel and its own user id,
and judgments go straight to the collection's SQLite feedback store, so
several people can rate at once without losing a judgment.

The panel holds no search logic of its own: it calls
:meth:`Collection.search`, :meth:`~Collection.similar`, :meth:`~Collection.judge`
and :meth:`~Collection.teach`. Its methods (:meth:`SearchPanel.run_search`,
:meth:`~SearchPanel.run_similar`, ...) are what the buttons call, so the panel
can be driven and tested from Python as well as from a browser.
"""

from __future__ import annotations

import contextlib
import html
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import threading
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from .neighbors import METRICS
from .session import SearchSession
from .thumbnails import thumbnail
from .vectors import LAYERS, layer_array, unit_rows

__all__ = ["MAX_UPLOAD_MB", "PanelServer", "SearchPanel", "serve"]


class _Card:
    """One result tile: thumbnail, caption, judge buttons, select box."""

    def __init__(self, panel: "SearchPanel", slot: int, size: int):
        import ipywidgets as w

        self.panel, self.slot, self.row, self.path = panel, slot, None, None  # path: row ids change when the collection is compacted
        self.image = w.Image(format="jpeg", layout=w.Layout(width=f"{size}px", height=f"{size}px", object_fit="contain"))
        self.caption = w.HTML(layout=w.Layout(width=f"{size + 20}px"))
        self.relevant = w.Button(description="yes", icon="check", layout=w.Layout(width="50%"), tooltip="this image shows the word")
        self.not_relevant = w.Button(description="no", icon="times", layout=w.Layout(width="50%"), tooltip="this image does not show the word")
        self.select = w.Checkbox(description="select", indent=False)
        self.relevant.add_class("lab-relevant")
        self.not_relevant.add_class("lab-not-relevant")
        self.select.add_class("lab-select")
        self.relevant.on_click(panel._safely(lambda _: panel.judge_slot(slot, True)))
        self.not_relevant.on_click(panel._safely(lambda _: panel.judge_slot(slot, False)))
        self.judge_row = w.HBox([self.relevant, self.not_relevant], layout=w.Layout(width=f"{size + 20}px"))
        self.box = w.VBox([self.image, self.caption, self.judge_row, self.select], layout=w.Layout(border="1px solid #ddd", padding="4px", display="none"))
        self.box.add_class("lab-result")

    def show(self, row: int, path: str, rank: int, score: float, reason: str, judgeable: bool, size: int) -> None:
        self.row, self.path = row, path
        self.image.value = thumbnail(path, size)
        name = html.escape(Path(path).name)
        self.caption.value = (
            f"<div class='lab-caption' title='{html.escape(path)}' style='font-size:11px;line-height:1.3'>"
            f"<b>{rank}.</b> <span class='lab-filename'>{name}</span><br>score {score:.3f}<br>"
            f"<span style='color:#555'>{html.escape(reason[:90])}</span></div>"
        )
        for button in (self.relevant, self.not_relevant):
            button.button_style = ""
            button.disabled = not judgeable
        self.select.value = False
        self.box.layout.display = "flex"

    def hide(self) -> None:
        self.row = None
        self.box.layout.display = "none"


class SearchPanel:
    """Search a collection, query by an uploaded image, rate results, teach words.

    Parameters
    ----------
    collection : Collection
    page_size : int
        Results per page.
    user : str, optional
        Recorded with judgments; default a new id per panel (per browser session).
    thumbnail_size : int
        Thumbnail side in pixels.
    """

    def __init__(self, collection, page_size: int = 20, user: str | None = None, thumbnail_size: int = 150):
        import ipywidgets as w

        self.collection = collection
        self.page_size = page_size
        self.user = user or f"session-{uuid.uuid4().hex[:8]}"
        self.size = thumbnail_size
        self.results = pd.DataFrame()
        self.session: SearchSession | None = None  # the keyword pages being judged, None for query by example
        self.term: str | None = None
        self.page = 0
        self._query = None  # what the current results answer: ("search", word) or ("similar", vector)

        self.query_box = w.Text(placeholder="search a word: dog, beach, sports car ...", layout=w.Layout(width="320px"))
        self.search_button = w.Button(description="Search", button_style="primary", icon="search")
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="Similar to an image")
        self.metric = w.Dropdown(options=list(METRICS), value="cosine", description="metric", layout=w.Layout(width="200px"))
        layers = [(f"{layer} ({array.replace('_', ' ')})", layer) for layer, array in LAYERS.items()]
        self.layer = w.Dropdown(options=layers, value="transfer", description="layer", layout=w.Layout(width="250px"))
        self.more_like = w.Button(description="More like selected", icon="images")
        self.teach_word = w.Text(placeholder="word", layout=w.Layout(width="160px"))
        self.teach_button = w.Button(description="Teach word from selected", icon="graduation-cap")
        self.previous = w.Button(description="Previous", icon="arrow-left")
        self.next = w.Button(description="Next", icon="arrow-right")
        self.page_label = w.HTML()
        self.status = w.HTML()
        self.progress = w.IntProgress(min=0, max=1, value=0, layout=w.Layout(width="200px", visibility="hidden"))
        self.terms_view = w.HTML()
        self.serial = w.HTML("0", layout=w.Layout(display="none"))  # bumps when results change (for browser tests)
        for widget, name in [
            (self.query_box, "lab-query"), (self.search_button, "lab-search"), (self.upload, "lab-upload"),
            (self.more_like, "lab-more-like"), (self.teach_word, "lab-teach-word"), (self.teach_button, "lab-teach"),
            (self.previous, "lab-previous"), (self.next, "lab-next"), (self.status, "lab-status"), (self.serial, "lab-serial"), (self.terms_view, "lab-terms"),
        ]:
            widget.add_class(name)

        self.cards = [_Card(self, slot, thumbnail_size) for slot in range(page_size)]
        self.grid = w.GridBox([c.box for c in self.cards], layout=w.Layout(grid_template_columns=f"repeat(auto-fill, {thumbnail_size + 32}px)", grid_gap="6px"))

        # Enter (or leaving the box) and the Search button both search; a click right
        # after the box's own change would repeat the same search, so it is skipped.
        self._box_search = (None, 0.0)
        safe = self._safely
        self.search_button.on_click(safe(lambda _: self._search_from_ui(self.query_box.value, from_button=True), searching=True))
        self.query_box.continuous_update = False
        self.query_box.observe(safe(lambda change: self._search_from_ui(change["new"], from_button=False), searching=True), names="value")
        self.upload.observe(safe(self._on_upload), names="value")
        self.more_like.on_click(safe(lambda _: self.more_like_selected()))
        self.teach_button.on_click(safe(lambda _: self.teach_selected(self.teach_word.value)))
        self.previous.on_click(safe(lambda _: self.show_page(self.page - 1)))
        self.next.on_click(safe(lambda _: self.show_page(self.page + 1)))

        header = w.HTML(f"<h3 style='margin:4px 0'>lab &middot; {html.escape(str(collection.root.name))} &middot; {len(collection):,} image{'s' if len(collection) != 1 else ''}</h3>")
        controls = w.HBox([self.query_box, self.search_button, self.upload, self.metric, self.layer])
        actions = w.HBox([self.more_like, self.teach_word, self.teach_button, self.previous, self.page_label, self.next])
        main = w.VBox([header, controls, w.HBox([self.status, self.progress, self.serial]), self.grid, actions])
        side = w.VBox([w.HTML("<b>Learned words</b>"), self.terms_view], layout=w.Layout(width="260px", margin="0 0 0 12px"))
        self.widget = w.HBox([main, side])
        self.widget.add_class("lab-panel")
        self.refresh_terms()

    # ---------------------------------------------------------------- actions
    def _safely(self, callback, searching: bool = False):
        """Wrap a widget callback: an unexpected error shows in the status line instead of vanishing."""

        def wrapped(*args):
            if not searching:
                self._box_search = (None, 0.0)  # any other action ends a type-then-click pair
            try:
                callback(*args)
            except Exception as err:  # a UI callback must never fail silently
                import traceback

                traceback.print_exc()
                self._say(f"error: {type(err).__name__}: {err}", error=True)

        return wrapped

    def _busy(self, text: str) -> None:
        self.status.value = f"<i>{html.escape(text)}</i>"
        self.progress.layout.visibility = "visible"

    def _say(self, text: str, error: bool = False) -> None:
        colour = "#b00" if error else "#333"
        self.status.value = f"<span style='color:{colour}'>{html.escape(text)}</span>"
        self.progress.layout.visibility = "hidden"

    def _search_from_ui(self, query: str, from_button: bool) -> None:
        import time

        # Typing a word then clicking Search sends two events (the box's change on
        # blur, then the click): the click right after the box's own search is skipped.
        box_query, when = self._box_search
        self._box_search = (None, 0.0)
        if not query:
            return
        if from_button and query == box_query and time.monotonic() - when < 1.0:
            return
        if not from_button:
            self._box_search = (query, time.monotonic())
        self.run_search(query)

    def run_search(self, word: str) -> pd.DataFrame:
        """Keyword search; shows the first page."""
        self._busy(f"searching '{word}' ...")
        try:
            # the pages a user judges: the same session the simulated user of `lab evaluate` drives
            session = SearchSession(self.collection, word, page_size=self.page_size, user=self.user)
            results = session.next_page()
        except (ValueError, TypeError) as err:
            self._say(str(err), error=True)
            return pd.DataFrame()
        self.session = session
        self.term = results.attrs["term"]
        self.teach_word.value = self.term
        self._query = ("search", word)
        self._set_results(results, results.attrs.get("message") or f"{results.attrs['n_matches']:,} image{'s show' if results.attrs['n_matches'] != 1 else ' shows'} '{self.term}'")
        return results

    def run_similar(self, image) -> pd.DataFrame:
        """Query by example: an uploaded image (bytes), a path, a row id, or a feature vector."""
        self._busy("finding similar images ...")
        try:
            results = self.collection.similar(image, k=max(self.page_size * 10, 200), metric=self.metric.value, layer=self.layer.value)
        except (ValueError, TypeError, IndexError, FileNotFoundError) as err:
            self._say(str(err), error=True)
            return pd.DataFrame()
        self.term = None
        self.session = None
        self._query = ("similar", image)
        self._set_results(results, f"images most similar to {results.attrs['query']} ({self.metric.value}, {self.layer.value} layer)")
        return results

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        item = files[0] if isinstance(files, (tuple, list)) else next(iter(files.values()))
        content = item["content"]
        size = max(int(item.get("size") or 0), len(content))
        self.upload.value = ()  # the widget would keep the bytes (and resend them) otherwise
        if size > MAX_UPLOAD_MB * 2**20 or len(content) < size:  # the page sends 0 bytes for a file over the limit
            name = str(item.get("name") or "the file")
            self._say(f"{name} is {size / 2**20:.1f} MB; the panel takes images up to {MAX_UPLOAD_MB} MB: use a smaller copy, or `lab similar` on the command line", error=True)
            return
        self.run_similar(bytes(content))

    def _set_results(self, results: pd.DataFrame, message: str) -> None:
        self.results = results.reset_index(drop=True)
        self._message = message
        self.show_page(0)

    def _can_fetch(self) -> bool:
        """Whether a keyword session may have another page (its last one was full)."""
        return self.session is not None and len(self.session.pages_[-1]) == self.page_size

    def show_page(self, page: int) -> None:
        """Show page ``page`` (0-based) of the current results; past the last one, a keyword session's next page."""
        n_pages = max(1, -(-len(self.results) // self.page_size))
        if page >= n_pages and self._can_fetch():
            # the next page learns from what was judged on the pages before it
            more = self.session.next_page()
            if len(more):
                self.results = pd.concat([self.results, more], ignore_index=True)
                n_pages = -(-len(self.results) // self.page_size)
        self.page = min(max(page, 0), n_pages - 1)
        start = self.page * self.page_size
        shown = self.results.iloc[start : start + self.page_size]
        self.progress.max, self.progress.value = max(1, len(shown)), 0
        judgeable = self.term is not None
        for slot, card in enumerate(self.cards):
            if slot < len(shown):
                row = shown.iloc[slot]
                card.show(int(row["id"]), row["path"], start + slot + 1, float(row["score"]), str(row["reason"]), judgeable, self.size)
                self.progress.value = slot + 1
            else:
                card.hide()
        more = "+" if self._can_fetch() else ""
        self.page_label.value = f"&nbsp;page {self.page + 1} / {n_pages}{more}&nbsp;"
        self.previous.disabled = self.page == 0
        self.next.disabled = self.page >= n_pages - 1 and not more
        self._say(self._message)
        self.serial.value = str(int(self.serial.value) + 1)  # last: the page is complete

    def judge_slot(self, slot: int, relevant: bool) -> None:
        """What a card's relevant / not buttons do."""
        card = self.cards[slot]
        if card.row is None or self.term is None:
            return
        self.collection.judge(self.term, card.path, relevant=relevant, user=self.user)
        card.relevant.button_style = "success" if relevant else ""
        card.not_relevant.button_style = "" if relevant else "danger"
        self._say(f"recorded: {Path(card.path).name} {'shows' if relevant else 'does not show'} '{self.term}'")
        self.refresh_terms()

    def selected_rows(self) -> list[int]:
        return [card.row for card in self.cards if card.row is not None and card.select.value]

    def more_like_selected(self) -> pd.DataFrame:
        """Query by the mean of the selected results."""
        rows = self.selected_rows()
        if not rows:
            self._say("tick 'select' under one or more results first", error=True)
            return pd.DataFrame()
        col = self.collection
        vectors = np.asarray(layer_array(col, self.layer.value)[rows], np.float32)
        query = unit_rows(vectors).mean(axis=0) if self.metric.value == "cosine" else vectors.mean(axis=0)
        results = self.run_similar(query)
        if len(results):
            results = results[~results["id"].isin(rows)]
            self._set_results(results, f"images like the {len(rows)} selected" if len(rows) != 1 else "images like the selected one")
        return results

    def teach_selected(self, word: str) -> int:
        """Teach ``word`` with every selected result; returns how many examples were given."""
        rows = self.selected_rows()
        if not word or not word.strip():
            self._say("type the word to teach in the box left of 'Teach word from selected'", error=True)
            return 0
        if not rows:
            self._say("tick 'select' under the results that show the word first", error=True)
            return 0
        try:
            for row in rows:
                self.collection.teach(word, row, user=self.user)
        except (ValueError, TypeError) as err:
            self._say(str(err), error=True)
            return 0
        self._say(f"taught '{word}' with {len(rows)} example{'s' if len(rows) != 1 else ''}")
        self.refresh_terms()
        return len(rows)

    def refresh_terms(self) -> None:
        terms = self.collection.terms()
        if terms.empty:
            self.terms_view.value = "<i style='color:#666'>none yet: answer yes or no under results, or teach a word</i>"
            return
        rows = "".join(
            f"<tr><td>{html.escape(t.term)}</td><td align=right>{t.relevant}</td><td align=right>{t.not_relevant}</td><td align=right>{t.examples}</td></tr>"
            for t in terms.itertuples(index=False)
        )
        self.terms_view.value = (
            "<table style='font-size:12px'><tr><th align=left>word</th><th title='judged relevant'>yes</th><th title='judged not relevant'>no</th><th title='taught examples'>taught</th></tr>" + rows + "</table>"
        )


CULL_IDLE_SECONDS = 600
"""Default of ``lab panel --cull-idle``: a kernel no browser is connected to is shut down after this long idle."""
MAX_UPLOAD_MB = 64
"""Largest image the panel takes as an upload (larger ones get a message in the panel, not a broken session)."""
_WEBSOCKET_MAX_BYTES = 2 * MAX_UPLOAD_MB * 2**20  # tornado's default of 10 MiB dropped larger uploads silently

# Runs in the page (Voila): the upload widget reads the chosen file with a FileReader; a file over
# the limit is sent as 0 bytes with its real size instead, so the kernel can say why it was refused
# (the websocket would otherwise drop the message and the session with it).
_UPLOAD_GUARD_JS = """
(function () {
  var limit = %d, read = FileReader.prototype.readAsArrayBuffer;
  if (read.labGuard) { return; }
  FileReader.prototype.readAsArrayBuffer = function (blob) {
    return read.call(this, blob && blob.size > limit ? blob.slice(0, 0) : blob);
  };
  FileReader.prototype.readAsArrayBuffer.labGuard = true;
})();
""" % (MAX_UPLOAD_MB * 2**20)


def _app_notebook(collection_path: str) -> str:
    """The one-cell notebook Voila serves: the panel for one collection (any path, quotes included)."""
    source = (
        "from lab import Collection\n"
        "from lab.panel import SearchPanel, upload_guard\n"
        "upload_guard()\n"
        f"SearchPanel(Collection.open({collection_path!r})).widget"
    )
    cell = {"id": "lab-panel", "cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
    kernelspec = {"display_name": "Python 3", "language": "python", "name": "python3"}
    return json.dumps({"cells": [cell], "metadata": {"kernelspec": kernelspec}, "nbformat": 4, "nbformat_minor": 5}, indent=1)


def upload_guard() -> None:
    """Display the page script that turns an upload over ``MAX_UPLOAD_MB`` into a message (see :func:`serve`)."""
    from IPython.display import Javascript, display

    display(Javascript(_UPLOAD_GUARD_JS))


def _check_port_free(ip: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tornado does: a port in TIME_WAIT is free
        try:
            probe.bind((ip, port))
        except OSError as err:
            raise OSError(err.errno, f"cannot serve on {ip}:{port} ({err.strerror}); choose another --port") from None


def _alive(process) -> bool:
    """Whether a psutil process still runs (a zombie, or one gone meanwhile, does not)."""
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class PanelServer:
    """A running ``lab panel``: the Voila process, its URL, and a :meth:`stop` that leaves nothing behind.

    Use :func:`serve` to start one; as a context manager it stops on exit.
    """

    def __init__(self, process: subprocess.Popen, url: str, folder: Path):
        self.process, self.url, self.folder = process, url, folder
        self._seen: dict = {}  # pid -> psutil.Process of every process seen in the tree

    @property
    def pid(self) -> int:
        return self.process.pid

    def processes(self) -> list:
        """Voila's live descendant processes (its kernels), remembered so they can be stopped even if Voila dies first."""
        import psutil

        try:
            for child in psutil.Process(self.process.pid).children(recursive=True):
                self._seen.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass
        return [p for p in self._seen.values() if _alive(p)]

    def wait(self, poll_seconds: float = 1.0, stop: threading.Event | None = None) -> int | None:
        """Wait for Voila to exit, or for ``stop`` to be set (noting its kernels meanwhile); returns Voila's exit status, None if stopped first."""
        stop = stop or threading.Event()
        while True:
            self.processes()
            status = self.process.poll()
            if status is not None:
                return status
            if stop.wait(poll_seconds):
                return None

    def stop(self, timeout: float = 20.0) -> None:
        """Stop Voila (which shuts its kernels down), then end any kernel still running, then remove the notebook."""
        import psutil

        children = self.processes()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        _, alive = psutil.wait_procs(children, timeout=5)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.terminate()
        _, alive = psutil.wait_procs(alive, timeout=5)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "PanelServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: Voila gets SIGTERM if ``lab panel`` itself dies, even by SIGKILL (its kernels follow Voila)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def serve(
    collection_path: str | os.PathLike,
    port: int = 8866,
    ip: str = "127.0.0.1",
    open_browser: bool = False,
    cull_idle: float = CULL_IDLE_SECONDS,
) -> PanelServer:
    """Start Voila serving the panel for a collection; returns the running server.

    The server binds to ``ip`` (loopback unless told otherwise) and serves
    only a generated one-cell notebook. Every page load gets a kernel;
    a kernel no browser is connected to (a closed tab, a plain HTTP GET) is
    shut down after ``cull_idle`` seconds idle (jupyter_server's
    ``MappingKernelManager.cull_idle_timeout``, checked every
    ``cull_idle / 2`` seconds, at most every minute); an open page keeps its
    kernel. :meth:`PanelServer.stop` stops Voila and every kernel.
    Uploads up to ``MAX_UPLOAD_MB`` are taken; larger files get a message.

    Parameters
    ----------
    collection_path : path-like
        Any path (quotes, spaces, non-ASCII).
    port : int
        Refused with ``OSError`` if it is in use (Voila would silently move to another).
    cull_idle : float
        Seconds; 0 keeps kernels until the server stops.
    """
    from .collection import Collection

    if cull_idle < 0:
        raise ValueError(f"cull_idle must be 0 (never) or a number of seconds, got {cull_idle}")
    path = str(Collection.open(collection_path).root)  # fail early with a clear error
    _check_port_free(ip, port)
    folder = Path(tempfile.mkdtemp(prefix="lab-panel-"))
    notebook = folder / "lab_panel.ipynb"
    notebook.write_text(_app_notebook(path))
    command = [
        sys.executable, "-m", "voila", str(notebook),
        f"--port={port}", f"--Voila.ip={ip}", "--Voila.port_retries=0", "--theme=light", "--show_tracebacks=True",
        f"--Voila.tornado_settings={{'websocket_max_message_size': {_WEBSOCKET_MAX_BYTES}}}",
    ]
    if cull_idle:
        command += [
            f"--MappingKernelManager.cull_idle_timeout={int(math.ceil(cull_idle))}",
            f"--MappingKernelManager.cull_interval={max(1, min(60, int(cull_idle // 2)))}",
            "--MappingKernelManager.cull_connected=False",
        ]
    if not open_browser:
        command.append("--no-browser")
    process = subprocess.Popen(command, cwd=folder, start_new_session=True, preexec_fn=_die_with_parent)
    return PanelServer(process, f"http://{ip}:{port}/", folder)

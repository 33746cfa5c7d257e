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

import html
import io
import os
import subprocess
import sys
import tempfile
import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .image_decoding import ImageDecodeError, decode_image
from .term_model import unit_rows

__all__ = ["SearchPanel", "serve", "thumbnail"]

_THUMBNAILS: "OrderedDict[tuple, bytes]" = OrderedDict()
_PLACEHOLDER = None


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
    if len(_THUMBNAILS) > 4000:
        _THUMBNAILS.popitem(last=False)
    return _THUMBNAILS[key]


class _Card:
    """One result tile: thumbnail, caption, judge buttons, select box."""

    def __init__(self, panel: "SearchPanel", slot: int, size: int):
        import ipywidgets as w

        self.panel, self.slot, self.row = panel, slot, None
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
        self.row = row
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
        self.term: str | None = None
        self.page = 0
        self._query = None  # what the current results answer: ("search", word) or ("similar", vector)

        self.query_box = w.Text(placeholder="search a word: dog, beach, sports car ...", layout=w.Layout(width="320px"))
        self.search_button = w.Button(description="Search", button_style="primary", icon="search")
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="Similar to an image")
        self.metric = w.Dropdown(options=["cosine", "euclidean", "manhattan"], value="cosine", description="metric", layout=w.Layout(width="200px"))
        self.layer = w.Dropdown(options=[("transfer (embedding)", "transfer"), ("output (classes)", "output")], value="transfer", description="layer", layout=w.Layout(width="250px"))
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

    def run_search(self, query: str) -> pd.DataFrame:
        """Keyword search; shows the first page."""
        self._busy(f"searching '{query}' ...")
        try:
            results = self.collection.search(query, k=max(self.page_size * 10, 200))
            # thin or rejected evidence: the first page makes room for images to judge
            first = self.collection.search(query, k=self.page_size, explore=True)
            if first.attrs["n_explored"]:
                results = first
        except (ValueError, TypeError) as err:
            self._say(str(err), error=True)
            return pd.DataFrame()
        self.term = results.attrs["term"]
        self.teach_word.value = self.term
        self._query = ("search", query)
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
        self._query = ("similar", image)
        self._set_results(results, f"images most similar to {results.attrs['query']} ({self.metric.value}, {self.layer.value} layer)")
        return results

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        item = files[0] if isinstance(files, (tuple, list)) else next(iter(files.values()))
        self.run_similar(bytes(item["content"]))

    def _set_results(self, results: pd.DataFrame, message: str) -> None:
        self.results = results.reset_index(drop=True)
        self._message = message
        self.show_page(0)

    def show_page(self, page: int) -> None:
        """Show page ``page`` (0-based) of the current results."""
        n_pages = max(1, -(-len(self.results) // self.page_size))
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
        self.page_label.value = f"&nbsp;page {self.page + 1} / {n_pages}&nbsp;"
        self.previous.disabled = self.page == 0
        self.next.disabled = self.page >= n_pages - 1
        self._say(self._message)
        self.serial.value = str(int(self.serial.value) + 1)  # last: the page is complete

    def judge_slot(self, slot: int, relevant: bool) -> None:
        """What a card's relevant / not buttons do."""
        card = self.cards[slot]
        if card.row is None or self.term is None:
            return
        self.collection.judge(self.term, card.row, relevant=relevant, user=self.user)
        card.relevant.button_style = "success" if relevant else ""
        card.not_relevant.button_style = "" if relevant else "danger"
        self._say(f"recorded: {Path(self.collection.paths[card.row]).name} {'shows' if relevant else 'does not show'} '{self.term}'")
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
        vectors = col.embeddings[rows] if self.layer.value == "transfer" else col.class_probabilities[rows]
        vectors = np.asarray(vectors, np.float32)
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


_APP_NOTEBOOK = """{{
 "cells": [
  {{"cell_type": "code", "execution_count": null, "metadata": {{}}, "outputs": [], "source": [
    "from lab import Collection\\n",
    "from lab.panel import SearchPanel\\n",
    "SearchPanel(Collection.open({path!r})).widget"
  ]}}
 ],
 "metadata": {{"kernelspec": {{"display_name": "Python 3", "language": "python", "name": "python3"}}}},
 "nbformat": 4, "nbformat_minor": 5
}}
"""


def serve(collection_path: str | os.PathLike, port: int = 8866, ip: str = "127.0.0.1", open_browser: bool = False) -> subprocess.Popen:
    """Start Voila serving the panel for a collection; returns the server process.

    The server binds to ``ip`` (loopback unless told otherwise) and serves
    only a generated one-cell notebook.
    """
    from .collection import Collection

    path = str(Collection.open(collection_path).root)  # fail early with a clear error
    folder = Path(tempfile.mkdtemp(prefix="lab-panel-"))
    notebook = folder / "lab_panel.ipynb"
    notebook.write_text(_APP_NOTEBOOK.format(path=path))
    command = [
        sys.executable, "-m", "voila", str(notebook),
        f"--port={port}", f"--Voila.ip={ip}", "--theme=light", "--show_tracebacks=True",
    ]
    if not open_browser:
        command.append("--no-browser")
    return subprocess.Popen(command, cwd=folder)

"""The lab report: run the numbered notebooks on a collection and render them to HTML.

    lab report -c COLLECTION [--images FOLDER] [--out results/report]

Each notebook runs top to bottom with papermill (parameters ``collection``,
``images`` and ``results_dir``); the notebooks save their tables to
``<out>/tables`` and figures to ``<out>/figures``, so every figure and the
table it shows come from one run. nbconvert renders each executed notebook,
outputs included, to ``<out>/NN_name.html``; ``index.html`` links them with
each section's opening sentence, the run times and the command that made them.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NotebookFailed", "ReportRun", "notebook_paths", "run_report", "save_table"]

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def notebook_paths(folder: str | os.PathLike | None = None) -> list[Path]:
    """The numbered notebooks (``01_*.ipynb`` ...) in ``folder`` (default the project's ``notebooks/``)."""
    folder = Path(folder or NOTEBOOKS)
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no numbered notebooks in {folder}; `lab report` runs from a checkout of the project")
    return found


class NotebookFailed(RuntimeError):
    """A notebook raised an error; the message names it and where its executed copy is."""


@dataclass
class ReportRun:
    """What a report run wrote: the HTML pages, and seconds per notebook."""

    out: Path
    pages: list[Path] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)

    @property
    def index(self) -> Path:
        return self.out / "index.html"


def run_report(
    collection: str | os.PathLike,
    images: str | os.PathLike | None = None,
    out: str | os.PathLike = "results/report",
    parameters: dict | None = None,
    notebooks: list | None = None,
    command: str | None = None,
    progress: bool = True,
) -> ReportRun:
    """Execute the notebooks on a collection and render them, with an index page, into ``out``.

    Parameters
    ----------
    collection : path
        The collection folder (notebook 01 creates it from ``images`` when missing).
    images : path, optional
        The image folder the collection indexes; its labels (``labels.csv`` or
        ``<label>__name`` files), if any, score the experiments. Without it the
        report covers an unlabeled collection: the sections that need labels
        say so and skip.
    out : path
        Report folder: HTML pages, ``figures/``, ``tables/``, ``timings.md``.
    parameters : dict, optional
        More papermill parameters (e.g. ``rounds``, ``n_queries``); a notebook
        receives only the ones its parameters cell declares.
    notebooks : list of path, optional
        Default :func:`notebook_paths`.
    command : str, optional
        The command line to name on the index page.
    """
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    collection = str(Path(collection).resolve())
    images = str(Path(images).resolve()) if images else ""
    run = ReportRun(out)
    executed = Path(tempfile.mkdtemp(prefix="lab-report-"))
    exporter = HTMLExporter()
    exporter.exclude_input_prompt = exporter.exclude_output_prompt = True
    base = {"collection": collection, "images": images, "results_dir": str(out), **(parameters or {})}
    for notebook in notebooks or notebook_paths():
        notebook = Path(notebook)
        declared = _declared_parameters(notebook)
        target = executed / notebook.name
        started = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(notebook), str(target), kernel_name="python3", cwd=str(notebook.parent), progress_bar=progress,
                parameters={k: v for k, v in base.items() if k in declared},
            )
        except papermill.PapermillExecutionError as err:
            raise NotebookFailed(f"notebook {notebook.name} failed ({err.ename}: {err.evalue}); the executed copy is {target}") from None
        run.seconds[notebook.name] = time.perf_counter() - started
        body, _ = exporter.from_notebook_node(nbformat.read(target, as_version=4))
        page = out / f"{notebook.stem}.html"
        page.write_text(body, encoding="utf-8")
        run.pages.append(page)
        if progress:
            print(f"{notebook.name}: {run.seconds[notebook.name]:.0f} s -> {page}", flush=True)
    _write_index(run, notebooks or notebook_paths(), collection, images, command)
    shutil.rmtree(executed, ignore_errors=True)  # the pages hold what they showed; a failed run keeps its copy (named above)
    return run


def save_table(frame, results_dir: str | os.PathLike, name: str, floatfmt: str = ".3f") -> Path:
    """Write a notebook's table as ``<results_dir>/tables/<name>.csv`` and ``.md``; returns the CSV path."""
    folder = Path(results_dir) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / f"{name}.csv", index=False)
    (folder / f"{name}.md").write_text(frame.to_markdown(index=False, floatfmt=floatfmt) + "\n", encoding="utf-8")
    return folder / f"{name}.csv"


def _declared_parameters(notebook: Path) -> set[str]:
    """Names assigned in a notebook's cell tagged ``parameters``."""
    import ast

    import nbformat

    book = nbformat.read(notebook, as_version=4)
    names: set[str] = set()
    for cell in book.cells:
        if "parameters" in cell.metadata.get("tags", []):
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
    return names


def _opening(notebook: Path) -> tuple[str, str]:
    """A notebook's title (first heading) and the sentence under it."""
    import nbformat

    first = nbformat.read(notebook, as_version=4).cells[0].source.strip().splitlines()
    title = first[0].lstrip("# ").strip()
    text = " ".join(line.strip() for line in first[1:] if line.strip() and not line.startswith("#"))
    return title, text


def _write_index(run: ReportRun, notebooks: list, collection: str, images: str, command: str | None) -> None:
    from .collection import Collection

    col = Collection.open(collection)
    sections = []
    for notebook, page in zip(notebooks, run.pages):
        title, text = _opening(Path(notebook))
        seconds = run.seconds[Path(notebook).name]
        sections.append(f'<li><a href="{page.name}">{html.escape(title)}</a> <small>({seconds:.0f} s)</small><br>{html.escape(text)}</li>')
    figures = sorted((run.out / "figures").glob("*.png")) if (run.out / "figures").exists() else []
    tables = sorted((run.out / "tables").glob("*.md")) if (run.out / "tables").exists() else []
    links = "".join(f'<li><a href="figures/{p.name}">{p.stem}</a></li>' for p in figures)
    table_links = "".join(f'<li><a href="tables/{p.name}">{p.stem}</a></li>' for p in tables)
    total = sum(run.seconds.values())
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Lab report: {html.escape(Path(collection).name)}</title>
<style>body {{font-family: sans-serif; max-width: 60em; margin: 2em auto; line-height: 1.4}} li {{margin-bottom: .6em}}</style>
</head><body>
<h1>Lab report</h1>
<p>Collection <code>{html.escape(collection)}</code>: {len(col):,} images, model {html.escape(col.model_name)}; images <code>{html.escape(images or "(not given)")}</code>.</p>
<p>Made by <code>{html.escape(command or "lab report")}</code> in {total:.0f} s on {os.cpu_count()} cores,
{time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}. Every number, table and figure below was computed in this run.</p>
<h2>Sections</h2>
<ol>{''.join(sections)}</ol>
<h2>Figures</h2><ul>{links or "<li>none</li>"}</ul>
<h2>Tables</h2><ul>{table_links or "<li>none</li>"}</ul>
</body></html>
"""
    (run.out / "index.html").write_text(page, encoding="utf-8")
    lines = ["# Notebook run times", "", f"Command: `{command or 'lab report'}`", "", f"Collection: {len(col):,} images, model {col.model_name}, {os.cpu_count()} cores.", ""]
    lines += ["| notebook | seconds |", "|---|---:|", *(f"| {name} | {s:.0f} |" for name, s in run.seconds.items()), f"| all | {total:.0f} |", ""]
    (run.out / "timings.md").write_text("\n".join(lines), encoding="utf-8")
    for kind in ("figures", "tables"):
        if (run.out / kind).exists():
            (run.out / kind / "README.md").write_text(
                f"# {kind.capitalize()} of the lab report\n\nWritten by `{command or 'lab report'}`: each one by the notebook that computed it, "
                f"in the run rendered in `../index.html` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).\n",
                encoding="utf-8",
            )

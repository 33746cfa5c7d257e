"""The lab report: every notebook runs top to bottom on a small collection (papermill, real kernel) and renders to HTML."""

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_read_as_report_sections_with_parameters_and_thin_cells():
    import nbformat

    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        opening = book.cells[0].source
        assert book.cells[0].cell_type == "markdown" and "**Question.**" in opening and "**Method.**" in opening, path.name
        tagged = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and all(name in tagged[0].source for name in ("collection", "images", "results_dir")), path.name
        headings = [c.source.splitlines()[0] for c in book.cells if c.cell_type == "markdown"]
        assert "## Result" in headings and "## Interpretation" in headings, path.name
        # the interpretation's numbers are computed: its cell renders Markdown from values
        after = book.cells[[c.source.splitlines()[0] if c.source else "" for c in book.cells].index("## Interpretation") + 1 :]
        assert any(c.cell_type == "code" and "Markdown(" in c.source for c in after), path.name
        code = [c.source for c in book.cells if c.cell_type == "code"]
        assert max(len(src.splitlines()) for src in code) <= 12, f"{path.name}: logic belongs in lab/, not in cells"


@pytest.fixture(scope="module")
def report(tmp_path_factory, photo_collection, photo_folder):
    """The whole report on the 27 packaged photos, run once."""
    from lab.report import run_report

    base = tmp_path_factory.mktemp("report")
    collection = base / "collection"
    shutil.copytree(photo_collection.root, collection)
    from lab import Collection

    Collection.open(collection).judge("cat", 0, relevant=True, user="owner")  # a collection in use has feedback
    parameters = {"models": ["efficientnet-lite0", "efficientnet-lite1"], "n_queries": 27, "rounds": 2}
    return run_report(collection, photo_folder, base / "out", parameters=parameters, progress=False, command="pytest")


@pytest.mark.slow
def test_the_report_leaves_the_collections_feedback_as_it_was(report):
    from lab import Collection

    col = Collection.open(report.out.parent / "collection")  # its feedback once fed a copy the report could not read
    assert col.check().ok and col.judgments()[["term", "user"]].values.tolist() == [["cat", "owner"]]


@pytest.mark.slow
def test_report_renders_every_notebook_with_outputs_and_an_index(report):
    assert [p.stem for p in report.pages] == [p.stem for p in NOTEBOOKS]
    index = report.index.read_text()
    for page in report.pages:
        assert f'href="{page.name}"' in index
        text = page.read_text()
        assert "Traceback" not in text and "data-mime-type=\"text/markdown\"" in text, page.name
    # notebook 01's interpretation states the collection's size, computed in the run
    assert re.search(r"The collection holds <strong>27 images</strong>", report.pages[0].read_text())
    assert "Made by <code>pytest</code>" in index and (report.out / "timings.md").exists()


@pytest.mark.slow
def test_report_figures_and_tables_come_from_one_run(report):
    import pandas as pd

    figures, tables = report.out / "figures", report.out / "tables"
    for name in ("sample_grid", "umap_map", "layers_metrics_p20", "feedback_rounds", "report_sheet"):
        assert (figures / f"{name}.png").exists(), name
    assert (figures / "layers_metrics_p20.svg").exists() and (figures / "feedback_rounds.svg").exists()
    rounds = pd.read_csv(tables / "feedback_rounds.csv")
    mean = pd.read_csv(tables / "feedback_rounds_mean.csv")
    assert sorted(rounds["round"].unique()) == [0, 1, 2]
    assert mean["first_page_p@20"].tolist() == pytest.approx(rounds.groupby("round")["first_page_p@20"].mean().tolist())
    # notebook 06 quotes the table it read, not a recomputation
    sheet = report.pages[-1].read_text()
    assert f"first-page P@20 {mean['first_page_p@20'].iloc[0]:.2f} before feedback" in sheet
    clusters = pd.read_csv(tables / "clusters.csv")
    assert clusters["size"].sum() == 27 and f"named '{clusters['name'].iloc[0]}'" in sheet


@pytest.mark.slow
def test_report_on_an_unlabeled_collection_skips_what_needs_labels(tmp_path, photo_collection):
    from lab.report import notebook_paths, run_report

    shutil.copytree(photo_collection.root, tmp_path / "collection")
    chosen = [p for p in notebook_paths() if p.name[:2] in ("03", "05")]
    run = run_report(tmp_path / "collection", None, tmp_path / "out", notebooks=chosen, progress=False)
    for page in run.pages:
        assert "has no labels" in page.read_text() and "Traceback" not in page.read_text()


def test_a_failing_notebook_is_named(tmp_path, photo_collection):
    from lab.report import NotebookFailed, notebook_paths, run_report

    with pytest.raises(NotebookFailed, match="02_explore_embeddings.ipynb failed"):
        run_report(tmp_path / "no-such-collection", None, tmp_path / "out", notebooks=notebook_paths()[1:2], progress=False)

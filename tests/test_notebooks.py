"""Every notebook runs top to bottom on a small collection (papermill, real kernel)."""

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_are_numbered_and_open_with_a_sentence_and_parameters():
    import nbformat

    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        assert book.cells[0].cell_type == "markdown" and len(book.cells[0].source.splitlines()) >= 2, path.name
        tagged = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "collection" in tagged[0].source and "images" in tagged[0].source, path.name
        code = [c.source for c in book.cells if c.cell_type == "code"]
        assert max(len(src.splitlines()) for src in code) <= 12, f"{path.name}: logic belongs in lab/, not in cells"


@pytest.fixture(scope="module")
def notebook_collection(tmp_path_factory, photo_collection):
    target = tmp_path_factory.mktemp("nb") / "collection"
    shutil.copytree(photo_collection.root, target)
    return target


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(notebook, notebook_collection, photo_folder, tmp_path):
    import papermill

    parameters = {
        "collection": str(notebook_collection),
        "images": str(photo_folder),
        "figures_dir": str(tmp_path / "figures"),
        "models": ["efficientnet-lite0", "efficientnet-lite1"],
        "n_queries": 27,
        "rounds": 2,
        "n_thumbnails": 10,
    }
    output = tmp_path / notebook.name
    papermill.execute_notebook(
        str(notebook), str(output), parameters=parameters, kernel_name="python3", cwd=str(notebook.parent), progress_bar=False
    )
    if notebook.name.startswith("06"):
        written = {p.name for p in (tmp_path / "figures").iterdir()}
        for name in ("sample_grid", "umap_map", "layers_metrics_p20", "feedback_rounds"):
            assert {f"{name}.png", f"{name}.svg"} <= written, written

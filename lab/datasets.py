"""The shared labeled datasets (Caltech-101, CIFAR-10) used by benchmarks and evaluations.

They live in ``../shared/datasets/`` next to the project (or ``$LAB_SHARED_DATASETS``)
and are never committed. Each tarball unpacks to one folder with ``images/``,
``labels.csv`` (path, label, label_name[, split]) and ``README.txt``.
"""

from __future__ import annotations

import os
import re
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .wording import listing, plural

__all__ = ["DatasetMissingError", "LOOKALIKE_SUBSETS", "cut_lookalike_subsets", "cut_per_label", "evaluation_collections", "indexed_dataset", "labels_by_path", "read_labels_csv", "shared_datasets_dir", "unpack_dataset"]


class DatasetMissingError(FileNotFoundError):
    """The shared dataset folder or tarball is not on this machine."""


def shared_datasets_dir() -> Path:
    """``$LAB_SHARED_DATASETS`` or ``<project>/../shared/datasets``."""
    if os.environ.get("LAB_SHARED_DATASETS"):
        return Path(os.environ["LAB_SHARED_DATASETS"])
    return Path(__file__).resolve().parents[2] / "shared" / "datasets"


def unpack_dataset(name: str, target: str | os.PathLike) -> Path:
    """Unpack ``<name>.tar.gz`` into ``target`` (once) and return its folder.

    Raises
    ------
    DatasetMissingError
        If the tarball is absent, with where it was looked for.
    """
    archive = shared_datasets_dir() / f"{name}.tar.gz"
    if not archive.exists():
        raise DatasetMissingError(f"dataset {name!r} not found at {archive} (set LAB_SHARED_DATASETS to its folder)")
    target = Path(target)
    done = target / f".{name}.unpacked"
    if not done.exists():
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tops = {Path(member.name).parts[0] for member in tar.getmembers() if member.name not in ("", ".")}
            tar.extractall(target, filter="data")
        done.write_text("\n".join(sorted(tops)))
    # the folders this archive unpacked (several datasets may share ``target``)
    tops = done.read_text().split() or [p.name for p in target.iterdir() if p.is_dir()]
    folders = [target / top for top in tops if (target / top / "labels.csv").exists()]
    if len(folders) != 1:
        raise DatasetMissingError(f"{archive} did not unpack to one folder with labels.csv")
    return folders[0]


def read_labels_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A labels file: columns ``path`` (absolute, resolved from the file's folder) and ``label_name``.

    Cells are read as text ("NA" and "null" are labels like any other) and
    stripped; a blank label stays ``""`` for the caller to leave out; rows
    repeated exactly count once.

    Raises
    ------
    ValueError
        Naming the file: it is empty or not UTF-8 text, a row has more
        fields than the header, a ``path`` or ``label_name`` column is
        missing or given twice, a row has no path, or one image has two
        different labels.
    """
    path = Path(path).expanduser().resolve()
    try:
        with warnings.catch_warnings():  # a row with more fields than the header is an error, not a truncated row
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False, on_bad_lines="error", encoding="utf-8-sig")
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"{path} is empty: a labels file has the columns path,label_name") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text: save it as UTF-8 (CSV, columns path,label_name)") from err
    except (pd.errors.ParserError, pd.errors.ParserWarning) as err:
        said = " ".join(str(err).split())
        if isinstance(err, pd.errors.ParserWarning) or re.search(r"Expected \d+ fields", said):
            raise ValueError(f"{path}: a row has more fields than the header has columns ({said})") from err
        raise ValueError(f"{path} cannot be read as CSV ({said}): a labels file has the columns path,label_name") from err
    table.columns = [str(column).strip() for column in table.columns]
    # pandas reads a repeated column as "<name>.1", "<name>.2", ...; " path" after "path" repeats it once stripped
    named = [match[1] if (match := re.fullmatch(r"(path|label_name)\.\d+", column)) else column for column in table.columns]
    repeated = sorted(name for name in ("path", "label_name") if named.count(name) > 1)
    if repeated:
        raise ValueError(f"{path} has the column {' and '.join(repeated)} twice")
    missing = {"path", "label_name"} - set(table.columns)
    if missing:
        header = ",".join(table.columns)
        hint = ""
        if len(table.columns) == 1 and (separator := next((s for s in (";", "\t", "|") if s in header), None)):
            hint = f"; its header is separated by {separator!r}: save it with commas"
        elif {"path", "label_name"} <= {column.lower() for column in table.columns}:
            hint = "; the names are lower case: path,label_name"
        raise ValueError(f"{path} needs the columns path and label_name (missing: {', '.join(sorted(missing))}){hint}")
    if table.empty:
        raise ValueError(f"{path} has no rows: one per image, path,label_name")
    table = table[["path", "label_name"]].apply(lambda column: column.str.strip())
    no_path = table["path"] == ""
    if no_path.any():
        raise ValueError(f"{path}: {plural(int(no_path.sum()), 'row')} with no path (labeled {listing(table.loc[no_path, 'label_name'], 3)})")
    table["path"] = [str((path.parent / p).resolve()) for p in table["path"]]
    table = table.drop_duplicates().reset_index(drop=True)
    conflicts = table[table["path"].duplicated(keep=False)].groupby("path")["label_name"].agg(" and ".join)
    if len(conflicts):
        shown = "; ".join(f"{image}: {names}" for image, names in conflicts.head(3).items())
        raise ValueError(f"{path} gives {plural(len(conflicts), 'image')} two labels ({shown})")
    return table


def labels_by_path(path: str | os.PathLike) -> pd.Series:
    """A labels file (:func:`read_labels_csv`) as label names indexed by absolute image path."""
    return read_labels_csv(path).set_index("path")["label_name"]


def folder_labels(images_folder: str | os.PathLike) -> "pd.Series | None":
    """Ground-truth labels for a folder, by absolute path, where the folder has any.

    ``labels.csv`` (columns path, label_name) in the folder or its parent, as in
    the shared datasets; otherwise the sample-photo naming ``<label>__<name>``
    (see :mod:`lab.sample_images`); otherwise None (an unlabeled collection).
    """
    folder = Path(images_folder).resolve()
    for candidate in (folder, folder.parent):
        if (candidate / "labels.csv").exists():
            labels = labels_by_path(candidate / "labels.csv")
            if (labels == "").any():  # an image with a blank label has no ground truth: not a class of its own
                warnings.warn(f"{candidate / 'labels.csv'}: {plural(int((labels == '').sum()), 'image')} with a blank label left out", stacklevel=2)
            return labels[labels != ""]
    files = [p for p in folder.rglob("*") if p.is_file() and "__" in p.stem]
    if files:
        from .sample_images import label_of

        return pd.Series({str(p): label_of(p) for p in files}, name="label_name")
    return None


def indexed_dataset(name: str, workdir: str | os.PathLike, model: str | None = None):
    """Unpack a shared dataset into ``workdir`` and index its images (resuming if already there).

    Returns
    -------
    collection : Collection
        ``<workdir>/<name>.lab``.
    folder : Path
        The unpacked dataset folder (``images/``, ``labels.csv``).
    """
    from .collection import Collection

    workdir = Path(workdir)
    folder = unpack_dataset(name, workdir / "data")
    collection = Collection.open(workdir / f"{name}.lab", create=True, model=model)
    collection.add(folder / "images")
    return collection, folder


# look-alike collections cut from Caltech-101, for tuning word learning across collections
LOOKALIKE_SUBSETS = {
    "caltech_animals": ["beaver", "cougar_body", "dalmatian", "elephant", "hedgehog", "kangaroo", "Leopards", "llama", "okapi", "platypus", "rhino", "wild_cat"],
    "caltech_plants": ["bonsai", "joshua_tree", "lotus", "strawberry", "sunflower", "water_lilly"],
}


def cut_lookalike_subsets(source, labels_csv: str | os.PathLike, out: str | os.PathLike) -> dict[str, Path]:
    """Collections of the :data:`LOOKALIKE_SUBSETS` classes of ``source`` (features copied, nothing re-extracted).

    Writes ``<out>/<name>.lab`` (replaced if there) and ``<out>/<name>_labels.csv``
    (``path,label_name``) for each subset; returns the labels files by name.
    """
    labels = labels_by_path(labels_csv).reindex(source.paths)
    return {name: _copy_rows(source, labels, np.flatnonzero(labels.isin(classes).to_numpy()), Path(out), name) for name, classes in LOOKALIKE_SUBSETS.items()}


def cut_per_label(source, labels_csv: str | os.PathLike, out: str | os.PathLike, name: str, per_label: int = 80, seed: int = 0) -> Path:
    """A collection of ``per_label`` images of each label of ``source`` (a seeded sample, features copied, nothing re-extracted).

    Issue 8's 17 flower species come 80 photos each; cut to that many a
    label, a shared collection has classes of that size.

    Parameters
    ----------
    source : Collection
    labels_csv : path
        ``path,label_name`` (:func:`labels_by_path`); images it does not
        label, or labels blank, are left out.
    out : path
        Folder for ``<name>.lab`` (replaced if there) and ``<name>_labels.csv``.
    name : str
    per_label : int
        Images kept of each label (all of a label with fewer).
    seed : int

    Returns
    -------
    Path
        The labels file written.
    """
    if isinstance(per_label, bool) or not isinstance(per_label, int) or per_label < 1:
        raise ValueError(f"per_label must be a whole number, 1 or more, got {per_label!r}")
    labels = labels_by_path(labels_csv).reindex(source.paths)
    labeled = labels.notna().to_numpy() & (labels.fillna("").to_numpy() != "")
    if not labeled.any():
        raise ValueError(f"{labels_csv} labels none of the images of {source.root}")
    rng = np.random.default_rng(seed)
    by_label = pd.Series(np.flatnonzero(labeled)).groupby(labels.to_numpy()[labeled])  # labels in sorted order
    keep = [rng.choice(rows.to_numpy(), size=min(per_label, len(rows)), replace=False) for _, rows in by_label]
    return _copy_rows(source, labels, np.sort(np.concatenate(keep)), Path(out), name)


def _copy_rows(source, labels: pd.Series, keep: np.ndarray, out: Path, name: str) -> Path:
    """Copy the ``keep`` rows of ``source`` into a new ``<out>/<name>.lab`` (replaced if there); their labels into ``<out>/<name>_labels.csv``."""
    import shutil

    from .collection import Collection

    root = out / f"{name}.lab"
    shutil.rmtree(root, ignore_errors=True)
    subset = Collection.open(root, create=True, model=source.model_name)
    images = source.images.iloc[keep].drop(columns="id").reset_index(drop=True)
    subset.add_features(images, np.asarray(source.embeddings[keep], np.float32), np.asarray(source.class_probabilities[keep], np.float32))
    written = out / f"{name}_labels.csv"
    pd.DataFrame({"path": images["path"], "label_name": labels.iloc[keep].to_numpy()}).to_csv(written, index=False)
    return written


def evaluation_collections(workdir: str | os.PathLike, cifar10: bool = False) -> dict:
    """The four labeled collections word learning is tuned across, indexed in ``workdir`` (resuming).

    flower_photos_600 and Caltech-101 from the shared datasets, and the two
    look-alike subsets cut from Caltech-101 (:func:`cut_lookalike_subsets`);
    with ``cifar10``, also CIFAR-10, a collection of another kind that is
    checked, not tuned on.

    Returns
    -------
    dict
        Name -> (collection, its ``labels.csv``).
    """
    from .collection import Collection

    found = {}
    for name in ("flower_photos_600", "caltech101"):
        collection, folder = indexed_dataset(name, workdir)
        found[name] = (collection, folder / "labels.csv")
    caltech, caltech_labels = found["caltech101"]
    for name, labels_csv in cut_lookalike_subsets(caltech, caltech_labels, workdir).items():
        found[name] = (Collection.open(Path(workdir) / f"{name}.lab"), labels_csv)
    if cifar10:
        collection, folder = indexed_dataset("cifar10", workdir)
        found["cifar10"] = (collection, folder / "labels.csv")
    return found

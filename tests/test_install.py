"""Reproducible installs: the lock pins every requirement, extras are declared, missing ones are named."""

import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from lab.installed import EXTRAS, install_command, versions, versions_line

ROOT = Path(__file__).resolve().parents[1]


def _requirements(path: Path) -> list[Requirement]:
    found = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            found += _requirements(path.parent / line[3:].strip())
        else:
            found.append(Requirement(line))
    return found


def _locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", (ROOT / "requirements.lock").read_text(), re.M)
    return {canonicalize_name(name): version for name, version in pins}


def test_the_lock_pins_every_requirement_within_its_range():
    """Fails when a requirements*.txt changed without `make lock`."""
    locked = _locked()
    stale = []
    for requirement in _requirements(ROOT / "requirements-dev.txt"):
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        version = locked.get(canonicalize_name(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            stale.append(f"{requirement} (locked: {version})")
    assert not stale, f"requirements.lock is out of date, run `make lock`: {stale}"
    assert all("==" in line or line.startswith(("#", " ")) or not line.strip() for line in (ROOT / "requirements.lock").read_text().splitlines())


def test_every_extra_is_declared_from_its_requirements_file():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = project["tool"]["setuptools"]["dynamic"]["optional-dependencies"]
    assert set(declared) == set(EXTRAS)
    for extra, spec in declared.items():
        assert spec == {"file": [f"requirements-{extra}.txt"]}
        names = {canonicalize_name(r.name) for r in _requirements(ROOT / f"requirements-{extra}.txt")}
        assert names, extra
        assert f"-r requirements-{extra}.txt" in (ROOT / "requirements-dev.txt").read_text()


def test_a_missing_extra_is_one_line_that_names_the_install(monkeypatch, capsys, tmp_path):
    from lab.cli import main

    monkeypatch.setitem(sys.modules, "voila", None)  # as if voila were not installed
    assert main(["panel", "-c", str(tmp_path / "any")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("lab panel: error: lab panel needs voila, which is not installed: pip install ")
    assert err.strip().endswith(install_command("panel")) and "[panel]" in install_command("panel")


def test_results_record_the_versions_they_ran_with():
    line = versions_line()
    assert line.startswith("Versions: lab ") and f"numpy {np.__version__}," in line
    assert versions()["python"] == ".".join(map(str, sys.version_info[:3]))
    if "tensorflow-cpu" in versions() or "tensorflow" in versions():
        import tensorflow as tf

        assert f" {tf.__version__}," in line


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_install_command_names_this_checkout_and_the_extra(extra):
    assert install_command(extra) == f"pip install -e '{ROOT}[{extra}]'"


def test_install_command_outside_a_checkout_names_the_extras_requirements(monkeypatch, tmp_path):
    import lab.installed as installed

    monkeypatch.setattr(installed, "__file__", str(tmp_path / "site-packages" / "lab" / "installed.py"))
    monkeypatch.setattr(
        installed.metadata, "requires", lambda name: ["numpy>=1.26", 'voila>=0.5; extra == "panel"', "papermill>=2.5; extra == 'report'"]
    )
    assert install_command("panel") == "pip install 'voila>=0.5'"
    assert install_command("report") == "pip install 'papermill>=2.5'"
    assert install_command("dask") == "pip install the 'dask' extra of lab"

"""The project's own rules: notebooks stored clean, dependency lists in step, every chapter
in the table of contents with the parts a chapter must have."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def cells(path: Path, kind: str | None = None) -> list[dict]:
    nb = json.loads(path.read_text())
    return [c for c in nb["cells"] if kind is None or c["cell_type"] == kind]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def test_there_are_chapters():
    assert len(CHAPTERS) >= 2


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    for cell in cells(path, "code"):
        assert cell["outputs"] == [] and cell["execution_count"] is None, (
            f"{path.name} has outputs; clear them before committing")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_first_code_cell_is_the_guarded_install(path):
    first = cells(path, "code")[0]
    assert "nbval-skip" in first.get("metadata", {}).get("tags", [])
    assert "google.colab" in source(first) and "KAGGLE_KERNEL_RUN_TYPE" in source(first)
    assert "%pip install" in source(first)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_no_other_cell_is_skipped(path):
    skipped = [c for c in cells(path, "code")[1:]
               if "nbval-skip" in c.get("metadata", {}).get("tags", [])
               or "NBVAL_SKIP" in source(c)]
    assert skipped == [], "every cell but the install cell runs in CI"


@pytest.mark.parametrize("path", [p for p in CHAPTERS if not p.name.startswith("00")],
                         ids=lambda p: p.name)
def test_chapter_has_its_parts(path):
    text = "\n".join(source(c) for c in cells(path, "markdown"))
    code = "\n".join(source(c) for c in cells(path, "code"))
    assert "by_scale(" in code, "sizes come from one parameters cell"
    assert "assert " in code
    for heading in ["## What we built", "## Exercises", "## Questionnaire"]:
        assert heading in text, f"{path.name} lacks '{heading}'"
    questions = re.findall(r"^\d+\. ", text.split("## Questionnaire")[1], flags=re.MULTILINE)
    assert len(questions) >= 10
    assert text.count("{exercise-start}") >= 2 and text.count("{solution-start}") >= 2


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]


def test_every_chapter_is_in_the_toc_and_nothing_else():
    files = [f for f in toc_files() if f.startswith("chapters/")]
    assert sorted(files) == sorted(f"chapters/{p.stem}" for p in CHAPTERS)


def test_no_orphan_pages():
    """Every page source is in the table of contents, and every entry there exists."""
    pages = {str(p.relative_to(ROOT).with_suffix("")) for p in
             [*ROOT.glob("*.md"), *ROOT.glob("chapters/*.md"), *CHAPTERS]} - {"README"}
    assert sorted(toc_files()) == sorted(pages)
    assert {"glossary", "bibliography"} <= pages


def requirements_from_pyproject() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return set(project["dependencies"]) | set(extras["book"]) | set(extras["test"])


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(pip) == requirements_from_pyproject()
    assert "python>=3.10" in env["dependencies"]


def test_floors_stay_at_or_below_colab():
    reqs = requirements_from_pyproject()
    for floor in ["pandas>=2.0", "torch>=2.1", "fastai>=2.7", "jupyter-book>=1.0.4,<2"]:
        assert floor in reqs


def test_no_movielens_file_is_tracked():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
    names = {Path(f).name for f in tracked.split()}
    assert not names & {"u.data", "u.item", "u.user", "ratings.csv", "ratings.dat", "movies.csv"}
    assert not any(f.endswith((".inter", ".zip")) for f in tracked.split())


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_install_cell_points_at_the_configured_repository(path):
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    assert f"git+{url}" in source(cells(path, "code")[0])

"""The project's own rules: notebooks stored clean, dependency lists in step, every chapter
in the table of contents with the parts a chapter must have."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

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


def test_chapter_files_are_numbered_in_toc_order():
    """The book numbers chapters by their place in _toc.yml; their file names must agree."""
    files = [Path(f).name for f in toc_files() if f.startswith("chapters/")]
    numbers = [int(m.group(1)) if (m := re.match(r"(\d\d)_", f)) else None for f in files]
    assert numbers == list(range(len(files))), (
        f"_toc.yml lists the chapters as {files}: number them 00, 01, ... in that order")


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


def platform_list(name: str) -> tuple[dict[str, str], dict[str, str]]:
    """tests/data/<name>.txt: ({package: version}, {"python": ..., "source": ..., ...}).

    A version the source gives only to the minor release (``==2.11.*``) is read as its
    first release (``2.11.0``): a floor at or below that is at or below every 2.11.x.
    """
    text = (ROOT / "tests" / "data" / f"{name}.txt").read_text()
    pins = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{name}.txt: {line!r} is not a pinned version"
            pins[req.name.lower()] = spec.version.replace(".*", ".0")
    facts = dict(re.findall(r"^# (\w+): (.+)$", text, flags=re.MULTILINE))
    facts["source"] = " ".join(re.findall(r"https://github\.com/\S+", text))
    facts["date"] = " ".join(re.findall(r"\b20\d\d-\d\d-\d\d\b", text))
    return pins, facts


PLATFORMS = ["colab", "kaggle"]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_platform_lists_name_their_source_date_and_python(platform):
    pins, facts = platform_list(platform)
    assert pins and facts["source"] and facts["date"], f"{platform}.txt: source and date"
    assert re.fullmatch(r"3\.\d+", facts["python"])


@pytest.mark.parametrize("platform", PLATFORMS)
def test_floors_stay_at_or_below_what_colab_and_kaggle_preinstall(platform):
    """pip never upgrades a preinstalled package when a first cell installs cfcourse."""
    pins, facts = platform_list(platform)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert SpecifierSet(project["requires-python"]).contains(facts["python"] + ".0")
    too_high = [req for req in requirements_from_pyproject()
                if Requirement(req).name.lower() in pins
                and not Requirement(req).specifier.contains(pins[Requirement(req).name.lower()])]
    assert too_high == [], f"above {platform}'s versions ({facts['date']}): {too_high}"


def test_colab_list_records_every_runtime_dependency():
    """Each package cfcourse needs has Colab's version on record, so the test above sees it."""
    pins, _ = platform_list("colab")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    missing = [d for d in project["dependencies"] if Requirement(d).name.lower() not in pins]
    assert missing == [], f"add Colab's version of {missing} to tests/data/colab.txt"


# APIs the course calls that need a newer release than a package's first: name -> (package,
# the first release that has it).
NEEDS = {"to_bf16": ("fastai", "2.7.13")}


@pytest.mark.parametrize("api", sorted(NEEDS))
def test_floor_admits_no_release_without_an_api_the_course_calls(api):
    package, first = NEEDS[api]
    used = [p.name for p in [*CHAPTERS, *(ROOT / "cfcourse").rglob("*.py")]
            if re.search(rf"\b{api}\b", p.read_text())]
    (req,) = [Requirement(r) for r in requirements_from_pyproject()
              if Requirement(r).name.lower() == package]
    floor = max((Version(s.version) for s in req.specifier if s.operator == ">="), default=None)
    if used:
        assert floor is not None and floor >= Version(first), (
            f"{used} call {api}, which {package} has from {first}: raise the floor {req}")


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

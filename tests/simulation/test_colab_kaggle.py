"""Every chapter as a learner runs it on Colab and on Kaggle, simulated on this machine.

``make colab-venv`` builds ``.venv-colab/env``: Colab's Python (3.13, from pyenv) holding
Colab's versions of the packages the course imports, as ``tests/data/colab.txt`` records
them, and no cfcourse. It also fills ``.venv-colab/wheelhouse`` with what first cells
install besides cfcourse (pyspark, at Colab's version). Each test executes one chapter of
``_toc.yml`` in a kernel of that environment with the chapter's first cell *active*: the
cell must install what the chapter needs itself, with pip barred from every index (it sees
only the cfcourse wheel built here and the wheelhouse), and must not change the version of
anything Colab preinstalls.

- Colab: ``google.colab`` is importable and imported at kernel start (a stub package), and
  ``CFCOURSE_DATA`` points at ML-100k in GroupLens's layout (it stands in for the download
  from GroupLens, which these machines cannot reach).
- Kaggle (the chapters that load MovieLens): ``KAGGLE_KERNEL_RUN_TYPE`` is set, and a
  Kaggle input tree in GroupLens's layout sits where ``CFCOURSE_KAGGLE_INPUT`` points.

Both files are written from the offline (RecBole) copy of ML-100k. A new chapter in
``_toc.yml`` is covered without touching this file. Run by ``make test``
(``pytest -m simulation tests/simulation``).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from nbclient import NotebookClient

from cfcourse.data import catalog, load_items, load_movielens, load_users, movielens, sources
from cfcourse.data.movielens import GENRES_100K

pytestmark = pytest.mark.simulation

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / ".venv-colab"
SIM_PYTHON = SIM / "env" / "bin" / "python"
WHEELHOUSE = SIM / "wheelhouse"
KERNEL = "cfcourse-simulated"
CELL_TIMEOUT_S = 600
# What a first cell may add to the environment; nothing already there may change version.
# implicit (chapter 11) and faiss-cpu (chapter 12) are not on Colab; threadpoolctl comes with
# implicit here, while real Colab already has it (scikit-learn's dependency).
FIRST_CELL_INSTALLS = {"cfcourse", "pyspark", "py4j", "implicit", "faiss-cpu", "threadpoolctl"}


# -- the chapters -----------------------------------------------------------------------------
def toc_chapters() -> list[str]:
    """The notebooks of _toc.yml, in its order (the only pages Colab can open)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [Path(f).name for f in files if (ROOT / f"{f}.ipynb").is_file()]


def chapter_code(name: str) -> str:
    nb = nbformat.read(ROOT / "chapters" / f"{name}.ipynb", as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def loads_movielens(name: str) -> bool:
    return bool(re.search(r"\b(load_movielens|load_items|load_users|locate)\(",
                          chapter_code(name)))


def shows_a_widget(name: str) -> bool:
    return bool(re.search(r"\b(cfcourse\.widgets|ipywidgets)\b", chapter_code(name)))


CHAPTERS = toc_chapters()
MOVIELENS_CHAPTERS = [c for c in CHAPTERS if loads_movielens(c)]


def test_every_notebook_page_of_the_toc_is_simulated():
    """The lists the tests below run over come from _toc.yml and cover the whole course."""
    on_disk = sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb"))
    assert sorted(CHAPTERS) == on_disk
    assert set(MOVIELENS_CHAPTERS) < set(CHAPTERS) and "00_how_to_use" in MOVIELENS_CHAPTERS


# -- the simulated environment ---------------------------------------------------------------
def _sim(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SIM_PYTHON), *args], cwd=cwd, capture_output=True, text=True,
                          check=False)


def _uninstall_first_cell_installs(cwd: Path) -> None:
    """Remove what first cells install, and the files pip leaves behind: numba's cache of the
    compiled kernel (``cache=True``) sits in cfcourse's ``__pycache__``, which pip does not
    own, and would otherwise keep ``import cfcourse`` working as a namespace package."""
    _sim("-m", "pip", "uninstall", "-y", "-q", *FIRST_CELL_INSTALLS, cwd=cwd)
    purelib = _sim("-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=cwd)
    leftover = Path(purelib.stdout.strip()) / "cfcourse"
    if purelib.returncode == 0 and leftover.is_dir():
        shutil.rmtree(leftover)


def _freeze(cwd: Path) -> dict[str, str]:
    listed = _sim("-m", "pip", "list", "--format=json", cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    return {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """cfcourse as a wheel, built from a copy of the sources (the repository stays clean)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "cfcourse", source / "cfcourse",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(source)], check=True)
    (built,) = out.glob("cfcourse-*.whl")
    return built


@pytest.fixture(scope="module")
def preinstalled(tmp_path_factory) -> dict[str, str]:
    """What the simulated Colab holds before any first cell runs: name -> version."""
    if not (SIM_PYTHON.is_file() and (WHEELHOUSE / ".filled").is_file()):
        pytest.fail("no simulated Colab environment: run `make colab-venv` first "
                    "(`make test` does).")
    cwd = tmp_path_factory.mktemp("freeze")
    _uninstall_first_cell_installs(cwd)
    return _freeze(cwd)


@pytest.fixture
def simulated(tmp_path, monkeypatch, wheel, preinstalled):
    """A clean simulated environment (no cfcourse) and the variables a notebook there sees."""
    workdir = tmp_path / "work"  # the notebook's folder: nothing named cfcourse in it
    workdir.mkdir()
    before = _sim("-c", "import cfcourse", cwd=workdir)
    assert before.returncode != 0, "the simulated environment must start without cfcourse"

    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("CFCOURSE_SOURCE", str(wheel))
    # pip sees the cfcourse wheel and the wheelhouse, and no index and no config file (this
    # machine's pip.conf names local indexes and a constraints file).
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(WHEELHOUSE))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.setenv("CFCOURSE_OFFLINE", "1")  # tests never download
    monkeypatch.setenv("CFCOURSE_SCALE", "ci")
    # On Colab `python3` is the kernel's Python (Spark starts its workers with it): the
    # environment's bin/ comes first, as in an activated virtual environment.
    monkeypatch.setenv("PATH", f"{SIM_PYTHON.parent}{os.pathsep}{os.environ['PATH']}")
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "KAGGLE_KERNEL_RUN_TYPE", "CFCOURSE_DATA",
                 "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_CONSTRAINT"):
        monkeypatch.delenv(name, raising=False)
    yield workdir
    after = _freeze(workdir)
    _uninstall_first_cell_installs(workdir)
    changed = {name: (version, after[name]) for name, version in preinstalled.items()
               if after.get(name) != version}
    added = set(after) - set(preinstalled) - FIRST_CELL_INSTALLS
    assert not changed and not added, (
        f"the first cell changed what Colab preinstalls: changed {changed}, added {added}")


def run_chapter(name: str, workdir: Path, checks: str, kernel_args: tuple[str, ...] = ()):
    """Execute chapters/<name>.ipynb, first cell included, then ``checks``; return the notebook.

    The kernel is the simulated environment's Python, started with ``kernel_args``.
    """
    nb = nbformat.read(ROOT / "chapters" / f"{name}.ipynb", as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "nbval-skip" in first.metadata.get("tags", []) and "%pip install" in first.source
    nb.cells.append(nbformat.v4.new_code_cell(checks))
    spec_dir = workdir.parent / "jupyter" / "kernels" / KERNEL  # found through JUPYTER_PATH
    spec_dir.mkdir(parents=True, exist_ok=True)
    argv = [str(SIM_PYTHON), "-m", "ipykernel_launcher", "-f", "{connection_file}", *kernel_args]
    (spec_dir / "kernel.json").write_text(json.dumps(
        {"argv": argv, "display_name": "simulated notebook", "language": "python"}))
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT_S, startup_timeout=120,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return nb


def outputs_text(nb) -> str:
    """Everything the cells showed; a print may arrive as several stream outputs, joined."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out["text"] if "text" in out
                         else "\n" + json.dumps(out.get("data", {})) + "\n")
    return "".join(parts)


def installed_from_wheel(platform: str) -> str:
    """Checks run in the kernel after the chapter: cfcourse came from the wheel, here."""
    return f"""
import cfcourse
from importlib.metadata import distribution
from cfcourse import env
assert ".venv-colab" in cfcourse.__file__, cfcourse.__file__
assert distribution("cfcourse").read_text("direct_url.json") is not None
assert (env.in_colab(), env.in_kaggle()) == {(platform == "colab", platform == "kaggle")}
print("cfcourse", cfcourse.__version__, "from", cfcourse.__file__)
"""


def found_via(origin: str) -> str:
    return f"""
from cfcourse.data import locate
where = locate("ml-100k")
assert where.origin == {origin!r} and where.layout == "100k", where
"""


def check_outputs(nb, name: str):
    text = outputs_text(nb)
    assert "cfcourse 0.1.0 from" in text and ".venv-colab" in text
    if shows_a_widget(name):
        assert "application/vnd.jupyter.widget-view+json" in text, f"{name}: no widget shown"


# -- MovieLens in GroupLens's layout ----------------------------------------------------------
def _offline_copy():
    where = sources._offline_copy(catalog.DATASETS["ml-100k"])
    if where is None:
        pytest.fail("the offline ML-100k copy is missing: pip install --no-deps recbole==1.2.1")
    return where


def write_grouplens_100k(folder: Path) -> Path:
    """ML-100k in GroupLens's original layout, written from the offline (RecBole) copy."""
    where = _offline_copy()
    folder.mkdir(parents=True)

    def read(name: str) -> pd.DataFrame:
        df = pd.read_csv(where.folder / f"ml-100k.{name}", sep="\t", dtype=str,
                         keep_default_na=False)
        df.columns = [c.split(":")[0] for c in df.columns]
        return df

    inter = read("inter")
    (folder / "u.data").write_text(
        "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in inter.itertuples(index=False)))
    lines = []
    for item, title, year, classes in read("item").itertuples(index=False):
        flags = "|".join("1" if g in classes.split() else "0" for g in GENRES_100K)
        if title == "unkonwn":  # item 267, "unknown" in GroupLens's file, has no date or URL
            lines.append(f"{item}|unknown||||{flags}")
            continue
        # RecBole split GroupLens's "Title (Year)" in two; "(V)", a video release, became
        # the year of item 1412. Join them back as GroupLens wrote them.
        date = f"01-Jan-{year}" if year.isdigit() else ""
        lines.append(f"{item}|{title} ({year})|{date}||http://example.org/{item}|{flags}")
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    users = read("user")
    (folder / "u.user").write_text(
        "".join("|".join(row) + "\n" for row in users.itertuples(index=False)))
    return folder


@pytest.fixture(scope="module")
def grouplens_100k(tmp_path_factory) -> Path:
    return write_grouplens_100k(tmp_path_factory.mktemp("grouplens") / "ml-100k")


@pytest.fixture
def kaggle_input(tmp_path, monkeypatch, grouplens_100k) -> Path:
    top = tmp_path / "kaggle" / "input"
    shutil.copytree(grouplens_100k, top / "someones-movielens-upload" / "ml-100k")
    monkeypatch.setenv("CFCOURSE_KAGGLE_INPUT", str(top))
    return top


def test_grouplens_layout_parses_like_the_offline_copy(kaggle_input):
    """The GroupLens parser reads the original files into the offline copy's frames."""
    where = sources.locate("ml-100k")
    assert where.origin == "kaggle" and where.layout == "100k"
    offline = _offline_copy()
    ratings = load_movielens("ml-100k")
    assert ratings.shape == (100_000, 5)
    stamp = functools.partial(movielens._stamp, offline)  # the in-memory caches' key
    pd.testing.assert_frame_equal(ratings.drop(columns="title"),
                                  movielens._ratings(offline, stamp("ratings")))
    pd.testing.assert_frame_equal(load_users("ml-100k"),
                                  movielens._users(offline, "ml-100k", stamp("users")))
    grouplens_items, offline_items = load_items("ml-100k"), movielens._items(
        offline, stamp("items"))
    as_text = {"genres": object}  # one layout builds genres as str, the other as object
    pd.testing.assert_frame_equal(grouplens_items.drop(columns="title").astype(as_text),
                                  offline_items.drop(columns="title").astype(as_text))
    # One known difference: the offline copy drops the "(V)" of video release 1412.
    differs = grouplens_items["title"] != offline_items["title"]
    assert grouplens_items.loc[differs, "item"].tolist() == [1412]
    assert grouplens_items.loc[differs, "title"].item().endswith("(1995) (V)")
    assert grouplens_items.loc[grouplens_items["item"] == 1, "title"].item() == "Toy Story (1995)"


# -- Colab ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_runs_on_colab(name, simulated, tmp_path, monkeypatch, grouplens_100k):
    stub = tmp_path / "stub" / "google" / "colab"  # google/ stays a namespace package
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('"""Stands in for Colab\'s google.colab in tests."""\n')
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "stub"))
    monkeypatch.setenv("CFCOURSE_DATA", str(grouplens_100k))  # stands in for GroupLens
    checks = installed_from_wheel("colab")
    if loads_movielens(name):
        checks += found_via("CFCOURSE_DATA")
    nb = run_chapter(name, simulated, checks,
                     kernel_args=("--IPKernelApp.exec_lines=['import google.colab']",))
    check_outputs(nb, name)


# -- Kaggle -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MOVIELENS_CHAPTERS)
def test_chapter_runs_on_kaggle_with_the_data_attached(name, simulated, kaggle_input,
                                                       monkeypatch):
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    checks = installed_from_wheel("kaggle") + found_via("kaggle") + """
assert "someones-movielens-upload" in str(where.folder), where
"""
    nb = run_chapter(name, simulated, checks)
    check_outputs(nb, name)
    if name == "00_how_to_use":
        assert "ML-100k found via: kaggle" in outputs_text(nb)


# -- Kaggle or a laptop without Java ----------------------------------------------------------
SPARK_CHAPTERS = [c for c in CHAPTERS if re.search(r"\bpyspark\b", chapter_code(c))]


def path_without(program: str, scratch: Path) -> str:
    """PATH with each folder that holds ``program`` replaced by links to all else in it."""
    folders = []
    for n, folder in enumerate(os.environ["PATH"].split(os.pathsep)):
        if folder and (Path(folder) / program).exists():
            shadow = scratch / f"path-{n}"
            shadow.mkdir(parents=True)
            for entry in Path(folder).iterdir():
                if entry.name != program:
                    (shadow / entry.name).symlink_to(entry)
            folder = str(shadow)
        folders.append(folder)
    return os.pathsep.join(folders)


@pytest.mark.parametrize("name", SPARK_CHAPTERS)
def test_chapter_without_java_says_what_it_skips(name, simulated, kaggle_input, tmp_path,
                                                 monkeypatch):
    """Spark needs Java: without it the chapter still runs, and says what it skipped."""
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", path_without("java", tmp_path / "no-java"))
    assert shutil.which("java") is None
    nb = run_chapter(name, simulated, installed_from_wheel("kaggle"))
    check_outputs(nb, name)
    said = outputs_text(nb).lower()
    assert "java" in said and "skip" in said, f"{name} does not say that Spark was skipped"

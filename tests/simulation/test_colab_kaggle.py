"""Chapters as a learner runs them on Colab and on Kaggle, simulated on this machine.

``make colab-venv`` builds ``.venv-colab``: only what Colab preinstalls that the course
needs (torch, fastai, pandas, ipywidgets, matplotlib, and ipykernel), and no cfcourse. Each
test executes a chapter in a kernel of that environment with the chapter's first cell
*active*: it must install cfcourse itself, from a wheel built here (``CFCOURSE_SOURCE``),
with pip barred from any index so that nothing but the wheel can be installed.

- Colab: ``google.colab`` is importable and imported at kernel start (a stub package).
- Kaggle: ``KAGGLE_KERNEL_RUN_TYPE`` is set, and a Kaggle input tree in GroupLens's own
  layout (``u.data``, ``u.item``, ``u.user``), written from the offline ML-100k copy, sits
  where ``CFCOURSE_KAGGLE_INPUT`` points.

Run by ``make test`` (``pytest -m simulation tests/simulation``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from cfcourse.data import catalog, load_items, load_movielens, load_users, movielens, sources
from cfcourse.data.movielens import GENRES_100K

pytestmark = pytest.mark.simulation

ROOT = Path(__file__).resolve().parents[2]
SIM_PYTHON = ROOT / ".venv-colab" / "bin" / "python"
KERNEL = "cfcourse-simulated"
CELL_TIMEOUT_S = 600


# -- the simulated environment ---------------------------------------------------------------
def _sim(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SIM_PYTHON), *args], cwd=cwd, capture_output=True, text=True,
                          check=False)


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


@pytest.fixture
def simulated(tmp_path, monkeypatch, wheel):
    """A clean simulated environment (no cfcourse) and a kernel spec that runs in it."""
    if not SIM_PYTHON.is_file():
        pytest.fail("no simulated Colab environment: run `make colab-venv` first "
                    "(`make test` does).")
    workdir = tmp_path / "work"  # the notebook's folder: nothing named cfcourse in it
    workdir.mkdir()
    _sim("-m", "pip", "uninstall", "-y", "-q", "cfcourse", cwd=workdir)
    before = _sim("-c", "import cfcourse", cwd=workdir)
    assert before.returncode != 0, "the simulated environment must start without cfcourse"

    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("CFCOURSE_SOURCE", str(wheel))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # only the wheel may be installed
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.setenv("CFCOURSE_OFFLINE", "1")  # tests never download
    monkeypatch.setenv("CFCOURSE_SCALE", "ci")
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "KAGGLE_KERNEL_RUN_TYPE", "CFCOURSE_DATA"):
        monkeypatch.delenv(name, raising=False)
    yield workdir
    _sim("-m", "pip", "uninstall", "-y", "-q", "cfcourse", cwd=workdir)


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
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or json.dumps(out.get("data", {})))
    return "\n".join(parts)


INSTALLED_FROM_WHEEL = """
import cfcourse, sys
from importlib.metadata import distribution
assert ".venv-colab" in cfcourse.__file__, cfcourse.__file__
assert distribution("cfcourse").read_text("direct_url.json") is not None
print("cfcourse", cfcourse.__version__, "from", cfcourse.__file__)
"""


# -- Colab ------------------------------------------------------------------------------------
def test_colab_first_cell_installs_and_chapter_1_runs(simulated, tmp_path, monkeypatch):
    stub = tmp_path / "stub" / "google" / "colab"  # google/ stays a namespace package
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('"""Stands in for Colab\'s google.colab in tests."""\n')
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "stub"))
    checks = INSTALLED_FROM_WHEEL + """
from cfcourse import env
assert env.in_colab() and not env.in_kaggle()
assert world.ratings.shape[0] > 0 and r2_pizzas >= 0.9
"""
    nb = run_chapter("01_pizza", simulated, checks,
                     kernel_args=("--IPKernelApp.exec_lines=['import google.colab']",))
    text = outputs_text(nb)
    assert "cfcourse 0.1.0 from" in text and ".venv-colab" in text
    assert "application/vnd.jupyter.widget-view+json" in text, "the pizza explorer displayed"
    assert "error" not in {o.get("output_type") for c in nb.cells for o in c.get("outputs", [])}


# -- Kaggle -----------------------------------------------------------------------------------
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


@pytest.fixture
def kaggle_input(tmp_path, monkeypatch) -> Path:
    top = tmp_path / "kaggle" / "input"
    write_grouplens_100k(top / "someones-movielens-upload" / "ml-100k")
    monkeypatch.setenv("CFCOURSE_KAGGLE_INPUT", str(top))
    return top


def test_grouplens_layout_parses_like_the_offline_copy(kaggle_input):
    """The GroupLens parser reads the original files into the offline copy's frames."""
    where = sources.locate("ml-100k")
    assert where.origin == "kaggle" and where.layout == "100k"
    offline = _offline_copy()
    ratings = load_movielens("ml-100k")
    assert ratings.shape == (100_000, 5)
    pd.testing.assert_frame_equal(ratings.drop(columns="title"), movielens._ratings(offline))
    pd.testing.assert_frame_equal(load_users("ml-100k"), movielens._users(offline, "ml-100k"))
    grouplens_items, offline_items = load_items("ml-100k"), movielens._items(offline)
    as_text = {"genres": object}  # one layout builds genres as str, the other as object
    pd.testing.assert_frame_equal(grouplens_items.drop(columns="title").astype(as_text),
                                  offline_items.drop(columns="title").astype(as_text))
    # One known difference: the offline copy drops the "(V)" of video release 1412.
    differs = grouplens_items["title"] != offline_items["title"]
    assert grouplens_items.loc[differs, "item"].tolist() == [1412]
    assert grouplens_items.loc[differs, "title"].item().endswith("(1995) (V)")
    assert grouplens_items.loc[grouplens_items["item"] == 1, "title"].item() == "Toy Story (1995)"


def test_kaggle_first_cell_installs_and_chapter_0_finds_the_data(simulated, kaggle_input,
                                                                  monkeypatch):
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    checks = INSTALLED_FROM_WHEEL + """
from cfcourse import env
from cfcourse.data import load_items, load_users, locate
assert env.in_kaggle() and not env.in_colab()
assert where.origin == "kaggle" and where.layout == "100k", where
assert where.folder.name == "ml-100k" and "someones-movielens-upload" in str(where.folder)
items, users = load_items("ml-100k"), load_users("ml-100k")
assert (len(items), len(users)) == (1682, 943)
assert items.set_index("item").loc[1, "title"] == "Toy Story (1995)"
assert ratings["title"].notna().all()
"""
    nb = run_chapter("00_how_to_use", simulated, checks)
    text = outputs_text(nb)
    assert "ML-100k found via: kaggle" in text
    assert "(100000, 5)" in text
    assert "cfcourse 0.1.0 from" in text and ".venv-colab" in text

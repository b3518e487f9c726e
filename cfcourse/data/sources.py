"""Finding a MovieLens release on disk, in order, before falling back to the network.

The lookup order (the first that works wins):

1. an explicit ``path`` (a folder or a ``.zip``);
2. the folder named by ``CFCOURSE_DATA``;
3. Kaggle's ``/kaggle/input``, searched by file name (never by a dataset slug);
   ``CFCOURSE_KAGGLE_INPUT`` names another folder to search instead (the test suite's
   simulated Kaggle uses it);
4. the local cache (``CFCOURSE_CACHE``, default ``~/.cache/cfcourse``);
5. a checksummed download from GroupLens into the cache (skipped when
   ``CFCOURSE_OFFLINE=1``);
6. for ``ml-100k`` only, the offline copy shipped inside the ``recbole`` wheel.

When none works, one :class:`DataNotFoundError` lists every place tried.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cfcourse.data import download as dl
from cfcourse.data.catalog import Dataset, get_dataset

__all__ = ["KAGGLE_INPUT", "DataNotFoundError", "Located", "cache_dir", "kaggle_input", "locate"]

KAGGLE_INPUT = Path("/kaggle/input")
_KAGGLE_MAX_DEPTH = 5
# Downloads that failed in this process: not retried on every load (each costs a timeout).
_failed_downloads: dict[str, str] = {}


class DataNotFoundError(FileNotFoundError):
    """No source of a MovieLens release worked; the message lists what was tried."""


@dataclass(frozen=True)
class Located:
    """Where a release was found: its folder, the file layout there, and how we got it."""

    folder: Path
    layout: str  # "100k" | "dat" | "csv" | "recbole"
    origin: str  # "path" | "CFCOURSE_DATA" | "kaggle" | "cache" | "download" | "offline copy"


def cache_dir() -> Path:
    """The cache folder: ``CFCOURSE_CACHE``, else ``$XDG_CACHE_HOME/cfcourse``, else ``~/.cache/cfcourse``."""
    if os.environ.get("CFCOURSE_CACHE"):
        return Path(os.environ["CFCOURSE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cfcourse"


def kaggle_input() -> Path:
    """Kaggle's input folder: ``CFCOURSE_KAGGLE_INPUT`` if set, else ``/kaggle/input``."""
    override = os.environ.get("CFCOURSE_KAGGLE_INPUT")
    return Path(override).expanduser() if override else KAGGLE_INPUT


def _holds(folder: Path, ds: Dataset) -> Path | None:
    """The folder among ``folder`` and its usual sub-folders that holds the ratings file."""
    for candidate in (folder, folder / ds.folder, folder / ds.name):
        if (candidate / ds.ratings_file).is_file():
            return candidate
    return None


def _from_zip(archive: Path, ds: Dataset, origin: str) -> Located:
    if ds.sha256 is not None and dl.sha256_of(archive) != ds.sha256:
        raise dl.DownloadError(
            f"{archive} does not match the SHA-256 recorded for {ds.name}; it is corrupt, "
            "partial or a different release. Delete it and try again."
        )
    target = cache_dir() / ds.name
    dl.safe_extract(archive, target)
    found = _holds(target, ds)
    if found is None:
        raise DataNotFoundError(f"{archive} holds no {ds.ratings_file}; it is not {ds.name}.")
    return Located(found, ds.layout, origin)


def _from_folder_or_zip(place: Path, ds: Dataset, origin: str) -> Located | None:
    if place.is_file() and zipfile.is_zipfile(place):
        return _from_zip(place, ds, origin)
    if place.is_dir():
        found = _holds(place, ds)
        if found is not None:
            return Located(found, ds.layout, origin)
        archive = place / f"{ds.name}.zip"
        if archive.is_file():
            return _from_zip(archive, ds, origin)
    return None


def _search_kaggle(ds: Dataset) -> Located | None:
    """Find the ratings file under /kaggle/input by name, whatever the dataset slug."""
    top = kaggle_input()
    if not top.is_dir():
        return None
    hits = []
    for root, dirs, files in os.walk(top):
        if len(Path(root).relative_to(top).parts) >= _KAGGLE_MAX_DEPTH:
            dirs.clear()
        if ds.ratings_file in files:
            hits.append(Path(root))
    named = [h for h in hits if ds.name.replace("ml-", "") in str(h).lower()]
    if named:
        return Located(min(named), ds.layout, "kaggle")
    low, high = ds.ratings_bytes
    sized = [h for h in hits if low <= (h / ds.ratings_file).stat().st_size <= high]
    return Located(min(sized), ds.layout, "kaggle") if sized else None


def _from_cache(ds: Dataset, tried: list[str]) -> Located | None:
    found = _holds(cache_dir() / ds.name, ds)
    if found is not None:
        return Located(found, ds.layout, "cache")
    archive = cache_dir() / f"{ds.name}.zip"
    if archive.is_file():
        try:
            return _from_zip(archive, ds, "cache")
        except (dl.DownloadError, zipfile.BadZipFile):
            warnings.warn(f"the cached {archive.name} is corrupt; fetching it again.", stacklevel=3)
            archive.unlink()
            tried.append(f"cache {cache_dir()}: {archive.name} was corrupt or partial (deleted)")
            return None
    tried.append(f"cache {cache_dir()}: empty")
    return None


def _offline_copy(ds: Dataset) -> Located | None:
    if ds.name != "ml-100k":
        return None
    spec = importlib.util.find_spec("recbole")  # finds the files; never imports recbole
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"
    if (folder / "ml-100k.inter").is_file():
        return Located(folder, "recbole", "offline copy")
    return None


def _advice(ds: Dataset) -> str:
    lines = [
        f"  - download {ds.url} yourself and set CFCOURSE_DATA to the folder holding it",
        "  - on Kaggle: attach a MovieLens dataset to the notebook (Add data)",
        "  - on Colab or a laptop: turn on internet access and run the cell again",
    ]
    if ds.name == "ml-100k":
        lines.append("  - offline: pip install --no-deps recbole==1.2.1 (it ships ML-100k)")
    return "\n".join(lines)


def locate(name: str = "ml-100k", path: str | os.PathLike | None = None) -> Located:
    """Find (or fetch) a MovieLens release, following the lookup order above."""
    ds = get_dataset(name)
    if path is not None:
        found = _from_folder_or_zip(Path(path).expanduser(), ds, "path")
        if found is None:
            raise DataNotFoundError(
                f"{path} holds no {ds.ratings_file} for {ds.name} (nor {ds.name}.zip). "
                "Pass the folder that contains it, or the zip archive itself."
            )
        return found
    tried = []
    env_dir = os.environ.get("CFCOURSE_DATA")
    if env_dir:
        found = _from_folder_or_zip(Path(env_dir).expanduser(), ds, "CFCOURSE_DATA")
        if found:
            return found
        tried.append(f"CFCOURSE_DATA={env_dir}: no {ds.ratings_file} or {ds.name}.zip there")
    else:
        tried.append("CFCOURSE_DATA: not set")
    found = _search_kaggle(ds)
    if found:
        return found
    tried.append(f"{kaggle_input()}: no folder holding {ds.ratings_file}")
    found = _from_cache(ds, tried)
    if found:
        return found
    if os.environ.get("CFCOURSE_OFFLINE"):
        tried.append(f"download of {ds.url}: skipped (CFCOURSE_OFFLINE is set)")
    elif ds.url in _failed_downloads:
        tried.append(f"download of {ds.url}: failed earlier ({_failed_downloads[ds.url]})")
    else:
        try:
            archive = dl.download(ds.url, cache_dir() / f"{ds.name}.zip", ds.sha256)
            return _from_zip(archive, ds, "download")
        except (OSError, zipfile.BadZipFile) as err:
            _failed_downloads[ds.url] = str(err)
            tried.append(f"download of {ds.url}: {err}")
    found = _offline_copy(ds)
    if found:
        return found
    if ds.name == "ml-100k":
        tried.append("offline copy: recbole==1.2.1 is not installed")
    raise DataNotFoundError(
        f"could not find MovieLens {ds.name}. Tried, in order:\n  - "
        + "\n  - ".join(tried)
        + "\nTo fix it, do one of:\n"
        + _advice(ds)
    )

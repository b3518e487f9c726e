"""A columnar cache of parsed ratings: one ``.npy`` file per column.

Parsing ML-25M's 678 MB ``ratings.csv`` takes tens of seconds; loading four
``.npy`` arrays takes about one. The cache lives under ``cache_dir()/parsed/`` and
records the size and modification time of the file it was parsed from, so a
changed source (stale cache) or a damaged array (truncated cache) is detected and
the source is parsed again. It is written to a temporary folder and renamed into
place, so an interrupted write never looks like a valid cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from cfcourse.data.sources import cache_dir

__all__ = ["columnar_folder", "read_columnar", "write_columnar"]

_FORMAT = 1


def columnar_folder(source: Path) -> Path:
    """Where the parsed copy of ``source`` lives (one folder per source file)."""
    key = hashlib.sha1(str(Path(source).resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "parsed" / f"{Path(source).parent.name}-{key}"


def _stamp(source: Path) -> dict:
    stat = Path(source).stat()
    return {"format": _FORMAT, "source": str(Path(source).resolve()), "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns}


def read_columnar(source: Path, dtypes: dict[str, str]) -> pd.DataFrame | None:
    """The cached frame for ``source``, or None when there is none or it is stale or damaged."""
    folder = columnar_folder(source)
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if {k: meta.get(k) for k in _stamp(source)} != _stamp(source):
        return None  # the source changed since it was parsed
    columns = {}
    for name, dtype in dtypes.items():
        try:
            array = np.load(folder / f"{name}.npy", allow_pickle=False)
        except (OSError, ValueError, EOFError):
            array = None
        if array is None or array.shape != (meta["rows"],) or array.dtype != np.dtype(dtype):
            warnings.warn(f"the parsed cache in {folder} is damaged; parsing {source} again.",
                          stacklevel=3)
            return None
        columns[name] = array
    return pd.DataFrame(columns)


def write_columnar(source: Path, df: pd.DataFrame) -> None:
    """Save ``df``'s columns as ``.npy`` files beside a stamp of ``source`` (atomically)."""
    folder = columnar_folder(source)
    staging = folder.with_name(folder.name + ".writing")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        for name in df.columns:
            np.save(staging / f"{name}.npy", df[name].to_numpy(), allow_pickle=False)
        (staging / "meta.json").write_text(json.dumps({**_stamp(source), "rows": len(df)}))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    except OSError as err:  # a read-only or full disk must not stop the loader
        shutil.rmtree(staging, ignore_errors=True)
        warnings.warn(f"could not cache the parsed ratings in {folder}: {err}", stacklevel=3)

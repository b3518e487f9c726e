"""The package's one save format: a ``.npz`` of plain arrays plus one JSON metadata string.

No pickle anywhere: arrays are written as NumPy's own format and read back with
``allow_pickle=False``, so loading a file never runs code. Writes are atomic (a temporary file,
then a rename), so a crash never leaves half a file under the final name. Everything that is
not such an archive gets one ``ValueError`` saying so.

>>> import tempfile, numpy as np, os
>>> path = os.path.join(tempfile.mkdtemp(), "m.npz")
>>> write_archive(path, {"format": "demo"}, {"w": np.arange(3)})
>>> read_archive(path)[0]
{'format': 'demo'}
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["read_archive", "write_archive"]

_META = "meta"


def write_archive(path: str | os.PathLike, meta: dict, arrays: dict[str, np.ndarray],
                  compress: bool = True) -> None:
    """Write ``meta`` (JSON-able) and ``arrays`` to ``path`` atomically."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: the folder {folder} does not exist. "
                                f"Create it first (os.makedirs({str(folder)!r})).")
    if _META in arrays:
        raise ValueError(f"an array may not be called {_META!r}: the name holds the metadata.")
    tmp = f"{os.fspath(path)}.part.npz"
    save = np.savez_compressed if compress else np.savez
    try:
        save(tmp, **{_META: np.array(json.dumps(meta))}, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_archive(path: str | os.PathLike, what: str = "cfcourse file",
                 fix: str = "write it again") -> tuple[dict, dict[str, np.ndarray]]:
    """``(meta, arrays)`` from a file :func:`write_archive` wrote.

    ``what`` and ``fix`` name the kind of file and the remedy in the error for anything else
    (a damaged file, a plain ``.npy``, an archive without metadata).
    """
    wrong = f"{path} is not a {what}, or it is damaged; {fix}."
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        raise ValueError(wrong) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):  # a plain .npy array
        raise ValueError(wrong)  # noqa: TRY004 -- one error for every foreign file
    with archive as data:
        try:
            meta = json.loads(str(data[_META]))
            arrays = {k: data[k] for k in data.files if k != _META}
        except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile):
            raise ValueError(f"{wrong} (no readable metadata)") from None
    return meta, arrays

"""Checksummed downloads and safe extraction.

A download is written to ``<dest>.part`` and renamed to ``dest`` only once it is
complete and its SHA-256 matches, so an interrupted or corrupted transfer never
leaves a file that looks finished. Extraction refuses any archive member whose
path would land outside the target folder (``../`` or absolute names).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
import warnings
import zipfile
from pathlib import Path

__all__ = ["DownloadError", "UnsafeArchiveError", "download", "safe_extract", "sha256_of"]

CHUNK = 1 << 20  # 1 MiB
TIMEOUT_S = 30

# Tests replace this with a fake that serves bytes from memory.
urlopen = urllib.request.urlopen


class DownloadError(OSError):
    """A download failed or produced a file that does not match its digest."""


class UnsafeArchiveError(ValueError):
    """An archive holds a member that would be written outside the target folder."""


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: str | os.PathLike, sha256: str | None, progress: bool = True) -> Path:
    """Fetch ``url`` into ``dest`` atomically and check its SHA-256.

    Parameters
    ----------
    url : str
        Where to fetch from.
    dest : path
        Final file name. Nothing is written there unless the whole file
        arrived and matches ``sha256``.
    sha256 : str or None
        Expected hex digest. ``None`` means no digest is recorded: the file is
        kept with a warning.
    progress : bool
        Show a tqdm progress bar.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    try:
        with urlopen(url, timeout=TIMEOUT_S) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name,
                      disable=not progress) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
        if total is not None and part.stat().st_size != total:
            raise DownloadError(
                f"{url} stopped after {part.stat().st_size:,} of {total:,} bytes; "
                "the connection was interrupted. Run the cell again to retry."
            )
        if sha256 is not None and digest.hexdigest() != sha256:
            raise DownloadError(
                f"{url} arrived with SHA-256 {digest.hexdigest()}, expected {sha256}; the file "
                "is corrupt or was changed upstream. Run the cell again to retry, or download "
                "it by hand and point CFCOURSE_DATA at it."
            )
        if sha256 is None:
            warnings.warn(f"no SHA-256 is recorded for {url}; only the zip CRCs will be checked.",
                          stacklevel=2)
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return dest


def _check_member(target: Path, name: str) -> None:
    resolved = (target / name).resolve()
    if os.path.isabs(name) or not resolved.is_relative_to(target):
        raise UnsafeArchiveError(
            f"archive member {name!r} would be written outside {target}; refusing to extract. "
            "The archive is not a genuine MovieLens release: delete it and download it again."
        )


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Extract a zip into ``target`` after checking every member's path and CRC.

    Extraction goes to a temporary sibling folder that is renamed into place
    when complete, so a failure leaves no half-extracted folder behind.
    """
    target = Path(target).resolve()
    staging = target.with_name(target.name + ".extracting")
    shutil.rmtree(staging, ignore_errors=True)
    damaged = "the archive is damaged or partial: delete it and download it again."
    try:
        try:
            zf = zipfile.ZipFile(archive)
        except zipfile.BadZipFile:
            raise zipfile.BadZipFile(
                f"{archive} is not a complete zip archive; {damaged}") from None
        with zf:
            for name in zf.namelist():
                _check_member(target, name)
            bad = zf.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(
                    f"{archive}: member {bad!r} fails its CRC check; {damaged}")
            zf.extractall(staging)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target

"""Shared fixtures: an isolated cache, and tiny MovieLens-shaped archives made on the fly.

Nothing here is MovieLens data: the files are written by the tests in the real layouts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import zipfile

import pytest

from cfcourse.data import catalog, sources

U_DATA = "1\t10\t4\t881250949\n1\t20\t3\t881250950\n2\t10\t5\t881250951\n3\t30\t1\t881250952\n"
U_ITEM = (
    "10|Alpha Film (1995)|01-Jan-1995||http://x|0|1|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    "20|Beta, The (1996)|01-Jan-1996||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n"
    "30|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
)
U_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n"


def make_zip(files: dict[str, str]) -> bytes:
    """A zip archive holding ``files`` (name -> text), built in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buffer.getvalue()


@pytest.fixture
def archive_100k() -> bytes:
    return make_zip({"ml-100k/u.data": U_DATA, "ml-100k/u.item": U_ITEM, "ml-100k/u.user": U_USER})


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test gets its own empty cache, no CFCOURSE_DATA, and no Kaggle folder."""
    monkeypatch.setenv("CFCOURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CFCOURSE_DATA", raising=False)
    monkeypatch.delenv("CFCOURSE_OFFLINE", raising=False)
    monkeypatch.delenv("CFCOURSE_KAGGLE_INPUT", raising=False)
    monkeypatch.setattr(sources, "KAGGLE_INPUT", tmp_path / "kaggle" / "input")
    monkeypatch.setattr(sources, "_failed_downloads", {})
    from cfcourse.data import movielens

    for cached in (movielens._ratings, movielens._items, movielens._users):
        cached.cache_clear()
    yield


class FakeResponse:
    """What urlopen returns: headers, read(n), and a context manager."""

    def __init__(self, payload: bytes, length: int | None = None, fail_after: int | None = None):
        self.payload, self.pos, self.fail_after = payload, 0, fail_after
        self.headers = {"Content-Length": str(len(payload) if length is None else length)}

    def read(self, n: int = -1) -> bytes:
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        n = len(self.payload) - self.pos if n < 0 else n
        if self.fail_after is not None:
            n = min(n, self.fail_after - self.pos)
        chunk = self.payload[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def serve(monkeypatch):
    """Serve bytes for any URL; returns the list of URLs asked for."""
    from cfcourse.data import download

    asked: list[str] = []

    def install(payload: bytes, **kwargs):
        def fake_urlopen(url, timeout=None):
            asked.append(url)
            return FakeResponse(payload, **kwargs)

        monkeypatch.setattr(download, "urlopen", fake_urlopen)
        return asked

    return install


@pytest.fixture
def no_network(monkeypatch):
    from cfcourse.data import download

    def refuse(url, timeout=None):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(download, "urlopen", refuse)


@pytest.fixture
def digest_for(monkeypatch):
    """Record ``payload``'s SHA-256 as the digest of dataset ``name`` for this test."""

    def record(name: str, payload: bytes) -> None:
        entry = dataclasses.replace(catalog.DATASETS[name],
                                    sha256=hashlib.sha256(payload).hexdigest())
        monkeypatch.setitem(catalog.DATASETS, name, entry)

    return record


@pytest.fixture
def no_offline_copy(monkeypatch):
    monkeypatch.setattr(sources, "_offline_copy", lambda ds: None)

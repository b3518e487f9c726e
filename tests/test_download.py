import hashlib
import zipfile

import pytest
from conftest import make_zip

from cfcourse.data.download import (
    DownloadError,
    UnsafeArchiveError,
    download,
    safe_extract,
    sha256_of,
)


def test_download_writes_file_when_digest_matches(tmp_path, serve):
    payload = b"x" * 3_000_000
    serve(payload)
    dest = download("https://example/a.zip", tmp_path / "a.zip",
                    hashlib.sha256(payload).hexdigest(), progress=False)
    assert dest.read_bytes() == payload
    assert sha256_of(dest) == hashlib.sha256(payload).hexdigest()
    assert not (tmp_path / "a.zip.part").exists()


def test_corrupted_download_leaves_nothing(tmp_path, serve):
    serve(b"not what was expected")
    with pytest.raises(DownloadError, match="SHA-256"):
        download("https://example/a.zip", tmp_path / "a.zip", "0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_short_download_is_reported_and_removed(tmp_path, serve):
    serve(b"abc", length=10)
    with pytest.raises(DownloadError, match="stopped after 3 of 10 bytes"):
        download("https://example/a.zip", tmp_path / "a.zip", None, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_leaves_nothing(tmp_path, serve):
    serve(b"y" * (3 << 20), fail_after=1 << 20)
    with pytest.raises(ConnectionResetError):
        download("https://example/a.zip", tmp_path / "a.zip", None, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_missing_digest_warns_but_keeps_file(tmp_path, serve):
    serve(b"payload")
    with pytest.warns(UserWarning, match="no SHA-256"):
        dest = download("https://example/a.zip", tmp_path / "a.zip", None, progress=False)
    assert dest.read_bytes() == b"payload"


@pytest.mark.parametrize("member", ["../evil.txt", "ml-100k/../../evil.txt", "/etc/evil.txt"])
def test_extraction_refuses_escaping_members(tmp_path, member):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(make_zip({"ml-100k/u.data": "1\t1\t1\t1\n", member: "gotcha"}))
    with pytest.raises(UnsafeArchiveError, match="outside"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_extraction_is_complete_or_absent(tmp_path):
    archive = tmp_path / "good.zip"
    archive.write_bytes(make_zip({"ml-100k/u.data": "1\t1\t1\t1\n"}))
    target = safe_extract(archive, tmp_path / "out")
    assert (target / "ml-100k" / "u.data").read_text() == "1\t1\t1\t1\n"
    assert not (tmp_path / "out.extracting").exists()


def test_truncated_archive_is_refused(tmp_path):
    archive = tmp_path / "cut.zip"
    archive.write_bytes(make_zip({"ml-100k/u.data": "1\t1\t1\t1\n" * 100})[:-40])
    with pytest.raises(zipfile.BadZipFile):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()

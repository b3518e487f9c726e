import importlib.util
import os

import pytest
from conftest import U_DATA, U_ITEM, U_USER

from cfcourse.data import DataNotFoundError, load_movielens, locate, sources


def write_100k(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text(U_DATA)
    (folder / "u.item").write_text(U_ITEM)
    (folder / "u.user").write_text(U_USER)
    return folder


def test_explicit_folder_wins(tmp_path, monkeypatch):
    write_100k(tmp_path / "mine")
    monkeypatch.setenv("CFCOURSE_DATA", str(write_100k(tmp_path / "other")))
    found = locate("ml-100k", tmp_path / "mine")
    assert found.origin == "path" and found.folder == tmp_path / "mine"


def test_explicit_zip_is_checked_and_extracted(tmp_path, archive_100k, digest_for):
    digest_for("ml-100k", archive_100k)
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(archive_100k)
    found = locate("ml-100k", archive)
    assert found.origin == "path" and (found.folder / "u.data").is_file()


def test_explicit_path_that_holds_nothing_is_an_error(tmp_path):
    with pytest.raises(DataNotFoundError, match="holds no u.data"):
        locate("ml-100k", tmp_path)


def test_cfcourse_data_folder_with_subfolder(tmp_path, monkeypatch):
    write_100k(tmp_path / "data" / "ml-100k")
    monkeypatch.setenv("CFCOURSE_DATA", str(tmp_path / "data"))
    found = locate("ml-100k")
    assert found.origin == "CFCOURSE_DATA" and found.folder.name == "ml-100k"


def test_kaggle_found_by_file_name_whatever_the_slug(tmp_path):
    write_100k(sources.KAGGLE_INPUT / "someones-movielens-upload" / "files" / "ml-100k")
    found = locate("ml-100k")
    assert found.origin == "kaggle" and (found.folder / "u.data").is_file()


def test_kaggle_input_can_be_pointed_elsewhere(tmp_path, monkeypatch):
    write_100k(tmp_path / "elsewhere" / "any-slug" / "ml-100k")
    monkeypatch.setenv("CFCOURSE_KAGGLE_INPUT", str(tmp_path / "elsewhere"))
    found = locate("ml-100k")
    assert found.origin == "kaggle"
    assert found.folder == tmp_path / "elsewhere" / "any-slug" / "ml-100k"
    assert sources.kaggle_input() == tmp_path / "elsewhere"
    monkeypatch.delenv("CFCOURSE_KAGGLE_INPUT")
    assert sources.kaggle_input() == sources.KAGGLE_INPUT


def test_kaggle_tells_latest_small_from_25m_by_size(tmp_path):
    small = sources.KAGGLE_INPUT / "ratings-upload"
    small.mkdir(parents=True)
    (small / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,1\n")
    assert locate("ml-latest-small").origin == "kaggle"
    with pytest.raises(DataNotFoundError):
        locate("ml-25m")  # a 40-byte ratings.csv is not ML-25M


def test_download_then_cache(archive_100k, serve, digest_for, no_offline_copy):
    digest_for("ml-100k", archive_100k)
    asked = serve(archive_100k)
    first = locate("ml-100k")
    second = locate("ml-100k")
    assert first.origin == "download" and second.origin == "cache"
    assert len(asked) == 1, "the second call is served from the cache"
    assert len(load_movielens("ml-100k")) == 4


def test_corrupt_cached_archive_is_fetched_again(archive_100k, serve, digest_for, no_offline_copy):
    digest_for("ml-100k", archive_100k)
    cache = sources.cache_dir()
    cache.mkdir(parents=True)
    (cache / "ml-100k.zip").write_bytes(archive_100k[:100])  # a partial earlier download
    asked = serve(archive_100k)
    with pytest.warns(UserWarning, match="corrupt"):
        found = locate("ml-100k")
    assert found.origin == "download" and len(asked) == 1


def test_nothing_works_lists_every_place(no_network, no_offline_copy, monkeypatch, tmp_path):
    monkeypatch.setenv("CFCOURSE_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError) as err:
        locate("ml-1m")
    message = str(err.value)
    for place in ["CFCOURSE_DATA=", "kaggle", "cache", "download of", "network is unreachable",
                  "set CFCOURSE_DATA", "Add data", "internet"]:
        assert place in message


def test_failed_download_is_not_retried_in_the_same_process(no_network, no_offline_copy):
    for _ in range(2):
        with pytest.raises(DataNotFoundError, match="download of"):
            locate("ml-1m")
    assert "ml-1m" in next(iter(sources._failed_downloads))


def test_offline_flag_skips_the_network(monkeypatch, no_offline_copy):
    monkeypatch.setenv("CFCOURSE_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match="skipped"):
        locate("ml-100k")


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="choose one of"):
        locate("ml-3m")


@pytest.mark.skipif(importlib.util.find_spec("recbole") is None, reason="offline copy absent")
def test_offline_copy_is_the_last_resort(no_network):
    found = locate("ml-100k")
    assert found.origin == "offline copy" and found.layout == "recbole"
    assert os.path.basename(found.folder) == "ml-100k"


def test_offline_copy_missing_is_named(no_network, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataNotFoundError, match="recbole==1.2.1 is not installed"):
        locate("ml-100k")


def test_extracted_zip_in_cfcourse_data(tmp_path, archive_100k, digest_for, monkeypatch):
    digest_for("ml-100k", archive_100k)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "ml-100k.zip").write_bytes(archive_100k)
    monkeypatch.setenv("CFCOURSE_DATA", str(tmp_path / "downloads"))
    assert locate("ml-100k").origin == "CFCOURSE_DATA"

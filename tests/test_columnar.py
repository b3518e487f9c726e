import json
import os

import numpy as np
import pytest

from cfcourse.data import load_ratings
from cfcourse.data.columnar import columnar_folder

CSV = "userId,movieId,rating,timestamp\n1,296,5.0,1147880044\n1,306,3.5,1147868817\n2,1,4.0,1\n"


@pytest.fixture
def release(tmp_path):
    folder = tmp_path / "ml-25m"
    folder.mkdir()
    (folder / "ratings.csv").write_text(CSV)
    return folder


def test_first_load_writes_the_cache_and_second_load_reads_it(release, monkeypatch):
    first = load_ratings("ml-25m", release)
    cached = columnar_folder(release / "ratings.csv")
    assert sorted(p.name for p in cached.iterdir()) == [
        "item.npy", "meta.json", "rating.npy", "timestamp.npy", "user.npy"]
    from cfcourse.data import movielens

    movielens._ratings.cache_clear()
    monkeypatch.setattr(movielens, "_parse_ratings", lambda *a: pytest.fail("parsed again"))
    again = load_ratings("ml-25m", release)
    assert again.equals(first) and again.dtypes.astype(str).tolist() == [
        "int32", "int32", "float32", "int64"]


def test_stale_cache_is_rebuilt(release):
    # no cache_clear: the same process must see the new file past both caches (in memory,
    # keyed on the file's stamp, and on disk)
    load_ratings("ml-25m", release)
    (release / "ratings.csv").write_text(CSV + "3,7,2.5,9\n")
    os.utime(release / "ratings.csv", ns=(1, 1))
    assert len(load_ratings("ml-25m", release)) == 4
    meta = json.loads((columnar_folder(release / "ratings.csv") / "meta.json").read_text())
    assert meta["rows"] == 4, "the disk cache was rebuilt"


def test_truncated_cache_is_detected_and_rebuilt(release):
    load_ratings("ml-25m", release)
    from cfcourse.data import movielens

    movielens._ratings.cache_clear()
    column = columnar_folder(release / "ratings.csv") / "rating.npy"
    column.write_bytes(column.read_bytes()[:-6])
    with pytest.warns(UserWarning, match="damaged"):
        back = load_ratings("ml-25m", release)
    assert np.allclose(back["rating"], [5.0, 3.5, 4.0])
    movielens._ratings.cache_clear()
    assert np.allclose(load_ratings("ml-25m", release)["rating"], [5.0, 3.5, 4.0])


def test_unwritable_cache_only_warns(release, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("CFCOURSE_CACHE", str(blocker))
    with pytest.warns(UserWarning, match="could not cache"):
        assert len(load_ratings("ml-25m", release)) == 3
    assert not list(tmp_path.glob("**/*.writing"))


def test_malformed_line_is_named_in_a_large_layout(release):
    (release / "ratings.csv").write_text(CSV + "4,9,oops,1\n")
    from cfcourse.data import MalformedFileError

    with pytest.raises(MalformedFileError, match="line 5"):
        load_ratings("ml-25m", release)
    assert not columnar_folder(release / "ratings.csv").exists()


def test_dat_layout_is_cached_too(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n2::661::3::978302109\n")
    assert load_ratings("ml-1m", tmp_path)["item"].tolist() == [1193, 661]
    assert (columnar_folder(tmp_path / "ratings.dat") / "meta.json").is_file()

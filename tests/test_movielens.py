import importlib.util
import os

import numpy as np
import pandas as pd
import pytest
from test_locate import write_100k

from cfcourse.data import (
    MalformedFileError,
    load_items,
    load_movielens,
    load_ratings,
    load_users,
    validate_ratings,
)

HAS_OFFLINE = importlib.util.find_spec("recbole") is not None


def test_grouplens_100k_layout(tmp_path):
    folder = write_100k(tmp_path / "ml-100k")
    ratings = load_movielens("ml-100k", folder)
    assert list(ratings.columns) == ["user", "item", "rating", "timestamp", "title"]
    assert ratings.dtypes.astype(str).tolist()[:4] == ["int32", "int32", "float32", "int64"]
    assert ratings["title"].tolist() == ["Alpha Film (1995)", "Beta, The (1996)",
                                         "Alpha Film (1995)", "unknown"]
    items = load_items("ml-100k", folder)
    assert items.loc[0, "genres"] == "Action|Comedy"
    assert items.loc[0, "year"] == 1995 and pd.isna(items.loc[2, "year"])
    users = load_users("ml-100k", folder)
    assert users.loc[1].tolist() == [2, 53, "F", "other", "94043"]


def test_dat_layout_with_users(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n2::661::3::978302109\n")
    (tmp_path / "movies.dat").write_bytes(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach "
        "(1996)::Animation|Children's|Musical\n".encode("latin-1"))
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    ratings = load_movielens("ml-1m", tmp_path)
    assert ratings["rating"].tolist() == [5.0, 3.0]
    assert ratings["title"].iloc[0] == "One Flew Over the Cuckoo's Nest (1975)"
    users = load_users("ml-1m", tmp_path)
    assert users["occupation"].tolist() == ["K-12 student", "self-employed"]
    assert users["age"].tolist() == [1, 56]


def test_csv_layout_without_users(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,296,5.0,1147880044\n"
                                          "1,306,3.5,1147868817\n")
    (tmp_path / "movies.csv").write_text('movieId,title,genres\n296,Pulp Fiction (1994),'
                                         'Comedy|Crime\n306,"Three Colors: Red (Trois couleurs:'
                                         ' Rouge) (1994)",Drama\n')
    ratings = load_movielens("ml-25m", tmp_path)
    assert ratings["rating"].tolist() == [5.0, 3.5]
    assert load_items("ml-25m", tmp_path)["year"].tolist() == [1994, 1994]
    with pytest.raises(ValueError, match="no user attributes"):
        load_users("ml-25m", tmp_path)


@pytest.mark.parametrize("line,name", [
    ("1\t10\tfour\t881250949", "a word"),
    ("1\t10\t4", "a missing field"),
    ("1\t10\t\t881250949", "an empty rating"),
])
def test_malformed_line_is_named(tmp_path, line, name):
    folder = write_100k(tmp_path / "ml-100k")
    (folder / "u.data").write_text("1\t10\t4\t881250949\n" + line + "\n2\t20\t3\t881250950\n")
    with pytest.raises(MalformedFileError, match="line 2"):
        load_ratings("ml-100k", folder)


def test_out_of_range_rating_is_named(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,1\n1,2,7.0,2\n")
    with pytest.raises(MalformedFileError, match="line 3: rating 7.0"):
        load_ratings("ml-latest-small", tmp_path)


def test_loaders_return_copies(tmp_path):
    folder = write_100k(tmp_path / "ml-100k")
    first = load_movielens("ml-100k", folder)
    first["rating"] = 0.0
    assert load_movielens("ml-100k", folder)["rating"].max() == 5.0


def _rewrite(path, text, bump_ns=1_000_000_000):
    """Write ``text`` to ``path`` and move its mtime on, as an editor saving it later would."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + bump_ns, before + bump_ns))


def test_a_rewritten_ratings_file_is_read_again_in_the_same_process(tmp_path):
    from cfcourse.data import movielens

    folder = write_100k(tmp_path / "ml-100k")
    assert load_ratings("ml-100k", folder)["rating"].tolist()[:1] == [4.0]
    load_ratings("ml-100k", folder)
    assert movielens._ratings.cache_info().hits >= 1, "an unchanged file comes from memory"
    _rewrite(folder / "u.data", "1\t10\t2\t881250949\n2\t20\t1\t881250950\n")
    assert load_ratings("ml-100k", folder)["rating"].tolist() == [2.0, 1.0]
    assert load_movielens("ml-100k", folder)["rating"].tolist() == [2.0, 1.0]


def test_same_size_rewrite_is_seen_through_its_modification_time(tmp_path):
    # a one-digit edit keeps the size: only mtime_ns tells the caches that it changed
    folder = write_100k(tmp_path / "ml-100k")
    text = (folder / "u.data").read_text()
    first = load_ratings("ml-100k", folder)
    edited = text.replace("\t4\t", "\t3\t", 1)
    assert edited != text and len(edited) == len(text)
    _rewrite(folder / "u.data", edited)
    assert load_ratings("ml-100k", folder)["rating"].iloc[0] == 3.0 != first["rating"].iloc[0]


def test_rewritten_film_and_user_files_are_read_again(tmp_path):
    folder = write_100k(tmp_path / "ml-100k")
    assert load_items("ml-100k", folder).loc[0, "title"] == "Alpha Film (1995)"
    before = load_users("ml-100k", folder).loc[1, "age"]
    _rewrite(folder / "u.item", (folder / "u.item").read_text().replace("Alpha", "Gamma"))
    _rewrite(folder / "u.user", (folder / "u.user").read_text().replace(f"|{before}|", "|54|"))
    assert load_items("ml-100k", folder).loc[0, "title"] == "Gamma Film (1995)"
    assert load_movielens("ml-100k", folder)["title"].iloc[0] == "Gamma Film (1995)"
    assert load_users("ml-100k", folder).loc[1, "age"] == 54 != before


def test_a_rewritten_csv_is_read_again_past_both_caches(tmp_path):
    # ratings.csv also has a parsed copy on disk (cfcourse.data.columnar); both must notice
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,296,5.0,1147880044\n")
    assert load_ratings("ml-latest-small", tmp_path)["rating"].tolist() == [5.0]
    _rewrite(path, "userId,movieId,rating,timestamp\n1,296,1.5,1147880044\n2,1,3.0,1\n")
    assert load_ratings("ml-latest-small", tmp_path)["rating"].tolist() == [1.5, 3.0]


@pytest.mark.skipif(not HAS_OFFLINE, reason="offline ML-100k copy not installed")
def test_real_ml100k_offline_copy(no_network):
    ratings = load_movielens("ml-100k")
    assert ratings.shape == (100_000, 5)
    assert ratings["user"].nunique() == 943 and ratings["item"].nunique() == 1682
    assert set(np.unique(ratings["rating"])) == {1.0, 2.0, 3.0, 4.0, 5.0}
    items = load_items("ml-100k").set_index("item")
    assert items.loc[1, "title"] == "Toy Story (1995)"
    assert items.loc[267, "title"] == "unknown"
    assert items.loc[1, "genres"] == "Animation|Children's|Comedy"
    users = load_users("ml-100k")
    assert len(users) == 943 and users.loc[0].tolist() == [1, 24, "M", "technician", "85711"]


# -- validate_ratings' range (cfcourse.data.validate) -------------------------------------------
FRAME = pd.DataFrame({"user": [1, 2], "item": [10, 20], "rating": [4.0, 2.5]})


def test_a_reversed_rating_range_is_named_not_blamed_on_the_ratings():
    with pytest.raises(ValueError, match=r"rating_range=\(5, 1\) is reversed.*pass \(1, 5\)"):
        validate_ratings(FRAME, rating_range=(5, 1))
    validate_ratings(FRAME, rating_range=(1, 5))  # the same numbers the right way round pass
    validate_ratings(FRAME.assign(rating=3.0), rating_range=(3, 3))  # a one-value scale is fine


@pytest.mark.parametrize("bad", [(1,), (1, 2, 3), "1-5", (1, float("nan"))])
def test_a_rating_range_that_is_not_two_numbers_is_refused(bad):
    with pytest.raises(ValueError, match=r"rating_range.*(pair|NaN)"):
        validate_ratings(FRAME, rating_range=bad)


def test_a_rating_outside_a_good_range_is_still_named():
    with pytest.raises(ValueError, match=r"rating 4.0 at row 0 is outside 0.5-3"):
        validate_ratings(FRAME, rating_range=(0.5, 3))

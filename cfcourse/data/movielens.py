"""MovieLens loaders: one tidy frame per table, whatever layout the release uses.

Every loader returns the course's column names::

    ratings: user, item, rating, timestamp, title
    items:   item, title, year, genres        (genres as "Action|Comedy")
    users:   user, age, gender, occupation, zip

Ids are the integers of the source; titles read "Title (Year)" as GroupLens
writes them. A damaged file raises :class:`MalformedFileError` naming the line.
"""

from __future__ import annotations

import functools
import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from cfcourse.data.columnar import read_columnar, write_columnar
from cfcourse.data.sources import DataNotFoundError, Located, locate

__all__ = ["MalformedFileError", "load_items", "load_movielens", "load_ratings", "load_users"]

RATING_DTYPES = {"user": "int32", "item": "int32", "rating": "float32", "timestamp": "int64"}
GENRES_100K = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]
OCCUPATIONS_1M = [
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
]
_YEAR = re.compile(r"\((\d{4})\)\s*$")


class MalformedFileError(ValueError):
    """A MovieLens file has a line that does not parse; the message names it."""


def _first_bad_line(raw: bytes, sep: str, n_fields: int, header: bool) -> tuple[int, str]:
    """Line number (1-based) and text of the first line that is not n numeric fields."""
    lines = raw.decode("latin-1").splitlines()
    for number, line in enumerate(lines[1:] if header else lines, start=2 if header else 1):
        fields = line.split(sep)
        try:
            if len(fields) != n_fields:
                raise ValueError
            for field in fields:
                if not np.isfinite(float(field)):
                    raise ValueError
        except ValueError:
            return number, line
    return 0, ""


def _parse_ratings(source: Path, sep: str, header: bool) -> pd.DataFrame:
    """Parse a ratings file with explicit dtypes; a bad line raises naming its number."""
    try:
        if sep == "::":  # the C parser takes one-character separators only
            handle = io.BytesIO(source.read_bytes().replace(b"::", b"\t"))
        else:
            handle = source
        df = pd.read_csv(handle, sep="\t" if sep == "::" else sep, header=0 if header else None,
                         names=list(RATING_DTYPES), dtype=RATING_DTYPES, engine="c")
        if df["rating"].isna().any():
            raise ValueError("missing rating")
    except (ValueError, pd.errors.ParserError):
        number, line = _first_bad_line(source.read_bytes(), sep, 4, header)
        raise MalformedFileError(
            f"{source}, line {number}: {line[:80]!r} is not 'user{sep}item{sep}rating{sep}"
            "timestamp' with numbers. The file is damaged or in another format: delete it "
            "(and the cache folder) and let the loader fetch it again."
        ) from None
    if len(df) == 0:
        raise MalformedFileError(
            f"{source} holds no ratings: it is empty or was cut short. Delete it (and the cache "
            "folder) and let the loader fetch it again."
        )
    bad = ~df["rating"].between(0.5, 5.0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise MalformedFileError(
            f"{source}, line {row + 1 + header}: rating {df['rating'].iat[row]} is outside "
            "0.5-5, so this is not a MovieLens ratings file. Check the path you gave."
        )
    return df


def _need(path: Path) -> Path:
    """``path`` itself, or a clear error when a release folder lacks one of its files."""
    if not path.is_file():
        raise DataNotFoundError(
            f"{path.parent} holds the ratings but no {path.name}: this copy of the release is "
            "incomplete. Copy the whole folder from the original archive, or delete it and let "
            "the loader fetch the release again."
        )
    return path


def _read_u_item(path: Path) -> pd.DataFrame:
    """ML-100k's ``u.item``: 24 ``|``-separated fields, the last 19 genre flags."""
    try:
        raw = pd.read_csv(path, sep="|", header=None, encoding="latin-1")
    except (ValueError, pd.errors.ParserError):
        raw = None
    if raw is None or raw.shape[1] != 24:
        raise MalformedFileError(
            f"{path} is not ML-100k's u.item (24 '|'-separated fields: item|title|release "
            "date|video release date|IMDb URL|19 genre flags). The file is damaged or in "
            "another format: delete it and let the loader fetch the release again."
        )
    return raw


def _read_recbole(path: Path) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated with typed headers such as ``user_id:token``."""
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    df.columns = [c.split(":")[0] for c in df.columns]
    return df


def _read_double_colon(path: Path) -> pd.DataFrame:
    """A small ``::``-separated file (movies.dat, users.dat), columns numbered from 0."""
    text = path.read_bytes().decode("latin-1")
    return pd.DataFrame([line.split("::") for line in text.splitlines() if line])


# The file each table is read from, per layout (users: only ml-100k and ml-1m have them).
_FILES = {
    "ratings": {"recbole": "ml-100k.inter", "100k": "u.data", "dat": "ratings.dat",
                "csv": "ratings.csv"},
    "items": {"recbole": "ml-100k.item", "100k": "u.item", "dat": "movies.dat",
              "csv": "movies.csv"},
    "users": {"recbole": "ml-100k.user", "100k": "u.user", "dat": "users.dat"},
}


def _stamp(where: Located, table: str) -> tuple:
    """``(path, size, mtime_ns)`` of the file ``table`` is read from: the in-memory caches'
    key, so a file rewritten on disk is read again in the same process (a missing file
    stamps as ``(path, None, None)`` and the loader then says what is missing)."""
    name = _FILES[table].get(where.layout)
    if name is None:
        return (None, None, None)
    path = where.folder / name
    try:
        stat = path.stat()
    except OSError:
        return (str(path), None, None)
    return (str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _ratings(where: Located, stamp: tuple) -> pd.DataFrame:
    """The ratings of ``where``; ``stamp`` (:func:`_stamp`) only keys the cache."""
    if where.layout == "recbole":
        df = _read_recbole(where.folder / "ml-100k.inter")
        df.columns = list(RATING_DTYPES)
        return df.astype(RATING_DTYPES)
    sep, header = {"100k": ("\t", False), "dat": ("::", False), "csv": (",", True)}[where.layout]
    source = where.folder / _FILES["ratings"][where.layout]
    if where.layout == "100k":  # small: parsing is as fast as reading a cache
        return _parse_ratings(source, sep, header)
    cached = read_columnar(source, RATING_DTYPES)
    if cached is not None:
        return cached
    df = _parse_ratings(source, sep, header)
    write_columnar(source, df)
    return df


def _with_year(title: pd.Series, year: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"title": title.str.strip(), "year": pd.to_numeric(year, errors="coerce")
                         .astype("Int64")})


@functools.lru_cache(maxsize=8)
def _items(where: Located, stamp: tuple) -> pd.DataFrame:
    """The films of ``where``; ``stamp`` (:func:`_stamp`) only keys the cache."""
    folder = where.folder
    if where.layout == "recbole":
        raw = _read_recbole(folder / "ml-100k.item")
        # RecBole splits "Title (Year)" in two and spells item 267's "unknown" as "unkonwn".
        raw = raw.replace("unkonwn", "unknown")
        year = raw["release_year"].where(raw["release_year"].str.fullmatch(r"\d{4}"))
        title = raw["movie_title"].where(year.isna(), raw["movie_title"] + " (" + year + ")")
        genres = raw["class"].str.split().str.join("|")
        items = pd.concat([raw["item_id"].astype("int32").rename("item"),
                           _with_year(title, year), genres.rename("genres")], axis=1)
        return items
    if where.layout == "100k":
        raw = _read_u_item(_need(folder / "u.item"))
        flags = raw.iloc[:, 5:24].to_numpy().astype(bool)
        genres = ["|".join(g for g, on in zip(GENRES_100K, row) if on) for row in flags]
        title = raw[1].astype(str)
    elif where.layout == "dat":
        raw = _read_double_colon(_need(folder / "movies.dat"))
        title, genres = raw[1], raw[2].tolist()
    else:
        raw = pd.read_csv(_need(folder / "movies.csv"), dtype=str, keep_default_na=False)
        raw.columns = [0, 1, 2]
        title, genres = raw[1], raw[2].tolist()
    year = title.str.extract(_YEAR, expand=False)
    items = _with_year(title, year)
    items.insert(0, "item", raw[0].astype("int32"))
    items["genres"] = genres
    return items


def _users_frame(user, age, gender, occupation, zip_code) -> pd.DataFrame:
    return pd.DataFrame({"user": pd.Series(user).astype("int32"),
                         "age": pd.Series(age).astype("int32"),
                         "gender": pd.Series(gender).astype(str),
                         "occupation": pd.Series(occupation).astype(str),
                         "zip": pd.Series(zip_code).astype(str)})


@functools.lru_cache(maxsize=8)
def _users(where: Located, name: str, stamp: tuple) -> pd.DataFrame:
    """The users of ``where``; ``stamp`` (:func:`_stamp`) only keys the cache."""
    folder = where.folder
    if where.layout == "recbole":
        r = _read_recbole(folder / "ml-100k.user")
        return _users_frame(r["user_id"], r["age"], r["gender"], r["occupation"], r["zip_code"])
    if where.layout == "100k":
        r = pd.read_csv(_need(folder / "u.user"), sep="|", header=None, dtype=str)
        return _users_frame(r[0], r[1], r[2], r[3], r[4])
    if where.layout == "dat" and (folder / "users.dat").is_file():
        r = _read_double_colon(folder / "users.dat")
        occupation = r[3].astype(int).map(dict(enumerate(OCCUPATIONS_1M)))
        return _users_frame(r[0], r[2], r[1], occupation, r[4])
    raise ValueError(
        f"{name} has no user attributes (only ml-100k and ml-1m ship age, gender and "
        "occupation). Use load_users('ml-100k') or load_users('ml-1m')."
    )


def load_ratings(name: str = "ml-100k", path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The ratings alone: ``user``, ``item`` (int32), ``rating`` (float32), ``timestamp`` (int64)."""
    where = locate(name, path)
    return _ratings(where, _stamp(where, "ratings")).copy()


def load_movielens(name: str = "ml-100k", path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Load a MovieLens release as one frame of ratings with film titles.

    Parameters
    ----------
    name : str
        ``"ml-100k"`` (default), ``"ml-latest-small"``, ``"ml-1m"``, ``"ml-10m"`` or ``"ml-25m"``.
    path : path, optional
        A folder holding the release's files, or its zip. Without it the
        loader searches ``CFCOURSE_DATA``, Kaggle's inputs, the cache, GroupLens
        and (ml-100k only) an installed offline copy, in that order.

    Returns
    -------
    pandas.DataFrame
        Columns ``user``, ``item``, ``rating``, ``timestamp``, ``title``.

    Examples
    --------
    >>> ratings = load_movielens("ml-100k")  # doctest: +SKIP
    >>> ratings.shape  # doctest: +SKIP
    (100000, 5)
    """
    where = locate(name, path)
    ratings = _ratings(where, _stamp(where, "ratings"))
    titles = _items(where, _stamp(where, "items")).set_index("item")["title"]
    out = ratings.copy()
    out["title"] = titles.reindex(out["item"].to_numpy()).to_numpy()
    return out


def load_items(name: str = "ml-100k", path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Film metadata: ``item``, ``title`` ("Title (Year)"), ``year`` (nullable int), ``genres``."""
    where = locate(name, path)
    return _items(where, _stamp(where, "items")).copy()


def load_users(name: str = "ml-100k", path: str | os.PathLike | None = None) -> pd.DataFrame:
    """User attributes: ``user``, ``age``, ``gender``, ``occupation``, ``zip`` (ml-100k, ml-1m)."""
    where = locate(name, path)
    return _users(where, name, _stamp(where, "users")).copy()

"""Bad input, audited: one row per mistake a learner can make, and the error it must get.

Each :class:`Case` names a call, the exception type, and two patterns its message must
match: one naming the *problem* (the value, the column, the file) and one naming the *fix*.
After every call, nothing half-written may remain anywhere under the test's folder (no
``*.part`` download, no ``*.extracting`` folder), and a case may list more paths that must
not exist. To audit a new public function, append rows to ``CASES``.

Nothing here touches the network: downloads are served from memory or refused.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import U_DATA, U_ITEM, U_USER, FakeResponse, make_zip

import cfcourse
from cfcourse import env
from cfcourse.data import (
    DataNotFoundError,
    DownloadError,
    IdIndex,
    MalformedFileError,
    UnsafeArchiveError,
    catalog,
    download,
    favourite_pizzas,
    load_items,
    load_movielens,
    load_ratings,
    load_users,
    locate,
    make_pizza_world,
    random_split,
    sources,
    validate_ratings,
)
from cfcourse.fastai_glue import collab_dataloaders
from cfcourse.metrics import linear_recovery_r2, rmse
from cfcourse.models.dot_product import DotProduct
from cfcourse.train import fit_plain

GOOD = pd.DataFrame({"user": [1, 1, 2, 3], "item": [10, 20, 10, 30],
                     "rating": [4.0, 3.0, 5.0, 1.0]})


class Ctx:
    """What a case may set up: a fresh folder, the isolated cache, served downloads."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch):
        self.tmp, self._mp = tmp, monkeypatch
        self.cache = sources.cache_dir()

    def folder(self, name: str, files: dict[str, str | bytes]) -> Path:
        """A folder under the test's temp dir holding ``files`` (name -> text or bytes)."""
        where = self.tmp / name
        where.mkdir(parents=True, exist_ok=True)
        for file, content in files.items():
            path = where / file
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        return where

    def serve(self, payload: bytes, **kwargs) -> None:
        """Every URL answers with ``payload`` (see conftest.FakeResponse for ``kwargs``)."""
        self._mp.setattr(download, "urlopen",
                         lambda url, timeout=None: FakeResponse(payload, **kwargs))

    def digest(self, name: str, payload: bytes) -> None:
        """Record ``payload``'s SHA-256 as dataset ``name``'s, as if it were the release."""
        entry = dataclasses.replace(catalog.DATASETS[name],
                                    sha256=hashlib.sha256(payload).hexdigest())
        self._mp.setitem(catalog.DATASETS, name, entry)

    def no_offline_copy(self) -> None:
        self._mp.setattr(sources, "_offline_copy", lambda ds: None)

    def setenv(self, name: str, value: str) -> None:
        self._mp.setenv(name, value)


@dataclass(frozen=True)
class Case:
    id: str
    call: Callable[[Ctx], object]
    error: type[BaseException]
    problem: str  # regex the message must match: what is wrong
    fix: str  # regex the message must match: what to do
    absent: tuple[str, ...] = ()  # paths (relative to the test's folder) that must not exist
    warns: str | None = None  # a UserWarning the call must also give, if any


# -- helpers for the cases -------------------------------------------------------------------
def archive_100k(extra: dict[str, str] | None = None) -> bytes:
    return make_zip({"ml-100k/u.data": U_DATA, "ml-100k/u.item": U_ITEM,
                     "ml-100k/u.user": U_USER, **(extra or {})})


def with_crc_error(payload: bytes) -> bytes:
    """The archive with one byte of a stored member's data flipped: its CRC no longer holds."""
    buffer = bytearray(payload)
    start = payload.index(b"1\t10\t4")  # u.data's first line, stored uncompressed
    buffer[start] ^= 0x01
    return bytes(buffer)


def load_explicit_zip(c: Ctx, payload: bytes, record_digest: bool = True):
    if record_digest:
        c.digest("ml-100k", payload)
    archive = c.folder("downloads", {"ml-100k.zip": payload}) / "ml-100k.zip"
    return load_movielens("ml-100k", path=archive)


def load_from_cache_zip(c: Ctx, payload: bytes):
    c.no_offline_copy()
    c.cache.mkdir(parents=True, exist_ok=True)
    (c.cache / "ml-100k.zip").write_bytes(payload)
    return load_movielens("ml-100k")


def download_into_cache(c: Ctx, payload: bytes, **serve_kwargs):
    c.no_offline_copy()
    c.digest("ml-100k", archive_100k())
    c.serve(payload, **serve_kwargs)
    return load_movielens("ml-100k")


def download_corrupt(c: Ctx):
    c.serve(b"not the archive you asked for")
    return download.download("https://example.org/ml-100k.zip", c.cache / "ml-100k.zip",
                             "0" * 64, progress=False)


def fit_plain_on(x, y, **kwargs):
    return fit_plain(DotProduct(4, 4, n_factors=2), x, y, **kwargs)


PAIRS = torch.tensor([[0, 0], [1, 1], [2, 3]])
STARS = torch.tensor([4.0, 3.0, 5.0])


@functools.lru_cache(maxsize=1)
def tiny_model():
    """A recommender fitted in a blink on a small seeded frame."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user": rng.integers(1, 20, 300), "item": rng.integers(1, 30, 300),
                          "rating": rng.integers(1, 6, 300).astype(float)})
    return cfcourse.fit(frame.drop_duplicates(["user", "item"]), epochs=8, bs=64, n_factors=4)


UNKNOWN_ID_FIX = r"drop those rows|fallback"
PART_FILES = ("cache/ml-100k.zip", "cache/ml-100k.zip.part", "cache/ml-100k.extracting",
              "cache/ml-100k")

CASES = [
    # -- ratings frames: validate_ratings, the one check every entry point uses -------------
    Case("frame-wrong-column-names",
         lambda c: validate_ratings(GOOD.rename(columns={"user": "userId", "item": "movieId"})),
         ValueError, r"lacks column\(s\) \['user', 'item'\]",
         r"df\.rename\(columns=\{'userId': 'user', 'movieId': 'item'\}\)"),
    Case("frame-unrelated-column-names",
         lambda c: validate_ratings(GOOD.set_axis(["a", "b", "c"], axis=1)),
         ValueError, r"lacks column.*the frame has \['a', 'b', 'c'\]", r"df\.rename"),
    Case("frame-not-a-dataframe", lambda c: validate_ratings([(1, 10, 4.0)]),
         TypeError, r"got list", r"pd\.DataFrame\("),
    Case("frame-strings-in-rating",
         lambda c: validate_ratings(GOOD.assign(rating=["4", "three", "5", "1"])),
         ValueError, r"'rating' holds \w+ values \(e\.g\. '4'\), not numbers",
         r"pd\.to_numeric"),
    Case("frame-nan-rating", lambda c: validate_ratings(GOOD.assign(rating=[4.0, np.nan, 5, 1])),
         ValueError, r"1 NaN value\(s\), first at row 1", r"drop or fill"),
    Case("frame-rating-out-of-range",
         lambda c: validate_ratings(GOOD.assign(rating=[4.0, 9.0, 5.0, 0.0])),
         ValueError, r"rating 9\.0 at row 1 is outside 0\.5-5\.0 \(2 such rows\)",
         r"fix the data or pass rating_range"),
    Case("frame-empty", lambda c: validate_ratings(GOOD.iloc[:0]),
         ValueError, r"frame is empty", r"check the file or the filter"),
    Case("frame-duplicate-pairs", lambda c: validate_ratings(pd.concat([GOOD, GOOD.iloc[:1]])),
         ValueError, r"1 duplicate \(user, item\) pair.*user 1 and item 10",
         r"one rating per pair.*groupby"),
    Case("frame-missing-user-id",
         lambda c: validate_ratings(GOOD.assign(user=[1.0, np.nan, 2.0, 3.0])),
         ValueError, r"'user' has 1 missing id", r"drop those rows"),
    Case("split-one-row", lambda c: random_split(GOOD.iloc[:1]),
         ValueError, r"cannot split a frame of 1 row", r"needs at least 2"),
    Case("split-valid-pct-above-one", lambda c: random_split(GOOD, valid_pct=1.5),
         ValueError, r"got 1\.5", r"between 0 and 1"),
    # -- ids: the unknown-id policy ----------------------------------------------------------
    Case("ids-unknown-user", lambda c: IdIndex([1, 2, 3], name="user").encode([1, 99]),
         KeyError, r"user 99 is not in the training data", UNKNOWN_ID_FIX),
    Case("ids-unknown-item", lambda c: IdIndex([10, 20], name="item").encode([30]),
         KeyError, r"item 30 is not in the training data", UNKNOWN_ID_FIX),
    Case("ids-index-built-from-nothing", lambda c: IdIndex([], name="user").encode([1]),
         KeyError, r"user 1 is not in the training data", UNKNOWN_ID_FIX),
    # -- the pizza world of chapter 1 -------------------------------------------------------
    Case("pizza-k-zero", lambda c: favourite_pizzas([0, 1, 0], make_pizza_world().pizzas, k=0),
         ValueError, r"got 0", r"positive whole number.*k=5"),
    Case("pizza-k-negative",
         lambda c: favourite_pizzas([0, 1, 0], make_pizza_world().pizzas, k=-3),
         ValueError, r"got -3", r"positive whole number"),
    Case("pizza-k-fraction",
         lambda c: favourite_pizzas([0, 1, 0], make_pizza_world().pizzas, k=2.5),
         ValueError, r"got 2\.5", r"whole number"),
    Case("pizza-tastes-wrong-length",
         lambda c: favourite_pizzas([0.5, 1.0], make_pizza_world().pizzas),
         ValueError, r"got shape \(2,\)", r"3 numbers, one per quality"),
    Case("pizza-world-density-zero", lambda c: make_pizza_world(density=0),
         ValueError, r"got 0", r"in \(0, 1\]"),
    Case("pizza-world-no-people", lambda c: make_pizza_world(n_people=0),
         ValueError, r"got 0 and 20", r"at least one person"),
    Case("pizza-world-negative-noise", lambda c: make_pizza_world(noise=-0.1),
         ValueError, r"got -0\.1", r"cannot be negative"),
    # -- the plain training loop -------------------------------------------------------------
    Case("train-float-indices", lambda c: fit_plain_on(PAIRS.float(), STARS),
         TypeError, r"torch\.float32", r"x\.long\(\)"),
    Case("train-index-out-of-range",
         lambda c: fit_plain_on(torch.tensor([[0, 0], [9, 1]]), STARS[:2]),
         IndexError, r"no row for.*user 9", r"IdIndex"),
    Case("train-misaligned", lambda c: fit_plain_on(PAIRS, STARS[:2]),
         ValueError, r"x has 3 rows but y has 2", r"must be aligned"),
    Case("train-nan-rating", lambda c: fit_plain_on(PAIRS, torch.tensor([4.0, np.nan, 5.0])),
         ValueError, r"NaN or infinite", r"drop or fill"),
    Case("train-batch-size-zero", lambda c: fit_plain_on(PAIRS, STARS, bs=0),
         ValueError, r"got 0", r"positive number of rows"),
    Case("train-unknown-optimizer", lambda c: fit_plain_on(PAIRS, STARS, optimizer="adamw"),
         ValueError, r"got 'adamw'", r"one of \['adam', 'sgd'\]"),
    Case("train-learning-rate-too-large",
         lambda c: fit_plain_on(PAIRS, STARS * 100, epochs=50, lr=1e6),
         FloatingPointError, r"loss became", r"lower the learning rate"),
    Case("metric-misaligned", lambda c: rmse([4.0, 3.0], [4.0]),
         ValueError, r"pred has 2 values but target has 1", r"aligned one to one"),
    Case("recovery-shapes-differ",
         lambda c: linear_recovery_r2(np.ones((3, 2)), np.ones((4, 2))),
         ValueError, r"got shapes \(3, 2\) and \(4, 2\)", r"same number of rows"),
    Case("fastai-loaders-missing-rating",
         lambda c: collab_dataloaders(GOOD.drop(columns="rating"), GOOD),
         ValueError, r"train: .*lacks column\(s\) \['rating'\]", r"df\.rename"),
    Case("fastai-loaders-strings-in-valid",
         lambda c: collab_dataloaders(GOOD, GOOD.assign(rating=["a", "b", "c", "d"])),
         ValueError, r"valid: 'rating' holds", r"pd\.to_numeric"),
    # -- the environment ---------------------------------------------------------------------
    Case("env-unknown-scale",
         lambda c: (c.setenv("CFCOURSE_SCALE", "fast"), env.scale()),
         ValueError, r"CFCOURSE_SCALE='fast' is not a scale", r"use one of ci, cpu, gpu"),
    Case("env-negative-seed", lambda c: env.seed_everything(-1),
         ValueError, r"got -1", r"non-negative integer"),
    # -- loaders: names, paths and files in the wrong shape ----------------------------------
    Case("dataset-unknown-name", lambda c: load_movielens("ml-3m"),
         ValueError, r"unknown dataset 'ml-3m'", r"choose one of: ml-100k"),
    Case("path-holds-nothing", lambda c: locate("ml-100k", path=c.folder("empty", {})),
         DataNotFoundError, r"holds no u\.data", r"pass the folder that contains it"),
    Case("path-is-not-a-zip",
         lambda c: locate("ml-100k", path=c.folder("dl", {"ml-100k.zip": "<html>login</html>"})
                          / "ml-100k.zip"),
         DataNotFoundError, r"ml-100k\.zip holds no u\.data", r"the zip archive itself"),
    Case("ratings-file-is-csv",
         lambda c: load_ratings(path=c.folder("csv", {"u.data": "user,item,rating\n1,2,3\n"})),
         MalformedFileError, r"u\.data, line 1: 'user,item,rating'", r"delete it"),
    Case("ratings-file-is-binary",
         lambda c: load_ratings(path=c.folder("bin", {"u.data": bytes(range(256))})),
         MalformedFileError, r"u\.data, line 1", r"damaged or in another format.*fetch it again"),
    Case("ratings-file-truncated",
         lambda c: load_ratings(path=c.folder("cut", {"u.data": U_DATA[:-13]})),
         MalformedFileError, r"u\.data, line 4: '3\\t30'", r"fetch it again"),
    Case("ratings-file-empty", lambda c: load_ratings(path=c.folder("nil", {"u.data": ""})),
         MalformedFileError, r"u\.data holds no ratings", r"fetch it again"),
    Case("ratings-file-out-of-range",
         lambda c: load_ratings(path=c.folder("seven", {"u.data": "1\t10\t7\t881250949\n"})),
         MalformedFileError, r"line 1: rating 7\.0 is outside 0\.5-5", r"check the path"),
    Case("release-incomplete",
         lambda c: load_movielens(path=c.folder("half", {"u.data": U_DATA})),
         DataNotFoundError, r"holds the ratings but no u\.item", r"copy the whole folder"),
    Case("items-file-wrong-format",
         lambda c: load_items(path=c.folder("items", {"u.data": U_DATA,
                                                     "u.item": "10,Alpha (1995),x\n"})),
         MalformedFileError, r"u\.item is not ML-100k's u\.item \(24 '\|'-separated",
         r"delete it"),
    Case("users-not-in-this-release",
         lambda c: (c.setenv("CFCOURSE_DATA", str(c.folder("small", {
             "ratings.csv": "userId,movieId,rating,timestamp\n1,1,4.0,1\n",
             "movies.csv": "movieId,title,genres\n1,Alpha (1995),Drama\n"}))),
             load_users("ml-latest-small")),
         ValueError, r"ml-latest-small has no user attributes", r"load_users\('ml-100k'\)"),
    # -- the cache: corrupt or truncated ------------------------------------------------------
    Case("cache-archive-truncated", lambda c: load_from_cache_zip(c, archive_100k()[:100]),
         DataNotFoundError, r"ml-100k\.zip was corrupt or partial \(deleted\)",
         r"set CFCOURSE_DATA", absent=PART_FILES, warns=r"cached ml-100k\.zip is corrupt"),
    Case("cache-folder-corrupt",
         lambda c: (c.folder("cache/ml-100k", {"u.data": b"\x00\xff" * 50}), load_ratings()),
         MalformedFileError, r"cache/ml-100k/u\.data, line 1",
         r"delete it \(and the cache folder\)"),
    # -- downloads: partial, interrupted, corrupt ---------------------------------------------
    Case("download-partial",
         lambda c: download_into_cache(c, archive_100k()[:200], length=len(archive_100k())),
         DataNotFoundError, r"stopped after 200 of [\d,]+ bytes", r"run the cell again",
         absent=PART_FILES),
    Case("download-interrupted",
         lambda c: download_into_cache(c, archive_100k(), fail_after=64),
         DataNotFoundError, r"download of \S+ml-100k\.zip: connection reset",
         r"turn on internet access and run the cell again", absent=PART_FILES),
    Case("download-corrupt", download_corrupt,
         DownloadError, r"arrived with SHA-256 [0-9a-f]{64}, expected 0{64}",
         r"run the cell again to retry", absent=PART_FILES),
    Case("download-skipped-offline",
         lambda c: (c.setenv("CFCOURSE_OFFLINE", "1"), c.no_offline_copy(), locate("ml-100k")),
         DataNotFoundError, r"skipped \(CFCOURSE_OFFLINE is set\)",
         r"download \S+ yourself and set CFCOURSE_DATA"),
    # -- archives: unsafe members, wrong digest, damage ---------------------------------------
    Case("archive-member-escapes-with-dotdot",
         lambda c: load_explicit_zip(c, archive_100k({"../evil.txt": "gotcha"})),
         UnsafeArchiveError, r"member '\.\./evil\.txt' would be written outside",
         r"delete it and download it again", absent=PART_FILES + ("evil.txt", "cache/evil.txt")),
    Case("archive-member-absolute",
         lambda c: load_explicit_zip(c, archive_100k({"/tmp/cfcourse-evil.txt": "gotcha"})),
         UnsafeArchiveError, r"'/tmp/cfcourse-evil\.txt' would be written outside",
         r"delete it and download it again", absent=PART_FILES),
    Case("archive-digest-mismatch",
         lambda c: load_explicit_zip(c, archive_100k(), record_digest=False),
         DownloadError, r"does not match the SHA-256 recorded for ml-100k",
         r"delete it and try again", absent=PART_FILES),
    Case("archive-truncated",
         lambda c: download.safe_extract(c.folder("t", {"a.zip": archive_100k()[:-30]}) / "a.zip",
                                         c.tmp / "out"),
         zipfile.BadZipFile, r"a\.zip is not a complete zip archive",
         r"delete it and download it again", absent=("out", "out.extracting")),
    Case("archive-crc-error",
         lambda c: download.safe_extract(
             c.folder("crc", {"a.zip": with_crc_error(archive_100k())}) / "a.zip", c.tmp / "out"),
         zipfile.BadZipFile, r"member 'ml-100k/u\.data' fails its CRC check",
         r"delete it and download it again", absent=("out", "out.extracting")),
    # -- the public API: cfcourse.fit / predict / recommend / similar_items / load ------------
    Case("api-fit-wrong-column-names",
         lambda c: cfcourse.fit(GOOD.rename(columns={"user": "userId"}), epochs=1),
         ValueError, r"lacks column\(s\) \['user'\]", r"df\.rename\(columns=\{'userId': 'user'\}"),
    Case("api-fit-strings-in-rating",
         lambda c: cfcourse.fit(GOOD.assign(rating=["4", "3", "5", "x"]), epochs=1),
         ValueError, r"not numbers", r"pd\.to_numeric"),
    Case("api-fit-zero-epochs", lambda c: cfcourse.fit(GOOD, epochs=0),
         ValueError, r"epochs must be a positive integer, got 0", r"the default is \d+"),
    Case("api-fit-unknown-kind", lambda c: cfcourse.fit(GOOD, kind="svd"),
         ValueError, r"got 'svd'", r"one of \['bayes', 'dot_bias', 'nn'\]"),
    Case("api-predict-unknown-user",
         lambda c: tiny_model().predict(pd.DataFrame({"user": [999], "item": [1]})),
         KeyError, r"user 999 is not in the training data", UNKNOWN_ID_FIX),
    Case("api-predict-unknown-item",
         lambda c: tiny_model().predict(pd.DataFrame({"user": [1], "item": [999]})),
         KeyError, r"item 999 is not in the training data", UNKNOWN_ID_FIX),
    Case("api-recommend-unknown-user", lambda c: tiny_model().recommend(999),
         KeyError, r"user 999 is not in the training data", UNKNOWN_ID_FIX),
    Case("api-recommend-k-zero", lambda c: tiny_model().recommend(1, k=0),
         ValueError, r"got 0", r"positive integer"),
    Case("api-similar-items-k-negative", lambda c: tiny_model().similar_items(1, k=-2),
         ValueError, r"got -2", r"positive integer"),
    Case("api-load-not-a-model",
         lambda c: cfcourse.load(c.folder("m", {"model.npz": "hello"}) / "model.npz"),
         ValueError, r"model\.npz is not a cfcourse model file", r"model\.save\(path\)"),
]


def test_case_ids_are_unique():
    assert len({case.id for case in CASES}) == len(CASES), "case ids are unique"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_gets_a_clear_error(case, tmp_path, monkeypatch):
    # No case may reach the network: anything not served explicitly is refused.
    def refuse(url, timeout=None):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(download, "urlopen", refuse)
    ctx = Ctx(tmp_path, monkeypatch)
    with pytest.raises(case.error) as caught:
        if case.warns:
            with pytest.warns(UserWarning, match=case.warns):
                case.call(ctx)
        else:
            case.call(ctx)
    message = str(caught.value)
    flags = re.IGNORECASE | re.DOTALL
    assert re.search(case.problem, message, flags), f"does not name the problem: {message}"
    assert re.search(case.fix, message, flags), f"does not name the fix: {message}"
    half_written = [p for p in tmp_path.rglob("*") if p.name.endswith((".part", ".extracting"))]
    assert half_written == [], f"left half-written: {half_written}"
    left = [p for p in case.absent if (tmp_path / p).exists()]
    assert left == [], f"left behind: {left}"

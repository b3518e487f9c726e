"""What each MovieLens release is: where it lives, its digest, its file layout.

The SHA-256 digests and sizes are those of the archives GroupLens serves (the
same values TensorFlow Datasets records for them). GroupLens publishes no
digest for ml-10m that we could check; that archive is verified by its zip CRCs
only, and the loader says so with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DATASETS", "Dataset", "get_dataset"]

BASE_URL = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class Dataset:
    """One MovieLens release.

    ``layout`` names the parser: ``"100k"`` (``u.data``, tab-separated),
    ``"dat"`` (``ratings.dat`` with ``::``) or ``"csv"`` (``ratings.csv`` with a header).
    ``folder`` is the top folder inside the archive. ``ratings_bytes`` bounds the
    size of the ratings file, which tells ml-latest-small from ml-25m when both
    are just a folder holding ``ratings.csv``.
    """

    name: str
    folder: str
    layout: str
    sha256: str | None
    archive_bytes: int
    n_ratings: int
    ratings_bytes: tuple[int, int]

    @property
    def url(self) -> str:
        return f"{BASE_URL}{self.name}.zip"

    @property
    def ratings_file(self) -> str:
        return {"100k": "u.data", "dat": "ratings.dat", "csv": "ratings.csv"}[self.layout]


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            "ml-100k", "ml-100k", "100k",
            "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
            4_924_029, 100_000, (1_000_000, 3_000_000),
        ),
        Dataset(
            "ml-latest-small", "ml-latest-small", "csv",
            "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
            978_202, 100_836, (1, 50_000_000),
        ),
        Dataset(
            "ml-1m", "ml-1m", "dat",
            "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
            5_917_549, 1_000_209, (10_000_000, 40_000_000),
        ),
        Dataset("ml-10m", "ml-10M100K", "dat", None, 65_566_137, 10_000_054,
                (100_000_000, 400_000_000)),
        Dataset(
            "ml-25m", "ml-25m", "csv",
            "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
            261_978_986, 25_000_095, (50_000_000, 2_000_000_000),
        ),
    ]
}


def get_dataset(name: str) -> Dataset:
    """Look a release up by name, with a helpful error for a typo."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(DATASETS)
        raise ValueError(f"unknown dataset {name!r}; choose one of: {known}.") from None

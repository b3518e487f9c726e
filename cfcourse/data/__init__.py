"""Data for the course: MovieLens loaders, the one split, and generated worlds.

>>> from cfcourse.data import load_movielens, random_split  # doctest: +SKIP
"""

from cfcourse.data.catalog import DATASETS
from cfcourse.data.download import DownloadError, UnsafeArchiveError
from cfcourse.data.encode import IdIndex
from cfcourse.data.movielens import (
    MalformedFileError,
    load_items,
    load_movielens,
    load_ratings,
    load_users,
)
from cfcourse.data.pizza import (
    QUALITIES,
    PizzaWorld,
    enjoyment,
    favourite_pizzas,
    make_pizza_world,
)
from cfcourse.data.sources import DataNotFoundError, cache_dir, locate
from cfcourse.data.split import random_split
from cfcourse.data.synthetic import ML25M_SHAPE, PlantedRatings, planted_ratings, write_ratings_csv
from cfcourse.data.validate import validate_ratings

__all__ = [
    "DATASETS",
    "ML25M_SHAPE",
    "QUALITIES",
    "DataNotFoundError",
    "DownloadError",
    "IdIndex",
    "MalformedFileError",
    "PizzaWorld",
    "PlantedRatings",
    "UnsafeArchiveError",
    "cache_dir",
    "enjoyment",
    "favourite_pizzas",
    "load_items",
    "load_movielens",
    "load_ratings",
    "load_users",
    "locate",
    "make_pizza_world",
    "planted_ratings",
    "random_split",
    "validate_ratings",
    "write_ratings_csv",
]

"""The one train/validation split every chapter uses."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cfcourse.data.validate import validate_ratings

__all__ = ["per_user_holdout", "random_split"]


def random_split(
    df: pd.DataFrame, valid_pct: float = 0.2, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shuffle the rows with ``seed`` and hold out ``valid_pct`` of them.

    The same ``(df, valid_pct, seed)`` always gives the same split, so models in
    different chapters are compared on identical validation ratings.

    Returns
    -------
    (train, valid) : tuple of DataFrame
        Row order is shuffled; the index is reset.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"user": range(10), "item": range(10), "rating": [3.0] * 10})
    >>> train, valid = random_split(df, valid_pct=0.2, seed=0)
    >>> len(train), len(valid)
    (8, 2)
    """
    if not 0.0 < valid_pct < 1.0:
        raise ValueError(f"valid_pct must be between 0 and 1 (exclusive), got {valid_pct!r}.")
    if len(df) < 2:
        raise ValueError(f"cannot split a frame of {len(df)} row(s); it needs at least 2.")
    order = np.random.default_rng(seed).permutation(len(df))
    n_valid = max(1, round(len(df) * valid_pct))
    valid = df.iloc[order[:n_valid]].reset_index(drop=True)
    train = df.iloc[order[n_valid:]].reset_index(drop=True)
    return train, valid


def per_user_holdout(ratings: pd.DataFrame, n_holdout: int = 10, min_ratings: int = 20,
                     seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out ``n_holdout`` random ratings of every user who has ``min_ratings`` or more.

    Users with fewer ratings stay entirely in training. Every tested user keeps at
    least ``min_ratings - n_holdout`` ratings to learn from, and every tested user
    weighs the same in the averages.

    Returns
    -------
    (train, test) : tuple of DataFrame, index reset.
    """
    validate_ratings(ratings)
    if not 0 < n_holdout < min_ratings:
        raise ValueError(f"need 0 < n_holdout < min_ratings, got n_holdout={n_holdout} and "
                         f"min_ratings={min_ratings}; a user must keep ratings to learn from.")
    key = np.random.default_rng(seed).random(len(ratings))
    users = ratings["user"].to_numpy()
    order = pd.Series(key).groupby(users).rank(method="first").to_numpy()  # 1..n_u per user
    count = ratings.groupby("user")["user"].transform("size").to_numpy()
    test = (order <= n_holdout) & (count >= min_ratings)
    return (ratings[~test].reset_index(drop=True), ratings[test].reset_index(drop=True))

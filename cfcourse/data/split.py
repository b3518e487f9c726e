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


__all__ += ["cold_user_split"]


def cold_user_split(interactions: pd.DataFrame, frac: float = 0.2,
                    seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a share ``frac`` of the *users* entirely: the cold-start split.

    Every interaction of a held-out user goes to ``test``; none of it is in ``train``, so
    a model can only reach these users through what it knows about them besides their
    history (age, occupation, ...). The users are drawn with ``seed``; the same inputs
    always give the same split.

    Returns
    -------
    (train, test) : tuple of DataFrame, index reset; their user sets are disjoint.

    Examples
    --------
    >>> frame = pd.DataFrame({"user": [1, 1, 2, 3, 4], "item": [5, 6, 5, 6, 5]})
    >>> train, test = cold_user_split(frame, frac=0.25, seed=0)
    >>> set(train["user"]) & set(test["user"])
    set()
    """
    if "user" not in interactions.columns or len(interactions) == 0:
        raise ValueError("cold_user_split needs a non-empty frame with a 'user' column.")
    if not 0.0 < frac < 1.0:
        raise ValueError(f"frac must be between 0 and 1 (exclusive), got {frac!r}.")
    users = np.unique(interactions["user"].to_numpy())
    if len(users) < 2:
        raise ValueError(f"only {len(users)} user(s): cannot hold out some and keep others.")
    n_cold = min(len(users) - 1, max(1, round(len(users) * frac)))
    cold = np.random.default_rng(seed).choice(users, size=n_cold, replace=False)
    test = interactions["user"].isin(cold).to_numpy()
    return (interactions[~test].reset_index(drop=True),
            interactions[test].reset_index(drop=True))


# --- Temporal splits for implicit feedback (chapter 11) ------------------------------------
__all__ += ["leave_last_out", "time_cut"]


def _check_temporal(interactions: pd.DataFrame) -> None:
    if not isinstance(interactions, pd.DataFrame):
        raise TypeError(f"expected a DataFrame of interactions, got {type(interactions).__name__}.")
    missing = [c for c in ("user", "item", "timestamp") if c not in interactions.columns]
    if missing:
        raise ValueError(f"a temporal split needs columns user, item, timestamp; the frame lacks "
                         f"{missing}. Without timestamps, use per_user_holdout instead.")
    if len(interactions) == 0:
        raise ValueError("the interactions frame is empty; there is nothing to split.")


def leave_last_out(interactions: pd.DataFrame, n: int = 1,
                   min_history: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out each user's last ``n`` interactions by timestamp.

    A user is tested only if at least ``min_history`` interactions remain before the held-out
    ones; others stay entirely in training. Ties in time are broken by row order (the later
    row counts as later), so the split is deterministic. No held-out interaction of a user is
    earlier than that user's training interactions; other users' training rows may be later
    (use :func:`time_cut` for one global "now").

    Returns
    -------
    (train, test) : tuple of DataFrame, index reset, rows in their original order.

    Examples
    --------
    >>> df = pd.DataFrame({"user": [1, 1, 1, 2], "item": [5, 6, 7, 5], "timestamp": [3, 1, 2, 9]})
    >>> train, test = leave_last_out(df, n=1)
    >>> test[["user", "item"]].values.tolist(), len(train)
    ([[1, 5]], 3)
    """
    _check_temporal(interactions)
    if n < 1 or min_history < 1:
        raise ValueError(f"need n >= 1 and min_history >= 1, got n={n}, min_history={min_history}.")
    order = np.lexsort((np.arange(len(interactions)), interactions["timestamp"].to_numpy(),
                        interactions["user"].to_numpy()))
    users = interactions["user"].to_numpy()[order]
    count = pd.Series(users).groupby(users).transform("size").to_numpy()
    rank_from_end = count - pd.Series(users).groupby(users).cumcount().to_numpy()  # n_u..1
    held = (rank_from_end <= n) & (count >= n + min_history)
    test_mask = np.zeros(len(interactions), dtype=bool)
    test_mask[order[held]] = True
    return (interactions[~test_mask].reset_index(drop=True),
            interactions[test_mask].reset_index(drop=True))


def time_cut(interactions: pd.DataFrame, at) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on everything before time ``at``; test on what comes at or after it.

    Test rows of users with no interaction before ``at`` are dropped (they have no history
    to recommend from; that is the cold-start problem), so every tested user has history and
    no training row is later than any test row.

    Examples
    --------
    >>> df = pd.DataFrame({"user": [1, 1, 2, 3], "item": [5, 6, 5, 6], "timestamp": [1, 5, 2, 7]})
    >>> train, test = time_cut(df, at=4)
    >>> test["user"].tolist(), len(train)
    ([1], 2)
    """
    _check_temporal(interactions)
    time = interactions["timestamp"].to_numpy()
    before = time < at
    if not before.any() or before.all():
        raise ValueError(f"the cut at {at!r} leaves one side empty (timestamps run from "
                         f"{time.min()} to {time.max()}); pick a time inside that range, e.g. "
                         "interactions['timestamp'].quantile(0.8).")
    train = interactions[before]
    test = interactions[~before]
    test = test[test["user"].isin(train["user"].unique())]
    return train.reset_index(drop=True), test.reset_index(drop=True)

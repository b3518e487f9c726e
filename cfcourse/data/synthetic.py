"""Synthetic ratings with planted low-rank preferences, at any size up to ML-25M's.

Used by tests and by the scale presets, never as a silent stand-in for MovieLens:
a chapter that falls back to it says so. The generative model is the one the
course fits::

    r_ui = round_half(mu + b_u + b_i + p_u · q_i + eps),   eps ~ N(0, noise²)

clipped to 0.5-5 stars. User activity and film popularity follow power laws,
as in MovieLens, so a few films get most ratings and most films get few.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["ML25M_SHAPE", "PlantedRatings", "planted_ratings", "write_ratings_csv"]

ML25M_SHAPE = {"n_users": 162_541, "n_items": 59_047, "n_ratings": 25_000_095}
_CHUNK = 2_000_000


@dataclass
class PlantedRatings:
    """Ratings plus the truth that generated them.

    ``noise_floor`` is the RMSE of the true (unrounded, noise-free) scores against
    the observed ratings: no model can beat it on average.
    """

    ratings: pd.DataFrame
    user_factors: np.ndarray  # (n_users, n_factors)
    item_factors: np.ndarray  # (n_items, n_factors)
    user_bias: np.ndarray  # (n_users,)
    item_bias: np.ndarray  # (n_items,)
    mean: float
    noise_floor: float

    def __repr__(self) -> str:
        return (f"PlantedRatings({len(self.ratings):,} ratings, {len(self.user_bias):,} users, "
                f"{len(self.item_bias):,} items, noise floor RMSE {self.noise_floor:.3f})")


def _power_law(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    rng.shuffle(weights)  # popularity is not tied to id order
    return weights / weights.sum()


def _merge_unique(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Distinct keys of ``old`` (sorted, distinct) and ``new``, sorted.

    ``np.unique`` by sorting (NumPy 2's hash-based unique is many times slower on int64),
    and a merge rather than a fresh sort of everything when ``old`` is already large.
    """
    merged = np.concatenate([old, np.sort(new)])
    merged.sort(kind="stable")  # timsort finds the two sorted runs and merges them in O(n)
    return merged[np.r_[True, merged[1:] != merged[:-1]]] if len(merged) else merged


def _sample_pairs(n_users, n_items, n_ratings, rng, exponent) -> np.ndarray:
    """Distinct (user, item) keys ``user * n_items + item``, power-law on both sides."""
    pu, pi = _power_law(n_users, exponent, rng), _power_law(n_items, exponent, rng)
    keys = np.empty(0, dtype=np.int64)
    new_share = 0.8  # guess at the share of draws that are new pairs; measured after each round
    while len(keys) < n_ratings:
        want = int((n_ratings - len(keys)) / new_share * 1.1) + 16
        # ``want`` independent draws from pu × pi, without a per-draw search: draw how many
        # times each user and each item comes up, then pair the two lists at random.
        users = np.repeat(np.arange(n_users, dtype=np.int64), rng.multinomial(want, pu))
        items = np.repeat(np.arange(n_items, dtype=np.int64), rng.multinomial(want, pi))
        rng.shuffle(items)
        before = len(keys)
        keys = _merge_unique(keys, users * n_items + items)
        new_share = max((len(keys) - before) / want, 0.01)
    return rng.permutation(keys)[:n_ratings]


def planted_ratings(
    n_users: int = 943,
    n_items: int = 1682,
    n_ratings: int = 100_000,
    n_factors: int = 8,
    noise: float = 0.5,
    exponent: float = 0.8,
    seed: int = 0,
) -> PlantedRatings:
    """Generate ratings from planted factors and biases.

    Parameters
    ----------
    n_users, n_items, n_ratings : int
        Sizes; ``n_ratings`` distinct pairs, at most ``n_users * n_items / 2``.
        ``**ML25M_SHAPE`` gives ML-25M's shape.
    n_factors : int
        Rank of the planted preferences.
    noise : float
        Standard deviation of the Gaussian noise before rounding to half stars.
    exponent : float
        Power-law exponent of user activity and film popularity (0 = uniform).
    seed : int
        Same seed, same data.

    Examples
    --------
    >>> data = planted_ratings(n_users=50, n_items=40, n_ratings=500, seed=0)
    >>> data.ratings.columns.tolist()
    ['user', 'item', 'rating', 'timestamp']
    """
    if min(n_users, n_items, n_ratings, n_factors) < 1:
        raise ValueError("n_users, n_items, n_ratings and n_factors must all be at least 1.")
    if n_ratings > n_users * n_items // 2:
        raise ValueError(
            f"{n_ratings:,} ratings do not fit in {n_users:,} users × {n_items:,} items at "
            "under 50% density; ask for fewer ratings or more users/items."
        )
    rng = np.random.default_rng(seed)
    keys = _sample_pairs(n_users, n_items, n_ratings, rng, exponent)
    user, item = np.divmod(keys, n_items)
    scale = (0.8**2 / n_factors) ** 0.25  # p·q then has a standard deviation of about 0.8
    p = rng.normal(0, scale, (n_users, n_factors)).astype(np.float32)
    q = rng.normal(0, scale, (n_items, n_factors)).astype(np.float32)
    bu = rng.normal(0, 0.35, n_users).astype(np.float32)
    bi = rng.normal(0, 0.45, n_items).astype(np.float32)
    mean = 3.5
    rating = np.empty(n_ratings, dtype=np.float32)
    sq_err = 0.0
    for start in range(0, n_ratings, _CHUNK):  # chunks keep the (chunk, k) gathers small
        u, i = user[start:start + _CHUNK], item[start:start + _CHUNK]
        clean = mean + bu[u] + bi[i] + np.einsum("nk,nk->n", p[u], q[i])
        noisy = clean + rng.normal(0, noise, len(u)).astype(np.float32)
        stars = np.clip(np.round(noisy * 2) / 2, 0.5, 5.0)
        rating[start:start + len(u)] = stars
        sq_err += float(np.sum((stars - clean) ** 2))
    timestamp = rng.integers(789_652_009, 1_574_327_703, n_ratings, dtype=np.int64)
    ratings = pd.DataFrame({"user": (user + 1).astype(np.int32), "item": (item + 1).astype(np.int32),
                            "rating": rating, "timestamp": timestamp})
    return PlantedRatings(ratings, p, q, bu, bi, mean, float(np.sqrt(sq_err / n_ratings)))


def write_ratings_csv(ratings: pd.DataFrame, path) -> None:
    """Write ratings in ML-25M's ``ratings.csv`` layout (``userId,movieId,rating,timestamp``)."""
    out = ratings[["user", "item", "rating", "timestamp"]].rename(
        columns={"user": "userId", "item": "movieId"})
    out.to_csv(path, index=False, float_format="%.1f")


# --- Planted implicit feedback (chapter 11) ----------------------------------------------
__all__ += ["PlantedInteractions", "planted_interactions"]


@dataclass
class PlantedInteractions:
    """Interactions plus the truth that generated them.

    A user with factors :math:`p_u` picks items without replacement with probabilities
    proportional to :math:`\\exp(\\text{logit}_{ui})`, where
    :math:`\\text{logit}_{ui} = p_u \\cdot q_i + \\log \\pi_i` and :math:`\\pi` is a power-law
    popularity. :meth:`true_scores` returns those logits: the best any model can rank.
    """

    interactions: pd.DataFrame  # user, item, timestamp (ids start at 1)
    user_factors: np.ndarray  # (n_users, n_factors)
    item_factors: np.ndarray  # (n_items, n_factors)
    log_popularity: np.ndarray  # (n_items,)

    def __repr__(self) -> str:
        return (f"PlantedInteractions({len(self.interactions):,} interactions, "
                f"{len(self.user_factors):,} users, {len(self.item_factors):,} items)")

    def true_scores(self, users) -> np.ndarray:
        """Planted logits of every item (columns = item ids 1..n_items) for user ids ``users``."""
        rows = np.asarray(users) - 1
        return self.user_factors[rows] @ self.item_factors.T + self.log_popularity


def planted_interactions(n_users: int = 943, n_items: int = 1682, n_interactions: int = 100_000,
                         n_factors: int = 8, signal: float = 2.0, exponent: float = 0.8,
                         min_per_user: int = 5, seed: int = 0) -> PlantedInteractions:
    """Generate implicit feedback from planted factors and a popularity prior.

    Parameters
    ----------
    n_users, n_items, n_interactions : int
        Sizes; user activity follows a power law with at least ``min_per_user`` each.
    n_factors : int
        Rank of the planted tastes.
    signal : float
        Standard deviation of :math:`p_u \\cdot q_i`: 0 gives pure popularity, larger gives
        more personal choices.
    exponent : float
        Power-law exponent of popularity and activity.
    seed : int
        Same seed, same data.

    Examples
    --------
    >>> world = planted_interactions(n_users=30, n_items=50, n_interactions=300, seed=0)
    >>> world.interactions.columns.tolist(), world.true_scores([1, 2]).shape
    (['user', 'item', 'timestamp'], (2, 50))
    """
    if min(n_users, n_items, n_factors, min_per_user) < 1:
        raise ValueError("n_users, n_items, n_factors and min_per_user must all be at least 1.")
    if not n_users * min_per_user <= n_interactions <= n_users * n_items // 2:
        raise ValueError(f"n_interactions={n_interactions:,} must lie between n_users * "
                         f"min_per_user and half of n_users * n_items.")
    rng = np.random.default_rng(seed)
    scale = (signal**2 / n_factors) ** 0.25  # p·q then has a standard deviation of about signal
    p = rng.normal(0, scale, (n_users, n_factors))
    q = rng.normal(0, scale, (n_items, n_factors))
    log_pop = np.log(_power_law(n_items, exponent, rng))
    extra = rng.multinomial(n_interactions - n_users * min_per_user,
                            _power_law(n_users, exponent, rng))
    counts = np.minimum(min_per_user + extra, n_items // 2)
    world = PlantedInteractions(pd.DataFrame(), p, q, log_pop)
    users, items = [], []
    for start in range(0, n_users, 1024):  # (chunk, n_items) logits at a time
        ids = np.arange(start, min(start + 1024, n_users)) + 1
        keys = world.true_scores(ids) + rng.gumbel(size=(len(ids), n_items))  # Gumbel top-k =
        order = np.argsort(-keys, axis=1)  # sampling without replacement from softmax(logits)
        for row, user in enumerate(ids):
            chosen = order[row, :counts[user - 1]]
            users.append(np.full(len(chosen), user))
            items.append(chosen + 1)
    users, items = np.concatenate(users), np.concatenate(items)
    timestamp = rng.integers(789_652_009, 1_574_327_703, len(users), dtype=np.int64)
    world.interactions = pd.DataFrame({"user": users.astype(np.int32),
                                       "item": items.astype(np.int32), "timestamp": timestamp})
    return world

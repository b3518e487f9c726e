"""Ranking metrics and the pieces to measure a recommender as a ranker.

A rating metric (RMSE) asks *how close is each predicted star to the real one*.
A ranking metric asks *did the top of the list hold the films the user liked*.
For one user with a ranked list and a set of relevant items (here: held-out
items they rated at least ``threshold`` stars):

- precision@k = hits in the top k / k
- recall@k    = hits in the top k / number of relevant items
- NDCG@k      = DCG@k / IDCG@k, with ``DCG@k = sum_{r=1..k} rel_r / log2(r + 1)``
  (``rel_r`` is 1 when the item at rank ``r`` is relevant) and IDCG@k the DCG
  of a perfect list: all relevant items first.

Conventions: a list shorter than ``k`` still divides precision by ``k``; users
with no relevant held-out item are skipped (recall and NDCG are undefined for
them) and counted as skipped; relevant items the model cannot rank (unknown
films) stay in the denominator, so they count as misses for every method.

>>> ndcg_at_k([3, 1, 2], relevant={1}, k=3)  # hit at rank 2: 1 / log2(3)
0.6309297535714575
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from cfcourse.data.checks import validate_ratings
from cfcourse.recommender import Recommender
from cfcourse.sparse import SparseDotBias

__all__ = [
    "evaluate_ranking", "implicit_feedback", "ndcg_at_k", "per_user_holdout",
    "popularity_scores", "precision_at_k", "recall_at_k", "relevant_items", "score_matrix",
    "top_k",
]


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    return int(k)


def _hits(ranked: Sequence, relevant: Collection, k: int) -> np.ndarray:
    """1.0 where the item at rank r (r < k) is relevant, else 0.0."""
    return np.array([float(x in relevant) for x in list(ranked)[:k]])


def _need_relevant(relevant: Collection) -> None:
    if len(relevant) == 0:
        raise ValueError("relevant is empty: recall and NDCG are undefined for a user with "
                         "no relevant item; skip such users (evaluate_ranking does).")


def precision_at_k(ranked: Sequence, relevant: Collection, k: int = 10) -> float:
    """Share of the top ``k`` that is relevant: ``hits / k``.

    >>> precision_at_k(["a", "b", "c"], relevant={"a", "z"}, k=2)
    0.5
    """
    k = _check_k(k)
    return float(_hits(ranked, relevant, k).sum() / k)


def recall_at_k(ranked: Sequence, relevant: Collection, k: int = 10) -> float:
    """Share of the relevant items found in the top ``k``: ``hits / |relevant|``.

    >>> recall_at_k(["a", "b", "c"], relevant={"a", "z"}, k=2)
    0.5
    """
    k = _check_k(k)
    _need_relevant(relevant)
    return float(_hits(ranked, relevant, k).sum() / len(relevant))


def ndcg_at_k(ranked: Sequence, relevant: Collection, k: int = 10) -> float:
    """Normalised discounted cumulative gain with binary relevance.

    .. math:: \\mathrm{NDCG@k} = \\frac{\\sum_{r=1}^{k} \\mathrm{rel}_r / \\log_2(r+1)}
              {\\sum_{r=1}^{\\min(k, |R|)} 1 / \\log_2(r+1)}

    1 when the relevant items fill the top of the list, 0 when none is in the top ``k``.
    """
    k = _check_k(k)
    _need_relevant(relevant)
    hits = _hits(ranked, relevant, k)
    discount = 1.0 / np.log2(np.arange(2, k + 2))  # rank r -> 1 / log2(r + 1)
    ideal = discount[:min(len(relevant), k)].sum()
    return float((hits * discount[:len(hits)]).sum() / ideal)


def relevant_items(test: pd.DataFrame, threshold: float = 4.0) -> dict:
    """``{user: set of items}`` rated at least ``threshold`` in ``test``."""
    validate_ratings(test, rating_range=None, allow_empty=True)
    liked = test[test["rating"] >= threshold]
    return {user: set(group["item"].tolist()) for user, group in liked.groupby("user")}


def evaluate_ranking(lists: Mapping, test: pd.DataFrame, k: int = 10,
                     threshold: float = 4.0) -> pd.Series:
    """Mean precision@k, recall@k and NDCG@k over the users of ``test``.

    Parameters
    ----------
    lists : mapping user -> sequence of items, best first
        What a method recommends; a user missing from it gets an empty list.
    test : DataFrame
        Held-out ``user, item, rating``; relevant = rated at least ``threshold``.

    Returns
    -------
    Series with ``precision``, ``recall``, ``ndcg``, ``users`` (evaluated) and
    ``skipped`` (users of ``test`` with no relevant item).
    """
    k = _check_k(k)
    relevant = relevant_items(test, threshold)
    if not relevant:
        raise ValueError(f"no test rating reaches {threshold}; nothing is relevant, so "
                         "there is nothing to rank. Lower the threshold.")
    rows = [(precision_at_k(lists.get(u, []), rel, k), recall_at_k(lists.get(u, []), rel, k),
             ndcg_at_k(lists.get(u, []), rel, k)) for u, rel in relevant.items()]
    mean = np.mean(rows, axis=0)
    skipped = test["user"].nunique() - len(relevant)
    return pd.Series({"precision": mean[0], "recall": mean[1], "ndcg": mean[2],
                      "users": len(relevant), "skipped": skipped})


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


def score_matrix(model: Recommender) -> np.ndarray:
    """Every user's unclipped score for every item, ``(n_users, n_items)``.

    .. math:: s_{ui} = \\mu + b_u + b_i + p_u \\cdot q_i

    Rows and columns follow ``model.users`` and ``model.items``. Unlike
    ``model.predict`` it is not clipped to the star range, so two films above
    five stars keep their order instead of tying.
    """
    net = model.model
    if not isinstance(net, SparseDotBias):
        raise TypeError(f"score_matrix needs a kind='dot_bias' model, got kind={model.kind!r}.")
    p = net.user_factors.weight.detach().cpu().numpy()  # (n_users, k)
    q = net.item_factors.weight.detach().cpu().numpy()  # (n_items, k)
    b_u = net.user_bias.weight.detach().cpu().numpy()  # (n_users, 1)
    b_i = net.item_bias.weight.detach().cpu().numpy()[:, 0]  # (n_items,)
    return float(net.mean) + b_u + b_i + p @ q.T


def popularity_scores(model: Recommender, ratings: pd.DataFrame) -> np.ndarray:
    """How many ratings each of ``model.items`` has in ``ratings``, as ``(n_items,)`` floats."""
    validate_ratings(ratings, columns=("user", "item"))
    positions = model.items.encode(ratings["item"].to_numpy(), unknown="ignore")
    return np.bincount(positions[positions >= 0], minlength=len(model.items)).astype(float)


def _exclusion_mask(model: Recommender, exclude: pd.DataFrame | None) -> np.ndarray:
    """Boolean ``(n_users, n_items)``: True where a pair must not be recommended."""
    mask = np.zeros((len(model.users), len(model.items)), dtype=bool)
    if exclude is None:  # the model's own training pairs
        rows = np.repeat(np.arange(len(model.users)), np.diff(model.rated_indptr))
        mask[rows, model.rated_indices] = True
        return mask
    u = model.users.encode(exclude["user"].to_numpy(), unknown="ignore")
    i = model.items.encode(exclude["item"].to_numpy(), unknown="ignore")
    keep = (u >= 0) & (i >= 0)
    mask[u[keep], i[keep]] = True
    return mask


def top_k(model: Recommender, scores: np.ndarray, k: int = 10,
          exclude: pd.DataFrame | None = None) -> dict:
    """The ``k`` best items for every user by ``scores``, as raw ids, best first.

    Parameters
    ----------
    scores : array, ``(n_users, n_items)`` or ``(n_items,)``
        Aligned with ``model.users`` / ``model.items``; one row is shared by all users
        (e.g. :func:`popularity_scores`).
    exclude : DataFrame or None
        ``user, item`` pairs never to recommend (what each user already rated).
        ``None`` excludes the pairs the model was trained on.

    Returns
    -------
    dict
        ``{user id: array of item ids}``. Ties keep the lower item position first.
    """
    k = _check_k(k)
    n_users, n_items = len(model.users), len(model.items)
    scores = np.broadcast_to(np.asarray(scores, dtype=np.float64), (n_users, n_items))
    if not np.isfinite(scores).all():
        raise ValueError("scores hold NaN or infinite values; rank finite numbers only.")
    masked = np.where(_exclusion_mask(model, exclude), -np.inf, scores)  # (U, I)
    k = min(k, n_items)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]  # (U, k)
    allowed = np.take_along_axis(masked, order, axis=1) > -np.inf
    ids = model.items.decode(order)
    return {user: ids[row][allowed[row]] for row, user in enumerate(model.users.ids_.tolist())}


def implicit_feedback(ratings: pd.DataFrame, negatives: float = 1.0,
                      seed: int = 0) -> pd.DataFrame:
    """Turn ratings into *who watched what*: 1 for every rated pair, 0 for sampled others.

    Negatives are drawn with users in proportion to their activity and items uniformly,
    and never hit a rated pair. Fit on it with ``cfcourse.fit(frame, rating_range=(0, 1))``:
    the model then learns which films people choose, not how many stars they give.

    Parameters
    ----------
    negatives : float
        Unrated pairs to sample per rated pair (before duplicates are dropped).
    """
    validate_ratings(ratings)
    if negatives <= 0:
        raise ValueError(f"negatives must be positive, got {negatives!r}.")
    rng = np.random.default_rng(seed)
    n = round(len(ratings) * negatives)
    users = rng.choice(ratings["user"].to_numpy(), n)
    items = rng.choice(np.unique(ratings["item"].to_numpy()), n)
    sampled = pd.DataFrame({"user": users, "item": items}).drop_duplicates()
    rated = pd.MultiIndex.from_frame(ratings[["user", "item"]])
    sampled = sampled[~pd.MultiIndex.from_frame(sampled).isin(rated)]
    positives = ratings[["user", "item"]].assign(rating=1.0)
    frame = pd.concat([positives, sampled.assign(rating=0.0)], ignore_index=True)
    return frame.astype({"rating": np.float32})

"""How good predictions are: rating errors, and how well factors were recovered.

Ranking metrics and the pieces to measure a recommender as a ranker.

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

from cfcourse.data.validate import validate_ratings

__all__ = [
    "align_linear", "catalogue_coverage", "check_k", "evaluate_ranking", "full_rank",
    "linear_recovery_r2", "mae", "ndcg_at_k", "popular_share", "precision_at_k", "recall_at_k",
    "relevant_items", "rmse", "sampled_hit_rate", "sampled_rank",
]


def _numbers(values) -> np.ndarray:
    """A flat float64 array from a list, an array, a Series or a tensor (on any device)."""
    if hasattr(values, "detach"):  # a torch tensor, perhaps on a GPU
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred, target = _numbers(pred), _numbers(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred has {pred.size} values but target has {target.size}; "
                         "they must be aligned one to one.")
    if pred.size == 0:
        raise ValueError("cannot score zero predictions; the validation set is empty.")
    return pred, target


def rmse(pred, target) -> float:
    """Root mean squared error, :math:`\\sqrt{\\tfrac1n\\sum (\\hat r - r)^2}`."""
    pred, target = _pair(pred, target)
    return float(np.sqrt(np.mean((pred - target) ** 2)))


def mae(pred, target) -> float:
    """Mean absolute error, :math:`\\tfrac1n\\sum |\\hat r - r|`."""
    pred, target = _pair(pred, target)
    return float(np.mean(np.abs(pred - target)))


def align_linear(learned, planted) -> np.ndarray:
    """The least-squares linear map (with intercept) of ``learned`` onto ``planted``.

    Returns ``[learned, 1] @ W`` with ``W`` minimising ``||planted - [learned, 1] @ W||²``:
    the learned factors expressed in the planted factors' coordinates.
    """
    learned = np.asarray(learned, dtype=np.float64)
    planted = np.asarray(planted, dtype=np.float64)
    if learned.ndim != 2 or planted.ndim != 2 or len(learned) != len(planted):
        raise ValueError(f"need two 2-D arrays with the same number of rows, got shapes "
                         f"{learned.shape} and {planted.shape}.")
    design = np.hstack([learned, np.ones((len(learned), 1))])
    weights, *_ = np.linalg.lstsq(design, planted, rcond=None)
    return design @ weights


def linear_recovery_r2(learned, planted) -> float:
    """How much of ``planted`` a linear map of ``learned`` explains (pooled R²).

    Aligns with :func:`align_linear` and returns ``1 - SS_res / SS_tot`` over all
    columns. Factors learned from ratings alone are only defined up to an
    invertible linear map (``P Q^T = (P A)(Q A^{-T})^T``), so this is the right
    way to ask whether they recovered the truth.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(size=(50, 3))
    >>> round(linear_recovery_r2(truth @ rng.normal(size=(3, 3)), truth), 6)
    1.0
    """
    planted = np.asarray(planted, dtype=np.float64)
    residual = planted - align_linear(learned, planted)
    total = planted - planted.mean(axis=0)
    return float(1 - (residual**2).sum() / (total**2).sum())


def check_k(k) -> int:
    """``k`` as an int, or a ``ValueError`` unless it is a positive integer (every top-k check)."""
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
    k = check_k(k)
    return float(_hits(ranked, relevant, k).sum() / k)


def recall_at_k(ranked: Sequence, relevant: Collection, k: int = 10) -> float:
    """Share of the relevant items found in the top ``k``: ``hits / |relevant|``.

    >>> recall_at_k(["a", "b", "c"], relevant={"a", "z"}, k=2)
    0.5
    """
    k = check_k(k)
    _need_relevant(relevant)
    return float(_hits(ranked, relevant, k).sum() / len(relevant))


def ndcg_at_k(ranked: Sequence, relevant: Collection, k: int = 10) -> float:
    """Normalised discounted cumulative gain with binary relevance.

    .. math:: \\mathrm{NDCG@k} = \\frac{\\sum_{r=1}^{k} \\mathrm{rel}_r / \\log_2(r+1)}
              {\\sum_{r=1}^{\\min(k, |R|)} 1 / \\log_2(r+1)}

    1 when the relevant items fill the top of the list, 0 when none is in the top ``k``.
    """
    k = check_k(k)
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
    k = check_k(k)
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


# --- Top-k lists beyond accuracy, and sampled metrics (chapter 11) -------------------------
__all__ += ["catalogue_coverage", "full_rank", "popular_share", "sampled_hit_rate",
            "sampled_rank"]


def catalogue_coverage(lists: Mapping, n_items: int) -> float:
    """Share of the catalogue's ``n_items`` that appear in at least one list.

    >>> catalogue_coverage({1: ["a", "b"], 2: ["a", "c"]}, n_items=6)
    0.5
    """
    if n_items < 1:
        raise ValueError(f"n_items must be at least 1, got {n_items!r}.")
    shown = set().union(*map(set, lists.values())) if lists else set()
    return len(shown) / n_items


def popular_share(lists: Mapping, train: pd.DataFrame, top: float = 0.1) -> float:
    """Share of recommended slots that go to the ``top`` most popular items of ``train``.

    Popularity = number of training interactions; ties at the cut are broken by item id.

    >>> train = pd.DataFrame({"user": [1, 2, 3, 1], "item": ["a", "a", "a", "b"]})
    >>> popular_share({1: ["a", "c"], 2: ["b", "c"]}, train, top=0.5)  # top half = {a}
    0.25
    """
    if not 0 < top <= 1:
        raise ValueError(f"top is a share of the catalogue in (0, 1], got {top!r}.")
    counts = train["item"].value_counts().sort_index(kind="stable")
    counts = counts.sort_values(ascending=False, kind="stable")
    head = set(counts.index[:max(1, round(len(counts) * top))])
    slots = [item for items in lists.values() for item in items]
    if not slots:
        raise ValueError("the lists are empty; there is nothing to measure.")
    return sum(item in head for item in slots) / len(slots)


def _excluded_row(exclude, row: int, n_items: int) -> np.ndarray:
    if exclude is None:
        return np.zeros(n_items, dtype=bool)
    line = exclude[row]
    line = line.toarray().ravel() if hasattr(line, "toarray") else np.asarray(line).ravel()
    return line.astype(bool)


def full_rank(scores: np.ndarray, positive: np.ndarray, exclude=None) -> np.ndarray:
    """0-based rank of each row's ``positive`` column among all items not in ``exclude``.

    Ties count against the positive (an item scored equal is ranked above it); a positive of
    ``-1`` (an item the model never saw) gets rank ``n_items``, a miss at every ``k``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive)
    ranks = np.full(len(positive), scores.shape[1])
    for row, pos in enumerate(positive):
        if pos < 0:
            continue
        keep = ~_excluded_row(exclude, row, scores.shape[1])
        keep[pos] = False
        ranks[row] = int((scores[row, keep] >= scores[row, pos]).sum())
    return ranks


def sampled_rank(scores: np.ndarray, positive: np.ndarray, exclude=None,
                 n_negatives: int = 100, seed: int = 0) -> np.ndarray:
    """0-based rank of ``positive`` among ``n_negatives`` items drawn uniformly per row.

    The protocol of the NCF papers: the held-out item competes with 100 random items the
    user has not interacted with, instead of with the whole catalogue. Negatives are drawn
    without replacement from items neither in ``exclude`` (the training items) nor the positive.
    Ties count against the positive, as in :func:`full_rank`.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive)
    rng = np.random.default_rng(seed)
    ranks = np.full(len(positive), n_negatives)
    for row, pos in enumerate(positive):
        allowed = ~_excluded_row(exclude, row, scores.shape[1])
        if pos >= 0:
            allowed[pos] = False
        candidates = np.flatnonzero(allowed)
        if len(candidates) < n_negatives:
            raise ValueError(f"row {row} has only {len(candidates)} items to draw "
                             f"{n_negatives} negatives from; lower n_negatives.")
        negatives = rng.choice(candidates, n_negatives, replace=False)
        if pos >= 0:
            ranks[row] = int((scores[row, negatives] >= scores[row, pos]).sum())
    return ranks


def sampled_hit_rate(scores: np.ndarray, positive: np.ndarray, exclude=None, k: int = 10,
                     n_negatives: int = 100, seed: int = 0) -> float:
    """HR@k against sampled negatives: share of rows whose positive ranks in the top ``k``
    of itself plus ``n_negatives`` random items (see :func:`sampled_rank`).

    >>> scores = np.array([[0.9, 0.1, 0.2, 0.3], [0.1, 0.9, 0.8, 0.7]])
    >>> sampled_hit_rate(scores, positive=[0, 0], k=1, n_negatives=3)
    0.5
    """
    k = check_k(k)
    return float((sampled_rank(scores, positive, exclude, n_negatives, seed) < k).mean())

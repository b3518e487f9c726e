"""Feedback loops: recommend, let people rate what they were shown, retrain, repeat.

A recommender trains on ratings it helped to collect. This module runs that loop in
a synthetic world whose true preferences are known (:func:`~cfcourse.data.planted_ratings`):

1. fit a model on every rating so far;
2. show each user a slate of ``k`` unrated films: the model's best ``k - explore``
   and ``explore`` picked at random;
3. each user rates the whole slate from the planted truth,
   :math:`r_{ui} = \\text{round}_{1/2}(\\mu + b_u + b_i + p_u \\cdot q_i + \\varepsilon)`;
4. add those ratings and go back to 1.

How concentrated the ratings are is measured with the Gini coefficient of the
films' rating counts (0: every film has as many ratings; near 1: one film has them
all) and the share of all ratings that the top films hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cfcourse.data.synthetic import PlantedRatings
from cfcourse.recommender import fit

__all__ = ["FeedbackRun", "gini", "simulate_feedback", "top_share"]


def gini(counts) -> float:
    """Gini coefficient of non-negative counts.

    .. math:: G = \\frac{\\sum_i \\sum_j |x_i - x_j|}{2 n^2 \\bar x}
              = \\frac{2 \\sum_{r=1}^{n} r\\, x_{(r)}}{n \\sum_r x_{(r)}} - \\frac{n + 1}{n}

    with :math:`x_{(r)}` sorted ascending. 0 for equal counts, :math:`(n-1)/n` when
    one film holds every rating.

    >>> gini([0, 0, 0, 4])
    0.75
    """
    x = np.sort(np.asarray(counts, dtype=np.float64).reshape(-1))
    if x.size == 0 or (x < 0).any() or not np.isfinite(x).all():
        raise ValueError("counts must be a non-empty array of finite numbers >= 0.")
    if x.sum() == 0:
        return 0.0
    n = x.size
    ranks = np.arange(1, n + 1)
    return float(2 * (ranks * x).sum() / (n * x.sum()) - (n + 1) / n)


def top_share(counts, share: float = 0.1) -> float:
    """Share of all ratings held by the ``share`` most rated films (at least one film).

    >>> top_share([5, 3, 1, 1], share=0.25)
    0.5
    """
    x = np.sort(np.asarray(counts, dtype=np.float64).reshape(-1))[::-1]
    if not 0 < share <= 1 or x.size == 0 or x.sum() <= 0:
        raise ValueError("need 0 < share <= 1 and counts with a positive total.")
    top = max(1, round(share * x.size))
    return float(x[:top].sum() / x.sum())


@dataclass
class FeedbackRun:
    """What a simulation produced: one row per round, and the final ratings."""

    history: pd.DataFrame
    ratings: pd.DataFrame

    def __repr__(self) -> str:
        return (f"FeedbackRun({len(self.history) - 1} rounds, {len(self.ratings):,} ratings, "
                f"Gini {self.history['gini'].iloc[0]:.3f} -> {self.history['gini'].iloc[-1]:.3f})")


def _world_scores(world: PlantedRatings, ratings: pd.DataFrame, fit_options: dict,
                  seed: int) -> np.ndarray:
    """The fitted model's unclipped scores for every (user, film) of the world.

    Users or films without a rating yet get the model's fallback, mean plus known bias.
    """
    model = fit(ratings, random_state=seed, **fit_options)
    n_users, n_items = len(world.user_bias), len(world.item_bias)
    known = model.score_matrix()  # (U_known, I_known)
    mean, b_u, b_i = model.global_mean_, model.user_bias_, model.item_bias_
    users = model.users_.ids_.astype(np.int64) - 1  # planted ids start at 1
    items = model.items_.ids_.astype(np.int64) - 1
    scores = np.full((n_users, n_items), mean)
    scores[users, :] += b_u[:, None]
    scores[:, items] += b_i[None, :]
    scores[np.ix_(users, items)] = known
    return scores


def _slates(scores: np.ndarray, rated: np.ndarray, k: int, explore: int,
            rng: np.random.Generator) -> np.ndarray:
    """``(n_users, k)`` film positions: the best ``k - explore`` unrated, then random ones."""
    masked = np.where(rated, -np.inf, scores)
    best = np.argsort(-masked, axis=1, kind="stable")[:, :k - explore]  # (U, k - e)
    noise = np.where(rated, -np.inf, rng.random(scores.shape))
    np.put_along_axis(noise, best, -np.inf, axis=1)  # never pick a film twice
    random = np.argsort(-noise, axis=1, kind="stable")[:, :explore]  # (U, e)
    return np.hstack([best, random])


def _rate(world: PlantedRatings, users: np.ndarray, items: np.ndarray, noise: float,
          rng: np.random.Generator) -> np.ndarray:
    """Ratings the planted truth gives, with noise, rounded to half stars in 0.5-5."""
    clean = (world.mean + world.user_bias[users] + world.item_bias[items]
             + np.einsum("nk,nk->n", world.user_factors[users], world.item_factors[items]))
    noisy = clean + rng.normal(0, noise, len(users))
    return np.clip(np.round(noisy * 2) / 2, 0.5, 5.0).astype(np.float32)


def _truth(world: PlantedRatings) -> np.ndarray:
    """The noise-free planted score of every (user, film), ``(n_users, n_items)``."""
    return (world.mean + world.user_bias[:, None] + world.item_bias[None, :]
            + world.user_factors @ world.item_factors.T)


def _measure(round_: int, counts: np.ndarray, scores: np.ndarray, truth: np.ndarray,
             shown: np.ndarray | None, ratings: pd.DataFrame) -> dict:
    """One row of the history; ``shown`` is this round's (users, films) or None."""
    error = np.clip(scores, 0.5, 5.0) - truth  # (U, I)
    return {"round": round_, "gini": gini(counts), "top10_share": top_share(counts, 0.1),
            "catalogue_rmse": float(np.sqrt(np.mean(error**2))),
            "catalogue_bias": float(error.mean()),
            "mean_rating": float(ratings["rating"].mean()),
            "mean_true_score": np.nan if shown is None else float(truth[shown].mean()),
            "films_shown": 0 if shown is None else len(np.unique(shown[1]))}


def simulate_feedback(world: PlantedRatings, rounds: int = 5, k: int = 5, explore: int = 0,
                      noise: float = 0.5, seed: int = 0, **fit_options) -> FeedbackRun:
    """Run the recommend → rate → retrain loop on a planted world.

    Parameters
    ----------
    world : PlantedRatings
        Its ``ratings`` are the starting data; its factors and biases are the truth.
    rounds : int
        Times the loop runs. Each round adds ``k`` ratings per user.
    k, explore : int
        Slate size, and how many of its films are picked at random instead of by the
        model (``explore=0``: pure exploitation; ``explore=k``: pure exploration).
    noise : float
        Standard deviation of the noise on each new rating.
    seed : int
        Seeds the model fits, the random picks and the rating noise.
    **fit_options
        Passed to :func:`cfcourse.fit` (e.g. ``n_factors=8, epochs=10``).

    Returns
    -------
    FeedbackRun
        ``history`` has one row per round, round 0 being the starting data, each
        describing the data and the model refitted on it after that round:
        ``gini`` and ``top10_share`` of the films' rating counts; ``catalogue_rmse``,
        the model's error against the noise-free truth over *every* (user, film) pair,
        and ``catalogue_bias``, its mean signed error there (positive: it over-predicts);
        ``mean_rating``, the mean of all ratings collected so far (under exploitation
        it climbs above the truth's mean: the ratings are missing not at random);
        ``mean_true_score``, the noise-free true rating of the films shown that round,
        averaged; ``films_shown``, distinct films on any slate that round.
    """
    n_users, n_items = len(world.user_bias), len(world.item_bias)
    if not (isinstance(rounds, int) and rounds >= 1 and 0 <= explore <= k):
        raise ValueError(f"need rounds >= 1 and 0 <= explore <= k, got rounds={rounds}, "
                         f"k={k}, explore={explore}.")
    if rounds * k > n_items // 2:
        raise ValueError(f"{rounds} rounds of {k} films would show each user more than half "
                         f"of the {n_items} films; use fewer rounds or a smaller k.")
    rng = np.random.default_rng(seed)
    truth = _truth(world)  # (U, I)
    ratings = world.ratings[["user", "item", "rating"]].copy()
    rated = np.zeros((n_users, n_items), dtype=bool)
    rated[ratings["user"].to_numpy() - 1, ratings["item"].to_numpy() - 1] = True
    scores = _world_scores(world, ratings, fit_options, seed)
    rows = [_measure(0, rated.sum(axis=0), scores, truth, None, ratings)]
    for round_ in range(1, rounds + 1):
        slate = _slates(scores, rated, k, explore, rng)  # (U, k)
        shown = (np.repeat(np.arange(n_users), k), slate.reshape(-1))
        stars = _rate(world, *shown, noise, rng)
        rated[shown] = True
        new = pd.DataFrame({"user": shown[0] + 1, "item": shown[1] + 1, "rating": stars})
        ratings = pd.concat([ratings, new.astype(ratings.dtypes.to_dict())], ignore_index=True)
        scores = _world_scores(world, ratings, fit_options, seed + round_)
        rows.append(_measure(round_, rated.sum(axis=0), scores, truth, shown, ratings))
    return FeedbackRun(pd.DataFrame(rows), ratings)

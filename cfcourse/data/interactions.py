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

import numpy as np
import pandas as pd

from cfcourse.data.validate import validate_ratings

__all__ = ["implicit_feedback"]


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

"""From star ratings to implicit feedback: who interacted with what.

:func:`implicit_feedback` keeps every rating at or above a threshold as a positive (1) and
adds sampled unrated pairs as negatives (0), the data chapter 6's implicit model learns from.
It prepares data; the ranking metrics that score such models live in :mod:`cfcourse.metrics`.
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

"""The popularity baseline: recommend what most users already have.

.. math:: s_{ui} = n_i = |\\{v : (v, i) \\in \\text{train}\\}|

the same list for everyone (minus what each user already has). Every top-k model must
beat it by more than the seed spread, or it has not learned anything personal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cfcourse.models.topk import TopKModel

__all__ = ["Popularity"]


class Popularity(TopKModel):
    """Score every item by its number of training interactions.

    Examples
    --------
    >>> import pandas as pd
    >>> train = pd.DataFrame({"user": [1, 1, 2, 3], "item": ["a", "b", "a", "a"]})
    >>> Popularity().fit(train).recommend([2], k=1, exclude=train)
    {2: ['b']}
    """

    def fit(self, interactions: pd.DataFrame) -> Popularity:
        """Count the distinct users of each item; returns ``self``."""
        matrix = self._start_fit(interactions)
        self.counts_ = np.asarray(matrix.sum(axis=0), dtype=np.float64).ravel()  # (n_items,)
        return self

    def _scores(self, positions: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts_, (len(positions), len(self.counts_))).copy()

"""EASE: a linear item-to-item model with a closed form (Steck 2019).

Learn an item × item weight matrix :math:`B` that rebuilds the interactions from the
*other* items a user has:

.. math:: \\min_B \\; \\|X - X B\\|_F^2 + \\lambda \\|B\\|_F^2 \\quad \\text{s.t. } \\operatorname{diag}(B) = 0.

The constraint stops the trivial answer :math:`B = I`. With :math:`P = (X^\\top X + \\lambda I)^{-1}`
the solution is :math:`B_{ij} = -P_{ij} / P_{jj}` for :math:`i \\ne j` and :math:`B_{jj} = 0`;
scores are :math:`s = X B`. It is the same as a ridge regression of each item's column
on all the other columns, solved for all items at once by one matrix inverse.

Cost: :math:`P` is dense ``n_items × n_items``. At ML-100k's 1,682 films that is 22 MB in
float64; at ML-25M's 59,047 films, 28 GB, and the inverse takes ``O(n_items³)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cfcourse.models.topk import TopKModel

__all__ = ["EASE", "ease_weights"]


def ease_weights(gram: np.ndarray, reg: float) -> np.ndarray:
    """The EASE matrix :math:`B` from the Gram matrix :math:`X^\\top X` and :math:`\\lambda`."""
    if reg <= 0:
        raise ValueError(f"reg must be positive (it keeps X^T X + reg I invertible), got {reg!r}.")
    gram = np.array(gram, dtype=np.float64)
    gram[np.diag_indices_from(gram)] += reg
    inverse = np.linalg.inv(gram)  # P, (n_items, n_items)
    weights = -inverse / np.diag(inverse)  # column j divided by P_jj
    np.fill_diagonal(weights, 0.0)
    return weights


class EASE(TopKModel):
    """Embarrassingly shallow autoencoder (Steck 2019).

    Parameters
    ----------
    reg : float
        :math:`\\lambda`: larger pulls every weight towards 0; tune it on an inner split.
    max_items : int
        Refuse catalogues larger than this: the dense Gram matrix needs
        ``8 * n_items²`` bytes.

    Examples
    --------
    >>> import pandas as pd
    >>> train = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [10, 20, 10, 20, 10]})
    >>> EASE(reg=1.0).fit(train).recommend([3], k=1, exclude=train)
    {3: [20]}
    """

    def __init__(self, reg: float = 500.0, max_items: int = 20_000):
        self.reg = reg
        self.max_items = max_items

    def fit(self, interactions: pd.DataFrame) -> EASE:
        """Solve for ``weights_`` (:math:`B`) in closed form; returns ``self``."""
        self.matrix_ = self._start_fit(interactions)
        n_items = len(self.items_)
        if n_items > self.max_items:
            raise ValueError(f"EASE needs a dense {n_items:,} × {n_items:,} Gram matrix "
                             f"({8 * n_items**2 / 1e9:.1f} GB); raise max_items if you have the "
                             "memory, or keep only the most popular items.")
        gram = (self.matrix_.T @ self.matrix_).toarray()
        self.weights_ = ease_weights(gram, self.reg)
        return self

    def _scores(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self.matrix_[positions] @ self.weights_)

"""Implicit ALS with confidence weights (Hu, Koren & Volinsky 2008).

Every (user, item) cell is a data point. The preference is :math:`p_{ui} = 1` when the user
interacted with the item, else 0; the confidence in it is :math:`c_{ui} = 1 + \\alpha r_{ui}`
(:math:`r_{ui}` = 1 for a binary interaction, or a count), so every unobserved cell counts
with weight 1. The loss over *all* cells is

.. math:: \\sum_{u,i} c_{ui} (p_{ui} - x_u^\\top y_i)^2 + \\lambda (\\|X\\|^2 + \\|Y\\|^2).

With :math:`Y` fixed, each user's row is a weighted least-squares solve,

.. math:: x_u = (Y^\\top C_u Y + \\lambda I)^{-1} Y^\\top C_u p_u,

and the *Gramian trick* makes it cheap: :math:`Y^\\top C_u Y = Y^\\top Y + \\sum_{i \\in I_u}
(c_{ui} - 1) y_i y_i^\\top`, where :math:`Y^\\top Y` is computed once per sweep and the sum
runs over the user's interactions only, never the whole catalogue. Items are updated the
same way with the roles swapped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cfcourse.models.topk import TopKModel, interaction_matrix, single_threaded

__all__ = ["ImplicitALS", "als_sweep"]


def als_sweep(confidence: sp.csr_matrix, fixed: np.ndarray, reg: float) -> np.ndarray:
    """Solve every row's weighted least squares against ``fixed`` factors.

    ``confidence`` holds :math:`c_{ui} - 1 = \\alpha r_{ui}` on the interactions (rows are the
    side being solved). Returns the new ``(n_rows, n_factors)`` factors; a row with no
    interaction gets ``0``. One small ``k × k`` solve per row: run it with one BLAS thread
    (:func:`~cfcourse.models.topk.single_threaded`), as threads only slow matrices this small.
    """
    n_factors = fixed.shape[1]
    gramian = fixed.T @ fixed + reg * np.eye(n_factors)  # Y^T Y + lambda I, once per sweep
    out = np.zeros((confidence.shape[0], n_factors))
    for row in range(confidence.shape[0]):
        start, end = confidence.indptr[row], confidence.indptr[row + 1]
        idx, extra = confidence.indices[start:end], confidence.data[start:end]  # I_u, c - 1
        if len(idx) == 0:
            continue  # no interaction: the solution is x_u = 0
        y = fixed[idx]  # (|I_u|, k)
        a = gramian + (y.T * extra) @ y  # Y^T C_u Y + lambda I, by the Gramian trick
        b = y.T @ (1.0 + extra)  # Y^T C_u p_u: p = 1 only on I_u
        out[row] = np.linalg.solve(a, b)
    return out


class ImplicitALS(TopKModel):
    """Weighted matrix factorisation of implicit feedback, fitted by alternating least squares.

    Parameters
    ----------
    n_factors : int
        Length of each user and item vector.
    reg : float
        :math:`\\lambda`, the L2 penalty, added as :math:`\\lambda I` (not scaled by activity).
    alpha : float
        Confidence slope: an interaction weighs :math:`1 + \\alpha` times an empty cell.
    n_iter : int
        Sweeps; each solves all users, then all items.
    random_state : int
        Seed of the initial factors (normal, sd ``0.01``).

    Examples
    --------
    >>> import pandas as pd
    >>> train = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [10, 20, 10, 20, 10]})
    >>> ImplicitALS(n_factors=2, n_iter=5).fit(train).recommend([3], k=1, exclude=train)
    {3: [20]}
    """

    def __init__(self, n_factors: int = 32, reg: float = 0.1, alpha: float = 10.0,
                 n_iter: int = 15, random_state: int = 0):
        self.n_factors = n_factors
        self.reg = reg
        self.alpha = alpha
        self.n_iter = n_iter
        self.random_state = random_state

    def fit(self, interactions: pd.DataFrame) -> ImplicitALS:
        """Alternate user and item sweeps ``n_iter`` times; returns ``self``."""
        if self.alpha < 0 or self.reg < 0 or self.n_factors < 1 or self.n_iter < 1:
            raise ValueError(f"need alpha >= 0, reg >= 0, n_factors >= 1 and n_iter >= 1; got "
                             f"{self.alpha}, {self.reg}, {self.n_factors}, {self.n_iter}.")
        matrix = self._start_fit(interactions)
        confidence = (self.alpha * matrix).tocsr()  # c_ui - 1 on the interactions
        by_item = confidence.T.tocsr()
        rng = np.random.default_rng(self.random_state)
        users = rng.normal(0, 0.01, (len(self.users_), self.n_factors))
        items = rng.normal(0, 0.01, (len(self.items_), self.n_factors))
        with single_threaded():
            for _ in range(self.n_iter):
                users = als_sweep(confidence, items, self.reg)
                items = als_sweep(by_item, users, self.reg)
        self.user_factors_, self.item_factors_ = users, items
        return self

    def loss(self, interactions: pd.DataFrame) -> float:
        """The weighted loss above on the fitted factors, over every cell (dense; small data only)."""
        r = interaction_matrix(interactions, self.users_, self.items_).toarray()
        pred = self.user_factors_ @ self.item_factors_.T
        weighted = ((1 + self.alpha * r) * (r - pred) ** 2).sum()
        return float(weighted + self.reg * ((self.user_factors_**2).sum()
                                            + (self.item_factors_**2).sum()))

    def _scores(self, positions: np.ndarray) -> np.ndarray:
        return self.user_factors_[positions] @ self.item_factors_.T

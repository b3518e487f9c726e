"""Item k-NN on co-occurrence: items are similar when the same users have both.

With the binary user × item matrix :math:`X`, the co-occurrence counts are
:math:`C = X^\\top X` (:math:`C_{ij}` users have both :math:`i` and :math:`j`), and the
cosine similarity is

.. math:: S_{ij} = \\frac{C_{ij}}{\\sqrt{C_{ii} C_{jj}} + \\text{shrink}}, \\qquad S_{ii} = 0,

keeping only the ``n_neighbors`` largest entries of each column. A user's score for item
:math:`j` sums the similarities of :math:`j` to the items they have:
:math:`s_{uj} = \\sum_{i \\in I_u} S_{ij}`, i.e. :math:`s = X S`. Everything stays sparse.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cfcourse.models.topk import TopKModel

__all__ = ["ItemKNN", "cosine_cooccurrence"]


def cosine_cooccurrence(matrix: sp.csr_matrix, n_neighbors: int = 100,
                        shrink: float = 0.0) -> sp.csc_matrix:
    """Sparse item × item cosine similarity of ``matrix``'s columns, top ``n_neighbors`` per column."""
    if n_neighbors < 1:
        raise ValueError(f"n_neighbors must be at least 1, got {n_neighbors!r}.")
    if shrink < 0:
        raise ValueError(f"shrink must be non-negative, got {shrink!r}.")
    binary = (matrix > 0).astype(np.float64)
    co = (binary.T @ binary).tocsc()  # (n_items, n_items) co-occurrence counts C
    norms = np.sqrt(co.diagonal())
    co.setdiag(0.0)
    co.eliminate_zeros()
    co = co.tocoo()
    sim = co.data / (norms[co.row] * norms[co.col] + shrink)
    sim = sp.csc_matrix((sim, (co.row, co.col)), shape=co.shape)
    keep_rows, keep_cols, keep_vals = [], [], []
    for j in range(sim.shape[1]):  # keep the n_neighbors most similar items of column j
        start, end = sim.indptr[j], sim.indptr[j + 1]
        vals, idx = sim.data[start:end], sim.indices[start:end]
        if len(vals) > n_neighbors:
            top = np.argpartition(-vals, n_neighbors - 1)[:n_neighbors]
            vals, idx = vals[top], idx[top]
        keep_rows.append(idx)
        keep_cols.append(np.full(len(idx), j))
        keep_vals.append(vals)
    return sp.csc_matrix((np.concatenate(keep_vals), (np.concatenate(keep_rows),
                                                       np.concatenate(keep_cols))), shape=sim.shape)


class ItemKNN(TopKModel):
    """Item-based k-NN for implicit feedback (cosine on co-occurrence).

    Parameters
    ----------
    n_neighbors : int
        Similarities kept per item: fewer is faster and sharper, more is smoother.
    shrink : float
        Added to the cosine's denominator, so pairs seen together by few users count less.

    Examples
    --------
    >>> import pandas as pd
    >>> train = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [10, 20, 10, 20, 10]})
    >>> ItemKNN(n_neighbors=5).fit(train).recommend([3], k=1, exclude=train)
    {3: [20]}
    """

    def __init__(self, n_neighbors: int = 100, shrink: float = 0.0):
        self.n_neighbors = n_neighbors
        self.shrink = shrink

    def fit(self, interactions: pd.DataFrame) -> ItemKNN:
        """Build the sparse similarity ``similarity_``; returns ``self``."""
        self.matrix_ = self._start_fit(interactions)
        self.similarity_ = cosine_cooccurrence(self.matrix_, self.n_neighbors, self.shrink)
        return self

    def _scores(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray((self.matrix_[positions] @ self.similarity_).todense())

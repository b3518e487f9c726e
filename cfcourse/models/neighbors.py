"""Memory-based collaborative filtering: user-based and item-based k nearest neighbours.

Everything works on the residuals of a baseline, :math:`z_{ui} = r_{ui} - b_{ui}`,
stored in a ``scipy.sparse`` matrix whose stored entries are the rated pairs.
Similarities come from sparse matrix products; predictions are made in
batches of dense rows, so the 20,000 validation pairs of ML-100k take well
under a second.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cfcourse.data.encode import IdIndex
from cfcourse.data.validate import validate_ratings
from cfcourse.models.base import Params, check_fitted
from cfcourse.models.baselines import BiasBaseline, _check_query

__all__ = ["KNNRegressor", "centred_cosine"]

_BATCH_CELLS = 1 << 21  # a prediction batch holds at most this many (query, neighbour) cells


def centred_cosine(z: sp.spmatrix, shrinkage: float = 0.0, min_support: int = 1) -> np.ndarray:
    """Shrunk cosine similarity of the rows of ``z`` over their co-rated columns.

    .. math::

        s_{uv} = \\frac{\\sum_{i \\in I_{uv}} z_{ui} z_{vi}}
                      {\\sqrt{\\sum_{i \\in I_{uv}} z_{ui}^2}\\,
                       \\sqrt{\\sum_{i \\in I_{uv}} z_{vi}^2}},
        \\qquad
        s'_{uv} = \\frac{n_{uv}}{n_{uv} + \\lambda}\\, s_{uv}

    :math:`I_{uv}` is the set of the :math:`n_{uv}` columns both rows rated.
    With centred :math:`z` this is a Pearson correlation on co-rated entries.

    Parameters
    ----------
    z : scipy sparse matrix, shape (n, m)
        Centred ratings; the *stored* entries (explicit zeros included) are the
        rated pairs.
    shrinkage : float
        :math:`\\lambda`: pulls a similarity built on few co-ratings towards 0.
    min_support : int
        Pairs with :math:`n_{uv}` below this get similarity 0.

    Returns
    -------
    numpy.ndarray, shape (n, n), float32
        Dense and symmetric, with a zero diagonal (nobody is their own neighbour).

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> z = sp.csr_matrix([[1.0, -1.0], [2.0, -2.0]])
    >>> centred_cosine(z).tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    z = sp.csr_matrix(z, dtype=np.float64)
    rated = z.copy()
    rated.data = np.ones_like(rated.data)  # 1 wherever a rating is stored
    dot = (z @ z.T).toarray()  # (n, n): sum of z_ui z_vi over co-rated i
    sq = (z.multiply(z) @ rated.T).toarray()  # (n, n): sum of z_ui^2 over i rated by v
    count = (rated @ rated.T).toarray()  # (n, n): n_uv
    denom = np.sqrt(sq * sq.T)
    sim = np.divide(dot, denom, out=np.zeros_like(dot), where=denom > 0)
    shrink = np.divide(count, count + shrinkage, out=np.zeros_like(count), where=count > 0)
    sim *= shrink
    sim[count < min_support] = 0.0
    np.fill_diagonal(sim, 0.0)
    return sim.astype(np.float32)


def _neighbour_average(weights: np.ndarray, values: np.ndarray, k: int):
    """Weighted mean of ``values`` over each row's ``k`` largest positive ``weights``."""
    if k < weights.shape[1]:
        top = np.argpartition(-weights, k - 1, axis=1)[:, :k]  # (B, k)
        weights = np.take_along_axis(weights, top, axis=1)
        values = np.take_along_axis(values, top, axis=1)
    total = weights.sum(axis=1)  # (B,)
    found = total > 0
    mean = np.divide((weights * values).sum(axis=1), total, out=np.zeros_like(total),
                     where=found)
    return mean, found


class KNNRegressor(Params):
    """User-based or item-based k-NN on baseline residuals.

    .. math::

        \\hat r_{ui} = b_{ui} + \\frac{\\sum_{v \\in N^k_i(u)} s'_{uv}\\, z_{vi}}
                                      {\\sum_{v \\in N^k_i(u)} s'_{uv}},
        \\qquad z_{vi} = r_{vi} - b_{vi}

    for ``kind="user"``: :math:`b_{ui}` is the fitted ``baseline``,
    :math:`s'` the shrunk :func:`centred_cosine` of users' residuals, and
    :math:`N^k_i(u)` the (at most) :math:`k` users most similar to :math:`u`
    among those who rated :math:`i`, keeping only positive similarities.
    ``kind="item"`` swaps the roles: neighbours are the films :math:`u` rated
    that are most similar to :math:`i`.

    Parameters
    ----------
    kind : {"user", "item"}
        Who the neighbours are. Why: item-based tables are smaller and steadier
        when films have more ratings than users do.
    k : int
        Most neighbours per prediction. Why: a few close neighbours carry the
        signal; far ones add noise.
    shrinkage : float
        :math:`\\lambda` in :math:`s' = n/(n+\\lambda)\\, s`. Why: a similarity
        from two co-ratings is easily :math:`\\pm 1` by chance.
    min_support : int
        Ignore pairs with fewer co-ratings. Why: the bluntest guard against
        chance similarities; it costs coverage.
    baseline : estimator or None
        Fitted afresh (on a copy) by ``fit``; ``None`` means ``BiasBaseline()``.
        Why: neighbours then only explain what the biases do not.

    Notes
    -----
    A pair is *covered* when at least one neighbour with positive similarity
    rated the target. Otherwise, and for ids unseen in training when
    ``unknown="bias"``, the prediction is the baseline's alone
    (:math:`\\hat r_{ui} = b_{ui}`). ``predict(..., return_coverage=True)``
    says which rows were covered. Neighbours tied at the :math:`k`-th place
    are chosen arbitrarily (but the same way for the same pair every time).

    Examples
    --------
    >>> import pandas as pd
    >>> train = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [1, 2, 1, 2, 1],
    ...                       "rating": [5.0, 1.0, 4.0, 2.0, 5.0]})
    >>> model = KNNRegressor(kind="user", k=2, shrinkage=0).fit(train)
    >>> pred, covered = model.predict(train.iloc[:1], return_coverage=True)
    >>> covered.tolist()
    [True]
    """

    def __init__(self, kind: str = "user", k: int = 40, shrinkage: float = 100.0,
                 min_support: int = 1, baseline=None):
        self.kind = kind
        self.k = k
        self.shrinkage = shrinkage
        self.min_support = min_support
        self.baseline = baseline

    def _check_params(self) -> None:
        if self.kind not in ("user", "item"):
            raise ValueError(f"kind={self.kind!r} must be 'user' or 'item'.")
        for name in ("k", "min_support"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer >= 1.")
        if not np.isfinite(self.shrinkage) or self.shrinkage < 0:
            raise ValueError(f"shrinkage={self.shrinkage!r} must be a finite number >= 0.")

    def _codes(self, df: pd.DataFrame, policy: str) -> tuple[np.ndarray, np.ndarray]:
        """(row, column) positions of each pair; rows are users for kind='user'."""
        u = self.users_.encode(df["user"], unknown=policy)
        i = self.items_.encode(df["item"], unknown=policy)
        return (u, i) if self.kind == "user" else (i, u)

    def fit(self, df: pd.DataFrame) -> KNNRegressor:
        """Fit the baseline, then the similarity of every pair of users (or films)."""
        self._check_params()
        validate_ratings(df)
        base = BiasBaseline() if self.baseline is None else copy.deepcopy(self.baseline)
        self.baseline_ = base.fit(df)
        self.users_ = IdIndex(df["user"], name="user")
        self.items_ = IdIndex(df["item"], name="item")
        rows, cols = self._codes(df, "raise")
        z = df["rating"].to_numpy(dtype=np.float64) - self.baseline_.predict(df)
        shape = (len(self.users_), len(self.items_))
        shape = shape if self.kind == "user" else shape[::-1]
        self.residuals_ = sp.csr_matrix((z, (rows, cols)), shape=shape)  # (n_rows, n_cols)
        self.similarity_ = centred_cosine(self.residuals_, self.shrinkage, self.min_support)
        return self

    def predict(self, df: pd.DataFrame, unknown: str = "raise",
                return_coverage: bool = False):
        """Predict every row of ``df`` (columns ``user``, ``item``), in order.

        Parameters
        ----------
        df : DataFrame
            The pairs to predict.
        unknown : {"raise", "bias"}
            An id unseen in training raises a ``KeyError`` naming it, or
            falls back to the baseline.
        return_coverage : bool
            Also return a boolean array: True where at least one neighbour
            contributed, False where the baseline alone answered.
        """
        check_fitted(self, "similarity_")
        _check_query(df, unknown)
        rows, cols = self._codes(df, "raise" if unknown == "raise" else "ignore")
        pred = self.baseline_.predict(df, unknown="bias")
        covered = np.zeros(len(df), dtype=bool)
        known = np.flatnonzero((rows >= 0) & (cols >= 0))
        columns = self.residuals_.tocsc()  # fast column slices
        step = max(1, _BATCH_CELLS // self.similarity_.shape[0])
        for start in range(0, len(known), step):
            at = known[start:start + step]
            block = columns[:, cols[at]].T  # (B, n_rows): who rated each target
            values = block.toarray()
            rated = block.copy()
            rated.data = np.ones_like(rated.data)
            weights = self.similarity_[rows[at]] * rated.toarray()  # (B, n_rows)
            np.maximum(weights, 0.0, out=weights)  # keep positive similarities only
            mean, found = _neighbour_average(weights, values, self.k)
            pred[at] += mean
            covered[at] = found
        return (pred, covered) if return_coverage else pred

    def __repr__(self) -> str:
        return (f"KNNRegressor(kind={self.kind!r}, k={self.k}, shrinkage={self.shrinkage}, "
                f"min_support={self.min_support})")

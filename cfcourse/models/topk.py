"""The shared shape of every top-k (implicit-feedback) model: fit, scores, recommend.

An implicit model learns from *who interacted with what* (a frame with ``user`` and
``item`` columns, maybe ``timestamp``) and answers one question: for a user, a score for
every item of the catalogue, higher meaning "more likely next". Ranking those scores,
after removing the items the user already has, gives the recommendation list.

Every model subclasses :class:`TopKModel` and writes only ``fit`` (which calls
:meth:`TopKModel._start_fit` to index the ids and build the user × item matrix) and
``_scores(positions)``; :meth:`TopKModel.scores` and :meth:`TopKModel.recommend` are shared.
Fitted state ends in ``_``: ``users_``, ``items_`` (:class:`~cfcourse.data.encode.IdIndex`)
and, for factor models, ``user_factors_`` and ``item_factors_``.

Examples
--------
>>> import pandas as pd
>>> class CountModel(TopKModel):           # scores = how many users had the item
...     def fit(self, interactions):
...         matrix = self._start_fit(interactions)
...         self.counts_ = np.asarray(matrix.sum(axis=0)).ravel()
...         return self
...     def _scores(self, positions):
...         return np.tile(self.counts_, (len(positions), 1))
>>> frame = pd.DataFrame({"user": [1, 1, 2, 3], "item": [10, 20, 10, 10]})
>>> CountModel().fit(frame).recommend([2], k=1, exclude=frame)
{2: [20]}
"""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from cfcourse.data.encode import IdIndex
from cfcourse.metrics import check_k
from cfcourse.models.base import Params, check_fitted

__all__ = ["TopKModel", "check_interactions", "interaction_matrix", "single_threaded"]


@contextlib.contextmanager
def single_threaded():
    """Run the block with one BLAS thread and one torch thread, then restore both.

    Loops of tiny ``k × k`` solves or small batches lose time to thread start-up and, on a
    shared machine, to oversubscription; one thread is faster for them.
    """
    before = torch.get_num_threads()
    try:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(1, user_api="blas")
    except ImportError:  # threadpoolctl ships with scikit-learn and implicit; optional here
        limits = contextlib.nullcontext()
    torch.set_num_threads(1)
    try:
        with limits:
            yield
    finally:
        torch.set_num_threads(before)


def check_interactions(interactions: pd.DataFrame) -> None:
    """Raise a clear error unless ``interactions`` is a non-empty frame with ``user`` and ``item``."""
    if not isinstance(interactions, pd.DataFrame):
        raise TypeError(f"expected a DataFrame of interactions, got {type(interactions).__name__};"
                        " build one with pd.DataFrame({'user': ..., 'item': ...}).")
    missing = [c for c in ("user", "item") if c not in interactions.columns]
    if missing:
        raise ValueError(f"the interactions frame lacks column(s) {missing}; it has "
                         f"{list(interactions.columns)}. Rename them to 'user' and 'item'.")
    if len(interactions) == 0:
        raise ValueError("the interactions frame is empty; there is nothing to learn from.")
    if interactions[["user", "item"]].isna().to_numpy().any():
        raise ValueError("'user' or 'item' holds NaN; drop those rows before fitting.")


def interaction_matrix(interactions: pd.DataFrame, users: IdIndex, items: IdIndex,
                       values: np.ndarray | None = None) -> sp.csr_matrix:
    """The ``(len(users), len(items))`` CSR matrix with a 1 (or ``values``) at each pair.

    Pairs whose user or item is not in the indexes are dropped; duplicate pairs count
    once (their value is the largest given).
    """
    u = users.encode(interactions["user"].to_numpy(), unknown="ignore")
    i = items.encode(interactions["item"].to_numpy(), unknown="ignore")
    data = np.ones(len(u)) if values is None else np.asarray(values, dtype=np.float64)
    keep = (u >= 0) & (i >= 0)
    matrix = sp.coo_matrix((data[keep], (u[keep], i[keep])), shape=(len(users), len(items)))
    matrix = matrix.tocsr()
    matrix.sum_duplicates()
    if values is None:
        matrix.data[:] = 1.0  # a pair seen twice is still one interaction
    return matrix


class TopKModel(Params):
    """Base class: subclasses implement ``fit`` and ``_scores(positions) -> (n, n_items)``."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def _start_fit(self, interactions: pd.DataFrame) -> sp.csr_matrix:
        """Validate, index the ids (``users_``, ``items_``) and return the binary user × item matrix."""
        check_interactions(interactions)
        self.users_ = IdIndex(interactions["user"].to_numpy(), name="user")
        self.items_ = IdIndex(interactions["item"].to_numpy(), name="item")
        return interaction_matrix(interactions, self.users_, self.items_)

    def _check_fitted(self) -> None:
        check_fitted(self, "items_")

    def _scores(self, positions: np.ndarray) -> np.ndarray:
        raise NotImplementedError("a TopKModel subclass must implement _scores(positions).")

    def scores(self, users) -> np.ndarray:
        """Scores of every item for each of ``users``: shape ``(len(users), len(items_))``.

        Columns follow ``items_`` order (``items_.decode(j)`` is column ``j``'s item id).
        An unknown user raises ``KeyError``.
        """
        self._check_fitted()
        positions = self.users_.encode(np.atleast_1d(np.asarray(users)))
        out = np.asarray(self._scores(positions), dtype=np.float64)
        assert out.shape == (len(positions), len(self.items_)), out.shape
        return out

    def recommend(self, users, k: int = 10, exclude: pd.DataFrame | None = None,
                  batch_size: int = 1024) -> dict:
        """The ``k`` best items for each user, best first, as ``{user: [item, ...]}``.

        Parameters
        ----------
        users : sequence of user ids
            Every one must be in the training data (else ``KeyError``).
        k : int
            Length of each list (shorter only when fewer items are left).
        exclude : DataFrame with ``user``, ``item``, optional
            Pairs never recommended: pass the training interactions so that a user is not
            offered what they already have.
        """
        k = check_k(k)
        self._check_fitted()
        users = np.atleast_1d(np.asarray(users))
        self.users_.encode(users)  # fail early, naming the first unknown user
        k = min(int(k), len(self.items_))
        seen = None if exclude is None else interaction_matrix(exclude, self.users_, self.items_)
        lists = {}
        for start in range(0, len(users), batch_size):  # bounds the (batch, n_items) block
            chunk = users[start:start + batch_size]
            block = self.scores(chunk)
            if seen is not None:
                rows = seen[self.users_.encode(chunk)]
                r, c = rows.nonzero()
                block[r, c] = -np.inf
            top = np.argpartition(-block, k - 1, axis=1)[:, :k]  # (batch, k), unordered
            order = np.argsort(-np.take_along_axis(block, top, axis=1), axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            for user, row, cols in zip(chunk, block, top):
                cols = cols[np.isfinite(row[cols])]  # drop excluded items when few are left
                lists[user.item() if isinstance(user, np.generic) else user] = (
                    self.items_.decode(cols).tolist())
        return lists

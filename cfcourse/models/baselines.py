"""Baselines every recommender must beat: the global mean, and user + item biases.

Both are small estimators in scikit-learn's style: hyperparameters are stored
untouched by ``__init__``, ``fit(df)`` learns from scratch and returns ``self``,
learned state ends in ``_``, and ``predict(df)`` returns one number per row of
``df``, in the same order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cfcourse.data.encode import IdIndex
from cfcourse.data.validate import validate_ratings
from cfcourse.models.base import Params, check_fitted

__all__ = ["BiasBaseline", "GlobalMean"]

_UNKNOWN = ("raise", "bias")


def _check_query(df: pd.DataFrame, unknown: str) -> None:
    """Validate a frame of (user, item) pairs to predict and the unknown-id policy."""
    if unknown not in _UNKNOWN:
        raise ValueError(f"unknown={unknown!r} is not a policy; use 'raise' or 'bias'.")
    validate_ratings(df, columns=("user", "item"), allow_duplicates=True)


class GlobalMean(Params):
    """Predict the mean training rating for every pair: :math:`\\hat r_{ui} = \\mu`.

    The weakest sensible model; any other model must beat its RMSE.

    Examples
    --------
    >>> import pandas as pd
    >>> train = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "rating": [4.0, 2.0, 3.0]})
    >>> GlobalMean().fit(train).predict(train).tolist()
    [3.0, 3.0, 3.0]
    """

    def fit(self, df: pd.DataFrame) -> GlobalMean:
        """Learn :math:`\\mu`, the mean of ``df["rating"]``."""
        validate_ratings(df)
        self.mean_ = float(df["rating"].mean())
        return self

    def predict(self, df: pd.DataFrame, unknown: str = "raise") -> np.ndarray:
        """:math:`\\mu` for every row of ``df``; ``unknown`` is accepted for a common API."""
        check_fitted(self, "mean_")
        _check_query(df, unknown)
        return np.full(len(df), self.mean_)

    def __repr__(self) -> str:
        return "GlobalMean()"


class BiasBaseline(Params):
    """User and item biases around the global mean, with damping.

    .. math::

        \\hat r_{ui} = \\mu + b_u + b_i

    :math:`\\mu` is the mean training rating, :math:`b_u` how much user
    :math:`u` rates above or below it, and :math:`b_i` how much film :math:`i`
    is rated above or below it once its raters' own habits are removed.
    The biases are fitted by alternating least squares, ``n_iter`` rounds of

    .. math::

        b_i = \\frac{\\sum_{u \\in U_i} (r_{ui} - \\mu - b_u)}{\\lambda_i + n_i},
        \\qquad
        b_u = \\frac{\\sum_{i \\in I_u} (r_{ui} - \\mu - b_i)}{\\lambda_u + n_u},

    starting from :math:`b_u = 0`, where :math:`U_i` are the :math:`n_i` users
    who rated film :math:`i` and :math:`I_u` the :math:`n_u` films user
    :math:`u` rated. Each round minimises
    :math:`\\sum (r_{ui} - \\mu - b_u - b_i)^2 + \\lambda_u \\sum b_u^2 + \\lambda_i \\sum b_i^2`
    exactly in one set of biases with the other held fixed.

    Parameters
    ----------
    reg_user : float
        :math:`\\lambda_u`. Why: a user with three ratings should not get a
        large bias from so little evidence; it acts like ``reg_user`` extra
        ratings equal to the mean.
    reg_item : float
        :math:`\\lambda_i`. Why: the same damping for films, so one 5-star
        rating does not make an obscure film the best in the catalogue.
    n_iter : int
        Rounds of alternation. Why: user and item biases explain overlapping
        parts of the ratings, so each must be refitted after the other
        moves; a handful of rounds is enough to converge.

    Notes
    -----
    Unknown ids at predict time: ``unknown="raise"`` (default) raises a
    ``KeyError`` naming the first unknown id; ``unknown="bias"`` uses a bias
    of 0 for an unknown user or film, so an unknown user still gets
    :math:`\\mu + b_i`. The defaults (15, 10, 10 rounds) are those of
    Surprise's ``BaselineOnly``.

    Examples
    --------
    >>> import pandas as pd
    >>> train = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "rating": [4.0, 2.0, 3.0]})
    >>> model = BiasBaseline(reg_user=0, reg_item=0, n_iter=1).fit(train)
    >>> model.item_bias_.tolist()  # film 1: (4-3 + 3-3) / 2; film 2: (2-3) / 1
    [0.5, -1.0]
    """

    def __init__(self, reg_user: float = 15.0, reg_item: float = 10.0, n_iter: int = 10):
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.n_iter = n_iter

    def _check_params(self) -> None:
        for name in ("reg_user", "reg_item"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name}={value!r} must be a finite number >= 0.")
        if not isinstance(self.n_iter, (int, np.integer)) or self.n_iter < 1:
            raise ValueError(f"n_iter={self.n_iter!r} must be an integer >= 1.")

    def fit(self, df: pd.DataFrame) -> BiasBaseline:
        """Learn :math:`\\mu`, :math:`b_u` and :math:`b_i` from ``df`` (user, item, rating)."""
        self._check_params()
        validate_ratings(df)
        self.users_ = IdIndex(df["user"], name="user")
        self.items_ = IdIndex(df["item"], name="item")
        u = self.users_.encode(df["user"])  # (n,)
        i = self.items_.encode(df["item"])  # (n,)
        r = df["rating"].to_numpy(dtype=np.float64)  # (n,)
        self.mean_ = float(r.mean())
        n_u = np.bincount(u, minlength=len(self.users_))
        n_i = np.bincount(i, minlength=len(self.items_))
        b_u = np.zeros(len(self.users_))
        for _ in range(self.n_iter):
            b_i = np.bincount(i, r - self.mean_ - b_u[u], len(n_i)) / (self.reg_item + n_i)
            b_u = np.bincount(u, r - self.mean_ - b_i[i], len(n_u)) / (self.reg_user + n_u)
        self.user_bias_, self.item_bias_ = b_u, b_i
        return self

    def predict(self, df: pd.DataFrame, unknown: str = "raise") -> np.ndarray:
        """:math:`\\mu + b_u + b_i` for every row of ``df``, in order.

        Parameters
        ----------
        df : DataFrame
            Columns ``user`` and ``item``; other columns are ignored.
        unknown : {"raise", "bias"}
            What to do with an id that was not in the training data: raise a
            ``KeyError`` naming it, or use a bias of 0 for it.
        """
        check_fitted(self, "mean_")
        _check_query(df, unknown)
        policy = "raise" if unknown == "raise" else "ignore"
        u = self.users_.encode(df["user"], unknown=policy)  # -1 where unknown
        i = self.items_.encode(df["item"], unknown=policy)
        b_u = np.where(u >= 0, self.user_bias_[u], 0.0)
        b_i = np.where(i >= 0, self.item_bias_[i], 0.0)
        return self.mean_ + b_u + b_i

    def __repr__(self) -> str:
        return (f"BiasBaseline(reg_user={self.reg_user}, reg_item={self.reg_item}, "
                f"n_iter={self.n_iter})")

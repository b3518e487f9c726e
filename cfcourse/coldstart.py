"""Cold start from metadata: guess a newcomer's bias and factors from what we know about it.

A fitted model has a vector :math:`y_u = (b_u, p_u)` for every training user. A new
user has none, but has an age, a gender and an occupation. Ridge regression learns
a linear map from those features :math:`x_u` (one-hot columns) to the vectors:

.. math:: \\hat y = \\bar y + (x - \\bar x) W, \\qquad
          W = (X_c^\\top X_c + \\alpha I)^{-1} X_c^\\top Y_c

where :math:`X_c, Y_c` are the centred features and vectors of the training users.
The predicted vector then scores known films as usual,
:math:`\\hat r_{ui} = \\mu + \\hat b_u + b_i + \\hat p_u \\cdot q_i`. Films work the same
way, from genres and decade. With no features at all the map is the mean vector: the
*mean-embedding* baseline.

>>> features = user_features(load_users())          # doctest: +SKIP
>>> ridge = MetadataRidge().fit(features, embedding_table(model, "user"))  # doctest: +SKIP
>>> predict_with_vectors(model, new_pairs, user_vectors=ridge.predict(features))  # doctest: +SKIP
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from cfcourse.data.validate import validate_ratings
from cfcourse.models.base import Params, check_fitted
from cfcourse.recommender import Recommender

__all__ = ["AGE_EDGES", "MetadataRidge", "embedding_table", "item_features",
           "predict_with_vectors", "user_features"]

# MovieLens 1M's own age groups: under 18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+.
AGE_EDGES = (18, 25, 35, 45, 50, 56)


def user_features(users: pd.DataFrame, age_edges=AGE_EDGES) -> pd.DataFrame:
    """One-hot age group, gender and occupation, one row per user (index ``user``).

    >>> users = pd.DataFrame({"user": [1, 2], "age": [24, 60], "gender": ["M", "F"],
    ...                       "occupation": ["writer", "other"]})
    >>> user_features(users).columns.tolist()
    ['age 18-24', 'age 56+', 'gender F', 'gender M', 'occupation other', 'occupation writer']
    """
    missing = {"user", "age", "gender", "occupation"} - set(users.columns)
    if missing:
        raise ValueError(f"users lacks column(s) {sorted(missing)}; use cfcourse.data.load_users.")
    edges = list(age_edges)
    middle = [f"{a}-{b - 1}" for a, b in itertools.pairwise(edges)]
    labels = [f"<{edges[0]}", *middle, f"{edges[-1]}+"]
    group = pd.cut(users["age"], [-np.inf, *edges, np.inf], right=False, labels=labels)
    parts = [pd.get_dummies(group.astype(str), prefix="age", prefix_sep=" "),
             pd.get_dummies(users["gender"].astype(str), prefix="gender", prefix_sep=" "),
             pd.get_dummies(users["occupation"].astype(str), prefix="occupation", prefix_sep=" ")]
    out = pd.concat(parts, axis=1).astype(float)
    out.index = pd.Index(users["user"].to_numpy(), name="user")
    return out


def item_features(items: pd.DataFrame) -> pd.DataFrame:
    """Multi-hot genres and one-hot decade (``decade unknown`` when the year is missing).

    >>> items = pd.DataFrame({"item": [1, 2], "year": [1995, None],
    ...                       "genres": ["Comedy|Drama", "Drama"]})
    >>> item_features(items).columns.tolist()
    ['Comedy', 'Drama', 'decade 1990s', 'decade unknown']
    """
    missing = {"item", "year", "genres"} - set(items.columns)
    if missing:
        raise ValueError(f"items lacks column(s) {sorted(missing)}; use cfcourse.data.load_items.")
    genres = items["genres"].fillna("").astype(str).str.get_dummies(sep="|")
    year = pd.to_numeric(items["year"], errors="coerce")
    decade = (year // 10 * 10).map(lambda y: "unknown" if pd.isna(y) else f"{int(y)}s")
    out = pd.concat([genres, pd.get_dummies(decade, prefix="decade", prefix_sep=" ")], axis=1)
    out = out.astype(float)
    out.index = pd.Index(items["item"].to_numpy(), name="item")
    return out


def embedding_table(model: Recommender, side: str = "user") -> pd.DataFrame:
    """The learned ``bias, f0..f{k-1}`` of every user (or item), indexed by raw id."""
    if side not in ("user", "item"):
        raise ValueError(f"side must be 'user' or 'item', got {side!r}.")
    if model.kind != "dot_bias":
        raise TypeError(f"needs a kind='dot_bias' model, got kind={model.kind!r}.")
    bias = getattr(model, f"{side}_bias_")[:, None]  # (n, 1)
    factors = getattr(model, f"{side}_factors_")  # (n, k)
    columns = ["bias"] + [f"f{j}" for j in range(factors.shape[1])]
    ids = (model.users_ if side == "user" else model.items_).ids_
    return pd.DataFrame(np.hstack([bias, factors]), columns=columns,
                        index=pd.Index(ids, name=side))


class MetadataRidge(Params):
    """Ridge regression from metadata features to learned vectors, in closed form.

    Parameters
    ----------
    alphas : float or sequence of float
        Candidate L2 strengths on the weights (never on the intercept). Larger values
        pull every prediction towards the mean vector. With several candidates, ``fit``
        keeps the one with the smallest leave-one-out error on the training rows,
        computed exactly without refitting: the residual of row :math:`j` left out is
        :math:`e_j / (1 - h_{jj})`, with :math:`h_{jj}` its leverage. The new ids are
        never used to choose.

    Attributes
    ----------
    alpha_ : float
        The chosen strength.
    loo_errors_ : dict
        Mean squared leave-one-out error of each candidate.
    coef_ : ndarray, shape (n_features, n_targets)
    intercept_ : ndarray, shape (n_targets,)
        With no feature columns, ``intercept_`` is the mean vector.

    Examples
    --------
    >>> X = pd.DataFrame({"a": [1.0, 0.0, 1.0, 0.0]}, index=[1, 2, 3, 4])
    >>> Y = pd.DataFrame({"bias": [1.0, 0.0, 1.0, 0.0]}, index=[1, 2, 3, 4])
    >>> MetadataRidge(alphas=0.0).fit(X, Y).predict(X)["bias"].tolist()
    [1.0, 0.0, 1.0, 0.0]
    """

    def __init__(self, alphas=(0.1, 1.0, 10.0, 100.0, 1000.0)):
        self.alphas = alphas

    def __repr__(self) -> str:
        return f"MetadataRidge(alphas={self.alphas})"

    def fit(self, features: pd.DataFrame, targets: pd.DataFrame) -> MetadataRidge:
        """Learn the map for the rows of ``targets`` (their index picks rows of ``features``)."""
        alphas = np.atleast_1d(np.asarray(self.alphas, dtype=np.float64))
        if alphas.size == 0 or (alphas < 0).any():
            raise ValueError(f"alphas must be one or more numbers >= 0, got {self.alphas!r}.")
        missing = targets.index.difference(features.index)
        if len(missing):
            raise KeyError(f"id {missing[0]!r} has a learned vector but no features "
                           f"({len(missing)} such ids); build features for every id.")
        x = features.loc[targets.index].to_numpy(dtype=np.float64)  # (n, F)
        y = targets.to_numpy(dtype=np.float64)  # (n, T)
        self.feature_mean_, self.intercept_ = x.mean(axis=0), y.mean(axis=0)
        xc, yc = x - self.feature_mean_, y - self.intercept_
        fits = {float(a): _ridge(xc, yc, a) for a in alphas}  # alpha -> (coef, loo error)
        self.loo_errors_ = {a: loo for a, (_, loo) in fits.items()}
        self.alpha_ = min(self.loo_errors_, key=self.loo_errors_.get)
        self.coef_ = fits[self.alpha_][0]
        self.feature_names_ = list(features.columns)
        self.target_names_ = list(targets.columns)
        return self

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Predicted vectors, one row per row of ``features``, columns as the targets."""
        check_fitted(self, "coef_")
        if list(features.columns) != self.feature_names_:
            raise ValueError("features have other columns than at fit time; build the features "
                             "of old and new ids in one call so the one-hot columns agree.")
        x = features.to_numpy(dtype=np.float64) - self.feature_mean_
        return pd.DataFrame(x @ self.coef_ + self.intercept_, index=features.index,
                            columns=self.target_names_)


def _ridge(xc: np.ndarray, yc: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Weights for centred data, and the mean squared leave-one-out error."""
    gram = xc.T @ xc + alpha * np.eye(xc.shape[1])  # (F, F)
    inverse = np.linalg.pinv(gram)
    coef = inverse @ xc.T @ yc  # (F, T)
    leverage = np.einsum("nf,fg,ng->n", xc, inverse, xc) + 1.0 / len(xc)  # intercept too
    residual = (yc - xc @ coef) / (1.0 - leverage)[:, None]  # (n, T)
    return coef, float(np.mean(residual**2))


def _lookup(table: pd.DataFrame, ids: np.ndarray, name: str) -> np.ndarray:
    """Rows of a vector table for ``ids`` (bias first), raising for a missing id."""
    missing = ~pd.Index(ids).isin(table.index)
    if missing.any():
        first = ids[missing][0]
        first = first.item() if isinstance(first, np.generic) else first
        raise KeyError(f"{name} {first!r} has no vector; predict one for it first.")
    return table.loc[ids].to_numpy(dtype=np.float64)


def predict_with_vectors(model: Recommender, pairs: pd.DataFrame,
                         user_vectors: pd.DataFrame | None = None,
                         item_vectors: pd.DataFrame | None = None) -> np.ndarray:
    """Predict ratings with vectors from outside the model for new users or items.

    .. math:: \\hat r_{ui} = \\mu + b_u + b_i + p_u \\cdot q_i

    Users are looked up in ``user_vectors`` when it is given, otherwise in the model;
    the same for items. Tables have the columns of :func:`embedding_table`. The
    result is clipped to the model's rating range, like ``model.predict``.
    """
    validate_ratings(pairs, columns=("user", "item"), allow_duplicates=True)
    if user_vectors is None:
        user_vectors = embedding_table(model, "user")
    if item_vectors is None:
        item_vectors = embedding_table(model, "item")
    u = _lookup(user_vectors, pairs["user"].to_numpy(), "user")  # (n, 1 + k)
    i = _lookup(item_vectors, pairs["item"].to_numpy(), "item")  # (n, 1 + k)
    if u.shape[1] != i.shape[1]:
        raise ValueError(f"user vectors have {u.shape[1]} columns, item vectors {i.shape[1]}; "
                         "both need bias plus the model's factors.")
    mean = model.global_mean_
    scores = mean + u[:, 0] + i[:, 0] + np.einsum("nk,nk->n", u[:, 1:], i[:, 1:])
    low, high = model.rating_range_
    return np.clip(scores, low, high)

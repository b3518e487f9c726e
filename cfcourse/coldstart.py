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

from cfcourse.data.split import cold_user_split
from cfcourse.data.validate import validate_ratings
from cfcourse.metrics import evaluate_ranking
from cfcourse.models.base import Params, check_fitted
from cfcourse.models.ials import ImplicitALS
from cfcourse.models.popularity import Popularity
from cfcourse.models.two_tower import TwoTowerModel
from cfcourse.recommender import Recommender

__all__ = ["AGE_EDGES", "MetadataRidge", "embedding_table", "item_features", "newcomer_lists",
           "newcomer_table", "predict_with_vectors", "user_features"]

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


# -- brand-new users: popularity, the metadata ridge and a features-only two-tower model ------

NEWCOMER_METHODS = ("popularity", "metadata ridge", "two-tower", "ablation: unit-vector towers")


def _top_lists(scores: np.ndarray, users, item_index, k: int) -> dict:
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return {user: item_index.decode(row).tolist() for user, row in zip(users, top)}


def newcomer_lists(method: str, train: pd.DataFrame, new_x: pd.DataFrame,
                   user_x: pd.DataFrame, item_x: pd.DataFrame, seed: int, settings: dict) -> dict:
    """Top-k lists for the users of ``new_x`` (their features only) from ``train``.

    ``method`` is one of ``NEWCOMER_METHODS``; the learned ones read the columns of
    ``new_x`` from ``user_x``. ``settings``: ``k``, ``n_factors``, ``epochs`` (two-tower),
    ``als_iter`` (iALS) and ``batch_size``.
    """
    if method not in NEWCOMER_METHODS:
        raise ValueError(f"method must be one of {NEWCOMER_METHODS}, got {method!r}.")
    k, columns = settings["k"], list(new_x.columns)
    if method == "popularity":
        pop = Popularity().fit(train)  # one list, the same for every newcomer
        top = pop.items_.decode(np.argsort(-pop.counts_, kind="stable")[:k]).tolist()
        return {user: top for user in new_x.index}
    if method == "metadata ridge":  # chapter 6's map, onto iALS's user factors
        als = ImplicitALS(n_factors=settings["n_factors"], reg=1.0, n_iter=settings["als_iter"],
                          random_state=seed).fit(train)
        targets = pd.DataFrame(als.user_factors_, index=als.users_.ids_)
        guessed = MetadataRidge().fit(user_x[columns], targets).predict(new_x).to_numpy()
        return _top_lists(guessed @ als.item_factors_.T, new_x.index, als.items_, k)
    common = {"n_factors": settings["n_factors"], "id_dropout": 1.0,
              "epochs": settings["epochs"], "batch_size": settings["batch_size"],
              "random_state": seed}
    if method == "two-tower":  # linear towers, item bias at log q, user tower from zero
        tower = TwoTowerModel(hidden=0, normalize=False, temperature=1.0, item_bias=True,
                              **common)
    else:  # the ablation: the known-user model's unit-vector MLP towers
        tower = TwoTowerModel(**common)
    tower.fit(train, user_x[columns], item_x)
    return tower.recommend_new(new_x, k)


def newcomer_table(interactions: pd.DataFrame, user_x: pd.DataFrame, item_x: pd.DataFrame,
                   seeds=(0, 1, 2), feature_sets: dict | None = None, frac: float = 0.2,
                   k: int = 10, n_factors: int = 32, epochs: int = 4, als_iter: int = 10,
                   batch_size: int = 1024) -> pd.DataFrame:
    """NDCG@k on users held out entirely (``cold_user_split``), one row per method and seed.

    Methods: ``popularity``; ``metadata ridge`` (iALS factors for the training users, a
    ridge map from features to them, the guess scored against iALS's item factors);
    ``two-tower`` (a :class:`~cfcourse.models.two_tower.TwoTowerModel` reading features
    only, with linear towers and an item bias started at :math:`\\log q_i`); and an
    ablation, the unit-vector MLP towers on all features. The ridge and the two-tower each
    choose one of ``feature_sets`` (name -> columns of ``user_x``; default: all columns)
    by NDCG on an inner cold split of the training users, so the held-out users are never
    looked at. Each seed draws the held-out users and seeds the training.
    """
    feature_sets = feature_sets or {"all": list(user_x.columns)}
    unknown = {c for cols in feature_sets.values() for c in cols} - set(user_x.columns)
    if unknown:
        raise ValueError(f"feature_sets name columns that user_x lacks: {sorted(unknown)}.")
    settings = {"k": k, "n_factors": n_factors, "epochs": epochs, "als_iter": als_iter,
                "batch_size": batch_size}

    def ndcg(lists, test):
        return float(evaluate_ranking(lists, test, k=k, threshold=1.0)["ndcg"])

    def features_of(test, columns):
        return user_x.loc[np.unique(test["user"]), columns]

    rows = []
    for seed in seeds:
        warm, cold = cold_user_split(interactions, frac=frac, seed=seed)
        inner, check = cold_user_split(warm, frac=frac, seed=seed + 1000)
        for method in NEWCOMER_METHODS:
            if method == "popularity":
                chosen, columns = "-", []
            elif method.startswith("ablation"):
                chosen, columns = "all", list(user_x.columns)
            else:
                chosen = max(feature_sets, key=lambda name: ndcg(newcomer_lists(
                    method, inner, features_of(check, feature_sets[name]), user_x, item_x,
                    seed, settings), check)) if len(feature_sets) > 1 else next(iter(feature_sets))
                columns = feature_sets[chosen]
            lists = newcomer_lists(method, warm, features_of(cold, columns), user_x, item_x,
                                    seed, settings)
            rows.append({"method": method, "seed": seed, "features": chosen,
                         "ndcg": ndcg(lists, cold)})
    return pd.DataFrame(rows)

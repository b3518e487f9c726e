"""Reading a fitted model: film biases, a map of the films, one prediction taken apart.

Everything speaks in raw ids and titles, never in embedding rows, so a table can
be read next to the data it came from::

    bias_table(model, train, min_ratings=100)   # item, title, n_ratings, mean_rating, bias
    coords, explained = pca_items(model, items=[50, 100, 181])
    explain_prediction(model, user=1, item=50)  # mean + user bias + item bias + taste

The model is a :class:`~cfcourse.recommender.Recommender` of ``kind="dot_bias"``,
whose prediction is :math:`\\hat r_{ui} = \\mu + b_u + b_i + p_u \\cdot q_i`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cfcourse.data.validate import validate_ratings
from cfcourse.recommender import Recommender

__all__ = ["axis_ends", "bias_table", "explain_prediction", "pca_items"]


def _check_dot_bias(model: Recommender) -> None:
    """Reading biases and factors needs the biased dot-product model."""
    if model.kind != "dot_bias":
        raise TypeError(f"reading biases and factors needs a kind='dot_bias' model, "
                        f"got kind={model.kind!r}.")


def _title(model: Recommender, item) -> str:
    """The film's title when the model knows it, else its id as text."""
    key = int(item) if isinstance(item, (int, np.integer)) else item
    return model.titles_.get(key, str(item))


def _titles(model: Recommender, ids) -> list[str]:
    return [_title(model, i) for i in ids]


def bias_table(model: Recommender, ratings: pd.DataFrame, min_ratings: int = 1) -> pd.DataFrame:
    """Each film's learned bias next to its plain mean rating, most rated first.

    Parameters
    ----------
    model : Recommender
        A fitted ``kind="dot_bias"`` model.
    ratings : DataFrame
        The frame the model was trained on (``user, item, rating``); it gives
        ``n_ratings`` and ``mean_rating``.
    min_ratings : int
        Keep films with at least this many ratings.

    Returns
    -------
    DataFrame with ``item, title, n_ratings, mean_rating, bias``. The bias
    :math:`b_i` is what the film adds to every prediction, whoever the user.

    Examples
    --------
    >>> bias_table(model, train, min_ratings=300).head(3)  # doctest: +SKIP
    """
    validate_ratings(ratings)
    _check_dot_bias(model)
    item_bias = model.item_bias_
    stats = ratings.groupby("item")["rating"].agg(n_ratings="size", mean_rating="mean")
    stats = stats[stats["n_ratings"] >= min_ratings]
    known = model.items_.known(stats.index.to_numpy())
    if not known.all():
        first = stats.index[~known][0]
        raise KeyError(f"item {first} is in ratings but not in the model; pass the frame "
                       "the model was trained on.")
    table = stats.reset_index()
    table.insert(1, "title", _titles(model, table["item"]))
    table["mean_rating"] = table["mean_rating"].astype(float)
    table["bias"] = item_bias[model.items_.encode(table["item"].to_numpy())].astype(float)
    return table.sort_values(["n_ratings", "item"], ascending=[False, True],
                             ignore_index=True)


def pca_items(model: Recommender, items: Sequence,
              n_components: int = 2) -> tuple[pd.DataFrame, np.ndarray]:
    """Project the factor vectors of ``items`` onto their first principal components.

    The vectors :math:`q_i` are centred, :math:`X = Q - \\bar q`, and factorised by
    the SVD :math:`X = U S V^\\top`; the coordinates are :math:`X V_{:, :c} = U_{:, :c}
    S_{:c}`. The sign of an axis is arbitrary (``-v`` is as good as ``v``); we flip each
    one so that the film furthest from the centre along it lands on the positive side.

    Returns
    -------
    (coords, explained) : DataFrame with ``item, title, pc1..pcC``, and the share of
    the centred vectors' variance each component explains, shape ``(C,)``.
    """
    items = np.asarray(items)
    _check_dot_bias(model)
    n_factors = model.item_factors_.shape[1]
    if len(items) < 2 or not 1 <= n_components <= min(len(items), n_factors):
        raise ValueError(f"need at least 2 items and 1 <= n_components <= min(items, factors), "
                         f"got {len(items)} items and n_components={n_components}.")
    vectors = model.item_factors_[model.items_.encode(items)]  # (n, k)
    centred = vectors - vectors.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    coords = centred @ vt[:n_components].T  # (n, C)
    extreme = np.abs(coords).argmax(axis=0)  # the film furthest out on each axis
    coords *= np.sign(coords[extreme, np.arange(n_components)])  # ... gets a positive value
    frame = pd.DataFrame({"item": items, "title": _titles(model, items)})
    for c in range(n_components):
        frame[f"pc{c + 1}"] = coords[:, c]
    explained = singular[:n_components] ** 2 / (singular**2).sum()
    return frame, explained


def axis_ends(coords: pd.DataFrame, axis: str = "pc1", n: int = 5) -> pd.DataFrame:
    """The ``n`` titles at the low end and at the high end of one axis, side by side."""
    if axis not in coords.columns:
        raise KeyError(f"no axis {axis!r}; the frame has {list(coords.columns)}.")
    ordered = coords.sort_values(axis, kind="stable")
    n = min(n, len(ordered))
    low = ordered.head(n)["title"].tolist()
    high = ordered.tail(n)["title"].tolist()[::-1]
    return pd.DataFrame({f"low {axis}": low, f"high {axis}": high})


def explain_prediction(model: Recommender, user, item) -> pd.Series:
    """One prediction taken apart: ``mean + user_bias + item_bias + taste``.

    ``taste`` is the dot product :math:`p_u \\cdot q_i`; ``total`` is their sum,
    before clipping to the star range (``model.predict`` clips it).
    """
    _check_dot_bias(model)
    u = int(model.users_.encode([user])[0])
    i = int(model.items_.encode([item])[0])
    parts = {
        "mean": model.global_mean_,
        "user_bias": float(model.user_bias_[u]),
        "item_bias": float(model.item_bias_[i]),
        "taste": float(model.user_factors_[u] @ model.item_factors_[i]),
    }
    parts["total"] = sum(parts.values())
    return pd.Series(parts, name=_title(model, item))

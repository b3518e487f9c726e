"""A network that sees metadata: film genres, and each user's age, gender and occupation.

Collaborative filtering learns everything from ratings. MovieLens also says what a
film is (its genres) and who a user is (age, gender, occupation). :class:`MetaNN`
concatenates those, per rating, with the usual user and item embeddings and feeds
the lot to a small MLP.

The metadata is stored inside the model as lookup tables aligned with the model's
rows (built by :func:`side_info`), so the model still takes ``(B, 2)`` index pairs
and plugs into ``fit_plain`` or a fastai ``Learner`` like every other model.

Unknown policy: an id with no metadata row, or a category outside a reused
vocabulary, raises ``KeyError``/``ValueError`` naming it, or with
``unknown="fill"`` becomes the reserved category ``#unknown#`` (row 0 of each
vocabulary), the mean age, and no genres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from cfcourse.models.dot_product import embedding, sigmoid_range
from cfcourse.models.neural import emb_sz_rule, mlp

__all__ = ["UNKNOWN", "MetaNN", "SideInfo", "side_info"]

UNKNOWN = "#unknown#"  # row 0 of every categorical vocabulary


@dataclass
class SideInfo:
    """Metadata tables aligned with a model's user and item rows.

    Attributes
    ----------
    genres : Tensor
        ``(n_items, n_genres)`` multi-hot float: ``genres[i, g] = 1`` if item ``i``
        has genre ``genre_names[g]``.
    age : Tensor
        ``(n_users,)`` standardised age, ``(age - age_mean) / age_std``.
    gender, occupation : Tensor
        ``(n_users,)`` long positions in ``gender_names`` / ``occupation_names``;
        0 is :data:`UNKNOWN`.
    """

    genres: torch.Tensor
    age: torch.Tensor
    gender: torch.Tensor
    occupation: torch.Tensor
    genre_names: list
    gender_names: list
    occupation_names: list
    age_mean: float
    age_std: float

    def __repr__(self) -> str:
        return (f"SideInfo({len(self.age)} users, {len(self.genres)} items, "
                f"{len(self.genre_names)} genres, {len(self.occupation_names) - 1} occupations, "
                f"{len(self.gender_names) - 1} genders)")


def _rows(frame: pd.DataFrame, key: str, ids, unknown: str) -> np.ndarray:
    """Position of each id in ``frame[key]``; -1 for a missing id when filling."""
    if frame[key].duplicated().any():
        first = frame[key][frame[key].duplicated()].iloc[0]
        raise ValueError(f"the {key}s table lists {key} {first!r} twice; keep one row per {key}.")
    where = pd.Index(frame[key]).get_indexer(pd.Index(list(ids), dtype=object))
    if unknown == "raise" and (where < 0).any():
        first = list(ids)[int(np.argmax(where < 0))]
        raise KeyError(f"{key} {first!r} has no row in the {key}s table; pass unknown='fill' "
                       f"to give it the {UNKNOWN} category, the mean age and no genres.")
    return where


def _encode(values: pd.Series, vocabulary: list, what: str, unknown: str) -> np.ndarray:
    codes = pd.Index(vocabulary).get_indexer(values.astype(object))
    bad = (codes < 0) & values.notna().to_numpy()
    if unknown == "raise" and bad.any():
        raise ValueError(f"{what} {values[bad].iloc[0]!r} is not in the vocabulary "
                         f"{vocabulary[1:]}; pass unknown='fill' to map it to {UNKNOWN}.")
    return np.where(codes < 0, 0, codes)


def _multi_hot(split: pd.Series, genre_names: list, unknown: str) -> np.ndarray:
    """``(n_items, n_genres)`` 0/1 rows from lists of genre names."""
    multi_hot = np.zeros((len(split), len(genre_names)), dtype=np.float32)
    position = {g: k for k, g in enumerate(genre_names)}
    for row, gs in enumerate(split):
        extra = [g for g in gs if g and g not in position]
        if extra and unknown == "raise":
            raise ValueError(f"genre {extra[0]!r} is not in the vocabulary {genre_names}; "
                             "pass unknown='fill' to drop it.")
        multi_hot[row, [position[g] for g in gs if g in position]] = 1.0
    return multi_hot


def _check_frames(users: pd.DataFrame, items: pd.DataFrame) -> None:
    for frame, name, cols in ((users, "users", ("user", "age", "gender", "occupation")),
                              (items, "items", ("item", "genres"))):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"the {name} table lacks column(s) {missing}; "
                             f"load it with cfcourse.data.load_{name}().")
    if users["age"].isna().any():
        raise ValueError("the users table has missing ages; fill them (e.g. with the median).")


def side_info(user_ids, item_ids, users: pd.DataFrame, items: pd.DataFrame,
              unknown: str = "raise", like: SideInfo | None = None) -> SideInfo:
    """Build :class:`SideInfo` for the given row order of users and items.

    Parameters
    ----------
    user_ids, item_ids : sequence
        Raw ids in the model's row order, e.g. ``IdIndex.ids_`` or fastai's
        ``dls.classes["user"]``.
    users, items : DataFrame
        :func:`cfcourse.data.load_users` (``user, age, gender, occupation``) and
        :func:`cfcourse.data.load_items` (``item, genres`` as ``"Action|Comedy"``).
    unknown : {"raise", "fill"}
        What to do with an id that has no metadata row, or a category outside
        ``like``'s vocabulary: raise, or use :data:`UNKNOWN`, the mean age, no genres.
    like : SideInfo, optional
        Reuse its vocabularies and age scaling (e.g. for users added later), so
        the positions mean what a trained model learned.

    Examples
    --------
    >>> users = pd.DataFrame({"user": [1, 2], "age": [20, 40], "gender": ["F", "M"],
    ...                       "occupation": ["writer", "other"]})
    >>> items = pd.DataFrame({"item": [7], "genres": ["Comedy|Drama"]})
    >>> side_info([1, 2], [7], users, items)
    SideInfo(2 users, 1 items, 2 genres, 2 occupations, 2 genders)
    """
    if unknown not in ("raise", "fill"):
        raise ValueError(f"unknown must be 'raise' or 'fill', got {unknown!r}.")
    _check_frames(users, items)
    u_rows, i_rows = _rows(users, "user", user_ids, unknown), _rows(items, "item", item_ids, unknown)
    split = items["genres"].fillna("").astype(str).str.split("|")
    if like is None:
        genre_names = sorted({g for gs in split for g in gs if g})
        gender_names = [UNKNOWN, *sorted(users["gender"].dropna().astype(str).unique())]
        occupation_names = [UNKNOWN, *sorted(users["occupation"].dropna().astype(str).unique())]
        age_mean, age_std = float(users["age"].mean()), float(users["age"].std(ddof=0) or 1.0)
    else:
        genre_names, gender_names, occupation_names = (like.genre_names, like.gender_names,
                                                       like.occupation_names)
        age_mean, age_std = like.age_mean, like.age_std
    multi_hot = _multi_hot(split, genre_names, unknown)
    ages = (users["age"].to_numpy(dtype=np.float32) - age_mean) / age_std
    genders = _encode(users["gender"], gender_names, "gender", unknown)
    jobs = _encode(users["occupation"], occupation_names, "occupation", unknown)

    def pick(table, rows, fill):  # rows of `table` in model order; `fill` where -1
        return np.where((rows >= 0).reshape(-1, *[1] * (table.ndim - 1)), table[rows], fill)

    return SideInfo(
        genres=torch.tensor(pick(multi_hot, i_rows, 0.0), dtype=torch.float32),
        age=torch.tensor(pick(ages, u_rows, 0.0), dtype=torch.float32),
        gender=torch.tensor(pick(genders, u_rows, 0), dtype=torch.long),
        occupation=torch.tensor(pick(jobs, u_rows, 0), dtype=torch.long),
        genre_names=list(genre_names), gender_names=list(gender_names),
        occupation_names=list(occupation_names), age_mean=age_mean, age_std=age_std)



class MetaNN(nn.Module):
    r"""An MLP on user and item embeddings plus their metadata.

    .. math::

        \hat r_{ui} = \sigma_{[a,b]}\big(\mathrm{MLP}([e_u;\, e_i;\, g_i;\,
        o_{c(u)};\, s_{s(u)};\, a_u])\big)

    where :math:`e_u, e_i` are the user and item embeddings, :math:`g_i` the
    item's multi-hot genres, :math:`o_{c(u)}` and :math:`s_{s(u)}` embeddings of
    the user's occupation and gender, and :math:`a_u` the standardised age. The
    MLP is ``Linear -> ReLU -> Dropout`` per entry of ``layers``, then a linear
    output. With ``use_ids=False`` the id embeddings are left out: the model
    then predicts from metadata alone, so a new user or film with known metadata
    can be scored (cold start).

    Examples
    --------
    >>> users = pd.DataFrame({"user": [1, 2], "age": [20, 40], "gender": ["F", "M"],
    ...                       "occupation": ["writer", "other"]})
    >>> items = pd.DataFrame({"item": [7, 8], "genres": ["Comedy", "Drama|War"]})
    >>> model = MetaNN(side_info([1, 2], [7, 8], users, items), layers=(8,))
    >>> model(torch.tensor([[0, 1], [1, 0]])).shape
    torch.Size([2])
    """

    def __init__(self, side: SideInfo, user_sz: int | None = None, item_sz: int | None = None,
                 layers: tuple[int, ...] = (100,), dropout: float = 0.0,
                 y_range: tuple[float, float] | None = (0, 5.5), use_ids: bool = True):
        super().__init__()
        n_users, n_items = len(side.age), len(side.genres)
        n_jobs, n_genders = len(side.occupation_names), len(side.gender_names)
        self.use_ids, self.y_range = use_ids, y_range
        width = len(side.genre_names) + emb_sz_rule(n_jobs) + emb_sz_rule(n_genders) + 1
        if use_ids:
            user_sz, item_sz = user_sz or emb_sz_rule(n_users), item_sz or emb_sz_rule(n_items)
            self.user_factors = embedding(n_users, user_sz)
            self.item_factors = embedding(n_items, item_sz)
            width += user_sz + item_sz
        self.occupation_factors = embedding(n_jobs, emb_sz_rule(n_jobs))
        self.gender_factors = embedding(n_genders, emb_sz_rule(n_genders))
        for name in ("genres", "age", "gender", "occupation"):
            self.register_buffer(name, getattr(side, name).clone())
        self.layers = mlp(width, layers, dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP's input for a batch of ``(user, item)`` rows: ``(B, width)``."""
        u, i = x[:, 0], x[:, 1]
        parts = [self.genres[i],  # (B, n_genres)
                 self.occupation_factors(self.occupation[u]),  # (B, occupation width)
                 self.gender_factors(self.gender[u]),  # (B, gender width)
                 self.age[u][:, None]]  # (B, 1)
        if self.use_ids:
            parts = [self.user_factors(u), self.item_factors(i), *parts]
        return torch.cat(parts, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.features(x))[:, 0]  # (B,)
        return out if self.y_range is None else sigmoid_range(out, *self.y_range)

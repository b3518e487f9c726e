"""Can an MLP learn a dot product? A world whose ratings come from one, with the truth kept.

A network on concatenated embeddings (:class:`cfcourse.models.neural.CollabNN`) can in
principle approximate any function of a user and an item, the dot product
included. Rendle et al. (2020, *Neural Collaborative Filtering vs. Matrix
Factorization Revisited*) showed that *learning* a dot product that way
takes far more data than fitting one directly. To test that claim we need ratings
whose generating function we know::

    r_ui = p_u · q_i + eps,    eps ~ N(0, noise²)

with planted factors ``p_u, q_i`` scaled so that ``p_u · q_i`` has a standard
deviation of about 1. :meth:`DotWorld.ratings` draws training ratings from a
fixed random order of all (user, item) pairs, so a larger sample contains every
smaller one; :meth:`DotWorld.test_pairs` holds pairs that no sample ever
contains, with their noiseless truth; :func:`rmse_to_truth` measures how far a
model's predictions are from it. Users and items are positions ``0..n-1``, so the
frames feed :func:`cfcourse.train.fit_plain` directly.

Examples
--------
>>> world = dot_world(n_users=30, n_items=20, n_factors=2, n_test=50, seed=0)
>>> world
DotWorld(30 users, 20 items, 2 factors, noise 0.5, 50 test pairs, up to 550 ratings)
>>> world.ratings(100).columns.tolist()
['user', 'item', 'rating']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

__all__ = ["DotWorld", "dot_world", "frame_tensors", "rmse_to_truth"]

_MAX_PAIRS = 10_000_000  # every (user, item) pair gets a slot in memory


@dataclass
class DotWorld:
    """Planted factors, the noise level and a fixed random order of all (user, item) pairs.

    Attributes
    ----------
    user_factors, item_factors : ndarray
        ``(n_users, k)`` and ``(n_items, k)`` planted factors ``p_u`` and ``q_i``.
    noise : float
        Standard deviation of the Gaussian noise added to each observed rating.
    n_test : int
        The first ``n_test`` pairs of the order are the test pairs.
    order : ndarray
        Every pair key ``user * n_items + item``, shuffled once.
    eps : ndarray
        The noise of each pair in ``order``, drawn once, so a pair keeps its rating.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    noise: float
    n_test: int
    order: np.ndarray
    eps: np.ndarray

    @property
    def max_ratings(self) -> int:
        """How many training ratings the world can give (all pairs but the test pairs)."""
        return len(self.order) - self.n_test

    def __repr__(self) -> str:
        return (f"DotWorld({len(self.user_factors)} users, {len(self.item_factors)} items, "
                f"{self.user_factors.shape[1]} factors, noise {self.noise:g}, "
                f"{self.n_test} test pairs, up to {self.max_ratings} ratings)")

    def truth(self, user, item) -> np.ndarray:
        """The noiseless score ``p_u · q_i`` of each (user, item) pair."""
        user, item = np.asarray(user), np.asarray(item)
        return np.einsum("nk,nk->n", self.user_factors[user], self.item_factors[item])

    def _frame(self, keys: np.ndarray) -> pd.DataFrame:
        user, item = np.divmod(keys, len(self.item_factors))
        return pd.DataFrame({"user": user, "item": item})

    def ratings(self, n_ratings: int) -> pd.DataFrame:
        """``n_ratings`` observed ratings: truth plus noise, never a test pair.

        The sample is the first ``n_ratings`` pairs after the test pairs, so
        ``ratings(1000)`` contains every rating of ``ratings(500)``.
        """
        if not 1 <= n_ratings <= self.max_ratings:
            raise ValueError(f"n_ratings must be between 1 and {self.max_ratings} (the pairs "
                             f"that are not test pairs), got {n_ratings}.")
        rows = slice(self.n_test, self.n_test + n_ratings)
        frame = self._frame(self.order[rows])
        frame["rating"] = (self.truth(frame["user"], frame["item"])
                           + self.eps[rows]).astype(np.float32)
        return frame

    def test_pairs(self) -> pd.DataFrame:
        """The held-out pairs with their noiseless truth (column ``truth``)."""
        frame = self._frame(self.order[:self.n_test])
        frame["truth"] = self.truth(frame["user"], frame["item"]).astype(np.float32)
        return frame


def dot_world(n_users: int = 200, n_items: int = 200, n_factors: int = 8, noise: float = 0.5,
              n_test: int = 5000, seed: int = 0) -> DotWorld:
    """A :class:`DotWorld` with factors drawn from ``N(0, 1/sqrt(n_factors))``.

    Each product ``p_uk q_ik`` then has variance ``1 / n_factors``, so the truth
    ``p_u · q_i`` has a standard deviation of about 1 whatever ``n_factors`` is.
    """
    if min(n_users, n_items, n_factors) < 1:
        raise ValueError("n_users, n_items and n_factors must all be at least 1.")
    if n_users * n_items > _MAX_PAIRS:
        raise ValueError(f"{n_users} x {n_items} pairs are more than {_MAX_PAIRS:,}; this world "
                         "keeps every pair in memory, so use fewer users or items.")
    if not 0 < n_test < n_users * n_items:
        raise ValueError(f"n_test must be between 1 and {n_users * n_items - 1}, got {n_test}.")
    if noise < 0:
        raise ValueError(f"noise is a standard deviation and must be >= 0, got {noise}.")
    rng = np.random.default_rng(seed)
    scale = n_factors ** -0.25
    p = rng.normal(0, scale, (n_users, n_factors))
    q = rng.normal(0, scale, (n_items, n_factors))
    order = rng.permutation(n_users * n_items)
    eps = rng.normal(0, noise, len(order)) if noise > 0 else np.zeros(len(order))
    return DotWorld(p, q, float(noise), int(n_test), order, eps)


def frame_tensors(frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(x, y)`` for :func:`cfcourse.train.fit_plain`: ``(n, 2)`` positions and ``(n,)`` ratings.

    ``y`` is None when the frame has no ``rating`` column (test pairs).
    """
    x = torch.tensor(frame[["user", "item"]].to_numpy(dtype=np.int64))  # a copy: (n, 2)
    y = (torch.tensor(frame["rating"].to_numpy(dtype=np.float32))
         if "rating" in frame.columns else None)
    return x, y


@torch.no_grad()
def rmse_to_truth(model: nn.Module, world: DotWorld, pairs: pd.DataFrame | None = None) -> float:
    """Root mean squared distance between ``model``'s predictions and the noiseless truth.

    .. math:: \\sqrt{\\tfrac1n \\sum_{(u,i)} (\\hat r_{ui} - p_u \\cdot q_i)^2}

    over ``pairs`` (default: the world's test pairs, which no sample contains).
    The model is put in evaluation mode and fed a batch on its own device.
    """
    pairs = world.test_pairs() if pairs is None else pairs
    x, _ = frame_tensors(pairs)
    device = next(model.parameters()).device
    model.eval()
    pred = model(x.to(device)).double().cpu().numpy()
    truth = world.truth(pairs["user"], pairs["item"])
    return float(np.sqrt(np.mean((pred - truth) ** 2)))

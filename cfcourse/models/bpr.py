"""Bayesian personalised ranking (Rendle et al. 2009), in PyTorch with a hand-derived gradient.

BPR learns from triples :math:`(u, i, j)`: user :math:`u` has item :math:`i` and not item
:math:`j` (drawn at random), and it wants :math:`i` ranked above :math:`j`. With the score
:math:`s_{ui} = p_u^\\top q_i + b_i` and the gap :math:`x_{uij} = s_{ui} - s_{uj}`,
each triple's loss is

.. math:: \\ell = -\\log \\sigma(x_{uij}) + \\tfrac{\\lambda}{2}
          (\\|p_u\\|^2 + \\|q_i\\|^2 + \\|q_j\\|^2 + b_i^2 + b_j^2).

With :math:`g = -\\sigma(-x_{uij})` (the slope of :math:`-\\log\\sigma` at :math:`x_{uij}`) the gradient is

.. math:: \\partial_{p_u} = g (q_i - q_j) + \\lambda p_u, \\quad
          \\partial_{q_i} = g\\, p_u + \\lambda q_i, \\quad
          \\partial_{q_j} = -g\\, p_u + \\lambda q_j, \\quad
          \\partial_{b_i} = g + \\lambda b_i, \\quad \\partial_{b_j} = -g + \\lambda b_j.

:func:`bpr_gradients` writes exactly this, checked against autograd in the tests; the fit
applies it as SGD, one mini-batch of triples at a time (each triple's own step, summed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from cfcourse.models.topk import TopKModel, single_threaded

__all__ = ["BPR", "bpr_gradients", "bpr_loss"]


def bpr_loss(p_u, q_i, q_j, b_i, b_j, reg: float) -> torch.Tensor:
    """Summed BPR loss of a batch of triples; shapes ``(B, k)`` and ``(B,)``."""
    gap = (p_u * (q_i - q_j)).sum(1) + b_i - b_j  # x_uij, (B,)
    penalty = (p_u**2).sum() + (q_i**2).sum() + (q_j**2).sum() + (b_i**2).sum() + (b_j**2).sum()
    return -torch.nn.functional.logsigmoid(gap).sum() + reg / 2 * penalty


def bpr_gradients(p_u, q_i, q_j, b_i, b_j, reg: float) -> tuple[torch.Tensor, ...]:
    """The gradient of :func:`bpr_loss` for each argument, by hand (see the module docstring)."""
    gap = (p_u * (q_i - q_j)).sum(1) + b_i - b_j
    g = -torch.sigmoid(-gap)  # (B,)
    return (g[:, None] * (q_i - q_j) + reg * p_u, g[:, None] * p_u + reg * q_i,
            -g[:, None] * p_u + reg * q_j, g + reg * b_i, -g + reg * b_j)


class BPR(TopKModel):
    """Matrix factorisation trained with the BPR pairwise loss.

    Parameters
    ----------
    n_factors : int
        Length of each user and item vector.
    reg : float
        :math:`\\lambda` on the rows a triple touches.
    lr : float
        SGD step per triple.
    n_iter : int
        Epochs; one epoch draws as many triples as there are interactions.
    batch_size : int
        Triples per step.
    random_state : int
        Seeds the initial factors and the sampled triples.

    Examples
    --------
    >>> import pandas as pd
    >>> train = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [10, 20, 10, 20, 10]})
    >>> model = BPR(n_factors=4, n_iter=50, lr=0.1).fit(train)
    >>> model.scores([3]).shape
    (1, 2)
    """

    def __init__(self, n_factors: int = 32, reg: float = 0.01, lr: float = 0.05,
                 n_iter: int = 20, batch_size: int = 256, random_state: int = 0):
        self.n_factors = n_factors
        self.reg = reg
        self.lr = lr
        self.n_iter = n_iter
        self.batch_size = batch_size
        self.random_state = random_state

    def _triples(self, users: np.ndarray, items: np.ndarray, keys: np.ndarray, rng):
        """One epoch of shuffled minibatches of (user, positive, sampled negative), as tensors."""
        order = rng.permutation(len(users))
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            u, i = users[rows], items[rows]
            j = self._negatives(u, keys, rng)
            yield tuple(torch.from_numpy(a) for a in (u, i, j))

    def _negatives(self, users: np.ndarray, keys: np.ndarray, rng) -> np.ndarray:
        """Uniform items the user does not have (redrawn up to 10 times on a collision)."""
        n_items = len(self.items_)
        items = rng.integers(0, n_items, len(users))
        for _ in range(10):
            key = users * n_items + items
            hit = keys[np.searchsorted(keys, key).clip(0, len(keys) - 1)] == key
            if not hit.any():
                break
            items[hit] = rng.integers(0, n_items, int(hit.sum()))
        return items

    def fit(self, interactions: pd.DataFrame) -> BPR:
        """Run ``n_iter`` epochs of SGD on sampled triples; returns ``self``."""
        with single_threaded():  # small batches: threads cost more than they give
            return self._fit(interactions)

    def _fit(self, interactions: pd.DataFrame) -> BPR:
        if self.n_factors < 1 or self.n_iter < 1 or self.lr <= 0 or self.batch_size < 1:
            raise ValueError("need n_factors >= 1, n_iter >= 1, lr > 0 and batch_size >= 1.")
        matrix = self._start_fit(interactions).tocoo()
        users, items = matrix.row.astype(np.int64), matrix.col.astype(np.int64)
        keys = np.sort(users * len(self.items_) + items)
        rng = np.random.default_rng(self.random_state)
        gen = torch.Generator().manual_seed(self.random_state)
        p = torch.randn(len(self.users_), self.n_factors, generator=gen) * 0.1
        q = torch.randn(len(self.items_), self.n_factors, generator=gen) * 0.1
        b = torch.zeros(len(self.items_))
        for _ in range(self.n_iter):
            for u, i, j in self._triples(users, items, keys, rng):
                grads = bpr_gradients(p[u], q[i], q[j], b[i], b[j], self.reg)
                p.index_add_(0, u, grads[0], alpha=-self.lr)
                q.index_add_(0, i, grads[1], alpha=-self.lr)
                q.index_add_(0, j, grads[2], alpha=-self.lr)
                b.index_add_(0, i, grads[3], alpha=-self.lr)
                b.index_add_(0, j, grads[4], alpha=-self.lr)
            if not torch.isfinite(p).all():
                raise FloatingPointError(f"BPR diverged (non-finite factors) with lr={self.lr}; "
                                         "lower lr or batch_size.")
        self.user_factors_, self.item_factors_ = p.numpy(), q.numpy()
        self.item_bias_ = b.numpy()
        return self

    def _scores(self, positions: np.ndarray) -> np.ndarray:
        return self.user_factors_[positions] @ self.item_factors_.T + self.item_bias_

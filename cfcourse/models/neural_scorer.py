"""Dot product or MLP? One pairwise-trained ranker with a choice of scorer (Rendle et al. 2020).

Both scorers read the same user and item embeddings :math:`p_u, q_i \\in \\mathbb{R}^k`:

.. math:: s^{\\text{dot}}_{ui} = p_u^\\top q_i + b_i, \\qquad
          s^{\\text{mlp}}_{ui} = \\mathrm{MLP}([p_u ; q_i]),

and both are trained the same way: the BPR loss :math:`-\\log\\sigma(s_{ui} - s_{uj})` on
sampled triples (see :mod:`cfcourse.models.bpr`), Adam, the same epochs and batch size,
weight decay ``reg`` on the embeddings. Only the scorer differs, so a gap between the two
is the scorer's. Rendle, Krichene, Zhang and Anderson found that a learned MLP similarity
struggles to match a plain dot product on top-k tasks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from cfcourse.models.bpr import BPR
from cfcourse.models.neural import mlp
from cfcourse.models.topk import single_threaded

__all__ = ["PairwiseRanker", "PairwiseScorer"]


class PairwiseScorer(nn.Module):
    """Embeddings plus a dot-product or MLP scorer; ``forward(users, items) -> (B,)`` scores."""

    def __init__(self, n_users: int, n_items: int, n_factors: int, scorer: str = "dot",
                 hidden: tuple[int, ...] = (64,)):
        super().__init__()
        if scorer not in ("dot", "mlp"):
            raise ValueError(f"scorer must be 'dot' or 'mlp', got {scorer!r}.")
        self.scorer = scorer
        self.user = nn.Embedding(n_users, n_factors)
        self.item = nn.Embedding(n_items, n_factors)
        self.item_bias = nn.Embedding(n_items, 1)
        for table, std in ((self.user, 0.1), (self.item, 0.1), (self.item_bias, 0.0)):
            nn.init.normal_(table.weight, 0.0, std) if std else nn.init.zeros_(table.weight)
        self.net = mlp(2 * n_factors, hidden) if scorer == "mlp" else None

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        p, q = self.user(users), self.item(items)  # (B, k) each
        if self.scorer == "dot":
            return (p * q).sum(1) + self.item_bias(items)[:, 0]
        return self.net(torch.cat([p, q], dim=1))[:, 0]


class PairwiseRanker(BPR):
    """A top-k model trained with the BPR loss by autograd and Adam, with either scorer.

    Parameters
    ----------
    scorer : ``"dot"`` or ``"mlp"``
        How a user and an item embedding become a score.
    hidden : tuple of int
        Widths of the MLP's hidden layers (``"mlp"`` only).
    n_factors, reg, lr, n_iter, batch_size, random_state
        As in :class:`~cfcourse.models.bpr.BPR`; ``reg`` is Adam's weight decay on the
        embeddings, ``lr`` Adam's step size.

    Examples
    --------
    >>> import pandas as pd
    >>> train = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [10, 20, 10, 20, 10]})
    >>> PairwiseRanker(scorer="mlp", n_factors=4, n_iter=2).fit(train).scores([3]).shape
    (1, 2)
    """

    def __init__(self, scorer: str = "dot", n_factors: int = 32, hidden: tuple[int, ...] = (64,),
                 reg: float = 0.0, lr: float = 0.003, n_iter: int = 10, batch_size: int = 1024,
                 random_state: int = 0):
        super().__init__(n_factors=n_factors, reg=reg, lr=lr, n_iter=n_iter,
                         batch_size=batch_size, random_state=random_state)
        self.scorer = scorer
        self.hidden = hidden

    def _fit(self, interactions: pd.DataFrame) -> PairwiseRanker:
        matrix = self._start_fit(interactions).tocoo()
        users, items = matrix.row.astype(np.int64), matrix.col.astype(np.int64)
        keys = np.sort(users * len(self.items_) + items)
        rng = np.random.default_rng(self.random_state)
        torch.manual_seed(self.random_state)
        self.network_ = PairwiseScorer(len(self.users_), len(self.items_), self.n_factors,
                                       self.scorer, tuple(self.hidden))
        embeddings = [self.network_.user.weight, self.network_.item.weight]
        rest = [p for p in self.network_.parameters() if all(p is not e for e in embeddings)]
        optimiser = torch.optim.Adam([{"params": embeddings, "weight_decay": self.reg},
                                      {"params": rest, "weight_decay": 0.0}], lr=self.lr)
        for _ in range(self.n_iter):
            for u, i, j in self._triples(users, items, keys, rng):
                gap = self.network_(u, i) - self.network_(u, j)  # (B,)
                loss = -torch.nn.functional.logsigmoid(gap).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training diverged with lr={self.lr}; lower it.")
        return self

    def fit(self, interactions: pd.DataFrame) -> PairwiseRanker:
        """Train ``n_iter`` epochs on sampled triples; returns ``self``."""
        with single_threaded():
            return self._fit(interactions)

    @torch.no_grad()
    def _scores(self, positions: np.ndarray) -> np.ndarray:
        n_items = len(self.items_)
        users = torch.as_tensor(positions, dtype=torch.int64).repeat_interleave(n_items)
        items = torch.arange(n_items).repeat(len(positions))
        return self.network_.eval()(users, items).reshape(len(positions), n_items).numpy()

"""The model :func:`cfcourse.fit` trains: biased matrix factorisation with sparse gradients.

Its embeddings return sparse gradients (``nn.Embedding(sparse=True)``), and its L2 penalty is
applied to the looked-up rows only, the classic matrix-factorisation objective::

    L = mean_{(u,i) in batch} [ (r̂_ui - r_ui)² + λ (|p_u|² + |q_i|²) + λ_b (b_u² + b_i²) ]

so that a row-wise optimiser (:mod:`cfcourse.optim`) touches only the rows of a batch.
"""

from __future__ import annotations

import torch
from torch import nn

from cfcourse.models.dot_product import embedding

__all__ = ["SparseDotBias"]



class SparseDotBias(nn.Module):
    """Biased matrix factorisation with sparse gradients.

    .. math:: \\hat r_{ui} = \\mu + b_u + b_i + p_u \\cdot q_i

    :math:`\\mu` is the mean training rating (a fixed buffer), :math:`b_u, b_i`
    the user and item biases, :math:`p_u, q_i` the factor vectors. Predictions
    are not squashed during training; :meth:`predict` clips them to ``y_range``.

    Examples
    --------
    >>> model = SparseDotBias(n_users=3, n_items=4, n_factors=2, mean=3.5)
    >>> model(torch.tensor([[0, 1]])).shape
    torch.Size([1])
    """

    def __init__(self, n_users: int, n_items: int, n_factors: int = 64, mean: float = 0.0,
                 y_range: tuple[float, float] | None = None, init_std: float = 0.01):
        super().__init__()
        self.user_factors = embedding(n_users, n_factors, init_std, sparse=True)
        self.item_factors = embedding(n_items, n_factors, init_std, sparse=True)
        self.user_bias = embedding(n_users, 1, 0.0, sparse=True)
        self.item_bias = embedding(n_items, 1, 0.0, sparse=True)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.y_range = y_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        users, items = x[:, 0], x[:, 1]
        dot = (self.user_factors(users) * self.item_factors(items)).sum(dim=1)  # (B,)
        return self.mean + self.user_bias(users)[:, 0] + self.item_bias(items)[:, 0] + dot

    def penalty(self, x: torch.Tensor, reg: float, reg_bias: float) -> torch.Tensor:
        """Mean L2 of the rows this batch looked up (its gradient is sparse too)."""
        return self.forward_with_penalty(x, reg, reg_bias)[1]

    def forward_with_penalty(self, x: torch.Tensor, reg: float, reg_bias: float):
        """``(predictions, penalty)`` from one lookup per table (the training loop's path)."""
        users, items = x[:, 0], x[:, 1]
        p, q = self.user_factors(users), self.item_factors(items)  # (B, k) each
        bu, bi = self.user_bias(users)[:, 0], self.item_bias(items)[:, 0]  # (B,) each
        pred = self.mean + bu + bi + (p * q).sum(dim=1)
        l2 = reg * (p.pow(2).sum(1) + q.pow(2).sum(1)) + reg_bias * (bu.pow(2) + bi.pow(2))
        return pred, l2.mean()

    @torch.no_grad()
    def predict(self, x: torch.Tensor, bs: int = 1 << 18) -> torch.Tensor:
        """Predictions in evaluation batches, clipped to ``y_range`` when it is set."""
        out = torch.cat([self(x[s:s + bs]) for s in range(0, len(x), bs)]) if len(x) else \
            torch.empty(0)
        return out if self.y_range is None else out.clamp(*self.y_range)

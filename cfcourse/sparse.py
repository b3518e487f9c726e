"""Row-sparse training: each step touches only the users and items in its batch.

A dense optimiser (Adam, fastai's decoupled weight decay) updates *every* row of
every embedding at every step, even though a batch of ratings looks up only a few
thousand rows. With ML-25M's 162,541 users and 59,047 films that is ~22 M numbers
per step, most of them untouched by the data. Here instead:

- embeddings return sparse gradients (``nn.Embedding(sparse=True)``);
- :class:`torch.optim.SparseAdam` updates only the rows that were looked up;
- the L2 penalty is applied to the looked-up rows only, which is the classic
  matrix-factorisation objective::

      L = mean_{(u,i) in batch} [ (r̂_ui - r_ui)² + λ (|p_u|² + |q_i|²) + λ_b (b_u² + b_i²) ]
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SparseDotBias", "fit_sparse"]


def _sparse_embedding(n: int, n_factors: int, std: float) -> nn.Embedding:
    emb = nn.Embedding(n, n_factors, sparse=True)
    nn.init.normal_(emb.weight, std=std) if std > 0 else nn.init.zeros_(emb.weight)
    return emb


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
        self.user_factors = _sparse_embedding(n_users, n_factors, init_std)
        self.item_factors = _sparse_embedding(n_items, n_factors, init_std)
        self.user_bias = _sparse_embedding(n_users, 1, 0.0)
        self.item_bias = _sparse_embedding(n_items, 1, 0.0)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.y_range = y_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        users, items = x[:, 0], x[:, 1]
        dot = (self.user_factors(users) * self.item_factors(items)).sum(dim=1)  # (B,)
        return self.mean + self.user_bias(users)[:, 0] + self.item_bias(items)[:, 0] + dot

    def penalty(self, x: torch.Tensor, reg: float, reg_bias: float) -> torch.Tensor:
        """Mean L2 of the rows this batch looked up (its gradient is sparse too)."""
        users, items = x[:, 0], x[:, 1]
        factors = self.user_factors(users).pow(2).sum(1) + self.item_factors(items).pow(2).sum(1)
        biases = self.user_bias(users)[:, 0].pow(2) + self.item_bias(items)[:, 0].pow(2)
        return (reg * factors + reg_bias * biases).mean()

    @torch.no_grad()
    def predict(self, x: torch.Tensor, bs: int = 1 << 18) -> torch.Tensor:
        """Predictions in evaluation batches, clipped to ``y_range`` when it is set."""
        out = torch.cat([self(x[s:s + bs]) for s in range(0, len(x), bs)]) if len(x) else \
            torch.empty(0)
        return out if self.y_range is None else out.clamp(*self.y_range)


def fit_sparse(
    model: SparseDotBias,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int = 20,
    lr: float = 0.01,
    bs: int = 1024,
    reg: float = 0.1,
    reg_bias: float = 0.01,
    seed: int = 0,
    pct_start: float = 0.25,
) -> list[float]:
    """Train with SparseAdam and a one-cycle learning-rate schedule; return the loss of each epoch.

    Parameters
    ----------
    model : SparseDotBias
        Embeddings must have ``sparse=True``.
    x, y : Tensor
        ``(n, 2)`` long indices and ``(n,)`` float ratings on the model's device.
    epochs, lr, bs : int, float, int
        Passes, peak learning rate, batch size. Larger batches need a larger ``lr``.
    reg, reg_bias : float
        L2 strength λ on factors and λ_b on biases, applied to looked-up rows.
    seed : int
        Seeds the shuffling.
    pct_start : float
        Share of steps spent warming the learning rate up.

    Returns
    -------
    list of float
        Mean squared error (without the penalty) of each epoch's batches.
    """
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be aligned and non-empty, got {len(x)} and {len(y)} rows.")
    opt = torch.optim.SparseAdam(list(model.parameters()), lr=lr)
    n = len(x)
    steps = epochs * math.ceil(n / bs)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=steps, pct_start=pct_start, cycle_momentum=False)
    generator = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).to(x.device)
        total = torch.zeros((), device=x.device)
        for start in range(0, n, bs):
            rows = order[start:start + bs]
            xb, yb = x[rows], y[rows]
            mse = (model(xb) - yb).pow(2).mean()
            loss = mse + model.penalty(xb, reg, reg_bias)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            total += mse.detach() * len(rows)
        history.append(total.item() / n)
        if not math.isfinite(history[-1]):
            raise FloatingPointError(f"the loss became {history[-1]} in epoch {epoch + 1}; "
                                     "lower the learning rate.")
    return history

"""The course's models: a dot product of embeddings, with and without biases.

All models take a batch ``x`` of shape ``(B, 2)`` holding *indices* (row 0 = user
index, row 1 = item index, as fastai's collab loaders produce) and return
predictions of shape ``(B,)``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "INIT_STD",
    "DotProduct",
    "DotProductBias",
    "DotProductBiasParams",
    "create_params",
    "embedding",
    "inverse_sigmoid_range",
    "sigmoid_range",
    "squash",
]


INIT_STD = 0.01  # small random factors: every prediction starts near the middle of y_range


def sigmoid_range(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Squash ``x`` into ``(low, high)``: ``low + (high - low) * sigmoid(x)``."""
    return torch.sigmoid(x) * (high - low) + low


def inverse_sigmoid_range(y: float, low: float, high: float) -> float:
    """The score whose :func:`sigmoid_range` is ``y``: ``log((y - low) / (high - y))``.

    Raises ``ValueError`` unless ``low < y < high`` (the squash never reaches its ends).

    Examples
    --------
    >>> round(inverse_sigmoid_range(2.75, 0, 5.5), 6)
    0.0
    """
    if not low < y < high:
        raise ValueError(f"{y!r} is not strictly inside y_range=({low}, {high}); sigmoid_range "
                         "never reaches its ends, so no score maps there. Widen y_range.")
    return float(torch.log(torch.tensor((y - low) / (high - y), dtype=torch.float64)))


def squash(x: torch.Tensor, y_range: tuple[float, float] | None) -> torch.Tensor:
    """:func:`sigmoid_range` into ``y_range``, or ``x`` unchanged when ``y_range`` is None."""
    return x if y_range is None else sigmoid_range(x, *y_range)


def embedding(n: int, width: int, std: float = INIT_STD, sparse: bool = False) -> nn.Embedding:
    """The one embedding initialisation of the package: rows drawn from N(0, std²), or zeros.

    ``sparse=True`` makes the table return sparse gradients (the row-wise optimisers' input).
    """
    emb = nn.Embedding(n, width, sparse=sparse)
    nn.init.normal_(emb.weight, std=std) if std > 0 else nn.init.zeros_(emb.weight)
    return emb


def create_params(size: tuple[int, ...]) -> nn.Parameter:
    """A tensor of the given size, N(0, 0.01²) initialised, registered as a trainable parameter."""
    return nn.Parameter(torch.zeros(*size).normal_(0, INIT_STD))


class DotProduct(nn.Module):
    """Predict a rating as the dot product of a user's and an item's factors.

    .. math:: \\hat r_{ui} = \\sigma_{[a,b]}(p_u \\cdot q_i)

    where :math:`p_u` and :math:`q_i` are rows of the user and item factor
    matrices and :math:`\\sigma_{[a,b]}` is :func:`sigmoid_range` (skipped when
    ``y_range`` is None).

    Examples
    --------
    >>> model = DotProduct(n_users=3, n_items=4, n_factors=5, y_range=(0, 5.5))
    >>> model(torch.tensor([[0, 1], [2, 3]])).shape
    torch.Size([2])
    """

    def __init__(self, n_users: int, n_items: int, n_factors: int = 50,
                 y_range: tuple[float, float] | None = None):
        super().__init__()
        self.user_factors = embedding(n_users, n_factors)
        self.item_factors = embedding(n_items, n_factors)
        self.y_range = y_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        users = self.user_factors(x[:, 0])  # (B, k)
        items = self.item_factors(x[:, 1])  # (B, k)
        return squash((users * items).sum(dim=1), self.y_range)  # (B,)


class DotProductBias(DotProduct):
    """The dot product plus a bias per user and per item.

    .. math:: \\hat r_{ui} = \\sigma_{[a,b]}(p_u \\cdot q_i + b_u + b_i)

    :math:`b_i` captures how well liked a film is whatever your taste;
    :math:`b_u` how generous a rater someone is.
    """

    def __init__(self, n_users: int, n_items: int, n_factors: int = 50,
                 y_range: tuple[float, float] | None = (0, 5.5)):
        super().__init__(n_users, n_items, n_factors, y_range)
        self.user_bias = embedding(n_users, 1)
        self.item_bias = embedding(n_items, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        users, items = x[:, 0], x[:, 1]
        dot = (self.user_factors(users) * self.item_factors(items)).sum(dim=1)  # (B,)
        bias = self.user_bias(users)[:, 0] + self.item_bias(items)[:, 0]  # (B,)
        return squash(dot + bias, self.y_range)


class DotProductBiasParams(nn.Module):
    """:class:`DotProductBias` built from bare ``nn.Parameter`` tensors, with an optional mean.

    .. math:: \\hat r_{ui} = \\sigma_{[a,b]}(m + b_u + b_i + p_u \\cdot q_i),
              \\qquad m = \\sigma_{[a,b]}^{-1}(\\mu)

    Indexing a parameter matrix with a batch of ids is exactly what an
    embedding layer does; registering the tensors as parameters is what lets
    an optimiser (and weight decay) find them.

    Parameters
    ----------
    mean : float or None
        :math:`\\mu`, usually the mean training rating, kept as a buffer (saved with
        the model, never trained or decayed). Why: with it, biases and factors of 0
        predict :math:`\\mu`, so weight decay on the biases pulls predictions
        towards the mean rating instead of towards the middle of ``y_range``.
        ``None`` (the default) means :math:`m = 0`, exactly :class:`DotProductBias`.
    """

    def __init__(self, n_users: int, n_items: int, n_factors: int = 50,
                 y_range: tuple[float, float] | None = (0, 5.5), mean: float | None = None):
        super().__init__()
        self.user_factors = create_params((n_users, n_factors))
        self.user_bias = create_params((n_users,))
        self.item_factors = create_params((n_items, n_factors))
        self.item_bias = create_params((n_items,))
        self.y_range = y_range
        if mean is None:
            offset = 0.0
        elif y_range is None:
            offset = float(mean)
        else:
            offset = inverse_sigmoid_range(float(mean), *y_range)
        self.mean = mean
        self.register_buffer("offset", torch.tensor(offset))  # m: the score of mu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        users, items = x[:, 0], x[:, 1]
        dot = (self.user_factors[users] * self.item_factors[items]).sum(dim=1)  # (B,)
        bias = self.user_bias[users] + self.item_bias[items]  # (B,)
        return squash(self.offset + bias + dot, self.y_range)

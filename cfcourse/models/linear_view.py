"""Matrix factorisation written as a two-layer linear network on one-hot users.

A user enters as a one-hot vector :math:`x_u` of length ``n_users``. The hidden
layer has no bias and no activation; its weight is :math:`P^\\top`, so
:math:`h = P^\\top x_u = p_u`. The output layer's weight is :math:`Q`, so

.. math:: o = Q h = Q P^\\top x_u

holds a score for *every* item at once, and the prediction for ``(u, i)`` is
:math:`o_i = q_i \\cdot p_u`. The network is linear in its input. A free single layer
:math:`W` trained on the observed entries only never moves the weights of the holes;
two things make it fill them: a rank cap (the narrow hidden layer, ``n_factors``
units) or a penalty that couples the entries. L2 on both layers is such a penalty:
its minimum over the factorisations of :math:`W = Q P^\\top` is the nuclear norm
:math:`\\lVert W\\rVert_*` (Srebro et al., 2005), and :func:`soft_impute` fits one
wide layer under that penalty (Mazumder et al., 2010).

These models take the same ``(B, 2)`` index pairs as :mod:`cfcourse.models` and
return ``(B,)`` predictions, so ``fit_plain`` and fastai's ``Learner`` train them
unchanged. :func:`from_dot_product` and :func:`to_dot_product` copy weights between
the two views.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cfcourse.models.dot_product import INIT_STD, DotProduct, DotProductBias, sigmoid_range

__all__ = [
    "LinearNetwork", "LinearNetworkBias", "from_dot_product", "nuclear_norm",
    "shrink_singular_values", "soft_impute", "to_dot_product",
]


def _linear(n_in: int, n_out: int, bias: bool = False) -> nn.Linear:
    layer = nn.Linear(n_in, n_out, bias=bias)
    nn.init.normal_(layer.weight, std=INIT_STD)  # the same start as an embedding
    if bias:
        nn.init.normal_(layer.bias, std=INIT_STD)
    return layer


class LinearNetwork(nn.Module):
    """Matrix factorisation as two bias-free linear layers on a one-hot user.

    .. math:: o = \\sigma_{[a,b]}(Q P^\\top x_u), \\qquad \\hat r_{ui} = o_i

    ``hidden.weight`` is :math:`P^\\top` (``n_factors x n_users``) and
    ``output.weight`` is :math:`Q` (``n_items x n_factors``). Given the same
    factors it predicts exactly what :class:`~cfcourse.models.dot_product.DotProduct` does,
    at the price of a dense matrix product instead of a lookup.

    Examples
    --------
    >>> net = LinearNetwork(n_users=3, n_items=4, n_factors=2)
    >>> net(torch.tensor([[0, 1], [2, 3]])).shape
    torch.Size([2])
    >>> net.scores(torch.eye(3)).shape  # every user, every item
    torch.Size([3, 4])
    """

    def __init__(self, n_users: int, n_items: int, n_factors: int = 50,
                 y_range: tuple[float, float] | None = None):
        super().__init__()
        self.n_users, self.n_items = n_users, n_items
        self.hidden = _linear(n_users, n_factors)  # weight (k, n_users) = P^T
        self.output = _linear(n_factors, n_items)  # weight (n_items, k) = Q
        self.y_range = y_range

    def raw_scores(self, onehot: torch.Tensor) -> torch.Tensor:
        """``Q P^T x`` for a batch of one-hot rows ``(B, n_users)``: ``(B, n_items)``."""
        return self.output(self.hidden(onehot))

    def scores(self, onehot: torch.Tensor) -> torch.Tensor:
        """Predicted ratings of every item for each one-hot user row: ``(B, n_items)``."""
        out = self.raw_scores(onehot)
        return out if self.y_range is None else sigmoid_range(out, *self.y_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(x[:, 0], self.n_users).to(self.hidden.weight.dtype)  # (B, n_users)
        # Score every item, keep the rated one: the loss sees observed entries only.
        return self.scores(onehot).gather(1, x[:, 1:2])[:, 0]  # (B,)


class LinearNetworkBias(LinearNetwork):
    """The linear network with a bias layer: item biases and a user bias.

    .. math:: o = \\sigma_{[a,b]}(Q P^\\top x_u + b_\\text{item} + (b_\\text{user}^\\top x_u) \\mathbf 1)

    The item biases :math:`b_\\text{item}` (one per output unit) are the output
    layer's ordinary bias vector. The user bias is one more linear map of the
    one-hot input, :math:`b_u = b_\\text{user}^\\top x_u`, added to every output:
    a hidden unit whose outgoing weights are all frozen at 1. Given the same
    weights it equals :class:`~cfcourse.models.dot_product.DotProductBias`.

    Examples
    --------
    >>> net = LinearNetworkBias(n_users=3, n_items=4, n_factors=2)
    >>> net(torch.tensor([[0, 1], [2, 3]])).shape
    torch.Size([2])
    """

    def __init__(self, n_users: int, n_items: int, n_factors: int = 50,
                 y_range: tuple[float, float] | None = (0, 5.5)):
        super().__init__(n_users, n_items, n_factors, y_range)
        self.output = _linear(n_factors, n_items, bias=True)  # bias (n_items,) = b_item
        self.user_bias = _linear(n_users, 1)  # weight (1, n_users) = b_user^T

    def raw_scores(self, onehot: torch.Tensor) -> torch.Tensor:
        """``Q P^T x + b_item + b_u`` for one-hot rows ``(B, n_users)``: ``(B, n_items)``."""
        return self.output(self.hidden(onehot)) + self.user_bias(onehot)  # (B, n) + (B, 1)


def from_dot_product(model: DotProduct) -> LinearNetwork:
    """A linear network holding a copy of ``model``'s factors (and biases).

    ``DotProductBias`` becomes :class:`LinearNetworkBias`, ``DotProduct``
    becomes :class:`LinearNetwork`; ``y_range`` is kept.
    """
    if not isinstance(model, DotProduct):
        raise TypeError(f"expected a cfcourse DotProduct or DotProductBias, got "
                        f"{type(model).__name__}.")
    (n_users, k), n_items = model.user_factors.weight.shape, model.item_factors.num_embeddings
    cls = LinearNetworkBias if isinstance(model, DotProductBias) else LinearNetwork
    net = cls(n_users, n_items, k, y_range=model.y_range)
    with torch.no_grad():
        net.hidden.weight.copy_(model.user_factors.weight.T)  # P^T
        net.output.weight.copy_(model.item_factors.weight)  # Q
        if isinstance(model, DotProductBias):
            net.output.bias.copy_(model.item_bias.weight[:, 0])
            net.user_bias.weight.copy_(model.user_bias.weight.T)
    return net


def to_dot_product(net: LinearNetwork) -> DotProduct:
    """The embedding model holding a copy of ``net``'s weights: the inverse of :func:`from_dot_product`."""
    if not isinstance(net, LinearNetwork):
        raise TypeError(f"expected a LinearNetwork or LinearNetworkBias, got {type(net).__name__}.")
    n_items, k = net.output.weight.shape
    cls = DotProductBias if isinstance(net, LinearNetworkBias) else DotProduct
    model = cls(net.n_users, n_items, k, y_range=net.y_range)
    with torch.no_grad():
        model.user_factors.weight.copy_(net.hidden.weight.T)
        model.item_factors.weight.copy_(net.output.weight)
        if isinstance(net, LinearNetworkBias):
            model.item_bias.weight.copy_(net.output.bias[:, None])
            model.user_bias.weight.copy_(net.user_bias.weight.T)
    return model


def nuclear_norm(matrix) -> float:
    """The sum of the singular values, :math:`\\lVert W\\rVert_* = \\sum_j \\sigma_j(W)`.

    It is the smallest :math:`(\\lVert P\\rVert_F^2 + \\lVert Q\\rVert_F^2) / 2` over all
    factorisations :math:`W = P Q^\\top`, reached by :math:`P = U\\sqrt{S}`,
    :math:`Q = V\\sqrt{S}` from the SVD :math:`W = U S V^\\top`.

    >>> nuclear_norm(np.diag([3.0, -1.0]))
    4.0
    """
    return float(np.linalg.svd(np.asarray(matrix, dtype=np.float64), compute_uv=False).sum())


def shrink_singular_values(matrix, lam: float) -> np.ndarray:
    """:math:`U \\max(S - \\lambda, 0) V^\\top`: every singular value lowered by ``lam``.

    It is the minimiser of :math:`\\tfrac12\\lVert Z - W\\rVert_F^2 + \\lambda\\lVert Z\\rVert_*`
    for a fully observed :math:`W`; singular values below ``lam`` vanish, so the rank falls.

    >>> shrink_singular_values(np.diag([3.0, 1.0]), 1.0)
    array([[2., 0.],
           [0., 0.]])
    """
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam!r}.")
    u, s, vt = np.linalg.svd(np.asarray(matrix, dtype=np.float64), full_matrices=False)
    return (u * np.maximum(s - lam, 0.0)) @ vt


def soft_impute(values, observed, lam: float, n_iter: int = 100) -> np.ndarray:
    """Fill the holes of a matrix with one full-size layer and a nuclear-norm penalty.

    Minimises

    .. math:: \\tfrac12 \\sum_{(u,i)\\in\\Omega} (x_{ui} - z_{ui})^2 + \\lambda \\lVert Z\\rVert_*

    by Soft-Impute (Mazumder, Hastie and Tibshirani, 2010): put the observed entries into
    the current guess, shrink its singular values, repeat,

    .. math:: Z \\leftarrow \\mathrm{shrink}_\\lambda\\big(P_\\Omega(X) + P_\\Omega^\\perp(Z)\\big).

    With ``lam=0`` nothing couples the entries and the holes keep their starting value 0,
    the free single layer of chapter 7.

    Parameters
    ----------
    values : array (n_rows, n_cols)
        The matrix; entries where ``observed`` is False are ignored.
    observed : bool array, same shape
        True where an entry was observed.
    lam : float
        The penalty's weight: larger values shrink more singular values to zero.

    Examples
    --------
    >>> x = np.array([[1.0, 2.0], [2.0, 4.0]])  # rank 1; the cell [1, 1] is a hole
    >>> seen = np.array([[True, True], [True, False]])
    >>> bool(np.isclose(soft_impute(x, seen, lam=0.0)[1, 1], 0.0))  # no penalty: stays 0
    True
    >>> round(float(soft_impute(x, seen, lam=0.1, n_iter=500)[1, 1]), 2)  # filled...
    1.0

    ...with the value of smallest nuclear norm, not the rank-1 completion 4: the
    penalty favours low rank, it does not cap it.
    """
    x = np.asarray(values, dtype=np.float64)
    mask = np.asarray(observed, dtype=bool)
    if x.shape != mask.shape or x.ndim != 2:
        raise ValueError(f"values {x.shape} and observed {mask.shape} must be the same 2-d shape.")
    if not np.isfinite(x[mask]).all():
        raise ValueError("the observed entries must be finite numbers.")
    if n_iter < 1:
        raise ValueError(f"n_iter must be at least 1, got {n_iter!r}.")
    z = np.zeros_like(x)
    for _ in range(n_iter):
        z = shrink_singular_values(np.where(mask, x, z), lam)
    return z

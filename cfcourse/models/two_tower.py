"""The two-tower model: a user tower and an item tower whose outputs meet in a dot product.

Each tower reads an id *and* features, so a user never seen in training still gets a
vector from their features alone (Covington et al. 2016; Yi et al. 2019):

.. math:: \\mathbf{u} = f(\\text{user id}, \\mathbf{x}_u), \\qquad
          \\mathbf{v} = g(\\text{item id}, \\mathbf{x}_i), \\qquad
          s(u, i) = \\mathbf{u} \\cdot \\mathbf{v} / \\tau

with :math:`f, g` small MLPs whose outputs are normalised to length 1 and :math:`\\tau` a
temperature. Training uses *in-batch negatives*: in a batch of :math:`B` (user, item)
interactions, every other row's item is a negative for user :math:`j`, and the loss is the
softmax cross-entropy of the true item among the :math:`B`:

.. math:: L = -\\frac1B \\sum_{j=1}^{B} \\log
          \\frac{e^{s^c(u_j, i_j)}}{\\sum_{l=1}^{B} e^{s^c(u_j, i_l)}}, \\qquad
          s^c(u, i) = s(u, i) - \\log q_i .

Popular items turn up as negatives in proportion to their popularity :math:`q_i` (their
share of the interactions), so without a correction the model learns to push them down;
subtracting :math:`\\log q_i` (the *logQ correction*) undoes that sampling bias. The item
vectors go into an ANN index (:mod:`cfcourse.retrieval`) and a request only runs the
user tower.

>>> import torch
>>> u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
>>> round(in_batch_softmax_loss(u, u).item(), 4)   # -log(e / (e + 1))
0.3133
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from cfcourse.models.topk import TopKModel

__all__ = ["Tower", "TwoTowerModel", "in_batch_softmax_loss"]


def in_batch_softmax_loss(user_vectors: torch.Tensor, item_vectors: torch.Tensor,
                          log_q: torch.Tensor | None = None,
                          temperature: float = 1.0) -> torch.Tensor:
    """Softmax cross-entropy of row ``j``'s item among the batch's items, mean over rows.

    ``user_vectors`` and ``item_vectors`` are ``(B, d)``; row ``j`` of each is one
    interaction. ``log_q`` (shape ``(B,)``) is subtracted from column ``l``'s logits.
    """
    logits = user_vectors @ item_vectors.T / temperature  # (B, B): user j vs item l
    if log_q is not None:
        logits = logits - log_q[None, :]
    targets = torch.arange(len(logits), device=logits.device)  # the diagonal is the truth
    return F.cross_entropy(logits, targets)


class Tower(nn.Module):
    """Id embedding (row 0 = "unknown id") next to the features, into an MLP, normalised.

    ``hidden=0`` makes the tower one linear map; ``normalize=False`` keeps the output's
    length; ``zero_init`` starts the last layer at zero, so every output starts at zero.
    """

    def __init__(self, n_ids: int, n_features: int, n_factors: int = 32, hidden: int = 64,
                 normalize: bool = True, zero_init: bool = False):
        super().__init__()
        self.normalize = normalize
        self.id_embedding = nn.Embedding(n_ids + 1, n_factors)
        nn.init.normal_(self.id_embedding.weight, std=0.01)
        width = n_factors + n_features
        layers = [nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, n_factors)] if hidden \
            else [nn.Linear(width, n_factors)]
        if zero_init:
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)
        self.mlp = nn.Sequential(*layers)

    def forward(self, ids: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.id_embedding(ids), features], dim=1)  # (B, n_factors + F)
        out = self.mlp(x)  # (B, n_factors)
        return F.normalize(out, dim=1) if self.normalize else out


def _feature_tensor(features: pd.DataFrame, ids: np.ndarray, side: str) -> torch.Tensor:
    """Rows of ``features`` for ``ids`` as float32, or a KeyError naming the first missing id."""
    missing = pd.Index(ids).difference(features.index)
    if len(missing):
        raise KeyError(f"{side} {missing[0]!r} has no row in {side}_features ({len(missing)} "
                       f"such ids); build the features for every {side}.")
    return torch.tensor(features.loc[ids].to_numpy(dtype=np.float32))


class TwoTowerModel(TopKModel):
    """Two towers trained with in-batch negatives and the logQ correction.

    Parameters
    ----------
    n_factors : int
        Length of the vectors the towers output (what the ANN index stores).
    hidden : int
        Width of each tower's hidden layer; 0 makes each tower one linear map.
    temperature : float
        :math:`\\tau`: smaller sharpens the softmax over the batch.
    normalize : bool
        Normalise both towers' outputs to length 1 (then :math:`\\tau` sets the scale of
        the scores). Without it, the user tower's last layer starts at zero, so training
        starts from the item biases alone.
    item_bias : bool
        Add a learned bias :math:`b_i` to every score, started at :math:`\\log q_i`: the
        popularity a dot product of unit vectors cannot hold.
    logq : bool
        Subtract :math:`\\log q_i` from each logit (Yi et al. 2019).
    id_dropout : float
        Share of training rows whose user id is replaced by "unknown", so the user tower
        learns to work from features alone: that is what serves brand-new users.
    epochs, batch_size, lr, weight_decay, random_state
        Adam on shuffled batches of interactions; ``random_state`` seeds everything.

    Attributes
    ----------
    users_, items_ : IdIndex
    user_factors_, item_factors_ : ndarray, (n_users, d), (n_items, d)
        ``user_factors_ @ item_factors_.T`` is the score; ``d = n_factors``, plus one
        coordinate with ``item_bias`` (1 for every user, :math:`\\tau b_i` for item ``i``),
        so an inner-product index serves the biased score too.
    losses_ : list of float, mean loss per epoch

    Examples
    --------
    >>> frame = pd.DataFrame({"user": [1, 1, 2, 2], "item": [7, 8, 7, 9]})
    >>> ux = pd.DataFrame({"a": [1.0, 0.0]}, index=[1, 2])
    >>> ix = pd.DataFrame({"b": [1.0, 0.0, 1.0]}, index=[7, 8, 9])
    >>> model = TwoTowerModel(n_factors=4, epochs=2).fit(frame, ux, ix)
    >>> model.item_factors_.shape
    (3, 4)
    """

    def __init__(self, n_factors: int = 32, hidden: int = 64, temperature: float = 0.1,
                 logq: bool = True, id_dropout: float = 0.5, epochs: int = 10,
                 batch_size: int = 512, lr: float = 3e-3, weight_decay: float = 0.0,
                 normalize: bool = True, item_bias: bool = False, random_state: int = 0):
        self.n_factors, self.hidden, self.temperature = n_factors, hidden, temperature
        self.normalize, self.item_bias = normalize, item_bias
        self.logq, self.id_dropout, self.epochs = logq, id_dropout, epochs
        self.batch_size, self.lr, self.weight_decay = batch_size, lr, weight_decay
        self.random_state = random_state

    def fit(self, interactions: pd.DataFrame, user_features: pd.DataFrame,
            item_features: pd.DataFrame) -> TwoTowerModel:
        """Learn from ``user, item`` pairs; features are frames indexed by user / item id."""
        if not 0.0 <= self.id_dropout <= 1.0 or self.temperature <= 0:
            raise ValueError(f"need 0 <= id_dropout <= 1 and temperature > 0, got "
                             f"{self.id_dropout!r} and {self.temperature!r}.")
        matrix = self._start_fit(interactions)
        torch.manual_seed(self.random_state)
        gen = torch.Generator().manual_seed(self.random_state)
        self.user_feature_names_ = list(user_features.columns)
        self._user_x = _feature_tensor(user_features, self.users_.ids_, "user")  # (n_users, F)
        self._item_x = _feature_tensor(item_features, self.items_.ids_, "item")  # (n_items, G)
        self.user_tower_ = Tower(len(self.users_), self._user_x.shape[1], self.n_factors,
                                 self.hidden, self.normalize, zero_init=not self.normalize)
        self.item_tower_ = Tower(len(self.items_), self._item_x.shape[1], self.n_factors,
                                 self.hidden, self.normalize)
        rows, cols = matrix.nonzero()
        u, i = torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)
        counts = np.asarray(matrix.sum(axis=0)).ravel()
        log_q = torch.tensor(np.log(counts / counts.sum()), dtype=torch.float32)  # (n_items,)
        # b_i, started at log q_i: with the logQ correction its logit starts at zero
        self.bias_ = nn.Parameter(log_q.clone()) if self.item_bias else None
        params = [*self.user_tower_.parameters(), *self.item_tower_.parameters()]
        params += [self.bias_] if self.item_bias else []
        optimiser = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        self.losses_ = []
        for _ in range(self.epochs):
            self.losses_.append(self._epoch(u, i, log_q, optimiser, gen))
        self._refresh_factors()
        return self

    def _epoch(self, u, i, log_q, optimiser, gen) -> float:
        """One shuffled pass over the interactions; returns the mean batch loss."""
        order, total = torch.randperm(len(u), generator=gen), 0.0
        batches = order.split(self.batch_size)
        for batch in batches:
            ub, ib = u[batch], i[batch]
            keep = torch.rand(len(ub), generator=gen) >= self.id_dropout
            user_ids = torch.where(keep, ub + 1, torch.zeros_like(ub))  # 0 = unknown
            uv = self.user_tower_(user_ids, self._user_x[ub])  # (B, d)
            iv = self.item_tower_(ib + 1, self._item_x[ib])  # (B, d)
            shift = log_q[ib] if self.logq else torch.zeros(len(ib))
            if self.item_bias:  # the batch's biases enter as a shift of each column
                shift = shift - self.bias_[ib]
            loss = in_batch_softmax_loss(uv, iv, shift, self.temperature)
            if not torch.isfinite(loss):
                raise FloatingPointError("the loss became NaN or infinite; lower lr.")
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item()
        return total / len(batches)

    @torch.no_grad()
    def _refresh_factors(self) -> None:
        """Run both towers once over every known id (what a serving system precomputes)."""
        ids = torch.arange(1, len(self.users_) + 1)
        self.user_factors_ = self._with_bias_slot(self.user_tower_(ids, self._user_x).numpy())
        ids = torch.arange(1, len(self.items_) + 1)
        items = self.item_tower_(ids, self._item_x).numpy().astype(np.float64)
        if self.item_bias:  # (u, 1) . (v, tau b) / tau = u . v / tau + b
            bias = self.temperature * self.bias_.detach().numpy().astype(np.float64)
            items = np.hstack([items, bias[:, None]])
        self.item_factors_ = items

    def _with_bias_slot(self, user_vectors: np.ndarray) -> np.ndarray:
        """User vectors as float64, with the constant 1 the item bias pairs with."""
        out = user_vectors.astype(np.float64)
        return np.hstack([out, np.ones((len(out), 1))]) if self.item_bias else out

    def _scores(self, positions: np.ndarray) -> np.ndarray:
        return self.user_factors_[positions] @ self.item_factors_.T / self.temperature

    @torch.no_grad()
    def new_user_factors(self, user_features: pd.DataFrame) -> np.ndarray:
        """Vectors for users from their features alone (id = "unknown"), one row per row."""
        self._check_fitted()
        if list(user_features.columns) != self.user_feature_names_:
            raise ValueError("user_features has other columns than at fit time; build the "
                             "features of old and new users in one call.")
        x = torch.tensor(user_features.to_numpy(dtype=np.float32))
        return self._with_bias_slot(self.user_tower_(torch.zeros(len(x), dtype=torch.long),
                                                     x).numpy())

    def recommend_new(self, user_features: pd.DataFrame, k: int = 10) -> dict:
        """Top ``k`` items for brand-new users (index of ``user_features``), best first."""
        scores = self.new_user_factors(user_features) @ self.item_factors_.T  # (n, n_items)
        k = min(int(k), len(self.items_))
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return {user: self.items_.decode(row).tolist()
                for user, row in zip(user_features.index.tolist(), top)}

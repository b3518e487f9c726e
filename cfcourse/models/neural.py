"""Neural collaborative filtering: embeddings fed to an MLP instead of a dot product.

:class:`CollabNN` concatenates a user's and an item's embeddings and lets an MLP score the
pair; :func:`mlp` builds the package's one MLP (also used by
:class:`~cfcourse.models.side_info.MetaNN`); :func:`emb_sz_rule` is fastai's rule of thumb for
an embedding's width. Inputs are batches ``x`` of shape ``(B, 2)`` of (user, item) positions;
outputs have shape ``(B,)``.
"""

from __future__ import annotations

import torch
from torch import nn

from cfcourse.models.dot_product import embedding, squash

__all__ = ["CollabNN", "emb_sz_rule", "mlp"]


def emb_sz_rule(n_categories: int) -> int:
    """fastai's rule of thumb for an embedding's width: ``min(600, round(1.6 * n ** 0.56))``."""
    return min(600, round(1.6 * n_categories**0.56))


def mlp(width: int, layers: tuple[int, ...], dropout: float = 0.0) -> nn.Sequential:
    """``Linear -> ReLU -> Dropout`` for each entry of ``layers``, then a linear layer to one score.

    >>> mlp(8, (4,))
    Sequential(
      (0): Linear(in_features=8, out_features=4, bias=True)
      (1): ReLU()
      (2): Dropout(p=0.0, inplace=False)
      (3): Linear(in_features=4, out_features=1, bias=True)
    )
    """
    blocks = []
    for size in layers:
        blocks += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    return nn.Sequential(*blocks, nn.Linear(width, 1))


class CollabNN(nn.Module):
    r"""A neural network on concatenated user and item embeddings.

    .. math:: \hat r_{ui} = \sigma_{[a,b]}\big(\mathrm{MLP}([e_u ; e_i])\big)

    Unlike the dot product, the embeddings may have different widths
    (by default :func:`emb_sz_rule` of each vocabulary) and the network may learn
    interactions a dot product cannot express.

    Examples
    --------
    >>> model = CollabNN(n_users=10, n_items=20, layers=(8,))
    >>> model(torch.tensor([[0, 1], [9, 19]])).shape
    torch.Size([2])
    """

    def __init__(self, n_users: int, n_items: int, user_sz: int | None = None,
                 item_sz: int | None = None, layers: tuple[int, ...] = (100,),
                 dropout: float = 0.0, y_range: tuple[float, float] | None = (0, 5.5)):
        super().__init__()
        user_sz = user_sz or emb_sz_rule(n_users)
        item_sz = item_sz or emb_sz_rule(n_items)
        self.user_factors = embedding(n_users, user_sz)
        self.item_factors = embedding(n_items, item_sz)
        self.layers = mlp(user_sz + item_sz, layers, dropout)
        self.y_range = y_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embs = torch.cat([self.user_factors(x[:, 0]), self.item_factors(x[:, 1])], dim=1)
        return squash(self.layers(embs)[:, 0], self.y_range)  # (B,)

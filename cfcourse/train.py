"""Training loops that need no framework: shuffled index slices of whole tensors.

This is the plain PyTorch loop the from-scratch chapters build by hand; later
chapters import it instead of copying it.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

__all__ = ["fit_plain"]

_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (n, 2) of (user index, item index), got {tuple(x.shape)}.")
    if x.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"x holds {x.dtype} values, but it must hold integer row positions; "
                        "convert it with x.long() (encode raw ids with cfcourse.data.IdIndex).")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}; they must be aligned.")
    if len(x) == 0:
        raise ValueError("cannot train on zero ratings; check the split or the filter that "
                         "produced x and y.")
    if not torch.isfinite(y).all():
        raise ValueError("y holds NaN or infinite ratings; drop or fill them before training.")


def _out_of_range(x: torch.Tensor) -> IndexError:
    return IndexError(
        f"x holds a position the model has no row for (positions run from {int(x.min())} "
        f"to user {int(x[:, 0].max())} and item {int(x[:, 1].max())}); they must run from 0 "
        "to n-1: encode ids with cfcourse.data.IdIndex and size the model with len(index)."
    )


def _table_rows(model: nn.Module, name: str) -> int | None:
    """Rows of the model's ``user_factors``/``item_factors`` table, when it has one."""
    table = getattr(model, name, None)
    if isinstance(table, nn.Embedding):
        return table.num_embeddings
    if isinstance(table, torch.Tensor) and table.ndim >= 1:
        return table.shape[0]
    return None


def _check_positions(model: nn.Module, x: torch.Tensor) -> None:
    """Refuse out-of-range positions before training, for models with named tables.

    On the CPU a bad position raises ``IndexError`` inside the forward pass, but on
    a GPU it is a device-side assert that leaves the CUDA context unusable (the
    kernel must restart), so the check must come first there.
    """
    limits = (_table_rows(model, "user_factors"), _table_rows(model, "item_factors"))
    if int(x.min()) < 0 or any(n is not None and int(x[:, col].max()) >= n
                               for col, n in enumerate(limits)):
        raise _out_of_range(x)


def _forward(model: nn.Module, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The model's predictions for ``x[rows]``, with a clear error for an out-of-range position."""
    try:
        return model(x[rows])
    except IndexError as err:
        raise _out_of_range(x) from err


def fit_plain(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int = 5,
    lr: float = 0.01,
    bs: int | None = None,
    wd: float = 0.0,
    optimizer: str = "sgd",
    seed: int = 0,
) -> list[float]:
    """Train ``model`` on ``(x, y)`` with mean squared error; return the loss of each epoch.

    Each epoch shuffles the row order and walks it in slices of ``bs`` rows
    (``None``: the whole data in one step, i.e. full-batch gradient descent).

    Parameters
    ----------
    model : nn.Module
        Maps ``(B, 2)`` index pairs to ``(B,)`` predictions.
    x, y : Tensor
        ``(n, 2)`` long indices and ``(n,)`` float ratings, on the model's device
        (e.g. :func:`cfcourse.env.device`; the loop itself moves nothing but the
        shuffled order).
    epochs, lr, bs : int, float, int or None
        Passes over the data, learning rate, batch size.
    wd : float
        L2 penalty passed to the optimiser as ``weight_decay``.
    optimizer : {"sgd", "adam"}
        Plain SGD or Adam.
    seed : int
        Seeds the shuffling, so two runs see the same batches.

    Returns
    -------
    list of float
        Mean training loss of each epoch (averaged over its batches, weighted by size).
    """
    _check(x, y)
    _check_positions(model, x)
    if bs is not None and (isinstance(bs, bool) or not isinstance(bs, numbers.Integral) or bs < 1):
        raise ValueError(f"bs must be a positive number of rows per step (or None for all "
                         f"rows), got {bs!r}.")
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {optimizer!r}.")
    opt = _OPTIMIZERS[optimizer](model.parameters(), lr=lr, weight_decay=wd)
    generator = torch.Generator().manual_seed(seed)
    n = len(x)
    bs = n if bs is None else bs
    losses = []
    # The epoch's sum stays on the device (no host sync per batch); float64 makes it
    # the same sum, to the bit, as adding Python floats (MPS has no float64).
    sum_dtype = torch.float32 if x.device.type == "mps" else torch.float64
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).to(x.device)
        total = torch.zeros((), dtype=sum_dtype, device=x.device)
        for start in range(0, n, bs):
            rows = order[start:start + bs]
            loss = nn.functional.mse_loss(_forward(model, x, rows), y[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach().to(sum_dtype) * len(rows)
        losses.append(total.item() / n)
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(
                f"the loss became {losses[-1]} in epoch {epoch + 1}; lower the learning rate."
            )
    return losses

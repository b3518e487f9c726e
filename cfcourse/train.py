"""Training loops that need no framework: shuffled index slices of whole tensors.

This is the plain PyTorch loop the from-scratch chapters build by hand; later
chapters import it instead of copying it.

Row-sparse training: each step touches only the users and items in its batch.

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
import numbers

import torch
from torch import nn

from cfcourse.models.sparse_dot_bias import SparseDotBias
from cfcourse.optim import FusedRowAdagrad, RowAdagrad

__all__ = ["fit_plain", "fit_sparse"]

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


_ROW_OPTIMIZERS = {"sparse_adam": torch.optim.SparseAdam, "row_adagrad": RowAdagrad,
                   "fused_row_adagrad": FusedRowAdagrad}


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
    optimizer: str = "sparse_adam",
    callback=None,
) -> list[float]:
    """Train with a row-sparse optimiser and a one-cycle schedule; return each epoch's loss.

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
        Seeds the shuffling, drawn on ``x``'s device (a CUDA permutation differs from
        the CPU one for the same seed).
    pct_start : float
        Share of steps spent warming the learning rate up.
    optimizer : {"sparse_adam", "row_adagrad", "fused_row_adagrad"}
        ``torch.optim.SparseAdam`` (lazy Adam: two moments per weight, touched rows
        only), :class:`RowAdagrad` (one number per row; cheaper per step), or
        :class:`FusedRowAdagrad` (the same update as ``"row_adagrad"`` with hand-written
        gradients instead of autograd; fastest, :class:`SparseDotBias` only).
    callback : callable, optional
        Called as ``callback(epoch, model)`` after each epoch (e.g. to time or validate).

    Returns
    -------
    list of float
        Mean squared error (without the penalty) of each epoch's batches.
    """
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be aligned and non-empty, got {len(x)} and {len(y)} rows.")
    if optimizer not in _ROW_OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(_ROW_OPTIMIZERS)}, got {optimizer!r}.")
    fused = optimizer == "fused_row_adagrad"
    opt = FusedRowAdagrad(model, lr=lr) if fused else \
        _ROW_OPTIMIZERS[optimizer](list(model.parameters()), lr=lr)
    n = len(x)
    steps = epochs * math.ceil(n / bs)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=steps, pct_start=pct_start, cycle_momentum=False)
    # The shuffle runs where the data live: on a GPU no permutation is drawn on the
    # CPU and copied over each epoch. On the CPU this is the same stream as before.
    generator = torch.Generator(device=x.device).manual_seed(seed)
    history = []
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator, device=x.device)
        if fused:  # one shuffled copy per epoch; batches are slices of it
            users, items, ys = x[order, 0], x[order, 1], y[order]
        total = torch.zeros((), device=x.device)
        for start in range(0, n, bs):
            end = start + bs
            if fused:
                total += opt.train_step(users[start:end], items[start:end], ys[start:end],
                                        reg, reg_bias)
            else:
                rows = order[start:end]
                pred, penalty = model.forward_with_penalty(x[rows], reg, reg_bias)
                mse = (pred - y[rows]).pow(2).mean()
                opt.zero_grad(set_to_none=True)
                (mse + penalty).backward()
                opt.step()
                total += mse.detach() * len(pred)
            schedule.step()
        history.append(total.item() / n)
        if not math.isfinite(history[-1]):
            raise FloatingPointError(f"the loss became {history[-1]} in epoch {epoch + 1}; "
                                     "lower the learning rate.")
        if callback is not None:
            callback(epoch, model)
    return history

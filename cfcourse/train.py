"""Training loops that need no framework: shuffled index slices of whole tensors.

This is the plain PyTorch loop the from-scratch chapters build by hand; later
chapters import it instead of copying it. :func:`fit_plain`, :func:`fit_sparse` and
:mod:`cfcourse.distributed` share one epoch loop, :func:`_run_epochs` (shuffle, slices,
step, divergence check, callback, history); only their step differs.

:func:`fit_sparse` trains :class:`~cfcourse.models.sparse_dot_bias.SparseDotBias` with a
row-wise optimiser (:mod:`cfcourse.optim`) or :class:`torch.optim.SparseAdam`, so that each
step touches only the users and items in its batch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

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


# A loss this many times that of predicting 0 for every rating means the predictions are
# an order of magnitude larger than the ratings themselves: the run has diverged, even
# if the numbers are still finite (a row-wise Adagrad step is at most ``lr`` per weight,
# so a far too large ``lr`` gives a huge but finite loss, never an overflow).
BLOW_UP = 100.0


def _check_divergence(loss: float, epoch: int, lr: float, scale: float | None = None) -> None:
    """Raise ``FloatingPointError`` when an epoch's loss says that training diverged.

    Training diverged when the loss is not finite, or when it exceeds
    ``BLOW_UP * scale``, with ``scale`` the loss of predicting 0 for every rating,
    :math:`\\frac1n \\sum r^2` (``None`` or 0: only the finite check).

    Examples
    --------
    >>> _check_divergence(0.8, epoch=0, lr=0.1, scale=14.0)  # fine: returns None
    >>> _check_divergence(float("nan"), epoch=2, lr=10.0)
    Traceback (most recent call last):
    ...
    FloatingPointError: the loss became nan in epoch 3 with lr=10: training diverged; lower the learning rate, e.g. to lr=1.
    """
    finite = math.isfinite(loss)
    if finite and not (scale and loss > BLOW_UP * scale):
        return
    why = "" if not finite else (f" ({loss / scale:.4g} times the loss {scale:.4g} of "
                                 "predicting 0 for every rating)")
    raise FloatingPointError(
        f"the loss became {loss:.4g} in epoch {epoch + 1} with lr={lr:g}{why}: training "
        f"diverged; lower the learning rate, e.g. to lr={lr / 10:g}.")


def _run_epochs(
    epochs: int,
    order: Callable[[int], torch.Tensor],
    bs: int,
    step: Callable[..., torch.Tensor],
    lr: float,
    *,
    total: Callable[[], torch.Tensor],
    epoch_loss: Callable[[torch.Tensor], float],
    gather: Callable[[torch.Tensor], Sequence[torch.Tensor]] | None = None,
    schedule=None,
    scale: float | None = None,
    callback: Callable[[int], None] | None = None,
) -> list[float]:
    """The epoch loop every trainer here shares; returns the loss of each epoch.

    For each epoch ``e``: ``order(e)`` gives the shuffled row positions; ``gather``
    turns them into the epoch's tensors (default: the order itself); the loop walks
    them in slices ``[start, start + bs)`` and calls ``step(*slices)``, which updates
    the model and returns the slice's *summed* loss :math:`\\sum_{j \\in B} \\ell_j`
    (detached, on the device, so there is no host sync per step); ``schedule.step()``
    follows each step. The epoch's loss is ``epoch_loss(Σ_B step)`` (e.g. divided by
    the number of rows, all-reduced over processes), then
    :func:`_check_divergence` runs, then ``callback(e)``.

    Examples
    --------
    >>> w = torch.zeros(1)
    >>> def step(rows):  # one SGD step on (w - 3)^2 per row
    ...     w.sub_(0.1 * 2 * (w - 3) * len(rows))
    ...     return (w - 3).pow(2).sum() * len(rows)
    >>> _run_epochs(2, lambda e: torch.arange(4), 4, step, lr=0.1,
    ...            total=lambda: torch.zeros(()), epoch_loss=lambda t: round(t.item() / 4, 4))
    [0.36, 0.0144]
    """
    history = []
    for epoch in range(epochs):
        rows = order(epoch)
        tensors = (rows,) if gather is None else tuple(gather(rows))
        running = total()
        for start in range(0, len(rows), bs):
            running += step(*(t[start:start + bs] for t in tensors))
            if schedule is not None:
                schedule.step()
        history.append(epoch_loss(running))
        _check_divergence(history[-1], epoch, lr, scale)
        if callback is not None:
            callback(epoch)
    return history


def _mean_square(y: torch.Tensor) -> float:
    """:math:`\\frac1n \\sum r^2`, the loss of predicting 0: the yardstick of divergence.

    One dot product where ``y`` lives (no copy of 25 M ratings, any device, float32:
    precise enough for a threshold a hundred times above it).
    """
    flat = y.detach().reshape(-1).float()
    return float(torch.dot(flat, flat)) / max(len(flat), 1)


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
    callback=None,
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
    callback : callable, optional
        Called as ``callback(epoch, model)`` after each epoch (e.g. to time or validate).

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
    # The epoch's sum stays on the device (no host sync per batch); float64 makes it
    # the same sum, to the bit, as adding Python floats (MPS has no float64).
    sum_dtype = torch.float32 if x.device.type == "mps" else torch.float64

    def step(rows: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.mse_loss(_forward(model, x, rows), y[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach().to(sum_dtype) * len(rows)

    return _run_epochs(
        epochs, lambda epoch: torch.randperm(n, generator=generator).to(x.device),
        n if bs is None else bs, step, lr,
        total=lambda: torch.zeros((), dtype=sum_dtype, device=x.device),
        epoch_loss=lambda total: total.item() / n, scale=_mean_square(y),
        callback=None if callback is None else (lambda epoch: callback(epoch, model)))


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

    def autograd_step(rows: torch.Tensor) -> torch.Tensor:
        pred, penalty = model.forward_with_penalty(x[rows], reg, reg_bias)
        mse = (pred - y[rows]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        (mse + penalty).backward()
        opt.step()
        return mse.detach() * len(pred)

    def fused_step(users: torch.Tensor, items: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        return opt.train_step(users, items, ys, reg, reg_bias)

    return _run_epochs(
        epochs, lambda epoch: torch.randperm(n, generator=generator, device=x.device),
        bs, fused_step if fused else autograd_step, lr,
        # fused: one shuffled copy per epoch; batches are slices of it
        gather=(lambda order: (x[order, 0], x[order, 1], y[order])) if fused else None,
        schedule=schedule, total=lambda: torch.zeros((), device=x.device),
        epoch_loss=lambda total: total.item() / n, scale=_mean_square(y),
        callback=None if callback is None else (lambda epoch: callback(epoch, model)))

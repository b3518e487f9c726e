"""Train a fastai ``Learner`` quietly, keep its loss curves, and score it in RMSE.

Chapters compare models by their validation RMSE on one split and draw train
against validation loss per epoch. fastai can give both, with two traps this
module steps around:

- ``learn.get_preds`` resets ``learn.recorder.values`` (it runs a validation
  pass through the same callbacks), so the curves must be read *before* the
  predictions;
- ``Learner.fit_one_cycle(..., wd=None)`` does not mean "no weight decay":
  fastai's Adam then falls back to its own default, ``wd=0.01``.

:func:`split_factors_biases` puts a model's biases in their own parameter group,
so that weight decay can shrink the factors and leave the biases alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from cfcourse.metrics import rmse

__all__ = ["fit_recording", "split_factors_biases", "valid_rmse"]


def valid_rmse(learn) -> float:
    """Root mean squared error of ``learn`` on its validation set.

    .. math:: \\mathrm{RMSE} = \\sqrt{\\tfrac1n \\sum_{(u,i)} (\\hat r_{ui} - r_{ui})^2}

    over the ``n`` ratings of ``learn.dls.valid``, computed with
    :func:`cfcourse.metrics.rmse` and without fastai's progress bar.

    Parameters
    ----------
    learn : fastai.learner.Learner
        A learner whose model predicts ratings.

    Returns
    -------
    float
        The RMSE, in stars.

    Notes
    -----
    This empties ``learn.recorder.values``; read curves (e.g. from
    :func:`fit_recording`) first.

    Examples
    --------
    >>> curves = fit_recording(learn, epochs=5, lr=5e-3, wd=0.1)  # doctest: +SKIP
    >>> valid_rmse(learn)  # doctest: +SKIP
    0.92
    """
    with learn.no_bar():
        preds, targets = learn.get_preds()
    return rmse(preds, targets)


def _check_wd(wd) -> float | list[float]:
    values = list(wd) if isinstance(wd, Sequence) else [wd]
    for value in values:
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"wd must be a number >= 0 (or one per parameter group), got "
                             f"{wd!r}; use 0.0 for no weight decay.")
    if not values:
        raise ValueError("wd is an empty sequence; give one value per parameter group.")
    return [float(v) for v in values] if isinstance(wd, Sequence) else float(wd)


def _check_fit_args(epochs: int, lr: float) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}.")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}; try 5e-3.")


def split_factors_biases(model: nn.Module) -> list[list[nn.Parameter]]:
    """Two parameter groups: every parameter but the biases, then the biases.

    A parameter is a bias when its name contains ``"bias"`` (``user_bias.weight``,
    ``item_bias``). Pass this as a ``Learner``'s ``splitter`` and a list
    ``wd=[wd_factors, wd_biases]`` to :func:`fit_recording`.

    fastai leaves parameters called ``bias`` undecayed by default
    (``wd_bn_bias=False``), but an embedding's parameter is called ``weight``, so
    bias *embeddings* are decayed unless they get a group of their own.

    Examples
    --------
    >>> from cfcourse.models import DotProductBias
    >>> factors, biases = split_factors_biases(DotProductBias(3, 4, n_factors=2))
    >>> [tuple(p.shape) for p in biases]
    [(3, 1), (4, 1)]
    """
    named = list(model.named_parameters())
    biases = [p for name, p in named if "bias" in name]
    others = [p for name, p in named if "bias" not in name]
    if not biases or not others:
        names = [name for name, _ in named]
        raise ValueError(f"need parameters with and without 'bias' in their names to split "
                         f"factors from biases; this model has {names}.")
    return [others, biases]


def fit_recording(
    learn, epochs: int, lr: float, wd: float | Sequence[float] = 0.0
) -> dict[str, list[float]]:
    """Train with ``fit_one_cycle`` silently and return the loss of each epoch.

    Parameters
    ----------
    learn : fastai.learner.Learner
        The learner to train (its loss is the mean squared error in the chapters).
    epochs : int
        Number of epochs of the one-cycle schedule.
    lr : float
        Peak learning rate of the schedule.
    wd : float or sequence of float
        fastai's (decoupled) weight decay, or one value per parameter group
        (see :func:`split_factors_biases`). ``0.0``, the default here, really
        means none; fastai's own default of ``None`` would mean Adam's ``0.01``.

    Returns
    -------
    dict
        ``{"train": [...], "valid": [...]}``, one float per epoch. ``train``
        is fastai's smoothed training loss at the end of the epoch (a running
        average over the last batches); ``valid`` is the mean loss over the
        whole validation set after the epoch.

    Examples
    --------
    >>> curves = fit_recording(learn, epochs=3, lr=5e-3, wd=0.1)  # doctest: +SKIP
    >>> len(curves["train"]), len(curves["valid"])  # doctest: +SKIP
    (3, 3)
    """
    _check_fit_args(epochs, lr)
    wd = _check_wd(wd)
    if isinstance(wd, list):
        if learn.opt is None:
            learn.create_opt()
        if len(wd) != len(learn.opt.param_lists):
            raise ValueError(f"wd has {len(wd)} values but the learner has "
                             f"{len(learn.opt.param_lists)} parameter group(s); give one "
                             "value per group (see split_factors_biases).")
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, lr, wd=wd)
    values = [list(row) for row in learn.recorder.values]  # copy before get_preds resets it
    return {"train": [float(row[0]) for row in values],
            "valid": [float(row[1]) for row in values]}

"""fastai ``DataLoaders`` built from the course's own train/validation split.

fastai's ``CollabDataLoaders.from_df`` draws its own random split. Chapters compare
models on *one* split (:func:`cfcourse.data.random_split`), so this module builds the
same kind of ``DataLoaders`` from a given ``(train, valid)`` pair instead:

- :func:`collab_dataloaders`: fastai's own pipeline (pandas rows, per-batch collation);
- :func:`tensor_dataloaders`: the fast path. Ratings become three tensors once; an
  epoch is a shuffled permutation walked in slices, with no per-row or per-batch
  pandas work, and the tensors can live on the GPU.

Both put their batches on :func:`cfcourse.env.device` unless they are given a
``device`` (so at ``CFCOURSE_SCALE=ci`` they stay on the CPU even on a GPU machine).

Train a fastai ``Learner`` quietly, keep its loss curves, and score it in RMSE.

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

import numpy as np
import pandas as pd
import torch
from fastai.callback.core import Callback
from fastai.collab import TabularCollab
from fastai.data.block import TransformBlock
from fastai.data.core import DataLoaders
from fastai.tabular.core import Categorify
from torch import nn

from cfcourse import env
from cfcourse.data.validate import validate_ratings
from cfcourse.metrics import rmse

__all__ = [
    "RowL2",
    "TensorDataLoaders",
    "TensorLoader",
    "collab_dataloaders",
    "fit_recording",
    "split_factors_biases",
    "tensor_dataloaders",
    "valid_rmse",
]


def collab_dataloaders(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    bs: int = 64,
    item_name: str = "item",
    seed: int | None = 42,
    device=None,
    **kwargs,
):
    """fastai ``DataLoaders`` whose training and validation sets are exactly ``train`` and ``valid``.

    Users and items are categorified as fastai does (vocabulary from the training
    rows; an id seen only in ``valid`` becomes ``#na#``), so ``collab_learner``,
    ``Learner``, ``dls.classes`` and the interpretation helpers all work.

    Parameters
    ----------
    train, valid : DataFrame
        Columns ``user``, ``rating`` and ``item_name`` (``"item"``, or ``"title"``
        to speak in film titles).
    bs : int
        Batch size.
    seed : int or None
        Seeds the shuffling of the training batches.
    device : torch.device or str, optional
        Where the batches go; default :func:`cfcourse.env.device` (fastai's own
        default would be any GPU it sees, whatever the scale).
    **kwargs
        Passed on to fastai's ``TabularPandas.dataloaders`` (e.g. ``val_bs``).
    """
    for part, name in ((train, "train"), (valid, "valid")):
        try:
            validate_ratings(part, columns=("user", item_name, "rating"), allow_duplicates=True)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
    if seed is not None:
        from fastai.torch_core import set_seed

        set_seed(seed)
    frame = pd.concat([train[["user", item_name, "rating"]], valid[["user", item_name, "rating"]]],
                      ignore_index=True)
    splits = (list(range(len(train))), list(range(len(train), len(frame))))
    tabular = TabularCollab(frame, [Categorify], ["user", item_name], y_names=["rating"],
                            y_block=TransformBlock(), splits=splits)
    return tabular.dataloaders(bs=bs, device=_device(device), **kwargs)


def _device(device) -> torch.device:
    """The caller's device, or :func:`cfcourse.env.device` when there is none."""
    return env.device() if device is None else torch.device(device)


class TensorLoader:
    """Batches ``(x[rows], y[rows])`` from whole tensors, ``rows`` a slice of a permutation.

    Enough of fastai's ``DataLoader`` interface for ``Learner``: iteration, ``len``,
    ``n``, ``bs``, ``device``, ``to(device)`` and ``new(shuffle=..., drop_last=...)``.

    Each epoch's permutation comes from one CPU generator seeded with ``seed`` and is
    then copied to the tensors' device, so the batches are the same rows on every
    device (chapter 9 checks the first batch against a by-hand ``randperm``). On a
    GPU that costs a host-side shuffle of ``n`` rows and one copy per epoch, not per batch.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, bs: int = 4096, shuffle: bool = False,
                 drop_last: bool = False, seed: int | None = None):
        if bs < 1:
            raise ValueError(f"bs must be a positive batch size, got {bs}.")
        self.x, self.y, self.bs = x, y, bs
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None

    @property
    def n(self) -> int:
        return len(self.x)

    @property
    def device(self) -> torch.device:
        return self.x.device

    def __len__(self) -> int:
        return self.n // self.bs if self.drop_last else math.ceil(self.n / self.bs)

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.n, generator=self._generator).to(self.device)
        else:
            order = None
        for b in range(len(self)):
            if order is None:
                yield self.x[b * self.bs:(b + 1) * self.bs], self.y[b * self.bs:(b + 1) * self.bs]
            else:
                rows = order[b * self.bs:(b + 1) * self.bs]
                yield self.x[rows], self.y[rows]

    def to(self, device) -> TensorLoader:
        self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def new(self, shuffle: bool | None = None, drop_last: bool | None = None, **kwargs):
        """A loader over the same tensors with other settings (fastai's ``get_preds`` calls it)."""
        return TensorLoader(self.x, self.y, kwargs.get("bs", self.bs),
                            self.shuffle if shuffle is None else shuffle,
                            self.drop_last if drop_last is None else drop_last, self.seed)


class TensorDataLoaders(DataLoaders):
    """fastai ``DataLoaders`` of two :class:`TensorLoader`, carrying ``classes`` and ``cat_names``

    so that ``collab_learner``, ``get_emb_sz`` and the interpretation helpers work.
    """

    def __init__(self, train: TensorLoader, valid: TensorLoader, classes: dict, device=None):
        super().__init__(train, valid, device=device)
        self.classes = classes
        self.cat_names = list(classes)


def _codes(values: pd.Series, vocab: np.ndarray) -> np.ndarray:
    return np.searchsorted(vocab, values.to_numpy()) + 1  # position 0 is fastai's "#na#"


def tensor_dataloaders(train: pd.DataFrame, valid: pd.DataFrame, bs: int = 4096,
                       item_name: str = "item", device=None, seed: int | None = 42,
                       valid_bs: int | None = None) -> TensorDataLoaders:
    """Fast fastai ``DataLoaders``: whole tensors, shuffled index slices, optionally on the GPU.

    The vocabulary of users and items comes from ``train`` *and* ``valid``, so an id
    seen only in validation has its own (untrained) row instead of raising fastai's
    "not in the training data" error. As in fastai, class 0 is ``"#na#"``.

    Parameters
    ----------
    train, valid : DataFrame
        Columns ``user``, ``rating`` and ``item_name``.
    bs : int
        Training batch size; validation uses ``valid_bs`` (default ``4 * bs``).
    device : torch.device or str, optional
        Where the tensors live (e.g. ``"cuda"``); default :func:`cfcourse.env.device`.
    seed : int or None
        Seeds the shuffling of training batches.
    """
    for part, name in ((train, "train"), (valid, "valid")):
        try:
            validate_ratings(part, columns=("user", item_name, "rating"), allow_duplicates=True,
                             allow_empty=name == "valid")
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
    both = pd.concat([train[["user", item_name]], valid[["user", item_name]]])
    vocab = {"user": np.unique(both["user"].to_numpy()),
             item_name: np.unique(both[item_name].to_numpy())}

    def tensors(df):
        x = np.stack([_codes(df["user"], vocab["user"]), _codes(df[item_name], vocab[item_name])],
                     axis=1)
        return (torch.as_tensor(x, dtype=torch.long),
                torch.tensor(df["rating"].to_numpy(dtype=np.float32)).view(-1, 1))

    train_dl = TensorLoader(*tensors(train), bs=bs, shuffle=True, drop_last=False, seed=seed)
    valid_dl = TensorLoader(*tensors(valid), bs=valid_bs or 4 * bs)
    classes = {name: ["#na#"] + list(v) for name, v in vocab.items()}
    return TensorDataLoaders(train_dl, valid_dl, classes).to(_device(device))


class RowL2(Callback):
    """Add L2 on the rows a batch looked up to fastai's loss (for sparse embeddings).

    fastai's ``wd`` decays *every* weight at every step; with ``nn.Embedding(sparse=True)``
    and ``SparseAdam`` that would touch all rows. This callback instead adds
    ``model.penalty(xb, reg, reg_bias)`` (see :class:`cfcourse.models.sparse_dot_bias.SparseDotBias`) to the
    loss before the backward pass, so gradients, and updates, stay row-sparse.
    """

    order = 0

    def __init__(self, reg: float = 0.1, reg_bias: float = 0.01):
        self.reg, self.reg_bias = reg, reg_bias

    def after_loss(self):
        if self.training:
            self.learn.loss_grad = self.learn.loss_grad + self.learn.model.penalty(
                self.learn.xb[0], self.reg, self.reg_bias)


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

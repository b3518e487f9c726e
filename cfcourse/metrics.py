"""How good predictions are: rating errors, and how well factors were recovered."""

from __future__ import annotations

import numpy as np

__all__ = ["align_linear", "linear_recovery_r2", "mae", "rmse"]


def _numbers(values) -> np.ndarray:
    """A flat float64 array from a list, an array, a Series or a tensor (on any device)."""
    if hasattr(values, "detach"):  # a torch tensor, perhaps on a GPU
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred, target = _numbers(pred), _numbers(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred has {pred.size} values but target has {target.size}; "
                         "they must be aligned one to one.")
    if pred.size == 0:
        raise ValueError("cannot score zero predictions; the validation set is empty.")
    return pred, target


def rmse(pred, target) -> float:
    """Root mean squared error, :math:`\\sqrt{\\tfrac1n\\sum (\\hat r - r)^2}`."""
    pred, target = _pair(pred, target)
    return float(np.sqrt(np.mean((pred - target) ** 2)))


def mae(pred, target) -> float:
    """Mean absolute error, :math:`\\tfrac1n\\sum |\\hat r - r|`."""
    pred, target = _pair(pred, target)
    return float(np.mean(np.abs(pred - target)))


def align_linear(learned, planted) -> np.ndarray:
    """The least-squares linear map (with intercept) of ``learned`` onto ``planted``.

    Returns ``[learned, 1] @ W`` with ``W`` minimising ``||planted - [learned, 1] @ W||²``:
    the learned factors expressed in the planted factors' coordinates.
    """
    learned = np.asarray(learned, dtype=np.float64)
    planted = np.asarray(planted, dtype=np.float64)
    if learned.ndim != 2 or planted.ndim != 2 or len(learned) != len(planted):
        raise ValueError(f"need two 2-D arrays with the same number of rows, got shapes "
                         f"{learned.shape} and {planted.shape}.")
    design = np.hstack([learned, np.ones((len(learned), 1))])
    weights, *_ = np.linalg.lstsq(design, planted, rcond=None)
    return design @ weights


def linear_recovery_r2(learned, planted) -> float:
    """How much of ``planted`` a linear map of ``learned`` explains (pooled R²).

    Aligns with :func:`align_linear` and returns ``1 - SS_res / SS_tot`` over all
    columns. Factors learned from ratings alone are only defined up to an
    invertible linear map (``P Q^T = (P A)(Q A^{-T})^T``), so this is the right
    way to ask whether they recovered the truth.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(size=(50, 3))
    >>> round(linear_recovery_r2(truth @ rng.normal(size=(3, 3)), truth), 6)
    1.0
    """
    planted = np.asarray(planted, dtype=np.float64)
    residual = planted - align_linear(learned, planted)
    total = planted - planted.mean(axis=0)
    return float(1 - (residual**2).sum() / (total**2).sum())

"""Plots more than one chapter draws: loss curves and factor recovery."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from cfcourse.metrics import align_linear

__all__ = ["plot_losses", "plot_recovery"]


def plot_losses(curves: dict[str, Sequence[float]], ax=None, xlabel: str = "epoch",
                floor: float | None = None, log: bool = False):
    """One line per named loss curve (e.g. ``{"train": [...], "valid": [...]}``).

    ``floor`` draws a dashed line at the best loss any model can reach (the noise).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name)
    if floor is not None:
        ax.axhline(floor, linestyle="--", color="grey", label="noise floor")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean squared error")
    ax.legend()
    return ax


def plot_recovery(learned, planted, names: Sequence[str], axes=None):
    """Planted factors (x) against learned ones mapped onto them by least squares (y).

    Points on the diagonal mean the learned factors, after one linear map,
    are the planted ones.
    """
    planted = np.asarray(planted, dtype=float)
    mapped = align_linear(learned, planted)
    if axes is None:
        _, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2))
    for k, (ax, name) in enumerate(zip(np.atleast_1d(axes), names)):
        ax.scatter(planted[:, k], mapped[:, k], s=14, alpha=0.8)
        lims = [min(planted[:, k].min(), mapped[:, k].min()), max(planted[:, k].max(),
                                                                   mapped[:, k].max())]
        ax.plot(lims, lims, color="grey", linewidth=1)
        ax.set_xlabel(f"planted {name}")
        ax.set_ylabel(f"learned {name} (aligned)")
    plt.tight_layout()
    return axes

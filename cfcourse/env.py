"""Where the code runs: scale preset, device, Colab/Kaggle detection, seeding.

Every chapter opens with one parameters cell that asks this module for its sizes::

    from cfcourse.env import by_scale, scale
    N_EPOCHS = by_scale(ci=1, cpu=5, gpu=5)

The same cells then run at every scale; only the numbers change.

This module imports nothing else from ``cfcourse`` (it is the bottom layer).
"""

from __future__ import annotations

import os
import random
import sys
import warnings
from typing import TypeVar

import numpy as np

__all__ = ["SCALES", "by_scale", "device", "in_colab", "in_kaggle", "scale", "seed_everything"]

SCALES = ("ci", "cpu", "gpu")

T = TypeVar("T")

_warned_gpu_without_cuda = False  # scale() warns once per process, not at every by_scale


def _cuda_available() -> bool:
    # torch is imported lazily so `import cfcourse.env` stays cheap.
    import torch

    return bool(torch.cuda.is_available())


def _warn_gpu_without_cuda() -> None:
    global _warned_gpu_without_cuda
    if _warned_gpu_without_cuda:
        return
    _warned_gpu_without_cuda = True
    warnings.warn(
        "CFCOURSE_SCALE=gpu but PyTorch sees no CUDA GPU: the chapters will train their "
        "GPU-sized workloads (up to the 25 million ratings of ML-25M) on the CPU, which takes "
        "hours. Switch the runtime to a GPU (Colab: Runtime > Change runtime type; Kaggle: "
        "Settings > Accelerator), or set CFCOURSE_SCALE=cpu (or unset it).",
        RuntimeWarning, stacklevel=3)


def scale() -> str:
    """Return the scale preset: ``"ci"``, ``"cpu"`` or ``"gpu"``.

    ``CFCOURSE_SCALE`` wins when it is set. Otherwise ``"gpu"`` when CUDA is
    available and ``"cpu"`` when it is not. ``CFCOURSE_SCALE=gpu`` on a machine
    without CUDA is allowed (the code paths are the same) but gives one
    ``RuntimeWarning`` per process: GPU sizes on a CPU take hours.

    Examples
    --------
    >>> import os; os.environ["CFCOURSE_SCALE"] = "ci"
    >>> scale()
    'ci'
    """
    chosen = os.environ.get("CFCOURSE_SCALE", "").strip().lower()
    if chosen:
        if chosen not in SCALES:
            raise ValueError(
                f"CFCOURSE_SCALE={chosen!r} is not a scale; use one of {', '.join(SCALES)} "
                "(or unset it to pick gpu/cpu automatically)."
            )
        if chosen == "gpu" and not _cuda_available():
            _warn_gpu_without_cuda()
        return chosen
    return "gpu" if _cuda_available() else "cpu"


def by_scale(*, ci: T, cpu: T, gpu: T) -> T:
    """Pick the value for the current :func:`scale`.

    Chapters use it in their parameters cell so that sizes change with the
    machine while the code path stays the same.

    Examples
    --------
    >>> import os; os.environ["CFCOURSE_SCALE"] = "cpu"
    >>> by_scale(ci=1, cpu=5, gpu=10)
    5
    """
    return {"ci": ci, "cpu": cpu, "gpu": gpu}[scale()]


def device():
    """The torch device to train on: ``cuda`` when available, else ``cpu``.

    At ``CFCOURSE_SCALE=ci`` this is always the CPU, so CI runs the same path
    on any machine. Every loader and trainer of the package
    (:func:`cfcourse.fastai_glue.collab_dataloaders`, :func:`cfcourse.fastai_glue.tensor_dataloaders`,
    :func:`cfcourse.fit`) puts its tensors here unless it is given a ``device``.
    """
    import torch

    if scale() != "ci" and _cuda_available():
        return torch.device("cuda")
    return torch.device("cpu")


def in_colab() -> bool:
    """True inside a Google Colab kernel."""
    return "google.colab" in sys.modules


def in_kaggle() -> bool:
    """True inside a Kaggle notebook (Kaggle sets ``KAGGLE_KERNEL_RUN_TYPE``)."""
    return bool(os.environ.get("KAGGLE_KERNEL_RUN_TYPE"))


def seed_everything(seed: int = 42) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a chapter reruns identically."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)

"""The compiled CPU engine: row-wise Adagrad SGD, one rating at a time, compiled with numba.

:func:`fit_compiled` trains a :class:`~cfcourse.models.sparse_dot_bias.SparseDotBias` with exactly the update
of :class:`~cfcourse.optim.FusedRowAdagrad` at batches of one rating (the same model, loss, L2
on the looked-up rows, one Adagrad accumulator per row of each table, and the same one-cycle
learning-rate schedule as :func:`~cfcourse.train.fit_sparse`), written as the plain SGD loop
over ratings and compiled to machine code. No batch, no autograd, no temporary tensors: each
rating reads two factor rows and two biases, and writes them back.

Visiting order is an explicit choice (``order=``), because on a CPU it decides the speed:

``"shuffle"``
    A fresh random permutation each epoch (``torch.randperm`` from the seed, the stream
    :func:`~cfcourse.train.fit_sparse` draws), read through an index array: every rating is a
    random jump in memory.
``"shuffled_once"``
    The rating arrays are permuted physically once; every epoch reads them front to back in
    that same order.
``"by_user"``
    Ratings are grouped by user once (in random order within a user); each epoch visits the
    users in a fresh random order. A user's factor row stays in cache while their ratings are
    visited, and the rating arrays are read in long contiguous runs.

Threads and the race (Hogwild). With ``threads > 1`` the epoch is cut into contiguous chunks
that the threads process at the same time, all writing to the same tables *without locks*:
the lock-free scheme of :cite:t:`recht2011hogwild` ("Hogwild!"; BibTeX key
``recht2011hogwild``). Two threads that update the same row at once race: one may read a row
the other is half-way through writing, and one of the two updates may overwrite the other.
SGD tolerates it because a rating touches only two rows out of hundreds of thousands, so
collisions are rare, and a lost or mixed update is a small perturbation of a noisy step that
the next steps correct. Recht et al. prove near-linear speed-ups at the same convergence rate
when such collisions are sparse. With ``"by_user"`` a user's ratings usually sit in one chunk,
so only the item rows are shared. The price: **multi-threaded runs are not bit-for-bit
reproducible** (which write wins depends on timing). With ``threads=1`` and a seed, a run is
reproducible to the bit.

numba is imported only when a kernel is first used, so :mod:`cfcourse` works without it;
:func:`available` says whether it is installed.

Examples
--------
>>> import torch
>>> from cfcourse.models.sparse_dot_bias import SparseDotBias
from cfcourse.train import _check_divergence, _mean_square
>>> x = torch.tensor([[0, 0], [0, 1], [1, 1]]); y = torch.tensor([4.0, 3.0, 5.0])
>>> model = SparseDotBias(n_users=2, n_items=2, n_factors=4, mean=4.0)
>>> losses = fit_compiled(model, x, y, epochs=2, lr=0.05, order="by_user")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from cfcourse.models.sparse_dot_bias import SparseDotBias
from cfcourse.train import _check_divergence, _mean_square

__all__ = ["ORDERS", "available", "fit_compiled", "one_cycle_lr", "visiting_order"]

ORDERS = ("shuffle", "shuffled_once", "by_user")
EPS = 1e-8  # FusedRowAdagrad's default eps
CHUNKS_PER_THREAD = 8  # "shuffle"/"shuffled_once": the epoch is cut into threads × this chunks


def available() -> bool:
    """True when numba imports, i.e. when :func:`fit_compiled` can run."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def one_cycle_lr(step: int, lr: float, pct_start: float, total_steps: int) -> float:
    """The learning rate at ``step`` of ``torch.optim.lr_scheduler.OneCycleLR``.

    Same formula as PyTorch's (cosine warm-up from ``lr/25`` to ``lr`` over the first
    ``pct_start`` of the steps, then cosine decay to ``lr/25/1e4``), so that the compiled
    engine, which computes it per rating, follows the schedule :func:`fit_sparse` uses.

    >>> round(one_cycle_lr(0, 1.0, 0.25, 100), 12)
    0.04
    >>> one_cycle_lr(99, 1.0, 0.25, 100) == 1.0 / 25 / 1e4
    True
    """
    return _one_cycle(step, lr, pct_start, total_steps)


def _one_cycle(step, lr, pct_start, total_steps):
    initial = lr / 25.0
    end1 = pct_start * total_steps - 1.0
    if step <= end1:
        start, end, lo, hi = initial, lr, 0.0, end1
    else:
        start, end, lo, hi = lr, initial / 1e4, end1, total_steps - 1.0
    pct = (step - lo) / (hi - lo) if hi > lo else 1.0
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


# The epoch below is compiled twice by numba (serial, and parallel with prange); it looks up
# these two names when it compiles, and _kernels() rebinds them to their numba versions first.
_one_cycle_jit = _one_cycle
prange = range


def _make_epoch(parallel: bool):
    """The epoch loop; numba compiles one copy serial and one with a parallel ``prange``."""

    def epoch(users, items, ratings, index, use_index, seg_lo, seg_hi, seg_step,
              wu, wi, bu, bi, au, ai, abu, abi, mean, reg2, regb2,
              lr, pct_start, total_steps, eps):
        """One epoch: for each segment, the ratings at positions [lo, hi) in order.

        ``index[p]`` is the rating at position ``p`` when ``use_index`` (order "shuffle");
        otherwise the position is the rating. Segment ``s`` starts at global step
        ``seg_step[s]``. Returns the summed squared error (before each update).
        """
        assert parallel in (True, False)  # a closure: each copy gets its own cache entry
        k = wu.shape[1]
        inv_k = np.float32(1.0 / k)
        two = np.float32(2.0)
        sse = 0.0
        for s in prange(len(seg_lo)):  # threads share the segments; no locks (Hogwild)
            lo = seg_lo[s]
            step0 = seg_step[s] - lo
            for p in range(lo, seg_hi[s]):
                j = index[p] if use_index else p
                u = users[j]
                i = items[j]
                rate = _one_cycle_jit(step0 + p, lr, pct_start, total_steps)
                dot = np.float32(0.0)  # p·q, and the squared norms |p|², |q|²
                pp = np.float32(0.0)
                qq = np.float32(0.0)
                for f in range(k):  # one pass reads both rows
                    pf = wu[u, f]
                    qf = wi[i, f]
                    dot += pf * qf
                    pp += pf * pf
                    qq += qf * qf
                err = dot + bu[u] + bi[i] + mean - ratings[j]
                sse += err * err
                e = two * err  # d(err²)/d(pred); batch of one, so no 1/B
                # Adagrad's row statistic, the mean squared gradient of the row, without a
                # second pass: |e q + λ2 p|² = e²|q|² + 2 e λ2 (p·q) + λ2²|p|²
                cross = two * e * reg2 * dot
                au[u] += (e * e * qq + cross + reg2 * reg2 * pp) * inv_k
                ai[i] += (e * e * pp + cross + reg2 * reg2 * qq) * inv_k
                su = np.float32(rate / (math.sqrt(au[u]) + eps))
                si = np.float32(rate / (math.sqrt(ai[i]) + eps))
                for f in range(k):  # both rows from their values before this rating's step
                    pf = wu[u, f]
                    qf = wi[i, f]
                    wu[u, f] = pf - su * (e * qf + reg2 * pf)
                    wi[i, f] = qf - si * (e * pf + reg2 * qf)
                gbu = e + regb2 * bu[u]
                gbi = e + regb2 * bi[i]
                abu[u] += gbu * gbu
                abi[i] += gbi * gbi
                bu[u] -= np.float32(rate / (math.sqrt(abu[u]) + eps)) * gbu
                bi[i] -= np.float32(rate / (math.sqrt(abi[i]) + eps)) * gbi
        return sse

    return epoch


@lru_cache(maxsize=1)
def _kernels():
    """Compile (once per process) the serial and the parallel epoch."""
    try:
        import numba
    except ImportError:
        raise ImportError("the compiled engine needs numba: pip install 'numba>=0.61' "
                          "(Colab and Kaggle have it), or use engine='torch'.") from None
    global _one_cycle_jit, prange
    _one_cycle_jit = numba.njit(inline="always", cache=True)(_one_cycle)
    prange = numba.prange
    # reassoc lets LLVM vectorise the sums over factors (results change in the last bits only;
    # no assumption that values are finite, so a diverging run still shows up as a NaN loss)
    fast = {"reassoc", "contract"}
    serial = numba.njit(nogil=True, cache=True, fastmath=fast)(_make_epoch(False))
    parallel = numba.njit(nogil=True, parallel=True, cache=True, fastmath=fast)(_make_epoch(True))
    return numba, serial, parallel


def _permutation(n: int, generator: torch.Generator) -> np.ndarray:
    return torch.randperm(n, generator=generator).numpy()


class _Plan:
    """Where the ratings lie in memory and which segments each epoch visits.

    ``physical`` maps a position in the (reordered) rating arrays to the original rating.
    """

    def __init__(self, order: str, users: np.ndarray, n_users: int, seed: int, chunks: int):
        self.order, self.n, self.chunks = order, len(users), chunks
        self.generator = torch.Generator().manual_seed(seed)
        if order == "shuffle":
            self.physical = None
        elif order == "shuffled_once":
            self.physical = _permutation(self.n, self.generator)
        else:  # by_user: a random order within each user, then grouped by user
            once = _permutation(self.n, self.generator)
            self.physical = once[np.argsort(users[once], kind="stable")]
            counts = np.bincount(users, minlength=n_users)
            self.indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            self.n_users = n_users

    def epoch(self, epoch: int):
        """(index, use_index, seg_lo, seg_hi, seg_step) for one epoch."""
        offset = epoch * self.n
        if self.order == "by_user":
            who = _permutation(self.n_users, self.generator)
            lo, hi = self.indptr[who], self.indptr[who + 1]
            step = offset + np.concatenate([[0], np.cumsum(hi - lo)[:-1]]).astype(np.int64)
            return np.zeros(1, np.int64), False, lo, hi, step
        bounds = np.linspace(0, self.n, min(self.chunks, self.n) + 1).astype(np.int64)
        lo, hi = bounds[:-1], bounds[1:]
        if self.order == "shuffle":
            return _permutation(self.n, self.generator), True, lo, hi, offset + lo
        return np.zeros(1, np.int64), False, lo, hi, offset + lo

    def sequence(self, epoch: int) -> np.ndarray:
        """The original rating indices in the order the epoch visits them."""
        index, use_index, lo, hi, _ = self.epoch(epoch)
        positions = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if len(lo) else \
            np.empty(0, np.int64)
        seq = index[positions] if use_index else positions
        return seq if self.physical is None else self.physical[seq]


def _check_order(order) -> str:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {list(ORDERS)}, got {order!r}.")
    return order


def visiting_order(order: str, users, n_users: int, epochs: int, seed: int = 0) -> list:
    """The ratings (indices into ``users``) each epoch of :func:`fit_compiled` visits, in order.

    On one thread the kernel visits exactly these; with more threads, each thread takes a
    contiguous share of each epoch's list. Needs no numba.

    >>> [s.tolist() for s in visiting_order("by_user", [0, 1, 0], n_users=2, epochs=1)]
    [[1, 2, 0]]
    """
    _check_order(order)
    users = np.asarray(users, dtype=np.int64)
    plan = _Plan(order, users, n_users, seed, chunks=1)
    return [plan.sequence(e) for e in range(epochs)]


def _threads(numba, threads) -> int:
    most = numba.config.NUMBA_NUM_THREADS
    if threads is None:
        return most
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None (all {most} cores), "
                         f"got {threads!r}.")
    return min(int(threads), most)


def fit_compiled(
    model: SparseDotBias,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int = 10,
    lr: float = 0.05,
    reg: float = 0.05,
    reg_bias: float = 0.01,
    seed: int = 0,
    pct_start: float = 0.25,
    order: str = "by_user",
    threads: int | None = None,
    callback=None,
) -> list[float]:
    """Train ``model`` in place by compiled per-rating row-wise Adagrad; return each epoch's loss.

    The update, loss, L2 and schedule are those of ``fit_sparse(model, x, y, bs=1,
    optimizer="fused_row_adagrad")``: with ``order="shuffle"``, ``threads=1`` and the same
    seed, both give the same factors to float tolerance (``tests/test_compiled.py`` checks it).
    One step is one rating, so a good ``lr`` and ``reg`` differ from the minibatch path's:
    tune them for this engine.

    Parameters
    ----------
    model : SparseDotBias
        On the CPU; its tables are updated in place.
    x, y : Tensor
        ``(n, 2)`` user and item indices and ``(n,)`` ratings (CPU).
    epochs, lr : int, float
        Passes over the ratings and the peak of the one-cycle learning rate.
    reg, reg_bias : float
        L2 strength on the factor rows and the biases the rating looks up.
    seed : int
        Seeds the visiting order. With ``threads=1``: same seed, same result to the bit.
    pct_start : float
        Share of the steps spent warming the learning rate up.
    order : {"shuffle", "shuffled_once", "by_user"}
        How ratings are visited (see the module's documentation).
    threads : int, optional
        Threads for the lock-free (Hogwild) parallel loop; default all of numba's
        (``NUMBA_NUM_THREADS``). More than one thread: not bit-for-bit reproducible.
    callback : callable, optional
        Called as ``callback(epoch, model)`` after each epoch.

    Returns
    -------
    list of float
        Mean squared error (without the penalty) of each epoch's ratings, each measured
        just before its own update.
    """
    _check_order(order)
    if not isinstance(model, SparseDotBias):
        raise TypeError(f"fit_compiled trains a SparseDotBias, got {type(model).__name__}.")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}.")
    for name, value in (("lr", lr), ("reg", reg), ("reg_bias", reg_bias)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
                or not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
            need = "a positive" if name == "lr" else "a non-negative"
            raise ValueError(f"{name} must be {need} finite number, got {value!r}.")
    if not 0.0 <= pct_start <= 1.0:
        raise ValueError(f"pct_start must be between 0 and 1, got {pct_start!r}.")
    if len(x) != len(y) or len(x) == 0 or x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"x must be (n, 2) and aligned with y, non-empty; got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}.")
    tables = [model.user_factors.weight, model.item_factors.weight,
              model.user_bias.weight, model.item_bias.weight]
    if any(t.device.type != "cpu" for t in tables) or x.device.type != "cpu":
        raise ValueError("the compiled engine runs on the CPU; move the model and data there "
                         "(or use fit_sparse on the GPU).")
    if any(t.dtype != torch.float32 for t in tables):
        raise ValueError("the compiled engine needs float32 tables.")
    numba, serial, parallel = _kernels()
    n_threads = _threads(numba, threads)
    users = np.ascontiguousarray(x[:, 0].numpy(), dtype=np.int64)
    items = np.ascontiguousarray(x[:, 1].numpy(), dtype=np.int64)
    ratings = np.ascontiguousarray(y.detach().numpy(), dtype=np.float32)
    n_users, n_items = tables[0].shape[0], tables[1].shape[0]
    # The compiled loop does not check bounds: an index outside a table would corrupt memory.
    for name, idx, size in (("user", users, n_users), ("item", items, n_items)):
        if idx.min() < 0 or idx.max() >= size:
            raise ValueError(f"{name} indices must lie in [0, {size}), got "
                             f"[{idx.min()}, {idx.max()}].")
    if not np.isfinite(ratings).all():
        raise ValueError("ratings must be finite.")
    plan = _Plan(order, users, n_users, seed, chunks=n_threads * CHUNKS_PER_THREAD)
    if plan.physical is not None:  # physically reorder once
        users, items, ratings = users[plan.physical], items[plan.physical], ratings[plan.physical]
    with torch.no_grad():
        wu, wi = (t.detach().numpy() for t in tables[:2])  # views: the kernel writes the model
        bu, bi = (t.detach().numpy().reshape(-1) for t in tables[2:])
        state = [np.zeros(len(t), dtype=np.float32) for t in (wu, wi, bu, bi)]
        scalars = (np.float32(float(model.mean)), np.float32(2.0 * reg),
                   np.float32(2.0 * reg_bias), float(lr), float(pct_start),
                   float(epochs * len(users)), EPS)
        kernel = serial if n_threads == 1 else parallel
        before = numba.get_num_threads()
        history, scale = [], _mean_square(y)
        try:
            numba.set_num_threads(n_threads)
            for epoch in range(epochs):
                sse = kernel(users, items, ratings, *plan.epoch(epoch), wu, wi, bu, bi, *state,
                             *scalars)
                history.append(sse / len(users))
                _check_divergence(history[-1], epoch, lr, scale)  # the torch path's check
                if callback is not None:
                    callback(epoch, model)
        finally:
            numba.set_num_threads(before)
    return history

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
``"blocks"``
    The rating matrix is cut once into a ``BLOCKS`` × ``BLOCKS`` grid: users and items are
    dealt at random into ``BLOCKS`` groups each, and a block holds the ratings of one user group
    for one item group, grouped by user inside it. Each epoch draws a random pairing: in each of
    ``BLOCKS`` rounds (in random order), ``BLOCKS`` blocks that share no user group and no item
    group are visited, one after the other on one thread, or at the same time on several. The
    item rows a block touches are a ``1/BLOCKS`` share of the table, small enough to stay in a
    core's cache, and the user rows stay in cache for each user's run. This is the scheme of
    DSGD :cite:p:`gemulla2011dsgd` and LIBMF :cite:p:`chin2015fpsg`. The layout is built
    once, in four linear passes split among the threads and no sort (count the blocks, deal
    the ratings by user group, deal each user group by item group, group each block by user);
    the tables are relabelled so that each group's rows are contiguous.

Threads and the race (Hogwild). With ``threads > 1`` and the first three orders, the epoch is
cut into contiguous chunks that the threads process at the same time, all writing to the same
tables *without locks*: the lock-free scheme of :cite:t:`recht2011hogwild` ("Hogwild!"). Two
threads that update the same row at once race: one may read a row the other is half-way
through writing, and one of the two updates may overwrite the other. SGD tolerates it because a
rating touches only two rows out of hundreds of thousands, so collisions are rare, and a lost or
mixed update is a small perturbation of a noisy step that the next steps correct. Recht et al.
prove near-linear speed-ups at the same convergence rate when such collisions are sparse. With
``"by_user"`` a user's ratings usually sit in one chunk, so only the item rows are shared. The
price: **multi-threaded runs of these orders are not bit-for-bit reproducible** (which write
wins depends on timing). With ``threads=1`` and a seed, a run is reproducible to the bit.
``"blocks"`` has no race at all: the blocks of a round share no row, so each row sees the same
updates in the same order on any number of threads (up to ``BLOCKS``; more are not used), and
a seed reproduces the factors to the bit on every thread count.

Waiting for memory. A row that is not in the cache takes longer to arrive than a rating takes
to compute, so while the kernel works on one rating it asks the processor to start loading the
rows of the rating ``PREFETCH`` positions further on (LLVM's prefetch hint, which changes no
value; the user's row only where a new user's run begins). With ``"shuffle"``, finding that
rating's rows is itself a jump through the index array, so the hint helps least there;
``python benchmarks/bench.py --only cornac`` times ``"blocks"`` with and without it.

numba is imported only when a kernel is first used, so :mod:`cfcourse` works without it;
:func:`available` says whether it is installed.

Examples
--------
>>> import torch
>>> from cfcourse.models.sparse_dot_bias import SparseDotBias
>>> x = torch.tensor([[0, 0], [0, 1], [1, 1]]); y = torch.tensor([4.0, 3.0, 5.0])
>>> model = SparseDotBias(n_users=2, n_items=2, n_factors=4, mean=4.0)
>>> losses = fit_compiled(model, x, y, epochs=2, lr=0.05, order="blocks")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from itertools import pairwise

import numpy as np
import torch

from cfcourse.models.sparse_dot_bias import SparseDotBias
from cfcourse.train import _check_divergence, _mean_square

__all__ = ["BLOCKS", "ORDERS", "available", "fit_compiled", "one_cycle_lr", "visiting_order"]

ORDERS = ("shuffle", "shuffled_once", "by_user", "blocks")
# "blocks": the grid is BLOCKS x BLOCKS, and a round runs BLOCKS blocks at once. More blocks
# make shorter rounds, closer to a random order: after 4 epochs 32 reached a lower inner-split
# error than 8 and 16 at about the same speed, 64 only a little lower and slower;
# `python benchmarks/bench.py --only cornac` measures it.
BLOCKS = 32
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
    c, _, _, _, end, half, _ = _one_cycle_state(step, lr, pct_start, total_steps)
    return end + half * (c + 1.0)


def _one_cycle_state(step, lr, pct_start, total_steps):
    """The schedule at ``step`` in a form that the next steps can update without a cosine.

    Within a phase the rate is ``end + half * (cos(a) + 1)`` with an angle ``a`` that grows by
    the same ``da`` every step, so ``(cos a, sin a)`` advances by a rotation through ``da``:
    four multiplications instead of a cosine per rating. Returns ``(cos a, sin a, cos da,
    sin da, end, half, until)``, where ``until`` is the first step of the next phase.
    """
    initial = lr / 25.0
    end1 = pct_start * total_steps - 1.0
    if step <= end1:
        start, end, lo, hi, until = initial, lr, 0.0, end1, math.floor(end1) + 1.0
    else:
        start, end, lo, hi, until = lr, initial / 1e4, end1, total_steps - 1.0, math.inf
    if hi > lo:
        angle, da = math.pi * (step - lo) / (hi - lo), math.pi / (hi - lo)
    else:
        angle, da = math.pi, 0.0
    return (math.cos(angle), math.sin(angle), math.cos(da), math.sin(da), end,
            (start - end) / 2.0, until)


# The epoch below looks these names up when numba compiles it; _kernel() first rebinds them
# to their compiled versions.
_one_cycle_state_jit = _one_cycle_state


def _prefetch(array, row, col):
    """Ask the CPU to bring ``array[row, col]`` (``array[row]`` for a vector) into its cache.

    A hint with no effect on any value; in Python it does nothing. Compiled, it is LLVM's
    ``llvm.prefetch`` (see :func:`_prefetch_intrinsic`).
    """


_prefetch_jit = _prefetch
LINE = 16  # float32 values in a 64-byte cache line: the kernel fetches a row line by line
# Ratings ahead whose rows the kernel fetches while it computes the current one: a row that is
# not in the cache takes longer to arrive than a rating takes to compute. In the sweep of
# `python benchmarks/bench.py --only cornac` (4 epochs, 2 threads) 8 took 17-27% less time than
# 0 in each of its three worlds; 4 and 16 were about as fast (16 beat 8 by more than the seed
# spread in one world of the three).
PREFETCH = 8
RESYNC = 1024  # steps between exact evaluations of the schedule (a rotation drifts ~1e-16 a step)


def sgd_epoch(users, items, ratings, index, use_index, seg_lo, seg_hi, seg_step,
              wu, wi, bu, bi, au, ai, abu, abi, mean, reg2, regb2, lr, pct_start, total_steps,
              eps, ahead):
    """The ratings at positions [lo, hi) of each segment, in order: the SGD loop, compiled.

    ``index[p]`` is the rating at position ``p`` when ``use_index`` (order "shuffle");
    otherwise the position is the rating. Segment ``s`` starts at global step
    ``seg_step[s]``. While rating ``p`` is computed, the rows rating ``p + ahead`` will read
    are fetched into the cache (no fetch when ``ahead`` is 0); a prefetch changes no value.
    Returns the summed squared error (before each update). Threads run this function at the
    same time on different segments (numba releases the GIL).
    """
    k = wu.shape[1]
    inv_k = np.float32(1.0 / k)
    two = np.float32(2.0)
    sse = 0.0
    for s in range(len(seg_lo)):
        lo = seg_lo[s]
        step0 = seg_step[s] - lo
        resync = lo
        hi = seg_hi[s]
        c = sn = cd = sd = end = half = 0.0
        for p in range(lo, hi):
            if p == resync:  # the exact schedule now and then; a rotation in between
                c, sn, cd, sd, end, half, until = _one_cycle_state_jit(
                    step0 + p, lr, pct_start, total_steps)
                resync = p + int(min(RESYNC, max(1.0, until - step0 - p)))
            rate = end + half * (c + 1.0)  # the one-cycle rate at step step0 + p
            c, sn = c * cd - sn * sd, sn * cd + c * sd
            if ahead and p + ahead < hi:  # ask now for the rows of a rating further on
                later = index[p + ahead] if use_index else p + ahead
                un, inx = users[later], items[later]
                for f in range(0, k, LINE):
                    _prefetch_jit(wi, inx, f)
                if un != users[index[p + ahead - 1] if use_index else later - 1]:
                    for f in range(0, k, LINE):  # a new user's run starts there
                        _prefetch_jit(wu, un, f)
                    for vector in (au, bu, abu):
                        _prefetch_jit(vector, un, 0)
            j = index[p] if use_index else p
            u = users[j]
            i = items[j]
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


@lru_cache(maxsize=1)
def _kernel():
    """numba, and :func:`sgd_epoch` compiled (once per process; numba caches it on disk)."""
    try:
        import numba
    except ImportError:
        raise ImportError("the compiled engine needs numba: pip install 'numba>=0.61' "
                          "(Colab and Kaggle have it), or use engine='torch'.") from None
    global _one_cycle_state_jit, _prefetch_jit
    _one_cycle_state_jit = numba.njit(cache=True)(_one_cycle_state)
    _prefetch_jit = _prefetch_intrinsic()
    # reassoc lets LLVM vectorise the sums over factors (results change in the last bits only;
    # no assumption that values are finite, so a diverging run still shows up as a NaN loss).
    # nogil: threads run the compiled loop at the same time.
    fast = {"reassoc", "contract"}
    return numba, numba.njit(nogil=True, cache=True, fastmath=fast)(sgd_epoch)


@lru_cache(maxsize=1)
def _prefetch_intrinsic():
    """:func:`_prefetch` as a numba intrinsic: the address of the element, then LLVM's
    ``llvm.prefetch`` (a read, kept in every cache level, of data)."""
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def prefetch(typingctx, array, row, col):
        def codegen(context, builder, signature, args):
            array_type = signature.args[0]
            where = [context.cast(builder, value, kind, types.intp)
                     for value, kind in zip(args[1:], signature.args[1:])][:array_type.ndim]
            data = context.make_array(array_type)(context, builder, args[0])
            pointer = cgutils.get_item_pointer(context, builder, array_type, data, where)
            byte_pointer = ir.PointerType(ir.IntType(8))
            i32 = ir.IntType(32)
            fetch = builder.module.declare_intrinsic(
                "llvm.prefetch", [byte_pointer],
                ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]))
            # read (0), locality "keep in all levels" (3), data, not instructions (1)
            builder.call(fetch, [builder.bitcast(pointer, byte_pointer), i32(0), i32(3), i32(1)])
            return context.get_dummy_value()

        return types.void(array, row, col), codegen

    return prefetch


def _group(keys: np.ndarray, n_keys: int, order: np.ndarray) -> np.ndarray:
    """The positions of ``order`` sorted by ``keys``, keeping ``order`` among equal keys.

    ``order[np.argsort(keys[order], kind="stable")]``, which takes several seconds at 25 M
    ratings; with numba, a counting sort does it in one pass.

    >>> _group(np.array([1, 0, 1, 0]), 2, np.array([3, 2, 1, 0])).tolist()
    [3, 1, 2, 0]
    """
    if n_keys <= 4 * len(keys) + 1024 and available():  # the counts fit: counting sort
        starts = np.concatenate([[0], np.cumsum(np.bincount(keys, minlength=n_keys))])
        return _counting_sort()(keys, order, starts[:-1].astype(np.int64))
    return order[np.argsort(keys[order], kind="stable")]


@lru_cache(maxsize=1)
def _counting_sort():
    import numba

    @numba.njit(cache=True)
    def scatter(keys, order, starts):
        out = np.empty(len(order), np.int64)
        for j in order:
            out[starts[keys[j]]] = j
            starts[keys[j]] += 1
        return out

    return scatter


def _permutation(n: int, generator: torch.Generator) -> np.ndarray:
    return torch.randperm(n, generator=generator).numpy()


def _block_keys(user_row, item_row, n_users, n_items, q):
    """Each user's and each item's share of its block number, on the relabelled rows: row ``r``
    of ``n`` is in group ``r * q // n``, and block ``gu * q + gi`` holds user group ``gu`` and
    item group ``gi``; a rating's block is ``user_key[u] + item_key[i]`` (two lookups, no
    division per rating)."""
    user_key = (np.asarray(user_row, np.int64) * q // n_users) * q
    item_key = np.asarray(item_row, np.int64) * q // n_items
    return user_key.astype(np.int32), item_key.astype(np.int32)


def _count_blocks(users, items, user_key, item_key, q, lo, hi):
    """Pass 1 of the blocks layout: how many of the ratings [lo, hi) fall in each block."""
    counts = np.zeros(q * q, np.int64)
    for j in range(lo, hi):
        counts[user_key[users[j]] + item_key[items[j]]] += 1
    return counts


def _deal(users, items, ratings, user_row, item_row, user_group, lo, hi, fill, tj, tu, ti, tr,
          keep):
    """Pass 2: deal the ratings [lo, hi) by user group, from the positions ``fill``.

    ``q`` write streams per array (a deal straight into the ``q * q`` blocks keeps 1,024 at
    the default BLOCKS open per array, more lines than a core's first-level cache holds); the
    rows are relabelled on the way. With ``keep``, ``tj`` records each position's original
    rating."""
    for j in range(lo, hi):
        g = user_group[users[j]]
        p = fill[g]
        fill[g] = p + 1
        tu[p], ti[p], tr[p] = user_row[users[j]], item_row[items[j]], ratings[j]
        if keep:
            tj[p] = j


def _deal_items(tj, tu, ti, tr, bounds, item_group, q, first_group, last_group, keep):
    """Pass 3, in place, for user groups [first_group, last_group): deal each group's ratings
    (already relabelled) into its ``q`` blocks by item group, from a scratch copy of the
    group (one scratch for all the groups: fresh memory costs a page fault per 4 KiB). The
    deals are stable, so each block holds its ratings in their original order, as one deal
    straight into all the blocks would."""
    most = 0
    for g in range(first_group, last_group):
        most = max(most, bounds[(g + 1) * q] - bounds[g * q])
    sj = np.empty(most if keep else 0, tj.dtype)
    su, si, sr = np.empty(most, tu.dtype), np.empty(most, ti.dtype), np.empty(most, tr.dtype)
    for g in range(first_group, last_group):
        lo, hi = bounds[g * q], bounds[(g + 1) * q]
        if keep:
            sj[:hi - lo] = tj[lo:hi]
        su[:hi - lo], si[:hi - lo], sr[:hi - lo] = tu[lo:hi], ti[lo:hi], tr[lo:hi]
        fill = bounds[g * q:(g + 1) * q].copy()
        for p in range(hi - lo):
            b = item_group[si[p]]
            d = fill[b]
            fill[b] = d + 1
            tu[d], ti[d], tr[d] = su[p], si[p], sr[p]
            if keep:
                tj[d] = sj[p]


def _group_blocks(tj, tu, ti, tr, bounds, n_users, q, first_block, last_block, seeds, keep):
    """Pass 4, in place, for blocks [first_block, last_block): group each block by user row (a
    counting sort from a scratch copy of the block, in cache), then shuffle each user's run
    (Fisher-Yates, drawing from the minimal standard generator started at ``seeds[b]``, so a
    block's shuffle does not depend on which thread runs it). ``tj`` travels along with
    ``keep``."""
    for b in range(first_block, last_block):
        lo, hi = bounds[b], bounds[b + 1]
        g = b // q
        first = (g * n_users + q - 1) // q  # the group's user rows are [first, last)
        last = ((g + 1) * n_users + q - 1) // q
        sj = tj[lo:hi].copy() if keep else tj[:0].copy()
        su, si, sr = tu[lo:hi].copy(), ti[lo:hi].copy(), tr[lo:hi].copy()
        counts = np.zeros(last - first + 1, np.int64)
        for p in range(hi - lo):
            counts[su[p] - first + 1] += 1
        starts = np.cumsum(counts) + lo
        fill = starts.copy()
        for p in range(hi - lo):
            d = fill[su[p] - first]
            fill[su[p] - first] = d + 1
            tu[d], ti[d], tr[d] = su[p], si[p], sr[p]
            if keep:
                tj[d] = sj[p]
        state = seeds[b]
        for k in range(last - first):
            a = starts[k]
            for t in range(starts[k + 1] - 1, a, -1):  # (tu is the same along a run)
                state = state * MINSTD_A % MINSTD_M  # below 2**47: no overflow in int64
                s = a + state % (t - a + 1)
                ti[t], ti[s] = ti[s], ti[t]
                tr[t], tr[s] = tr[s], tr[t]
                if keep:
                    tj[t], tj[s] = tj[s], tj[t]


# Park and Miller's minimal standard generator: state <- state * A mod M, on [1, M). Plain
# integer arithmetic, so the interpreted and the compiled passes draw the same numbers.
MINSTD_A, MINSTD_M = 48271, 2**31 - 1


@lru_cache(maxsize=2)
def _layout_passes(compiled: bool):
    """The four passes, compiled (nogil, so threads run them at once) or as plain Python."""
    passes = (_count_blocks, _deal, _deal_items, _group_blocks)
    if not compiled:
        return passes
    import numba

    return tuple(numba.njit(nogil=True, cache=True)(f) for f in passes)


def _blocks_layout(users, items, ratings, user_row, item_row, n_users, n_items, seeds,
                   threads=1, compiled=True, keep_index=True):
    """The ratings laid out for ``order="blocks"``: four passes, no sort.

    Returns the original index of each position (empty unless ``keep_index``), the relabelled
    user and item rows, the ratings, and the bounds of the ``BLOCKS * BLOCKS`` blocks. Inside a
    block the ratings are grouped by user row, each user's run in random order (block ``b``
    shuffled from ``seeds[b]``). The threads split each pass; the arrays are the same on any
    number of threads, compiled or not. ``users`` and ``items`` may be strided views (the
    columns of the ``(n, 2)`` index array): the passes read them where they lie.
    """
    count, deal, deal_items, group = _layout_passes(compiled and available())
    q, n = BLOCKS, len(users)
    index = np.int32 if max(n, n_users, n_items) < 2**31 else np.int64  # less memory to stream
    keys = _block_keys(user_row, item_row, n_users, n_items, q)
    user_group = keys[0] // q  # by original user; item group by relabelled item row:
    item_group = (np.arange(n_items, dtype=np.int64) * q // n_items).astype(np.int32)
    cuts = np.linspace(0, n, threads + 1).astype(np.int64)
    seeds = np.asarray(seeds, np.int64)
    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(lambda k: count(users, items, *keys, q, cuts[k], cuts[k + 1]),
                              range(threads)))
        per_block = np.sum(parts, axis=0)
        bounds = np.concatenate([[0], np.cumsum(per_block)]).astype(np.int64)
        # thread k's ratings go after those of threads < k in each user group: the order of
        # a serial pass
        per_group = [part.reshape(q, q).sum(axis=1) for part in parts]
        fills = bounds[:-1:q] + np.cumsum([np.zeros(q, np.int64), *per_group[:-1]], axis=0)
        tj = np.empty(n if keep_index else 0, index)
        tu, ti = np.empty(n, index), np.empty(n, index)
        tr = np.empty(n, np.float32)
        list(pool.map(lambda k: deal(users, items, ratings, user_row, item_row, user_group,
                                     cuts[k], cuts[k + 1], fills[k].copy(), tj, tu, ti, tr,
                                     keep_index),
                      range(threads)))  # (deal advances its fill)
        # then in place, a share of the groups or blocks per thread: no second set of arrays
        list(pool.map(lambda ab: deal_items(tj, tu, ti, tr, bounds, item_group, q, ab[0], ab[1],
                                            keep_index),
                      _shares(np.sum(per_group, axis=0), threads)))
        list(pool.map(lambda ab: group(tj, tu, ti, tr, bounds, n_users, q, ab[0], ab[1], seeds,
                                       keep_index),
                      _shares(per_block, threads)))
    return tj, tu, ti, tr, bounds


class _Plan:
    """Where the ratings lie in memory and which segments each epoch visits.

    ``physical`` maps a position in the (reordered) rating arrays to the original rating
    (``None`` when the order reads the arrays as given, or with ``keep_index=False``). With
    ``"blocks"``, ``users``, ``items`` and ``ratings`` hold the reordered arrays, their user
    and item indices already relabelled (``user_row``, ``item_row``).
    """

    def __init__(self, order: str, users: np.ndarray, n_users: int, seed: int, chunks: int,
                 items: np.ndarray | None = None, n_items: int = 0,
                 ratings: np.ndarray | None = None, threads: int = 1, keep_index: bool = True):
        self.order, self.n, self.chunks = order, len(users), chunks
        self.generator = torch.Generator().manual_seed(seed)
        if order == "shuffle":
            self.physical = None
        elif order == "shuffled_once":
            self.physical = _permutation(self.n, self.generator)
        elif order == "by_user":  # a random order within each user, then grouped by user
            once = _permutation(self.n, self.generator)
            self.physical = _group(users, n_users, once)
            counts = np.bincount(users, minlength=n_users)
            self.indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            self.n_users = n_users
        else:  # blocks: users and items dealt at random into BLOCKS groups each
            # A random new row for each user and item; group g holds the rows r with
            # r * BLOCKS // n == g, so a block's rows are contiguous in the relabelled tables.
            self.user_row = _permutation(n_users, self.generator)
            self.item_row = _permutation(n_items, self.generator)
            seeds = torch.randint(1, MINSTD_M, (BLOCKS * BLOCKS,), generator=self.generator)
            ratings = np.zeros(self.n, np.float32) if ratings is None else ratings
            physical, self.users, self.items, self.ratings, bounds = _blocks_layout(
                users, items, ratings, self.user_row, self.item_row, n_users, n_items,
                seeds.numpy(), threads, keep_index=keep_index)
            self.physical = physical if keep_index else None
            self.block_lo, self.block_hi = bounds[:-1], bounds[1:]

    def passes(self, epoch: int) -> list:
        """The kernel calls of one epoch: a list of (index, use_index, seg_lo, seg_hi, seg_step).

        The segments of one call may run at the same time; the calls run one after another.
        """
        offset = epoch * self.n
        none = np.zeros(1, np.int64)
        if self.order == "by_user":
            who = _permutation(self.n_users, self.generator)
            lo, hi = self.indptr[who], self.indptr[who + 1]
            step = offset + np.concatenate([[0], np.cumsum(hi - lo)[:-1]]).astype(np.int64)
            return [(none, False, lo, hi, step)]
        if self.order == "blocks":
            q = BLOCKS
            rows, cols = _permutation(q, self.generator), _permutation(q, self.generator)
            calls = []
            for r in _permutation(q, self.generator).tolist():  # the rounds, in random order
                ids = rows * q + cols[(np.arange(q) + r) % q]  # no two share a row or a column
                lo, hi = self.block_lo[ids], self.block_hi[ids]
                step = offset + np.concatenate([[0], np.cumsum(hi - lo)[:-1]]).astype(np.int64)
                offset += int((hi - lo).sum())
                calls.append((none, False, lo, hi, step))
            return calls
        bounds = np.linspace(0, self.n, min(self.chunks, self.n) + 1).astype(np.int64)
        lo, hi = bounds[:-1], bounds[1:]
        if self.order == "shuffle":
            return [(_permutation(self.n, self.generator), True, lo, hi, offset + lo)]
        return [(none, False, lo, hi, offset + lo)]

    def sequence(self, epoch: int) -> np.ndarray:
        """The original rating indices in the order the epoch visits them (on one thread)."""
        parts = []
        for index, use_index, lo, hi, _ in self.passes(epoch):
            positions = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)] +
                                       [np.empty(0, np.int64)])
            parts.append(index[positions] if use_index else positions)
        seq = np.concatenate(parts)
        return seq if self.physical is None else self.physical[seq]


def _relabelled(table: np.ndarray, row: np.ndarray | None) -> np.ndarray:
    """``table`` itself, or a copy whose row ``row[u]`` is ``table``'s row ``u``."""
    if row is None:
        return table
    out = np.empty_like(table)
    out[row] = table
    return out


def _check_order(order) -> str:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {list(ORDERS)}, got {order!r}.")
    return order


def visiting_order(order: str, users, n_users: int, epochs: int, seed: int = 0,
                   items=None, n_items: int = 0) -> list:
    """The ratings (indices into ``users``) each epoch of :func:`fit_compiled` visits, in order.

    On one thread the kernel visits exactly these; with more threads, each thread takes a
    contiguous share of each epoch's list (with ``"blocks"``, its share of each round's
    blocks). ``"blocks"`` also needs ``items`` and ``n_items``. Needs no numba.

    >>> [s.tolist() for s in visiting_order("by_user", [0, 1, 0], n_users=2, epochs=1)]
    [[1, 2, 0]]
    """
    _check_order(order)
    users = np.asarray(users, dtype=np.int64)
    if order == "blocks" and items is None:
        raise ValueError('order="blocks" needs the items and n_items too.')
    items = None if items is None else np.asarray(items, dtype=np.int64)
    plan = _Plan(order, users, n_users, seed, chunks=1, items=items, n_items=n_items)
    return [plan.sequence(e) for e in range(epochs)]


def _shares(sizes: np.ndarray, n: int) -> list:
    """Cut the segments into ``n`` contiguous runs holding about the same number of ratings.

    >>> _shares(np.array([5, 5, 5, 5]), 2)
    [(0, 2), (2, 4)]
    """
    ends = np.searchsorted(np.cumsum(sizes), np.arange(1, n) * sizes.sum() / n, side="right")
    cuts = [0, *(int(e) for e in ends), len(sizes)]
    return list(pairwise(cuts))


def _extremes(values, lo, hi):
    """The smallest and the largest of ``values[lo:hi]`` (``lo < hi``), in one pass."""
    least = most = values[lo]
    for j in range(lo + 1, hi):
        least = min(least, values[j])
        most = max(most, values[j])
    return least, most


@lru_cache(maxsize=1)
def _extremes_pass():
    import numba

    return numba.njit(nogil=True, cache=True)(_extremes)


def _index_ranges(columns, threads: int) -> list[tuple[int, int]]:
    """``(column.min(), column.max())`` of each index column, one pass each, the passes cut
    among the threads of one pool; a strided column is read where it lies (numpy's two
    reductions would read it twice).

    >>> pairs = np.array([[3, 0], [1, 9], [7, 2]])
    >>> _index_ranges([pairs[:, 0], pairs[:, 1]], 2)
    [(1, 7), (0, 9)]
    """
    extremes = _extremes_pass()
    n = len(columns[0])
    cuts = np.linspace(0, n, max(1, min(threads, n)) + 1).astype(np.int64)
    jobs = [(values, a, b) for values in columns for a, b in pairwise(cuts)]
    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(lambda job: extremes(*job), jobs))
    per = len(cuts) - 1  # parts per column
    by_column = [np.array(parts[c:c + per]) for c in range(0, len(parts), per)]
    return [(int(p[:, 0].min()), int(p[:, 1].max())) for p in by_column]


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
    order: str = "blocks",
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
    order : {"shuffle", "shuffled_once", "by_user", "blocks"}
        How ratings are visited (see the module's documentation).
    threads : int, optional
        Threads for the lock-free (Hogwild) parallel loop; default all of numba's
        (``NUMBA_NUM_THREADS``). More than one thread: not bit-for-bit reproducible, except
        with ``"blocks"``, whose threads never share a row.
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
    numba, kernel = _kernel()
    n_threads = _threads(numba, threads)
    pairs = x.detach().numpy()
    if pairs.dtype.kind not in "iu":
        raise TypeError(f"x must hold integer user and item indices, got dtype {x.dtype}.")
    if order == "blocks":  # the layout passes read the two columns where they lie
        users, items = pairs[:, 0], pairs[:, 1]
    else:
        users = np.ascontiguousarray(pairs[:, 0], dtype=np.int64)
        items = np.ascontiguousarray(pairs[:, 1], dtype=np.int64)
    ratings = np.ascontiguousarray(y.detach().numpy(), dtype=np.float32)
    n_users, n_items = tables[0].shape[0], tables[1].shape[0]
    # The compiled loop does not check bounds: an index outside a table would corrupt memory.
    ranges = _index_ranges([users, items], n_threads)
    for name, (least, most), size in zip(("user", "item"), ranges, (n_users, n_items)):
        if least < 0 or most >= size:
            raise ValueError(f"{name} indices must lie in [0, {size}), got [{least}, {most}].")
    if not np.isfinite(ratings).all():
        raise ValueError("ratings must be finite.")
    plan = _Plan(order, users, n_users, seed, chunks=n_threads * CHUNKS_PER_THREAD,
                 items=items, n_items=n_items, ratings=ratings, threads=n_threads,
                 keep_index=False)
    relabel = order == "blocks"  # train on tables whose rows follow the blocks
    if relabel:  # the plan laid the ratings out, on relabelled rows
        users, items, ratings = plan.users, plan.items, plan.ratings
    elif plan.physical is not None:  # physically reorder once
        users, items, ratings = users[plan.physical], items[plan.physical], ratings[plan.physical]
    with torch.no_grad():
        views = [t.detach().numpy().reshape(len(t), -1) for t in tables]  # the model's memory
        rows = (plan.user_row, plan.item_row) * 2 if relabel else (None,) * 4
        work = [_relabelled(v, r) for v, r in zip(views, rows)]
        wu, wi = work[:2]
        bu, bi = (w.reshape(-1) for w in work[2:])
        state = [np.zeros(len(t), dtype=np.float32) for t in (wu, wi, bu, bi)]
        scalars = (np.float32(float(model.mean)), np.float32(2.0 * reg),
                   np.float32(2.0 * reg_bias), float(lr), float(pct_start),
                   float(epochs * len(users)), EPS, PREFETCH)
        history, scale = [], _mean_square(y)

        def run(call) -> float:
            """One kernel call; its segments shared out among the threads, no locks."""
            index, use_index, lo, hi, step = call

            def share(a: int, b: int) -> float:
                return kernel(users, items, ratings, index, use_index, lo[a:b], hi[a:b],
                              step[a:b], wu, wi, bu, bi, *state, *scalars)

            first, *rest = _shares(hi - lo, n_threads)
            jobs = [pool.submit(share, a, b) for a, b in rest] if pool else []
            return share(*first) + sum(job.result() for job in jobs)  # the caller takes one

        def write_back():
            for view, w, r in zip(views, work, rows):
                if r is not None:
                    # mode="clip": with the default "raise", numpy buffers ``out`` through a
                    # fresh temporary (about 0.1 s of page faults at 25 M's tables); ``r`` is a
                    # permutation, so clipping never changes an index
                    np.take(w, r, axis=0, out=view, mode="clip")

        pool = ThreadPoolExecutor(n_threads - 1) if n_threads > 1 else None
        try:
            for epoch in range(epochs):
                history.append(sum(run(call) for call in plan.passes(epoch)) / len(users))
                if callback is not None or epoch == epochs - 1:
                    write_back()
                _check_divergence(history[-1], epoch, lr, scale)  # the torch path's check
                if callback is not None:
                    callback(epoch, model)
        finally:
            if pool:
                pool.shutdown()
    return history

"""Data-parallel training of the dot-product model with PyTorch DDP, launched by torchrun.

Every process (a *rank*) holds a full copy of :class:`~cfcourse.models.dot_product.DotProductBias`.
At each step the ``W`` ranks look at disjoint slices of one global batch of ``B``
ratings, compute the gradient of their own slice's mean squared error, and
:class:`~torch.nn.parallel.DistributedDataParallel` averages the ``W`` gradients
with an all-reduce. With ``b = B / W`` rows per rank the averaged gradient is

.. math:: g = \\frac{1}{W} \\sum_{r=1}^{W} \\frac{1}{b} \\sum_{j \\in S_r} \\nabla \\ell_j
          = \\frac{1}{B} \\sum_{j \\in S_1 \\cup \\dots \\cup S_W} \\nabla \\ell_j ,

the gradient a single process computes on the whole batch. Every rank then takes
the same optimiser step, so all copies stay identical, and the run matches a
single-process run with batch ``B`` over the same rows up to float rounding.

Run it on one process, or on two with the gloo backend (CPU)::

    python -m cfcourse.distributed --out one.npz
    torchrun --standalone --nproc_per_node=2 -m cfcourse.distributed --out two.npz

and with NCCL, one process per GPU (at most as many processes as the machine has
GPUs; NCCL refuses two ranks on one device), e.g. on one GPU or on four::

    torchrun --standalone --nproc_per_node=1 -m cfcourse.distributed --backend nccl --out g.npz
    torchrun --standalone --nproc_per_node=4 -m cfcourse.distributed --backend nccl --out g.npz

Whenever a process group exists (under torchrun, even with one process) the model is
wrapped in DDP and the epoch losses are all-reduced, so a one-rank run exercises the
same collective calls as a many-rank one. NCCL needs torchrun and CUDA; without them the
script stops with a message saying what to run instead.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cfcourse.data import IdIndex, load_movielens, random_split
from cfcourse.data.archive import read_archive, write_archive
from cfcourse.metrics import rmse
from cfcourse.models.dot_product import DotProductBias
from cfcourse.train import _mean_square, _run_epochs

__all__ = ["epoch_batches", "load_result", "main", "parse_args", "shard", "train_epochs"]

Y_RANGE = (0.0, 5.5)


def epoch_batches(n: int, global_bs: int, epoch: int, seed: int = 0) -> torch.Tensor:
    """The row order of one epoch, as a ``(steps, global_bs)`` tensor of row positions.

    The ``n`` rows are shuffled with a generator seeded by ``seed + epoch`` (so every
    rank computes the same order without talking to the others) and cut into full
    batches; the last ``n mod global_bs`` rows of the shuffle are left out of this
    epoch, so that every step averages exactly ``global_bs`` rows.

    Examples
    --------
    >>> epoch_batches(10, 4, epoch=0).shape
    torch.Size([2, 4])
    """
    if n < global_bs or global_bs < 1:
        raise ValueError(f"global batch size {global_bs} must be between 1 and the number of "
                         f"training rows ({n}); lower --bs.")
    steps = n // global_bs
    generator = torch.Generator().manual_seed(seed + epoch)
    return torch.randperm(n, generator=generator)[:steps * global_bs].view(steps, global_bs)


def shard(batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s share of a global batch: every ``world_size``-th row from ``rank``.

    The shards of ranks ``0 .. world_size-1`` are disjoint, equally long, and their
    union is the batch (the same rule as ``DistributedSampler``).

    Examples
    --------
    >>> shard(torch.arange(6), rank=1, world_size=2)
    tensor([1, 3, 5])
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}.")
    if len(batch) % world_size:
        raise ValueError(f"a batch of {len(batch)} rows does not split evenly over "
                         f"{world_size} processes; choose --bs as a multiple of {world_size}.")
    return batch[rank::world_size]


def _epoch_loss(total: torch.Tensor, count: int, world_size: int) -> float:
    """The mean loss over all ranks' rows (one small all-reduce per epoch, in a group)."""
    summed = torch.stack([total, torch.tensor(float(count), device=total.device)])
    if dist.is_initialized():
        dist.all_reduce(summed)
    return float(summed[0] / summed[1])


def train_epochs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float,
                 wd: float, global_bs: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> list[float]:
    """Train with Adam and a one-cycle schedule on this rank's shards; return epoch losses.

    ``model`` is the plain model without a process group and the DDP-wrapped one
    in a group (DDP then averages the gradients inside ``backward``). ``wd`` is an L2
    penalty added to the gradient by Adam, after the averaging, on every rank alike.
    The loop is :mod:`cfcourse.train`'s; an epoch whose all-reduced loss is not finite
    (or explodes) raises ``FloatingPointError`` on every rank, naming ``lr``.
    """
    steps = len(x) // global_bs
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)

    def step(batch: torch.Tensor) -> torch.Tensor:
        rows = shard(batch, rank, world_size).to(x.device)  # (global_bs / W,)
        loss = nn.functional.mse_loss(model(x[rows]), y[rows])
        opt.zero_grad()
        loss.backward()  # under DDP: all-reduce of every gradient happens here
        opt.step()
        return loss.detach() * len(rows)

    # The loop of cfcourse.train, over this epoch's full global batches. The epoch loss is
    # all-reduced before the divergence check, so every rank stops together (a rank that
    # raised alone would leave the others waiting in the next all-reduce).
    return _run_epochs(
        epochs, lambda epoch: epoch_batches(len(x), global_bs, epoch, seed).view(-1),
        global_bs, step, lr, schedule=schedule, scale=_mean_square(y),
        total=lambda: torch.zeros((), device=x.device),
        epoch_loss=lambda total: _epoch_loss(total, steps * global_bs // world_size, world_size))


def _read_ratings(data: str) -> pd.DataFrame:
    """A MovieLens release by name, or a CSV in ML-25M's ``ratings.csv`` layout."""
    if data.endswith(".csv"):
        frame = pd.read_csv(data)
        return frame.rename(columns={"userId": "user", "movieId": "item"})
    return load_movielens(data)


def _tensors(train: pd.DataFrame, valid: pd.DataFrame):
    """Encode ids; validation pairs whose user or item is unseen in training are dropped."""
    users = IdIndex(train["user"].to_numpy(), "user")
    items = IdIndex(train["item"].to_numpy(), "item")
    x = np.stack([users.encode(train["user"].to_numpy()), items.encode(train["item"].to_numpy())], 1)
    vu = users.encode(valid["user"].to_numpy(), unknown="ignore")
    vi = items.encode(valid["item"].to_numpy(), unknown="ignore")
    known = (vu >= 0) & (vi >= 0)
    x_valid = np.stack([vu[known], vi[known]], 1)
    return (torch.as_tensor(x, dtype=torch.long),
            torch.tensor(train["rating"].to_numpy(dtype=np.float32)),
            torch.as_tensor(x_valid, dtype=torch.long),
            valid["rating"].to_numpy(dtype=np.float32)[known], len(users), len(items))


_NCCL_ONE_GPU = ("torchrun --standalone --nproc_per_node=1 -m cfcourse.distributed "
                 "--backend nccl --out ...")


def _nccl_device() -> torch.device:
    """This rank's GPU under torchrun, after checking that there is one for every local rank."""
    if not torch.cuda.is_available():
        raise ValueError("--backend nccl needs CUDA GPUs (one per process), and PyTorch sees "
                         "none here; on a CPU use --backend gloo.")
    if "WORLD_SIZE" not in os.environ:
        raise ValueError("--backend nccl needs a process group, which torchrun starts; run "
                         f"`{_NCCL_ONE_GPU}` (one process per GPU), or drop --backend nccl to "
                         "train in this one process.")
    n_gpus = torch.cuda.device_count()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", local_rank + 1))
    if max(local_rank + 1, local_size) > n_gpus:
        raise ValueError(
            f"--backend nccl runs one process per GPU, but this machine has {n_gpus} GPU(s) "
            f"and torchrun started {max(local_rank + 1, local_size)} processes on it (local "
            f"rank {local_rank} would need cuda:{local_rank}; NCCL also refuses two ranks on "
            f"one GPU). Use --nproc_per_node={n_gpus} or fewer, or --backend gloo to run "
            "several processes on the CPU.")
    return torch.device("cuda", local_rank)


def _setup(backend: str):
    """(rank, world_size, device); joins the process group when torchrun started us.

    With NCCL every check comes before ``init_process_group``, so a bad launch stops
    at once on every rank instead of leaving the others waiting for it, and each
    rank selects its GPU (``torch.cuda.set_device``) before NCCL creates its context.
    """
    device = _nccl_device() if backend == "nccl" else torch.device("cpu")
    if "WORLD_SIZE" not in os.environ:  # plain `python -m`: one process, no group
        return 0, 1, device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), device


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--help`` lists every option."""
    p = argparse.ArgumentParser(prog="python -m cfcourse.distributed", description=__doc__.split(
        "\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="rank 0 writes weights and results here (.npz)")
    p.add_argument("--data", default="ml-100k", help="a MovieLens name, or a ratings .csv path")
    p.add_argument("--valid-pct", type=float, default=0.2, help="share held out for validation")
    p.add_argument("--split-seed", type=int, default=42, help="seed of the course's split")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--bs", type=int, default=1024, help="GLOBAL batch, summed over processes")
    p.add_argument("--lr", type=float, default=1e-2, help="peak learning rate (one cycle)")
    p.add_argument("--wd", type=float, default=1e-4, help="L2 penalty (Adam weight_decay)")
    p.add_argument("--n-factors", type=int, default=50)
    p.add_argument("--seed", type=int, default=0, help="seeds the weights and the shuffles")
    p.add_argument("--backend", choices=("gloo", "nccl"), default="gloo")
    return p.parse_args(argv)


def _save(path: str, model: nn.Module, meta: dict) -> None:
    arrays = {f"state/{k}": v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    write_archive(path, meta, arrays, compress=False)  # the package's one save format


def load_result(path) -> tuple[dict, dict[str, np.ndarray]]:
    """``(meta, weights)`` written by rank 0: settings, losses, RMSE, and the state dict."""
    meta, arrays = read_archive(path, "result of cfcourse.distributed",
                                "run `torchrun ... -m cfcourse.distributed --out PATH` again")
    return meta, {k[len("state/"):]: v for k, v in arrays.items() if k.startswith("state/")}


def main(argv: list[str] | None = None) -> dict:
    """Train on this process's shards; rank 0 evaluates and writes ``--out``."""
    args = parse_args(argv)
    rank, world_size, device = _setup(args.backend)
    try:
        if args.bs % world_size:
            raise ValueError(f"--bs {args.bs} must be a multiple of the {world_size} processes.")
        train, valid = random_split(_read_ratings(args.data), valid_pct=args.valid_pct,
                                    seed=args.split_seed)
        x, y, x_valid, y_valid, n_users, n_items = _tensors(train, valid)
        torch.manual_seed(args.seed)  # the same starting weights on every rank
        model = DotProductBias(n_users, n_items, args.n_factors, y_range=Y_RANGE).to(device)
        grouped = dist.is_initialized()  # under torchrun, even with one process
        if grouped:
            ids = [device.index] if device.type == "cuda" else None
            wrapped = DistributedDataParallel(model, device_ids=ids)
        else:
            wrapped = model
        start = time.perf_counter()
        losses = train_epochs(wrapped, x.to(device), y.to(device), args.epochs, args.lr,
                              args.wd, args.bs, args.seed, rank, world_size)
        seconds = time.perf_counter() - start
        meta = {**vars(args), "world_size": world_size,
                "ddp": isinstance(wrapped, DistributedDataParallel),
                "device": str(device), "per_rank_bs": args.bs // world_size,
                "losses": losses, "train_seconds": seconds, "n_train": len(x),
                "n_valid": len(y_valid), "n_valid_dropped": len(valid) - len(y_valid)}
        print(f"rank {rank} of {world_size} ({args.backend}, {device}): "
              f"{len(x) // args.bs} steps per epoch of {args.bs // world_size} rows; "
              f"last epoch loss {losses[-1]:.4f}", flush=True)
        if rank == 0:
            with torch.no_grad():
                pred = model(x_valid.to(device)).cpu().numpy()
            meta["valid_rmse"] = rmse(pred, y_valid)
            _save(args.out, model, meta)
            print(f"rank 0: valid RMSE {meta['valid_rmse']:.4f}; wrote {args.out}", flush=True)
        return meta
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()

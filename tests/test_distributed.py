"""cfcourse.distributed: the epoch sharding by hand, gradient averaging against one process,
and the script itself, in this process and under torchrun with two gloo processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from cfcourse import distributed
from cfcourse.data import planted_ratings, random_split, write_ratings_csv
from cfcourse.distributed import (
    epoch_batches,
    load_result,
    main,
    parse_args,
    shard,
    train_epochs,
)
from cfcourse.models.dot_product import DotProductBias

TINY = ["--epochs", "3", "--bs", "128", "--lr", "0.02", "--n-factors", "4"]


@pytest.fixture
def ratings_csv(tmp_path):
    """3,000 planted ratings of 100 users and 80 films, in ML-25M's CSV layout."""
    path = tmp_path / "ratings.csv"
    data = planted_ratings(n_users=100, n_items=80, n_ratings=3000, n_factors=4, seed=0)
    write_ratings_csv(data.ratings, path)
    return str(path)


def _run(csv, out, *extra):
    return main(["--data", csv, "--out", str(out), *TINY, *extra])


# -- sharding ------------------------------------------------------------------------------
def test_epoch_batches_by_hand():
    batches = epoch_batches(10, 4, epoch=0, seed=3)
    assert batches.shape == (2, 4)  # 10 // 4 full batches; 2 rows wait for another epoch
    assert len(set(batches.flatten().tolist())) == 8
    assert set(batches.flatten().tolist()) <= set(range(10))
    assert torch.equal(batches, epoch_batches(10, 4, epoch=0, seed=3))  # every rank agrees
    assert not torch.equal(batches, epoch_batches(10, 4, epoch=1, seed=3))  # a new shuffle


def test_epoch_batches_rejects_a_batch_larger_than_the_data():
    with pytest.raises(ValueError, match="between 1 and the number of training rows"):
        epoch_batches(10, 11, epoch=0)
    with pytest.raises(ValueError, match="lower --bs"):
        epoch_batches(10, 0, epoch=0)


def test_shard_by_hand():
    batch = torch.tensor([10, 11, 12, 13, 14, 15])
    assert shard(batch, 0, 3).tolist() == [10, 13]
    assert shard(batch, 1, 3).tolist() == [11, 14]
    assert shard(batch, 2, 3).tolist() == [12, 15]
    assert torch.equal(shard(batch, 0, 1), batch)


@pytest.mark.parametrize("world_size", [1, 2, 4, 8])
def test_shards_are_disjoint_equal_and_cover_the_single_process_batch(world_size):
    for batch in epoch_batches(1000, 64, epoch=2, seed=0):
        parts = [shard(batch, r, world_size).tolist() for r in range(world_size)]
        assert {len(p) for p in parts} == {64 // world_size}
        union = [row for p in parts for row in p]
        assert len(set(union)) == len(union)  # disjoint
        assert sorted(union) == sorted(batch.tolist())  # union = the one-process batch


def test_shard_rejects_uneven_batches_and_bad_ranks():
    with pytest.raises(ValueError, match="multiple of 2"):
        shard(torch.arange(5), 0, 2)
    with pytest.raises(ValueError, match="rank must be in 0..1"):
        shard(torch.arange(4), 2, 2)


def test_averaged_shard_gradients_equal_the_full_batch_gradient():
    """What DDP's all-reduce computes, done by hand in one process."""
    torch.manual_seed(0)
    model = DotProductBias(6, 5, n_factors=3)
    x = torch.stack([torch.randint(0, 6, (8,)), torch.randint(0, 5, (8,))], dim=1)
    y = torch.rand(8) * 4 + 1

    def grads(rows):
        model.zero_grad()
        torch.nn.functional.mse_loss(model(x[rows]), y[rows]).backward()
        return [p.grad.clone() for p in model.parameters()]

    full = grads(torch.arange(8))
    per_rank = [grads(shard(torch.arange(8), r, 2)) for r in range(2)]
    for whole, a, b in zip(full, *per_rank):
        assert torch.allclose(whole, (a + b) / 2, atol=1e-7)


# -- the script ----------------------------------------------------------------------------
def test_train_epochs_stops_on_divergence_naming_the_learning_rate():
    # ratings of 1e20: the squared error overflows float32, so epoch 1's loss is inf
    x = torch.stack([torch.arange(64) % 8, torch.arange(64) % 5], 1)
    y = torch.full((64,), 1e20)
    torch.manual_seed(0)
    with pytest.raises(FloatingPointError, match=r"became inf in epoch 1 with lr=0\.02"):
        train_epochs(DotProductBias(8, 5, 2, y_range=(0.0, 5.5)), x, y, epochs=2, lr=0.02,
                     wd=0.0, global_bs=16)


def test_parse_args_defaults():
    args = parse_args(["--out", "x.npz"])
    assert (args.data, args.bs, args.backend, args.split_seed) == ("ml-100k", 1024, "gloo", 42)
    with pytest.raises(SystemExit):
        parse_args(["--backend", "mpi", "--out", "x.npz"])


def test_single_process_run_writes_a_result_that_beats_the_mean(ratings_csv, tmp_path):
    out = tmp_path / "one.npz"
    meta = _run(ratings_csv, out)
    saved, weights = load_result(out)
    assert saved["world_size"] == 1 and saved["per_rank_bs"] == 128
    assert saved["valid_rmse"] == pytest.approx(meta["valid_rmse"])
    assert saved["n_train"] == 2400 and saved["n_valid"] + saved["n_valid_dropped"] == 600
    assert len(saved["losses"]) == 3 and saved["losses"][-1] < saved["losses"][0]
    assert weights["user_factors.weight"].shape == (100, 4)
    # quality bound: better than predicting every rating with the training mean
    train, valid = random_split(pd.read_csv(ratings_csv), valid_pct=0.2, seed=42)
    mean_rmse = float(np.sqrt(((valid["rating"] - train["rating"].mean()) ** 2).mean()))
    assert saved["valid_rmse"] < mean_rmse


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_in_a_one_process_group_equals_the_plain_run(ratings_csv, tmp_path, monkeypatch):
    plain = tmp_path / "plain.npz"
    _run(ratings_csv, plain)
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(name, value)
    grouped = tmp_path / "grouped.npz"
    _run(ratings_csv, grouped)
    assert not torch.distributed.is_initialized()  # the script leaves no group behind
    meta_plain, a = load_result(plain)
    meta_grouped, b = load_result(grouped)
    assert not meta_plain["ddp"], "no process group, nothing to wrap"
    assert meta_grouped["ddp"], "a one-process group is still wrapped in DDP (and all-reduced)"
    assert max(np.abs(a[k] - b[k]).max() for k in a) <= 1e-6


def test_batch_must_split_over_the_processes(ratings_csv, tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "_setup", lambda backend: (0, 3, torch.device("cpu")))
    with pytest.raises(ValueError, match="multiple of the 3 processes"):
        _run(ratings_csv, tmp_path / "x.npz")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on CPU machines")
def test_nccl_without_gpus_says_what_to_do(ratings_csv, tmp_path):
    with pytest.raises(ValueError, match="--backend gloo"):
        _run(ratings_csv, tmp_path / "x.npz", "--backend", "nccl")


def test_torchrun_two_gloo_processes_match_one_process(ratings_csv, tmp_path):
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    _run(ratings_csv, one)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "cfcourse.distributed", "--data", ratings_csv, "--out", str(two), *TINY]
    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 1 of 2 (gloo, cpu)" in done.stdout and "rank 0 of 2" in done.stdout
    meta_one, w_one = load_result(one)
    meta_two, w_two = load_result(two)
    assert meta_two["world_size"] == 2 and meta_two["per_rank_bs"] == 64 and meta_two["ddp"]
    assert max(np.abs(w_one[k] - w_two[k]).max() for k in w_one) <= 1e-5
    assert abs(meta_one["valid_rmse"] - meta_two["valid_rmse"]) <= 1e-5
    assert np.allclose(meta_one["losses"], meta_two["losses"], rtol=1e-5)


# -- NCCL plumbing, checked on the CPU ---------------------------------------------------------
def _no_group(*args, **kwargs):
    raise AssertionError("init_process_group must not be reached after a failed check")


@pytest.fixture
def launched(monkeypatch):
    """Pretend torchrun started this process: ``launched(local_rank, local_size, n_gpus)``."""
    monkeypatch.setattr(distributed.dist, "init_process_group", _no_group)

    def launch(local_rank: int, local_size: int, n_gpus: int):
        for name, value in {"RANK": local_rank, "LOCAL_RANK": local_rank,
                            "WORLD_SIZE": local_size, "LOCAL_WORLD_SIZE": local_size}.items():
            monkeypatch.setenv(name, str(value))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n_gpus > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n_gpus)

    return launch


def test_nccl_is_refused_without_cuda_before_any_group(launched):
    launched(0, 1, n_gpus=0)
    with pytest.raises(ValueError, match="needs CUDA GPUs.*use --backend gloo"):
        distributed._setup("nccl")


def test_nccl_without_torchrun_says_how_to_launch(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="torchrun --standalone --nproc_per_node=1"):
        distributed._setup("nccl")  # it used to train on the CPU without a word


@pytest.mark.parametrize("local_rank", [0, 1])
def test_more_nccl_processes_than_gpus_stop_every_rank(launched, local_rank):
    launched(local_rank, 2, n_gpus=1)
    with pytest.raises(ValueError, match=r"has 1 GPU\(s\).*--nproc_per_node=1 or fewer"):
        distributed._setup("nccl")


def test_rank_one_asking_for_a_second_gpu_names_it(launched):
    launched(1, 2, n_gpus=1)
    with pytest.raises(ValueError, match="cuda:1"):
        distributed._setup("nccl")


def test_nccl_selects_the_gpu_before_joining_the_group(launched, monkeypatch):
    launched(1, 2, n_gpus=2)
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
    monkeypatch.setattr(distributed.dist, "init_process_group",
                        lambda backend: calls.append(("init", backend)))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    assert distributed._setup("nccl") == (1, 2, torch.device("cuda", 1))
    assert calls == [("set_device", torch.device("cuda", 1)), ("init", "nccl")]


def test_gloo_ignores_the_gpus(launched, monkeypatch):
    launched(0, 1, n_gpus=1)
    monkeypatch.delenv("WORLD_SIZE")
    assert distributed._setup("gloo") == (0, 1, torch.device("cpu"))

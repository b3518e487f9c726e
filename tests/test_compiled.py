"""The compiled engine (cfcourse.compiled) against its oracle, FusedRowAdagrad at batches of one."""

import math
import sys

import numpy as np
import pytest
import torch

from cfcourse import compiled
from cfcourse.compiled import ORDERS, one_cycle_lr, visiting_order
from cfcourse.models.sparse_dot_bias import SparseDotBias
from cfcourse.optim import FusedRowAdagrad
from cfcourse.train import fit_sparse


def _problem(n_users=30, n_items=20, n=150, k=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.randint(0, n_users, (n,), generator=g),
                     torch.randint(0, n_items, (n,), generator=g)], 1)
    y = torch.rand(n, generator=g) * 4 + 1
    torch.manual_seed(seed)
    model = SparseDotBias(n_users, n_items, k, mean=float(y.mean()))
    return model, x, y


def _twin(model):
    twin = SparseDotBias(model.user_factors.num_embeddings, model.item_factors.num_embeddings,
                         model.user_factors.embedding_dim)
    twin.load_state_dict(model.state_dict())
    return twin


def _assert_same_model(a, b, atol=1e-5):
    for (name, wa), wb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(wa, wb, atol=atol), (
            f"{name} differs by {float((wa - wb).abs().max()):.2e}: the compiled step is not "
            "FusedRowAdagrad's step")


# -- no numba needed ---------------------------------------------------------------------------
def test_one_cycle_lr_is_torchs_schedule():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.3, total_steps=37, pct_start=0.25,
                                                cycle_momentum=False)
    ours = []
    for step in range(37):
        ours.append(one_cycle_lr(step, 0.3, 0.25, 37))
        assert math.isclose(ours[-1], opt.param_groups[0]["lr"], rel_tol=1e-12), (
            f"step {step}: the schedule differs from OneCycleLR")
        opt.step()
        sched.step()
    assert 0.29 < max(ours) <= 0.3 and ours[0] < ours[8] > ours[-1], (
        "one cycle: warm up to about the peak after a quarter of the steps, then decay")


@pytest.mark.parametrize("order", ORDERS)
def test_each_order_visits_every_rating_once_per_epoch(order):
    users = np.array([3, 0, 1, 3, 2, 0, 3, 1, 2, 2, 0, 3])
    items = np.array([0, 1, 2, 1, 0, 3, 2, 2, 1, 3, 0, 3])
    epochs = visiting_order(order, users, n_users=5, epochs=3, seed=1, items=items, n_items=4)
    for seq in epochs:
        assert sorted(seq.tolist()) == list(range(len(users))), (
            f"{order}: an epoch must visit each rating exactly once")
    same = [np.array_equal(epochs[0], e) for e in epochs[1:]]
    if order == "shuffled_once":
        assert all(same), "shuffled once: every epoch reads the arrays in the same order"
    else:
        assert not all(same), f"{order}: the order should change from epoch to epoch"
    if order == "by_user":
        for seq in epochs:
            runs = users[seq]
            changes = np.flatnonzero(np.diff(runs)) + 1
            firsts = runs[np.concatenate([[0], changes])]
            assert len(set(firsts)) == len(firsts), "by user: each user's ratings form one run"


def test_the_blocks_of_a_round_share_no_row():
    rng = np.random.default_rng(0)
    n = 20_000  # about 20 ratings a block
    users, items = rng.integers(0, 400, n), rng.integers(0, 300, n)
    plan = compiled._Plan("blocks", users, 400, seed=3, chunks=1, items=items, n_items=300)
    for epoch in range(2):
        calls = plan.passes(epoch)
        assert len(calls) == compiled.BLOCKS, "one kernel call per round"
        seen = []
        for _, _, lo, hi, _ in calls:
            rows = [plan.physical[a:b] for a, b in zip(lo, hi)]
            for what, ids in (("user", users), ("item", items)):
                sets = [set(ids[r].tolist()) for r in rows]
                assert sum(map(len, sets)) == len(set().union(*sets)), (
                    f"two blocks of one round share a {what}: their threads would race")
            for r in filter(len, rows):  # inside a block, each user's ratings form one run
                runs = users[r]
                firsts = runs[np.concatenate([[0], np.flatnonzero(np.diff(runs)) + 1])]
                assert len(set(firsts)) == len(firsts), "a block groups its ratings by user"
            seen += [x for r in rows for x in r.tolist()]
        assert sorted(seen) == list(range(n)), "the rounds cover every rating once"


@pytest.mark.parametrize("n, n_users, n_items", [(2000, 40, 30), (500, 7, 3), (3, 50, 50)])
def test_the_blocks_layout_is_the_same_compiled_or_not_on_any_number_of_threads(
        n, n_users, n_items):
    rng = np.random.default_rng(n)
    users, items = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    ratings = rng.random(n).astype(np.float32)
    user_row, item_row = rng.permutation(n_users), rng.permutation(n_items)
    seeds = rng.integers(1, compiled.MINSTD_M, compiled.BLOCKS ** 2)
    args = (users, items, ratings, user_row, item_row, n_users, n_items, seeds)
    plain = compiled._blocks_layout(*args, threads=1, compiled=False)
    for threads in (1, 3):
        fast = compiled._blocks_layout(*args, threads=threads)
        assert all(np.array_equal(a, b) for a, b in zip(plain, fast)), (
            f"the compiled layout on {threads} thread(s) must equal the interpreted one")
    pairs = np.stack([users, items], 1)  # fit_compiled hands over the columns, not copies
    lean = compiled._blocks_layout(pairs[:, 0], pairs[:, 1], *args[2:], threads=2,
                                   keep_index=False)
    assert len(lean[0]) == 0, "without keep_index no original index is written"
    assert all(np.array_equal(a, b) for a, b in zip(plain[1:], lean[1:])), (
        "the layout must not depend on keeping the index or on strided input columns")
    physical, out_u, out_i, out_r, bounds = plain
    assert sorted(physical.tolist()) == list(range(n)), "each rating is laid out once"
    assert np.array_equal(out_u, user_row[users[physical]]), "user rows are relabelled"
    assert np.array_equal(out_i, item_row[items[physical]]), "item rows are relabelled"
    assert np.array_equal(out_r, ratings[physical]), "each rating travels with its pair"
    q = compiled.BLOCKS
    block = (out_u * q // n_users) * q + out_i * q // n_items
    assert np.array_equal(np.searchsorted(bounds, np.arange(n), side="right") - 1, block), (
        "position p lies inside the bounds of its rating's block")


def test_visiting_order_rejects_an_unknown_order():
    with pytest.raises(ValueError, match="order must be one of"):
        visiting_order("random", [0, 1], n_users=2, epochs=1)


def test_missing_numba_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba now raises ImportError
    assert not compiled.available()
    with pytest.raises(ImportError, match="pip install 'numba>=0.61'"):
        compiled._kernel.__wrapped__()


# -- the compiled kernel -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def numba():
    return pytest.importorskip("numba")


def test_shuffle_on_one_thread_is_fit_sparse_at_bs1(numba):
    model, x, y = _problem()
    oracle = _twin(model)
    opts = {"epochs": 2, "lr": 0.05, "reg": 0.05, "reg_bias": 0.02, "seed": 3}
    h_torch = fit_sparse(oracle, x, y, bs=1, optimizer="fused_row_adagrad", **opts)
    h_ours = compiled.fit_compiled(model, x, y, order="shuffle", threads=1, **opts)
    _assert_same_model(model, oracle)
    assert np.allclose(h_ours, h_torch, rtol=1e-5), "the epoch losses should match too"
    assert h_ours[-1] < h_ours[0], "training should lower the loss"


@pytest.mark.parametrize("order", ORDERS)
def test_each_order_is_fused_row_adagrad_in_that_order(numba, order):
    model, x, y = _problem(seed=1)
    oracle = _twin(model)
    epochs, lr, reg, reg_bias = 2, 0.05, 0.03, 0.01
    compiled.fit_compiled(model, x, y, epochs=epochs, lr=lr, reg=reg, reg_bias=reg_bias, seed=5,
                        order=order, threads=1)
    opt = FusedRowAdagrad(oracle, lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(y),
                                                pct_start=0.25, cycle_momentum=False)
    for seq in visiting_order(order, x[:, 0].numpy(), 30, epochs, seed=5, items=x[:, 1].numpy(),
                              n_items=20):
        for j in seq.tolist():
            opt.train_step(x[j:j + 1, 0], x[j:j + 1, 1], y[j:j + 1], reg, reg_bias)
            sched.step()
    _assert_same_model(model, oracle)


@pytest.mark.parametrize("threads", [1, 2])
def test_the_kernel_visits_each_rating_once_per_epoch(numba, threads):
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("one core: no second thread to test")
    model, x, y = _problem(n=997)  # not a multiple of the number of chunks
    with torch.no_grad():  # zero factors stay zero; with a tiny lr the biases barely move
        model.user_factors.weight.zero_()
        model.item_factors.weight.zero_()
    expected = float(((float(model.mean) - y.double()) ** 2).sum())
    for order in ORDERS:
        history = compiled.fit_compiled(model, x, y, epochs=2, lr=1e-9, order=order,
                                      threads=threads)
        assert np.allclose(np.array(history) * len(y), expected, rtol=1e-5), (
            f"{order}, {threads} thread(s): the summed squared error of an epoch is not the sum "
            "over all ratings, so some rating was skipped or visited twice")


def test_one_thread_and_a_seed_reproduce_to_the_bit(numba):
    runs = []
    for _ in range(2):
        model, x, y = _problem(seed=2)
        compiled.fit_compiled(model, x, y, epochs=2, seed=7, order="by_user", threads=1)
        runs.append(model.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(runs[0].values(), runs[1].values())), (
        "with one thread and a seed the result should be identical")


@pytest.mark.parametrize("order", ORDERS)
def test_prefetching_changes_no_value(numba, order, monkeypatch):
    runs = {}
    for ahead in (0, compiled.PREFETCH, 1000):  # none, the default, beyond every segment
        monkeypatch.setattr(compiled, "PREFETCH", ahead)
        # enough ratings that blocks hold runs longer than PREFETCH, so the hint is issued
        model, x, y = _problem(n_users=200, n_items=120, n=20000, seed=6)
        history = compiled.fit_compiled(model, x, y, epochs=2, seed=1, order=order, threads=1)
        runs[ahead] = model.state_dict(), history
    for ahead, (state, history) in runs.items():
        assert history == runs[0][1] and all(
            torch.equal(a, b) for a, b in zip(state.values(), runs[0][0].values())), (
            f"{order}: fetching rows {ahead} ratings ahead changed the model; a prefetch is a "
            "hint to the cache and must not change any value")


def test_blocks_give_the_same_factors_on_any_number_of_threads(numba):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one core: no second thread to test")
    runs = {}
    for threads in (1, 2):
        model, x, y = _problem(n_users=200, n_items=120, n=20000, seed=4)
        compiled.fit_compiled(model, x, y, epochs=2, seed=7, order="blocks", threads=threads)
        runs[threads] = model
    for (name, a), b in zip(runs[1].state_dict().items(), runs[2].state_dict().values()):
        assert torch.equal(a, b), (f"blocks: {name} differs between 1 and 2 threads, so two "
                                   "threads touched the same row in one round")
    for order in ("shuffle", "by_user"):  # the racing orders: the same only by luck
        model, x, y = _problem(n_users=200, n_items=120, n=20000, seed=4)
        compiled.fit_compiled(model, x, y, epochs=2, seed=7, order=order, threads=1)
        assert not torch.equal(model.user_factors.weight, runs[1].user_factors.weight), (
            f"{order} should visit the ratings in another order than blocks")


def test_threads_reach_a_similar_held_out_error(numba):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one core: no second thread to test")
    from cfcourse.data import planted_ratings, random_split

    world = planted_ratings(n_users=300, n_items=150, n_ratings=12000, n_factors=4, noise=0.3,
                            seed=0)
    train, valid = random_split(world.ratings, valid_pct=0.1, seed=0)
    x, y, xv, yv = (torch.tensor(t) for part in (train, valid)
                    for t in (part[["user", "item"]].to_numpy(np.int64) - 1,
                              part["rating"].to_numpy(np.float32)))
    errors = {}
    for threads in (1, 2):
        for order in ("shuffle", "by_user", "blocks"):
            torch.manual_seed(0)
            model = SparseDotBias(300, 150, 8, mean=float(y.mean()), y_range=(0.5, 5.0))
            compiled.fit_compiled(model, x, y, epochs=8, lr=0.05, reg=0.02, order=order,
                                threads=threads)
            errors[threads, order] = float(((model.predict(xv) - yv) ** 2).mean().sqrt())
    baseline = float(((yv - y.mean()) ** 2).mean().sqrt())
    assert max(errors.values()) < 0.8 * baseline, f"every run should learn: {errors}"
    for order in ("shuffle", "by_user", "blocks"):
        # Two threads interleave their chunks differently each run, which changes the visiting
        # order as much as a new seed does; 1,200 held-out ratings make ~0.02 such noise.
        assert abs(errors[1, order] - errors[2, order]) < 0.05, (
            f"{order}: lock-free threads should reach about the error of one thread: {errors}")


@pytest.mark.parametrize("bad, match", [
    ({"order": "random"}, "order must be one of"),
    ({"lr": 0.0}, "lr must be a positive"),
    ({"lr": -0.1}, "lr must be a positive"),
    ({"lr": float("nan")}, "lr must be a positive"),
    ({"lr": "0.1"}, "lr must be a positive"),
    ({"reg": -1.0}, "reg must be a non-negative"),
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"threads": 0}, "threads must be a positive integer"),
    ({"pct_start": 1.5}, "pct_start must be between 0 and 1"),
])
def test_bad_arguments_are_refused(numba, bad, match):
    model, x, y = _problem()
    before = model.state_dict()["user_factors.weight"].clone()
    with pytest.raises(ValueError, match=match):
        compiled.fit_compiled(model, x, y, **bad)
    assert torch.equal(model.user_factors.weight, before), "a refused call must not train"


def test_bad_data_is_refused(numba):
    model, x, y = _problem()
    with pytest.raises(ValueError, match=r"item indices must lie in \[0, 20\)"):
        compiled.fit_compiled(model, torch.tensor([[0, 20]]), torch.tensor([3.0]))
    with pytest.raises(ValueError, match="aligned with y"):
        compiled.fit_compiled(model, x, y[:-1])
    with pytest.raises(TypeError, match="integer user and item indices"):
        compiled.fit_compiled(model, x.double(), y)
    with pytest.raises(ValueError, match="ratings must be finite"):
        compiled.fit_compiled(model, x[:1], torch.tensor([float("inf")]))
    with pytest.raises(TypeError, match="trains a SparseDotBias"):
        compiled.fit_compiled(torch.nn.Linear(2, 1), x, y)

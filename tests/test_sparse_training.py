import pytest
import torch

from cfcourse.models.sparse_dot_bias import SparseDotBias
from cfcourse.optim import FusedRowAdagrad, RowAdagrad
from cfcourse.train import fit_sparse


def test_row_adagrad_by_hand():
    emb = torch.nn.Embedding(4, 2, sparse=True)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]]))
    opt = RowAdagrad(emb.parameters(), lr=0.5, eps=0.0)
    # row 1 looked up twice with upstream gradient (1, 3): summed gradient (2, 6)
    out = emb(torch.tensor([1, 1]))
    (out * torch.tensor([1.0, 3.0])).sum().backward()
    opt.step()
    accumulated = (2.0**2 + 6.0**2) / 2  # mean over the row of the squared summed gradient
    expected = torch.tensor([2.0, 2.0]) - 0.5 / accumulated**0.5 * torch.tensor([2.0, 6.0])
    assert torch.allclose(emb.weight[1], expected)
    assert torch.equal(emb.weight[[0, 2, 3]], torch.tensor([[1.0, 1.0], [3.0, 3.0], [4.0, 4.0]]))
    assert opt.state[emb.weight]["sum"].tolist() == [0.0, accumulated, 0.0, 0.0]


def test_row_adagrad_sparse_equals_dense():
    torch.manual_seed(0)
    sparse, dense = torch.nn.Embedding(6, 3, sparse=True), torch.nn.Embedding(6, 3)
    dense.load_state_dict(sparse.state_dict())
    idx = torch.tensor([0, 2, 2, 5])
    for emb in (sparse, dense):
        opt = RowAdagrad(emb.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            emb(idx).pow(2).sum().backward()
            opt.step()
    untouched = torch.tensor([1, 3, 4])
    assert torch.allclose(sparse.weight, dense.weight, atol=1e-6)
    assert torch.equal(sparse.weight[untouched], dense.weight[untouched])


def test_row_adagrad_rejects_bad_lr():
    with pytest.raises(ValueError, match="positive"):
        RowAdagrad(torch.nn.Embedding(2, 2).parameters(), lr=0)


def planted(n_users=60, n_items=50, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    P, Q = torch.randn(n_users, k, generator=g), torch.randn(n_items, k, generator=g)
    u = torch.randint(0, n_users, (3000,), generator=g)
    i = torch.randint(0, n_items, (3000,), generator=g)
    return torch.stack([u, i], 1), 3.0 + (P[u] * Q[i]).sum(1) * 0.5


@pytest.mark.parametrize("optimizer,lr", [("sparse_adam", 0.05), ("row_adagrad", 0.3),
                                             ("fused_row_adagrad", 0.3)])
def test_fit_sparse_learns_with_either_optimizer(optimizer, lr):
    x, y = planted()
    torch.manual_seed(0)
    model = SparseDotBias(60, 50, n_factors=3, mean=float(y.mean()))
    history = fit_sparse(model, x, y, epochs=25, lr=lr, bs=256, reg=1e-3, reg_bias=1e-3,
                         optimizer=optimizer)
    assert history[-1] < 0.25 * history[0]


def test_fit_sparse_calls_back_each_epoch_and_checks_optimizer():
    x, y = planted()
    seen = []
    fit_sparse(SparseDotBias(60, 50, 3, 3.0), x, y, epochs=3, bs=512,
               callback=lambda epoch, model: seen.append(epoch))
    assert seen == [0, 1, 2]
    with pytest.raises(ValueError, match="optimizer must be one of"):
        fit_sparse(SparseDotBias(60, 50, 3, 3.0), x, y, optimizer="sgd")


def test_fit_sparse_stops_on_divergence():
    x, y = planted()
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit_sparse(SparseDotBias(60, 50, 3, 3.0), x, y * 1e19, epochs=2, bs=512)


@pytest.mark.parametrize("optimizer", ["sparse_adam", "row_adagrad", "fused_row_adagrad"])
def test_fit_sparse_stops_when_the_loss_explodes_but_stays_finite(optimizer):
    # An Adagrad or Adam step moves a weight by at most about lr, so lr=1e6 gives a loss of
    # ~1e24: finite, so a NaN/inf check alone let it through and returned a useless model.
    x, y = planted()
    seen = []
    with pytest.raises(FloatingPointError,
                       match=r"epoch 1 with lr=1e\+06.*lower the learning rate, e\.g\. to lr=100000"):
        fit_sparse(SparseDotBias(60, 50, 3, 3.0), x, y, epochs=3, lr=1e6, bs=512,
                   optimizer=optimizer, callback=lambda epoch, model: seen.append(epoch))
    assert seen == [], "the callback must not be handed a model from a diverged epoch"


def test_predict_clips_to_y_range_and_handles_empty():
    model = SparseDotBias(3, 3, 2, mean=10.0, y_range=(0.5, 5.0))
    assert model.predict(torch.tensor([[0, 1]])).item() == 5.0
    assert model.predict(torch.zeros(0, 2, dtype=torch.long)).shape == (0,)


def test_sparse_updates_touch_only_batch_rows():
    model = SparseDotBias(50, 40, n_factors=4, mean=3.0)
    before = model.user_factors.weight.detach().clone()
    x = torch.tensor([[1, 2], [3, 4]])
    fit_sparse(model, x, torch.tensor([5.0, 1.0]), epochs=1, bs=2, lr=0.1)
    changed = (model.user_factors.weight != before).any(dim=1).nonzero().view(-1).tolist()
    assert changed == [1, 3]


def test_sparse_penalty_by_hand():
    model = SparseDotBias(2, 2, n_factors=2, mean=0.0)
    with torch.no_grad():
        model.user_factors.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
        model.item_factors.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 0.0]]))
        model.user_bias.weight.fill_(1.0)
    x = torch.tensor([[0, 0]])
    assert model(x).item() == pytest.approx(1.0 + 0.0 + 3.0)
    assert model.penalty(x, reg=0.5, reg_bias=2.0).item() == pytest.approx(0.5 * 14 + 2.0 * 1)


def test_fit_sparse_rejects_misaligned_input():
    with pytest.raises(ValueError, match="aligned"):
        fit_sparse(SparseDotBias(2, 2, 2), torch.zeros(3, 2, dtype=torch.long), torch.zeros(2))


def _duplicate_heavy_data(n=3000, n_users=50, n_items=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.randint(0, n_users, (n,), generator=g),
                     torch.randint(0, n_items, (n,), generator=g)], dim=1)
    return x, torch.rand(n, generator=g) * 4 + 1


def test_fused_row_adagrad_equals_autograd_row_adagrad():
    # Batches of 256 over 50 users and 40 items: every batch repeats rows many times.
    x, y = _duplicate_heavy_data()
    torch.manual_seed(0)
    a = SparseDotBias(50, 40, 8, mean=float(y.mean()))
    b = SparseDotBias(50, 40, 8, mean=float(y.mean()))
    b.load_state_dict(a.state_dict())
    opts = {"epochs": 3, "lr": 0.1, "bs": 256, "reg": 0.05, "reg_bias": 0.01}
    history_a = fit_sparse(a, x, y, optimizer="row_adagrad", **opts)
    history_b = fit_sparse(b, x, y, optimizer="fused_row_adagrad", **opts)
    assert history_b == pytest.approx(history_a, rel=1e-6)
    for name, weight in a.state_dict().items():
        assert torch.allclose(weight, b.state_dict()[name], atol=1e-5), name
    assert history_b[-1] < history_b[0]


def test_fused_train_step_by_hand():
    model = SparseDotBias(3, 2, 1, mean=3.0, init_std=0.0)
    with torch.no_grad():
        model.user_factors.weight[:] = torch.tensor([[1.0], [2.0], [0.0]])
        model.item_factors.weight[:] = torch.tensor([[0.5], [1.0]])
    opt = FusedRowAdagrad(model, lr=0.1)
    users, items, y = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), torch.tensor([4.0, 3.0, 5.0])
    sse = opt.train_step(users, items, y)  # predictions 3.5, 4.0, 5.0 -> errors -0.5, 1, 0
    assert float(sse) == pytest.approx(0.25 + 1.0)
    # User 0's gradient rows, 2/3 * e * q, sum to 2/3 * (-0.5*0.5 + 1*1) = 0.5; Adagrad's
    # first step moves a row by lr * sign(g) when the accumulator holds only g².
    assert model.user_factors.weight[0, 0].item() == pytest.approx(1.0 - 0.1)
    assert model.user_factors.weight[2, 0].item() == 0.0  # untouched row
    assert model.user_bias.weight[1, 0].item() == 0.0  # zero error, zero gradient


def test_fused_rejects_other_models():
    with pytest.raises(TypeError, match="SparseDotBias"):
        FusedRowAdagrad(torch.nn.Linear(2, 1))


def test_fused_optimizer_without_a_batch_is_row_adagrad():
    x, y = _duplicate_heavy_data(n=64)
    torch.manual_seed(0)
    a = SparseDotBias(50, 40, 4, mean=3.0)
    b = SparseDotBias(50, 40, 4, mean=3.0)
    b.load_state_dict(a.state_dict())
    for model, opt in ((a, RowAdagrad(a.parameters(), lr=0.1)), (b, FusedRowAdagrad(b, lr=0.1))):
        (model(x) - y).pow(2).mean().backward()
        opt.step()
    for name, weight in a.state_dict().items():
        assert torch.allclose(weight, b.state_dict()[name]), name


def test_distinct_rows_are_defined_with_duplicates():
    model = SparseDotBias(10, 4, 2, mean=3.0)
    opt = FusedRowAdagrad(model, lr=0.1)
    idx = torch.tensor([7, 2, 7, 7, 0, 2, 9])
    positions = torch.arange(len(idx))
    for garbage in (0, -5, 123):  # whatever the scratch array held before
        slot = torch.full((10,), garbage, dtype=torch.long)
        rows, place = opt._distinct(slot, idx, positions)
        # each distinct row once, in the order of its last occurrence: 7@3, 0@4, 2@5, 9@6
        assert rows.tolist() == [7, 0, 2, 9]
        assert torch.equal(rows[place], idx), "each position points at its own row"


def _sort_based_distinct(self, slot, idx, positions):
    """A reference for FusedRowAdagrad._distinct: torch.unique sorts instead."""
    return torch.unique(idx, return_inverse=True)


def test_fused_step_does_not_depend_on_how_duplicates_are_found(monkeypatch):
    x, y = _duplicate_heavy_data()
    torch.manual_seed(0)
    a = SparseDotBias(50, 40, 8, mean=float(y.mean()))
    b = SparseDotBias(50, 40, 8, mean=float(y.mean()))
    b.load_state_dict(a.state_dict())
    opts = {"epochs": 2, "lr": 0.1, "bs": 256, "reg": 0.05, "reg_bias": 0.01,
            "optimizer": "fused_row_adagrad"}
    history_a = fit_sparse(a, x, y, **opts)
    monkeypatch.setattr(FusedRowAdagrad, "_distinct", _sort_based_distinct)
    history_b = fit_sparse(b, x, y, **opts)
    assert history_a == history_b
    for name, weight in a.state_dict().items():
        assert torch.equal(weight, b.state_dict()[name]), name


# Recorded on the CPU before the shuffle moved to the data's device (torch 2.14): the same
# seed must still give the same permutations, hence the same losses and weights.
_CPU_GOLDEN = {
    "fused_row_adagrad": ([1.289826921735491, 1.2385802350725446, 1.1773350306919643],
                          -0.6366904973983765, -0.06399665772914886),
    "row_adagrad": ([1.289826921735491, 1.2385804094587054, 1.177335205078125],
                    -0.6366912126541138, -0.06399662792682648),
    "sparse_adam": ([1.2852762276785714, 1.2687252371651785, 1.258528093610491],
                    -0.16080120205879211, 0.03399670124053955),
}


@pytest.mark.parametrize("optimizer,lr", [("fused_row_adagrad", 0.1), ("row_adagrad", 0.1),
                                             ("sparse_adam", 0.01)])
def test_fit_sparse_cpu_results_unchanged(optimizer, lr):
    g = torch.Generator().manual_seed(0)
    x = torch.stack([torch.randint(0, 30, (700,), generator=g),
                     torch.randint(0, 20, (700,), generator=g)], 1)
    y = torch.rand(700, generator=g) * 4 + 1
    torch.manual_seed(0)
    model = SparseDotBias(30, 20, 4, mean=3.0)
    history = fit_sparse(model, x, y, epochs=3, lr=lr, bs=128, reg=0.05, reg_bias=0.01,
                         optimizer=optimizer, seed=3)
    losses, user_sum, item_bias_sum = _CPU_GOLDEN[optimizer]
    assert history == pytest.approx(losses, rel=1e-5)
    assert float(model.user_factors.weight.detach().sum()) == pytest.approx(user_sum, rel=1e-4)
    assert float(model.item_bias.weight.detach().sum()) == pytest.approx(item_bias_sum, rel=1e-4)


def test_fit_sparse_seed_changes_the_shuffle():
    x, y = _duplicate_heavy_data(n=700)
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(0)
        runs.append(fit_sparse(SparseDotBias(50, 40, 4, mean=3.0), x, y, epochs=2, bs=128,
                               lr=0.1, optimizer="fused_row_adagrad", seed=seed))
    assert runs[0] == runs[1], "same seed, same run"
    assert runs[0] != runs[2], "another seed, another order of batches"

import numpy as np
import pytest
import torch
from fastai.collab import EmbeddingDotBias
from fastai.layers import sigmoid_range as fastai_sigmoid_range

from cfcourse.fastai_glue import split_factors_biases
from cfcourse.metrics import align_linear, linear_recovery_r2, mae, rmse
from cfcourse.models.dot_product import (
    DotProduct,
    DotProductBias,
    DotProductBiasParams,
    create_params,
    inverse_sigmoid_range,
    sigmoid_range,
)
from cfcourse.train import _check_divergence, _run_epochs, fit_plain

X = torch.tensor([[0, 0], [1, 2], [2, 1], [0, 3]])


def test_sigmoid_range_matches_fastai():
    x = torch.linspace(-10, 10, 41)
    assert torch.allclose(sigmoid_range(x, 0, 5.5), fastai_sigmoid_range(x, 0, 5.5))


def test_dot_product_by_hand():
    model = DotProduct(3, 4, n_factors=2)
    with torch.no_grad():
        model.user_factors.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 1.0], [3.0, -1.0]]))
        model.item_factors.weight.copy_(torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.5, 4.0],
                                                      [-1.0, 1.0]]))
    assert model(X).tolist() == [3.0, 4.0, 6.0, 1.0]


@pytest.mark.parametrize("cls", [DotProduct, DotProductBias, DotProductBiasParams])
def test_outputs_stay_inside_y_range(cls):
    model = cls(3, 4, n_factors=5, y_range=(0, 5.5))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1000)  # push pre-activations far out
    out = model(X)
    assert out.shape == (4,) and (out >= 0).all() and (out <= 5.5).all()


def test_bias_model_matches_fastai_embedding_dot_bias():
    ours = DotProductBias(5, 6, n_factors=3, y_range=(0, 5.5))
    theirs = EmbeddingDotBias(3, 5, 6, y_range=(0, 5.5))
    with torch.no_grad():
        theirs.u_weight.weight.copy_(ours.user_factors.weight)
        theirs.i_weight.weight.copy_(ours.item_factors.weight)
        theirs.u_bias.weight.copy_(ours.user_bias.weight)
        theirs.i_bias.weight.copy_(ours.item_bias.weight)
    x = torch.tensor([[0, 0], [4, 5], [2, 3]])
    assert torch.allclose(ours(x), theirs(x).view(-1), atol=1e-6)


def test_parameter_version_equals_embedding_version():
    emb = DotProductBias(5, 6, n_factors=3)
    par = DotProductBiasParams(5, 6, n_factors=3)
    with torch.no_grad():
        par.user_factors.copy_(emb.user_factors.weight)
        par.item_factors.copy_(emb.item_factors.weight)
        par.user_bias.copy_(emb.user_bias.weight[:, 0])
        par.item_bias.copy_(emb.item_bias.weight[:, 0])
    x = torch.tensor([[0, 0], [4, 5], [2, 3]])
    assert torch.allclose(emb(x), par(x))
    x.requires_grad_(False)
    emb(x).sum().backward()
    par(x).sum().backward()
    assert torch.allclose(emb.user_factors.weight.grad, par.user_factors.grad)


@pytest.mark.parametrize("y_range", [(0, 5.5), (0.5, 5.0), None])
def test_mean_model_with_zero_weights_predicts_the_mean(y_range):
    model = DotProductBiasParams(3, 4, n_factors=2, y_range=y_range, mean=3.53)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    assert torch.allclose(model(X), torch.full((4,), 3.53)), "m must be the score of mu"
    plain = DotProductBiasParams(3, 4, n_factors=2, y_range=(0, 5.5))
    with torch.no_grad():
        for p in plain.parameters():
            p.zero_()
    assert torch.allclose(plain(X), torch.full((4,), 2.75)), "no mean: the middle of y_range"


def test_mean_is_a_buffer_that_no_optimiser_sees():
    model = DotProductBiasParams(3, 4, n_factors=2, mean=3.5)
    names = [name for name, _ in model.named_parameters()]
    assert names == ["user_factors", "user_bias", "item_factors", "item_bias"]
    assert "offset" in model.state_dict()
    factors, biases = split_factors_biases(model)
    assert len(factors) == 2 and len(biases) == 2
    before = model.offset.clone()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=1.0)
    model(X).sum().backward()
    opt.step()
    assert torch.equal(model.offset, before)


def test_mean_shifts_every_score_by_the_same_offset():
    torch.manual_seed(0)
    plain = DotProductBiasParams(3, 4, n_factors=2, y_range=None)
    torch.manual_seed(0)
    with_mean = DotProductBiasParams(3, 4, n_factors=2, y_range=None, mean=3.5)
    assert torch.allclose(with_mean(X) - plain(X), torch.full((4,), 3.5))


def test_mean_outside_y_range_is_refused():
    with pytest.raises(ValueError, match="inside y_range"):
        DotProductBiasParams(3, 4, n_factors=2, y_range=(0, 5.5), mean=5.5)


def test_inverse_sigmoid_range_undoes_sigmoid_range():
    scores = torch.linspace(-4, 4, 9)
    for score in scores.tolist():
        y = sigmoid_range(torch.tensor(score, dtype=torch.float64), 0.5, 5.0).item()
        assert inverse_sigmoid_range(y, 0.5, 5.0) == pytest.approx(score, abs=1e-9)
    assert inverse_sigmoid_range(2.75, 0, 5.5) == pytest.approx(0.0)


def test_create_params_registers_small_values():
    p = create_params((100, 10))
    assert isinstance(p, torch.nn.Parameter) and p.requires_grad
    assert 0.005 < p.std().item() < 0.02


def planted(n_users=40, n_items=30, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    P, Q = torch.randn(n_users, k, generator=g), torch.randn(n_items, k, generator=g)
    users, items = torch.meshgrid(torch.arange(n_users), torch.arange(n_items), indexing="ij")
    x = torch.stack([users.reshape(-1), items.reshape(-1)], dim=1)
    return x, (P[x[:, 0]] * Q[x[:, 1]]).sum(1)


def test_fit_plain_learns_and_repeats():
    x, y = planted()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = DotProduct(40, 30, n_factors=2)
        runs.append(fit_plain(model, x, y, epochs=30, lr=0.05, bs=64, optimizer="adam", seed=1))
    assert runs[0] == runs[1], "same seed, same batches, same losses"
    assert runs[0][-1] < 0.05 * runs[0][0]


def test_fit_plain_weight_decay_shrinks_factors():
    x, y = planted()
    norms = []
    for wd in (0.0, 0.1):
        torch.manual_seed(0)
        model = DotProduct(40, 30, n_factors=2)
        fit_plain(model, x, y, epochs=20, lr=0.05, bs=128, wd=wd, optimizer="adam")
        norms.append(model.user_factors.weight.norm().item())
    assert norms[1] < norms[0]


@pytest.mark.parametrize("x,y,kwargs,match", [
    (torch.zeros(3, 3, dtype=torch.long), torch.zeros(3), {}, "shape"),
    (torch.zeros(3, 2, dtype=torch.long), torch.zeros(2), {}, "aligned"),
    (torch.zeros(0, 2, dtype=torch.long), torch.zeros(0), {}, "zero ratings"),
    (torch.zeros(2, 2, dtype=torch.long), torch.tensor([1.0, float("nan")]), {}, "NaN"),
    (torch.zeros(2, 2, dtype=torch.long), torch.zeros(2), {"optimizer": "lbfgs"}, "one of"),
])
def test_fit_plain_rejects_bad_input(x, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_plain(DotProduct(2, 2, 2), x, y, **kwargs)


def test_fit_plain_stops_on_divergence():
    x, y = planted()
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit_plain(DotProduct(40, 30, n_factors=2), x, y * 100, epochs=50, lr=1e4)


def test_fit_plain_names_the_learning_rate_when_sgd_overflows():
    x, y = planted()
    with pytest.raises(FloatingPointError, match=r"with lr=1e\+06.*e\.g\. to lr=100000"):
        fit_plain(DotProduct(40, 30, n_factors=2), x, y, epochs=20, lr=1e6, bs=64)


class _Recorder:
    """A fake step: records the slices it is handed and returns a planted summed loss."""

    def __init__(self, losses):
        self.losses, self.slices, self.schedule_steps = iter(losses), [], 0

    def __call__(self, *tensors):
        self.slices.append([t.tolist() for t in tensors])
        return torch.tensor(next(self.losses), dtype=torch.float64)

    def step(self):  # stands in for the learning-rate schedule
        self.schedule_steps += 1


def _loop(rec, epochs, order, bs, **kwargs):
    return _run_epochs(epochs, order, bs, rec, lr=0.5,
                       total=lambda: torch.zeros((), dtype=torch.float64),
                       epoch_loss=lambda total: total.item() / 5, **kwargs)


def test_shared_loop_walks_slices_and_sums_each_epoch_by_hand():
    rec, after = _Recorder([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), []
    orders = [torch.tensor([4, 0, 3, 1, 2]), torch.tensor([2, 1, 0, 4, 3])]
    history = _loop(rec, 2, lambda e: orders[e], 2, schedule=rec, callback=after.append)
    # 5 rows in slices of 2: [0:2], [2:4] and the short [4:5]; each epoch sums 3 losses
    assert rec.slices == [[[4, 0]], [[3, 1]], [[2]], [[2, 1]], [[0, 4]], [[3]]]
    assert history == [(1 + 2 + 3) / 5, (4 + 5 + 6) / 5]
    assert rec.schedule_steps == 6, "the schedule steps once after every optimiser step"
    assert after == [0, 1]


def test_shared_loop_slices_every_gathered_tensor_alike():
    rec = _Recorder([1.0, 1.0])
    _loop(rec, 1, lambda e: torch.tensor([2, 0, 1]), 2,
          gather=lambda order: (order * 10, order + 100))
    assert rec.slices == [[[20, 0], [102, 100]], [[10], [101]]]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_shared_loop_stops_at_the_diverged_epoch_before_the_callback(bad):
    rec, after = _Recorder([1.0, 1.0, bad, 1.0]), []
    with pytest.raises(FloatingPointError, match=r"became (nan|inf) in epoch 2 with lr=0\.5"):
        _loop(rec, 5, lambda e: torch.arange(2), 1, callback=after.append)
    assert after == [0], "epoch 2 diverged: its callback must not run, nor epoch 3"
    assert len(rec.slices) == 4


def test_divergence_check_compares_with_predicting_zero():
    # scale 2.0: a loss up to 100 x 2.0 is a bad run, not a diverged one
    _check_divergence(199.0, epoch=0, lr=0.1, scale=2.0)
    _check_divergence(1e30, epoch=0, lr=0.1, scale=None)  # no yardstick: finite passes
    with pytest.raises(FloatingPointError, match=r"201 in epoch 4 with lr=0\.1 \(100\.5 times"):
        _check_divergence(201.0, epoch=3, lr=0.1, scale=2.0)


def test_rmse_and_mae_by_hand():
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(np.sqrt(4 / 3))
    assert mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="aligned"):
        rmse([1, 2], [1])
    with pytest.raises(ValueError, match="empty"):
        mae([], [])


def test_linear_recovery_sees_through_an_invertible_map():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(60, 3))
    mixed = truth @ rng.normal(size=(3, 3)) + 5.0
    assert linear_recovery_r2(mixed, truth) == pytest.approx(1.0)
    assert np.allclose(align_linear(mixed, truth), truth)
    assert linear_recovery_r2(rng.normal(size=(60, 3)), truth) < 0.3
    with pytest.raises(ValueError, match="same number of rows"):
        linear_recovery_r2(truth[:5], truth)

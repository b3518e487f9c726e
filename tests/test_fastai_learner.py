import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from fastai.learner import Learner
from fastai.losses import MSELossFlat
from torch import nn

from cfcourse.data import planted_ratings, random_split
from cfcourse.fastai_glue import collab_dataloaders, fit_recording, split_factors_biases, valid_rmse
from cfcourse.models.dot_product import DotProduct, DotProductBias, DotProductBiasParams

warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


class Constant(nn.Module):
    """Predicts the same rating for everyone (its one parameter)."""

    def __init__(self, value: float):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(value))

    def forward(self, x):
        return self.value.expand(len(x))


TRAIN = pd.DataFrame({"user": [1, 2, 3, 1, 2, 3], "item": [10, 20, 30, 20, 30, 10],
                      "rating": [4.0, 3.0, 5.0, 2.0, 4.0, 1.0]})
VALID = pd.DataFrame({"user": [1, 2, 3, 1], "item": [30, 10, 20, 10],
                      "rating": [1.0, 5.0, 3.0, 4.0]})


def test_valid_rmse_by_hand():
    learn = Learner(collab_dataloaders(TRAIN, VALID, bs=2), Constant(3.0),
                    loss_func=MSELossFlat())
    # errors 2, -2, 0, -1 -> sqrt((4 + 4 + 0 + 1) / 4) = 1.5
    assert valid_rmse(learn) == pytest.approx(1.5)


@pytest.fixture(scope="module")
def planted_split():
    data = planted_ratings(n_users=60, n_items=50, n_ratings=1500, n_factors=2,
                           noise=0.3, seed=0)
    return random_split(data.ratings, valid_pct=0.2, seed=0)


def bias_learner(train, valid, seed=0, **kwargs):
    dls = collab_dataloaders(train, valid, bs=64, seed=seed)
    torch.manual_seed(seed)
    model = DotProductBias(len(dls.classes["user"]), len(dls.classes["item"]), n_factors=4)
    return Learner(dls, model, loss_func=MSELossFlat(), **kwargs)


def test_fit_recording_curves_learn_and_agree_with_valid_rmse(planted_split):
    train, valid = planted_split
    learn = bias_learner(train, valid)
    before = valid_rmse(learn)
    curves = fit_recording(learn, epochs=4, lr=3e-2, wd=0.0)
    assert list(curves) == ["train", "valid"]
    assert len(curves["train"]) == len(curves["valid"]) == 4
    assert all(isinstance(v, float) and math.isfinite(v) for v in curves["train"] + curves["valid"])
    assert curves["train"][-1] < curves["train"][0]
    after = valid_rmse(learn)
    assert after < before, "training improved the validation RMSE"
    # fastai's validation loss is the mean squared error over the whole validation set
    assert after == pytest.approx(math.sqrt(curves["valid"][-1]), rel=1e-4)


def test_valid_rmse_matches_a_direct_forward_pass(planted_split):
    train, valid = planted_split
    learn = bias_learner(train, valid)
    fit_recording(learn, epochs=1, lr=3e-2)
    xs, ys = [], []
    for x, y in learn.dls.valid:  # collab batches: (B, 2) indices, (B, 1) ratings
        xs.append(x)
        ys.append(y)
    learn.model.eval()
    with torch.no_grad():
        preds = learn.model(torch.cat(xs))
    expected = np.sqrt(((preds - torch.cat(ys)[:, 0]) ** 2).mean().item())
    assert valid_rmse(learn) == pytest.approx(expected, rel=1e-5)


def test_fit_recording_really_turns_weight_decay_off(planted_split):
    train, valid = planted_split
    learn = bias_learner(train, valid)
    fit_recording(learn, epochs=1, lr=1e-2)
    assert learn.opt.hypers[0]["wd"] == 0.0, "fastai's Adam default (0.01) must not leak in"
    fit_recording(learn, epochs=1, lr=1e-2, wd=0.1)
    assert learn.opt.hypers[0]["wd"] == pytest.approx(0.1)


def test_same_seed_same_curves(planted_split, monkeypatch):
    monkeypatch.setenv("CFCOURSE_SCALE", "ci")  # to the bit on the CPU, the loaders' device there
    train, valid = planted_split
    runs = [fit_recording(bias_learner(train, valid), epochs=2, lr=1e-2, wd=0.1)
            for _ in range(2)]
    assert runs[0] == runs[1]


def test_weight_decay_shrinks_the_weights(planted_split):
    train, valid = planted_split
    norms = []
    for wd in (0.0, 1.0):
        learn = bias_learner(train, valid)
        fit_recording(learn, epochs=3, lr=3e-2, wd=wd)
        norms.append(learn.model.user_factors.weight.norm().item())
    assert norms[1] < 0.9 * norms[0]


@pytest.mark.parametrize("cls", [DotProductBias, DotProductBiasParams])
def test_split_factors_biases_separates_by_name(cls):
    model = cls(5, 6, n_factors=3)
    factors, biases = split_factors_biases(model)
    assert [tuple(p.shape) for p in factors] == [(5, 3), (6, 3)]
    assert sorted(p.numel() for p in biases) == [5, 6]
    every = {id(p) for p in model.parameters()}
    assert {id(p) for p in factors + biases} == every and len(factors + biases) == len(every)


def test_split_factors_biases_needs_both_kinds():
    with pytest.raises(ValueError, match="user_factors.weight"):
        split_factors_biases(DotProduct(3, 4, n_factors=2))


def test_per_group_weight_decay_leaves_biases_alone(planted_split):
    train, valid = planted_split
    learn = bias_learner(train, valid, splitter=split_factors_biases)
    model = learn.model
    start_bias = model.user_bias.weight.detach().cpu().clone()  # fit may move the model
    fit_recording(learn, epochs=1, lr=1e-2, wd=[0.5, 0.0])
    assert [h["wd"] for h in learn.opt.hypers] == [0.5, 0.0]
    # the '#na#' row (index 0) never sees a rating: only decay can move it
    assert torch.equal(model.user_bias.weight[0].detach().cpu(), start_bias[0]), \
        "no decay on biases"
    factor_row = model.user_factors.weight[0].detach().cpu()
    assert factor_row.norm() < 0.99 * learn_start_norm(train, valid), "factors decayed"


def learn_start_norm(train, valid):
    """Norm of user row 0's factors at initialisation (same seed as bias_learner)."""
    return bias_learner(train, valid).model.user_factors.weight[0].detach().cpu().norm()


@pytest.mark.parametrize("kwargs,match", [
    ({"epochs": 0, "lr": 1e-2}, "epochs"),
    ({"epochs": 2.5, "lr": 1e-2}, "epochs"),
    ({"epochs": 1, "lr": -1.0}, "lr"),
    ({"epochs": 1, "lr": float("nan")}, "lr"),
    ({"epochs": 1, "lr": 1e-2, "wd": -0.1}, "wd"),
    ({"epochs": 1, "lr": 1e-2, "wd": None}, "0.0 for no weight decay"),
    ({"epochs": 1, "lr": 1e-2, "wd": [0.1, -1.0]}, "one per parameter group"),
    ({"epochs": 1, "lr": 1e-2, "wd": []}, "empty"),
    ({"epochs": 1, "lr": 1e-2, "wd": [0.1, 0.0]}, "1 parameter group"),
])
def test_fit_recording_rejects_bad_arguments(kwargs, match):
    learn = Learner(collab_dataloaders(TRAIN, VALID, bs=2), Constant(3.0),
                    loss_func=MSELossFlat())
    with pytest.raises(ValueError, match=match):
        fit_recording(learn, **kwargs)


def test_ci_scale_trains_on_the_cpu_even_where_fastai_sees_a_gpu(planted_split, monkeypatch):
    """The loaders follow cfcourse.env.device(), so the Learner does too."""
    import fastai.data.core

    from cfcourse import env

    monkeypatch.setenv("CFCOURSE_SCALE", "ci")
    monkeypatch.setattr(env, "_cuda_available", lambda: True)
    monkeypatch.setattr(fastai.data.core, "default_device", lambda *a, **k: torch.device("cuda"))
    train, valid = planted_split
    learn = bias_learner(train, valid)
    fit_recording(learn, epochs=1, lr=1e-2)
    assert {p.device.type for p in learn.model.parameters()} == {"cpu"}
    assert math.isfinite(valid_rmse(learn))


# -- cfcourse.train.fit_plain (the plain loop; its other tests are in test_models_train_metrics) --
def test_fit_plain_refuses_a_bad_position_before_any_step():
    """On a GPU a bad position is a device-side assert, so it must be caught before training."""
    from cfcourse.train import fit_plain

    torch.manual_seed(0)
    model = DotProductBias(3, 2, n_factors=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.tensor([[0, 0], [1, 1], [2, 0], [2, 2]])  # item 2: the model has items 0 and 1
    y = torch.tensor([4.0, 3.0, 5.0, 1.0])
    with pytest.raises(IndexError, match="no row for.*item 2.*IdIndex"):
        fit_plain(model, x, y, epochs=1, lr=0.1, bs=1)  # rows 0-2 would be steps before it
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), \
        "no step was taken"
    with pytest.raises(IndexError, match="no row for"):
        fit_plain(DotProductBias(3, 3, n_factors=2), x - 1, y, epochs=1)  # a position of -1


def test_fit_plain_epoch_loss_is_the_size_weighted_mean_of_batch_losses():
    from cfcourse.train import fit_plain

    model = Constant(3.0)
    x = torch.zeros(5, 2, dtype=torch.long)
    y = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    # lr=0: the constant stays 3, so every batch split gives the mean of (y - 3)^2 = 2
    assert fit_plain(model, x, y, epochs=2, lr=0.0, bs=2) == pytest.approx([2.0, 2.0])
    losses = fit_plain(model, x, y, epochs=1, lr=0.0, bs=None)
    assert losses == [pytest.approx(2.0)] and isinstance(losses[0], float)

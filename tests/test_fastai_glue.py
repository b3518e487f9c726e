import functools

import numpy as np
import pandas as pd
import pytest
import torch
from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (adds Learner.fit_one_cycle)
from fastai.collab import collab_learner
from fastai.learner import Learner
from fastai.losses import MSELossFlat
from fastai.optimizer import OptimWrapper

from cfcourse import env
from cfcourse.data import planted_ratings, random_split
from cfcourse.fastai_glue import RowL2, TensorLoader, collab_dataloaders, tensor_dataloaders
from cfcourse.models.sparse_dot_bias import SparseDotBias


@pytest.fixture(scope="module")
def split():
    data = planted_ratings(n_users=80, n_items=60, n_ratings=2000, n_factors=3, seed=0).ratings
    train, valid = random_split(data, 0.2, seed=0)
    only_valid = pd.DataFrame({"user": [999], "item": [1], "rating": [3.0], "timestamp": [0]})
    return train, pd.concat([valid, only_valid], ignore_index=True)


def test_tensor_loader_batches_cover_every_row_once():
    x = torch.arange(20).view(10, 2)
    y = torch.arange(10.0).view(-1, 1)
    loader = TensorLoader(x, y, bs=4, shuffle=True, seed=0)
    seen = torch.cat([yb for _, yb in loader]).view(-1)
    assert len(loader) == 3 and loader.n == 10 and sorted(seen.tolist()) == list(range(10))
    ordered = loader.new(shuffle=False)
    assert torch.equal(torch.cat([yb for _, yb in ordered]), y)
    assert len(loader.new(drop_last=True)) == 2
    with pytest.raises(ValueError, match="positive batch size"):
        TensorLoader(x, y, bs=0)


def test_tensor_loader_shuffles_repeat_with_the_seed_on_the_cpu():
    x, y = torch.arange(40).view(20, 2), torch.arange(20.0).view(-1, 1)

    def epochs(loader, n=2):
        return [torch.cat([yb for _, yb in loader]).view(-1).long().tolist() for _ in range(n)]

    first, second = epochs(TensorLoader(x, y, bs=8, shuffle=True, seed=3))
    assert [first, second] == epochs(TensorLoader(x, y, bs=8, shuffle=True, seed=3))
    assert first != second, "each epoch draws a new order"
    generator = torch.Generator().manual_seed(3)  # the CPU order: one seeded CPU generator
    assert first == torch.randperm(20, generator=generator).tolist()
    assert second == torch.randperm(20, generator=generator).tolist()


def test_vocabulary_covers_valid_only_users(split):
    train, valid = split
    dls = tensor_dataloaders(train, valid, bs=128)
    assert dls.classes["user"][0] == "#na#" and 999 in dls.classes["user"]
    assert dls.cat_names == ["user", "item"]
    xb, yb = next(iter(dls.valid))
    assert xb.shape[1] == 2 and yb.shape[1] == 1 and int(xb.min()) >= 1


def test_collab_learner_trains_and_predicts_on_tensor_loaders(split):
    train, valid = split
    dls = tensor_dataloaders(train, valid, bs=128)
    learn = collab_learner(dls, n_factors=4, y_range=(0, 5.5))
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(2, 1e-2)
        pred, target = learn.get_preds()
    assert pred.shape[0] == len(valid) and torch.isfinite(pred).all()
    assert np.allclose(np.sort(target.view(-1).numpy()), np.sort(valid["rating"].to_numpy()))


def test_sparse_model_in_a_learner_touches_only_batch_rows(split):
    train, valid = split
    dls = tensor_dataloaders(train, valid, bs=64)
    model = SparseDotBias(len(dls.classes["user"]), len(dls.classes["item"]), 4, mean=3.5)
    before = model.user_factors.weight.detach().cpu().clone()  # fit moves it to dls.device
    learn = Learner(dls, model, loss_func=MSELossFlat(), cbs=[RowL2(0.1, 0.01)],
                    opt_func=functools.partial(OptimWrapper, opt=torch.optim.SparseAdam))
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-2)
    changed = (model.user_factors.weight.detach().cpu() != before).any(dim=1)
    assert not changed[0], "the #na# row is never looked up in training"
    # one epoch looks up every training user once or more, and no one else (user 999 is
    # in the validation set only): exactly those rows may move under SparseAdam
    position = {user: row for row, user in enumerate(dls.classes["user"])}
    trained = sorted(position[u] for u in train["user"].unique())
    assert changed.nonzero().view(-1).tolist() == trained
    assert not changed[position[999]], "a validation-only user's row must not move"


@pytest.mark.parametrize("training", [True, False])
def test_row_l2_adds_the_penalty_only_in_training(training):
    model = SparseDotBias(3, 3, 2, mean=0.0)
    with torch.no_grad():
        model.user_factors.weight.fill_(1.0)
    callback = RowL2(reg=0.5, reg_bias=0.0)
    learn = type("FakeLearner", (), {})()
    learn.model, learn.xb, learn.loss_grad, learn.training = model, (torch.tensor([[1, 1]]),), \
        torch.tensor(1.0), training
    callback.learn = learn
    callback.after_loss()
    item = model.item_factors.weight[1].pow(2).sum().item()
    # user row 1 is (1, 1): |p|^2 = 2; validation losses must stay the plain MSE
    expected = 1.0 + 0.5 * (2.0 + item) if training else 1.0
    assert learn.loss_grad.item() == pytest.approx(expected)


def test_loaders_name_the_split_with_bad_input(split):
    train, valid = split
    with pytest.raises(ValueError, match="^valid: .*lacks column"):
        tensor_dataloaders(train, valid.drop(columns="rating"))
    with pytest.raises(ValueError, match="^train: .*lacks column"):
        collab_dataloaders(train.drop(columns="rating"), valid)


# -- devices: env.device() unless the caller says otherwise -------------------------------------
@pytest.fixture
def gpu_machine(monkeypatch):
    """Pretend CUDA is present, for cfcourse.env and for fastai's own default device."""
    import fastai.data.core

    monkeypatch.setattr(env, "_cuda_available", lambda: True)
    monkeypatch.setattr(fastai.data.core, "default_device", lambda *a, **k: torch.device("cuda"))


def test_collab_loaders_stay_on_the_cpu_at_ci_scale_on_a_gpu_machine(split, gpu_machine,
                                                                      monkeypatch):
    train, valid = split
    monkeypatch.setenv("CFCOURSE_SCALE", "ci")
    dls = collab_dataloaders(train, valid, bs=64)
    assert dls.device == torch.device("cpu"), "fastai alone would pick the GPU it sees"
    assert dls.train.device == dls.valid.device == torch.device("cpu")
    monkeypatch.setenv("CFCOURSE_SCALE", "gpu")
    assert collab_dataloaders(train, valid, bs=64).device == torch.device("cuda")


def test_tensor_loaders_follow_env_device(split, monkeypatch):
    train, valid = split
    monkeypatch.setattr(env, "device", lambda: torch.device("meta"))  # any device but the CPU
    dls = tensor_dataloaders(train, valid, bs=128)
    assert dls.device == torch.device("meta")
    assert {dls.train.x.device.type, dls.train.y.device.type, dls.valid.x.device.type} == {"meta"}
    xb, yb = next(iter(dls.train))
    assert xb.device.type == yb.device.type == "meta", "shuffled batches on the same device"


def test_tensor_loaders_stay_on_the_cpu_at_ci_scale_on_a_gpu_machine(split, gpu_machine,
                                                                      monkeypatch):
    train, valid = split
    monkeypatch.setenv("CFCOURSE_SCALE", "ci")
    dls = tensor_dataloaders(train, valid, bs=128)
    assert dls.device == dls.train.x.device == torch.device("cpu")


@pytest.mark.parametrize("make", [collab_dataloaders, tensor_dataloaders])
def test_a_device_passed_by_the_caller_wins(split, monkeypatch, make):
    train, valid = split
    monkeypatch.setattr(env, "device", lambda: torch.device("meta"))
    dls = make(train, valid, bs=128, device="cpu")
    assert dls.device == dls.train.device == torch.device("cpu")
    xb, _ = next(iter(dls.train))
    assert xb.device == torch.device("cpu")

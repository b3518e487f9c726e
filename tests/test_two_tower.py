"""The two-tower model: the in-batch softmax loss by hand, and cold users from features."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from cfcourse.models.two_tower import TwoTowerModel, in_batch_softmax_loss


def test_in_batch_loss_by_hand():
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    # logits u v^T = [[2, 1], [0, 1]]; row 0 wants column 0, row 1 column 1
    hand = (-math.log(math.exp(2) / (math.exp(2) + math.exp(1)))
            - math.log(math.exp(1) / (math.exp(0) + math.exp(1)))) / 2
    assert in_batch_softmax_loss(u, v).item() == pytest.approx(hand, rel=1e-6)
    # temperature 0.5 doubles every logit
    hand_t = (-math.log(math.exp(4) / (math.exp(4) + math.exp(2)))
              - math.log(math.exp(2) / (math.exp(0) + math.exp(2)))) / 2
    assert in_batch_softmax_loss(u, v, temperature=0.5).item() == pytest.approx(hand_t, rel=1e-6)


def test_logq_correction_by_hand():
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    log_q = torch.log(torch.tensor([0.75, 0.25]))  # column 0 is the popular item
    a, b = math.log(0.75), math.log(0.25)
    # corrected logits [[2 - a, 1 - b], [0 - a, 1 - b]]
    row0 = -(2 - a) + math.log(math.exp(2 - a) + math.exp(1 - b))
    row1 = -(1 - b) + math.log(math.exp(-a) + math.exp(1 - b))
    assert in_batch_softmax_loss(u, v, log_q).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    # the correction lowers the loss of the row whose positive is the rare item (row 1)
    # and raises it for the popular one: it stops popular items being pushed down as negatives
    assert row1 < -1 + math.log(1 + math.exp(1))


def _grouped_world(n_users=60, seed=0):
    """Users with feature a=1 take items 0-4, others items 5-9: features decide everything."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n_users)
    rows = [(u, int(rng.integers(0, 5)) + 5 * (1 - a[u])) for u in range(n_users) for _ in range(8)]
    frame = pd.DataFrame(rows, columns=["user", "item"]).drop_duplicates()
    users = pd.DataFrame({"a": a.astype(float), "b": 1.0 - a}, index=range(n_users))
    items = pd.DataFrame({"g": [1.0] * 5 + [0.0] * 5}, index=range(10))
    return frame, users, items


def test_new_users_are_served_from_their_features():
    frame, users, items = _grouped_world()
    model = TwoTowerModel(n_factors=8, hidden=16, epochs=30, batch_size=64, lr=1e-2,
                          id_dropout=0.5).fit(frame, users, items)
    assert model.losses_[-1] < model.losses_[0], "training should lower the in-batch loss"
    newcomers = pd.DataFrame({"a": [1.0, 0.0], "b": [0.0, 1.0]}, index=["new1", "new0"])
    lists = model.recommend_new(newcomers, k=5)
    assert set(lists["new1"]) == {0, 1, 2, 3, 4}, lists
    assert set(lists["new0"]) == {5, 6, 7, 8, 9}, lists
    # the known-user path of TopKModel works too and agrees in shape
    assert model.scores([0, 1]).shape == (2, 10)


def test_item_bias_is_one_more_coordinate_and_starts_at_popularity():
    frame, users, items = _grouped_world()
    frame = pd.concat([frame, pd.DataFrame({"user": range(40), "item": 3})]).drop_duplicates()
    untrained = TwoTowerModel(n_factors=4, hidden=0, normalize=False, temperature=1.0,
                              item_bias=True, id_dropout=1.0, epochs=1, lr=1e-12,
                              random_state=1).fit(frame, users, items)
    # the user tower starts at zero, so before learning every newcomer gets popularity
    counts = frame["item"].value_counts()
    newcomer = pd.DataFrame({"a": [0.0], "b": [1.0]}, index=["n"])
    assert untrained.recommend_new(newcomer, k=1)["n"] == [counts.idxmax()], (
        "with the user tower at zero, the score is the bias log q: the most popular item")
    model = TwoTowerModel(n_factors=4, hidden=0, normalize=False, temperature=0.5,
                          item_bias=True, id_dropout=0.5, epochs=5, random_state=1
                          ).fit(frame, users, items)
    assert model.item_factors_.shape == (10, 5) and np.all(model.user_factors_[:, -1] == 1.0)
    with torch.no_grad():  # the folded score equals the towers' u . v / tau + b
        u = model.user_tower_(torch.arange(1, 61), model._user_x).numpy()
        v = model.item_tower_(torch.arange(1, 11), model._item_x).numpy()
        by_hand = u @ v.T / 0.5 + model.bias_.numpy()[None, :]
    assert np.allclose(model.scores(list(range(60))), by_hand, atol=1e-5)


def test_linear_biased_towers_serve_newcomers_from_features():
    frame, users, items = _grouped_world()
    model = TwoTowerModel(n_factors=8, hidden=0, normalize=False, temperature=1.0,
                          item_bias=True, id_dropout=1.0, epochs=30, batch_size=64, lr=1e-2
                          ).fit(frame, users, items)
    newcomers = pd.DataFrame({"a": [1.0, 0.0], "b": [0.0, 1.0]}, index=["new1", "new0"])
    lists = model.recommend_new(newcomers, k=5)
    assert set(lists["new1"]) == {0, 1, 2, 3, 4}, lists
    assert set(lists["new0"]) == {5, 6, 7, 8, 9}, lists


def test_same_seed_same_model_and_clear_errors():
    frame, users, items = _grouped_world(n_users=20)
    one = TwoTowerModel(n_factors=4, epochs=2, random_state=3).fit(frame, users, items)
    two = TwoTowerModel(n_factors=4, epochs=2, random_state=3).fit(frame, users, items)
    assert np.allclose(one.item_factors_, two.item_factors_)
    assert np.allclose(np.linalg.norm(one.item_factors_, axis=1), 1.0), "towers output unit vectors"
    with pytest.raises(KeyError, match="no row in user_features"):
        TwoTowerModel(epochs=1).fit(frame, users.iloc[:5], items)
    with pytest.raises(ValueError, match="other columns"):
        one.new_user_factors(users[["b", "a"]])


def test_cold_user_split_holds_out_whole_users():
    from cfcourse.data.split import cold_user_split

    frame = pd.DataFrame({"user": [1, 1, 2, 2, 3, 4, 5, 5], "item": [1, 2, 1, 3, 2, 4, 1, 5]})
    train, test = cold_user_split(frame, frac=0.4, seed=1)
    assert not set(train["user"]) & set(test["user"]), "a held-out user must have nothing in train"
    assert test["user"].nunique() == 2, "0.4 of 5 users is 2 users"
    assert len(train) + len(test) == len(frame)
    again = cold_user_split(frame, frac=0.4, seed=1)[1]
    assert again.equals(test), "the same seed must give the same split"
    with pytest.raises(ValueError, match="frac"):
        cold_user_split(frame, frac=1.0)

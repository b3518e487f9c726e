"""DotWorld: planted truth by hand, nested samples, disjoint test pairs, the distance to truth."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cfcourse.data.dot_world import DotWorld, dot_world, frame_tensors, rmse_to_truth
from cfcourse.models.dot_product import DotProduct
from cfcourse.train import fit_plain


def hand_world() -> DotWorld:
    # 2 users x 3 items, 1 factor: truth[u, i] = p_u * q_i
    p, q = np.array([[1.0], [-2.0]]), np.array([[0.5], [1.0], [3.0]])
    order = np.array([5, 0, 1, 2, 3, 4])  # key = user * 3 + item; key 5 = (1, 2) is the test pair
    eps = np.array([0.0, 0.1, -0.1, 0.2, 0.0, 0.3])
    return DotWorld(p, q, 0.1, 1, order, eps)


def test_truth_and_ratings_by_hand():
    world = hand_world()
    assert world.truth([0, 1], [2, 0]).tolist() == [3.0, -1.0]
    frame = world.ratings(3)  # keys 0, 1, 2: user 0 with items 0, 1, 2
    assert frame[["user", "item"]].values.tolist() == [[0, 0], [0, 1], [0, 2]]
    assert frame["rating"].tolist() == pytest.approx([0.5 + 0.1, 1.0 - 0.1, 3.0 + 0.2])
    test = world.test_pairs()
    assert test[["user", "item"]].values.tolist() == [[1, 2]]
    assert test["truth"].tolist() == [-6.0]
    assert world.max_ratings == 5
    with pytest.raises(ValueError, match="between 1 and 5"):
        world.ratings(6)


def test_samples_are_nested_and_never_hold_a_test_pair():
    world = dot_world(n_users=40, n_items=30, n_factors=3, n_test=200, seed=1)
    small, large = world.ratings(300), world.ratings(900)
    assert small.equals(large.iloc[:300]), "a larger sample contains the smaller one, ratings too"
    keys = lambda f: set(f["user"] * 30 + f["item"])
    assert not keys(large) & keys(world.test_pairs()), "test pairs are never trained on"
    assert len(keys(large)) == 900, "each pair at most once"


def test_scale_noise_and_seed():
    world = dot_world(n_users=300, n_items=300, n_factors=16, noise=0.5, n_test=1000, seed=0)
    sample = world.ratings(20_000)
    truth = world.truth(sample["user"], sample["item"])
    assert 0.9 < truth.std() < 1.1, "planted scores have a standard deviation of about 1"
    assert 0.48 < (sample["rating"] - truth).std() < 0.52, "noise has the requested spread"
    again = dot_world(n_users=300, n_items=300, n_factors=16, noise=0.5, n_test=1000, seed=0)
    assert again.ratings(50).equals(world.ratings(50))
    other = dot_world(n_users=300, n_items=300, n_factors=16, noise=0.5, n_test=1000, seed=1)
    assert not other.ratings(50).equals(world.ratings(50))


def test_bad_sizes():
    with pytest.raises(ValueError, match="at least 1"):
        dot_world(n_users=0)
    with pytest.raises(ValueError, match="in memory"):
        dot_world(n_users=10_000, n_items=10_000)
    with pytest.raises(ValueError, match="n_test"):
        dot_world(n_users=5, n_items=5, n_test=25)
    with pytest.raises(ValueError, match="noise"):
        dot_world(n_users=5, n_items=5, n_test=5, noise=-1)


class Planted(nn.Module):
    """A model that predicts the truth plus a constant offset."""

    def __init__(self, world, offset):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(world.user_factors))
        self.q = nn.Parameter(torch.tensor(world.item_factors))
        self.offset = offset

    def forward(self, x):
        return (self.p[x[:, 0]] * self.q[x[:, 1]]).sum(1) + self.offset


def test_rmse_to_truth_is_the_distance_to_the_planted_scores():
    world = dot_world(n_users=20, n_items=20, n_factors=2, n_test=100, seed=0)
    assert rmse_to_truth(Planted(world, 0.0), world) == pytest.approx(0.0, abs=1e-12)
    assert rmse_to_truth(Planted(world, 0.25), world) == pytest.approx(0.25)
    pairs = pd.DataFrame({"user": [0, 1], "item": [3, 4]})
    assert rmse_to_truth(Planted(world, -1.0), world, pairs) == pytest.approx(1.0)


def test_frame_tensors():
    x, y = frame_tensors(pd.DataFrame({"user": [2, 0], "item": [1, 3], "rating": [4.5, -1.0]}))
    assert x.dtype == torch.int64 and x.tolist() == [[2, 1], [0, 3]]
    assert y.dtype == torch.float32 and y.tolist() == [4.5, -1.0]
    assert frame_tensors(pd.DataFrame({"user": [1], "item": [1]}))[1] is None


def test_a_fitted_dot_product_gets_close_to_the_truth():
    world = dot_world(n_users=50, n_items=50, n_factors=2, noise=0.1, n_test=300, seed=0)
    x, y = frame_tensors(world.ratings(1500))
    torch.manual_seed(0)
    model = DotProduct(50, 50, n_factors=2)
    before = rmse_to_truth(model, world)
    fit_plain(model, x, y, epochs=60, lr=0.03, bs=100, optimizer="adam", seed=0)
    after = rmse_to_truth(model, world)
    spread = world.test_pairs()["truth"].std()
    assert before == pytest.approx(spread, rel=0.05), "untrained, it predicts about 0"
    assert after < 0.3 * before, f"a dot product learns a planted dot product ({after:.3f})"

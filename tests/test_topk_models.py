"""Top-k models: hand-computed oracles for each, and one conformance test for all."""

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from cfcourse.data.split import leave_last_out
from cfcourse.data.synthetic import planted_interactions
from cfcourse.metrics import evaluate_ranking
from cfcourse.models.bpr import BPR, bpr_gradients, bpr_loss
from cfcourse.models.ease import EASE, ease_weights
from cfcourse.models.ials import ImplicitALS, als_sweep
from cfcourse.models.item_knn import ItemKNN
from cfcourse.models.neural_scorer import PairwiseRanker, PairwiseScorer
from cfcourse.models.popularity import Popularity
from cfcourse.models.topk import TopKModel, interaction_matrix

# users 1: {a, b}; 2: {a, b, c}; 3: {c}; 4: {a}
TINY = pd.DataFrame({"user": [1, 1, 2, 2, 2, 3, 4], "item": ["a", "b", "a", "b", "c", "c", "a"]})

MODELS = [Popularity(), ItemKNN(n_neighbors=10), EASE(reg=1.0),
          ImplicitALS(n_factors=2, n_iter=3), BPR(n_factors=2, n_iter=3),
          PairwiseRanker("dot", n_factors=2, n_iter=2), PairwiseRanker("mlp", n_factors=2, n_iter=2)]


def test_popularity_counts_users_per_item():
    model = Popularity().fit(TINY)
    assert model.counts_.tolist() == [3.0, 2.0, 2.0]  # a: users 1, 2, 4; b: 1, 2; c: 2, 3
    assert model.recommend([3], k=2, exclude=TINY) == {3: ["a", "b"]}


def test_item_knn_cosine_by_hand():
    model = ItemKNN(n_neighbors=10).fit(TINY)
    sim = model.similarity_.toarray()
    # C_ab = 2, C_aa = 3, C_bb = 2 -> 2 / sqrt(6); C_ac = 1, C_cc = 2 -> 1 / sqrt(6); C_bc = 1 / 2
    expected = np.array([[0, 2 / 6**0.5, 1 / 6**0.5], [2 / 6**0.5, 0, 0.5], [1 / 6**0.5, 0.5, 0]])
    np.testing.assert_allclose(sim, expected)
    np.testing.assert_allclose(model.scores([4]), [[0, 2 / 6**0.5, 1 / 6**0.5]])  # user 4 has a


def test_item_knn_keeps_only_n_neighbors():
    sim = ItemKNN(n_neighbors=1).fit(TINY).similarity_.toarray()
    assert ((sim > 0).sum(axis=0) == 1).all(), "each column should keep exactly one neighbour"
    assert sim[1, 0] == pytest.approx(2 / 6**0.5)  # a's nearest is b


def test_ease_equals_constrained_least_squares():
    rng = np.random.default_rng(0)
    x = (rng.random((30, 6)) < 0.4).astype(float)
    reg = 2.0
    weights = ease_weights(x.T @ x, reg)
    for j in range(6):  # column j regressed on the other columns, ridge reg, no self-weight
        others = [i for i in range(6) if i != j]
        a = x[:, others]
        direct = np.linalg.solve(a.T @ a + reg * np.eye(5), a.T @ x[:, j])
        np.testing.assert_allclose(weights[others, j], direct, atol=1e-10)
        assert weights[j, j] == 0


def test_ease_refuses_huge_catalogues():
    with pytest.raises(ValueError, match="Gram matrix"):
        EASE(max_items=2).fit(TINY)


def test_ials_user_update_is_the_weighted_least_squares_solution():
    rng = np.random.default_rng(1)
    r = (rng.random((5, 7)) < 0.4).astype(float)
    r[:, 0] = 1.0  # every user has at least one item
    y = rng.normal(size=(7, 3))
    alpha, reg = 4.0, 0.3
    new = als_sweep(sp.csr_matrix(alpha * r), y, reg)
    for u in range(5):  # stack sqrt(c) Y over sqrt(reg) I: plain least squares, no trick
        w = np.sqrt(1 + alpha * r[u])
        design = np.vstack([w[:, None] * y, np.sqrt(reg) * np.eye(3)])
        target = np.concatenate([w * r[u], np.zeros(3)])
        direct, *_ = np.linalg.lstsq(design, target, rcond=None)
        np.testing.assert_allclose(new[u], direct, atol=1e-10)


def test_ials_loss_never_increases():
    world = planted_interactions(n_users=60, n_items=40, n_interactions=600, seed=0)
    losses = [ImplicitALS(n_factors=4, n_iter=n, alpha=5.0).fit(world.interactions)
              .loss(world.interactions) for n in (1, 2, 4, 8)]
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(losses)), losses


def test_bpr_gradient_matches_autograd():
    gen = torch.Generator().manual_seed(0)
    args = [torch.randn(5, 3, generator=gen, dtype=torch.float64) for _ in range(3)]
    args += [torch.randn(5, generator=gen, dtype=torch.float64) for _ in range(2)]
    leaves = [a.clone().requires_grad_() for a in args]
    bpr_loss(*leaves, reg=0.2).backward()
    for mine, leaf in zip(bpr_gradients(*args, reg=0.2), leaves):
        torch.testing.assert_close(mine, leaf.grad)


def test_bpr_negatives_avoid_the_users_items():
    model = BPR(n_iter=1).fit(TINY)
    keys = np.sort(interaction_matrix(TINY, model.users_, model.items_).tocoo().row * 3
                   + interaction_matrix(TINY, model.users_, model.items_).tocoo().col)
    users = np.repeat([0, 2, 3], 50)  # user 2 (position 1) has every item: nothing to draw
    items = model._negatives(users, keys, np.random.default_rng(0))
    assert not np.isin(users * 3 + items, keys).any()


@pytest.mark.parametrize("model", MODELS, ids=lambda m: type(m).__name__)
def test_every_model_honours_the_topk_interface(model):
    model.fit(TINY)
    assert isinstance(model, TopKModel)
    assert model.scores([1, 3]).shape == (2, 3)
    lists = model.recommend([1, 2, 3, 4], k=2, exclude=TINY)
    assert lists[2] == []  # user 2 already has every item
    assert len(lists[3]) == 2 and "c" not in lists[3]
    scores = model.scores([3])[0]
    ranked = model.items_.encode(lists[3])
    assert scores[ranked[0]] >= scores[ranked[1]], "lists must be best first"
    with pytest.raises(KeyError, match="not in the training data"):
        model.recommend([99])


@pytest.mark.parametrize("model", [ItemKNN(n_neighbors=50), EASE(reg=50.0),
                                   ImplicitALS(n_factors=8, n_iter=5, reg=1.0, alpha=5.0),
                                   BPR(n_factors=8, n_iter=15, lr=0.05)],
                         ids=lambda m: type(m).__name__)
def test_personal_models_beat_popularity_on_planted_tastes(model):
    world = planted_interactions(n_users=300, n_items=200, n_interactions=6000, signal=3.0,
                                 seed=0)
    train, test = leave_last_out(world.interactions, n=2, min_history=3)
    test = test.assign(rating=1.0)

    def ndcg(m):
        lists = m.fit(train).recommend(test["user"].unique(), k=10, exclude=train)
        return evaluate_ranking(lists, test, k=10, threshold=1.0)["ndcg"]

    ours, popular = ndcg(model), ndcg(Popularity())
    assert ours > popular + 0.02, f"{type(model).__name__} {ours:.3f} vs popularity {popular:.3f}"


def test_pairwise_scorers_by_hand():
    torch.manual_seed(0)
    dot = PairwiseScorer(3, 4, n_factors=2, scorer="dot")
    with torch.no_grad():
        dot.item_bias.weight[:, 0] = torch.tensor([0.5, -1.0, 0.0, 2.0])
    users, items = torch.tensor([0, 2]), torch.tensor([1, 3])
    expected = (dot.user.weight[users] * dot.item.weight[items]).sum(1) + torch.tensor([-1.0, 2.0])
    torch.testing.assert_close(dot(users, items), expected)
    net = PairwiseScorer(3, 4, n_factors=2, scorer="mlp", hidden=(5,))
    pair = torch.cat([net.user.weight[users], net.item.weight[items]], dim=1)  # (2, 4)
    torch.testing.assert_close(net(users, items), net.net(pair)[:, 0])
    with pytest.raises(ValueError, match="'dot' or 'mlp'"):
        PairwiseScorer(3, 4, 2, scorer="cosine")

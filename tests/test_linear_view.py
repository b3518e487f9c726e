"""The linear-network view equals the embedding models, in values and in gradients."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from cfcourse.models.dot_product import DotProduct, DotProductBias, DotProductBiasParams
from cfcourse.models.linear_view import (
    LinearNetwork,
    LinearNetworkBias,
    from_dot_product,
    nuclear_norm,
    shrink_singular_values,
    soft_impute,
    to_dot_product,
)
from cfcourse.train import fit_plain

X = torch.tensor([[0, 0], [1, 2], [2, 1], [0, 3], [2, 3]])  # (user, item) rows


def test_by_hand():
    # P = [[1, 2], [0, 1], [3, -1]], Q = [[1, 1], [2, 0], [0.5, 4], [-1, 1]]:
    # user 0 scores Q p_0 = [3, 2, 8.5, 1] on the four items.
    net = LinearNetwork(3, 4, n_factors=2)
    with torch.no_grad():
        net.hidden.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 1.0], [3.0, -1.0]]).T)
        net.output.weight.copy_(torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.5, 4.0], [-1.0, 1.0]]))
    assert net.scores(torch.tensor([[1.0, 0.0, 0.0]])).tolist() == [[3.0, 2.0, 8.5, 1.0]]
    assert net(X).tolist() == [3.0, 4.0, 6.0, 1.0, -4.0]


def test_by_hand_with_biases():
    net = LinearNetworkBias(2, 3, n_factors=1, y_range=None)
    with torch.no_grad():
        net.hidden.weight.copy_(torch.tensor([[2.0, -1.0]]))  # p_0 = 2, p_1 = -1
        net.output.weight.copy_(torch.tensor([[1.0], [0.0], [3.0]]))  # q = 1, 0, 3
        net.output.bias.copy_(torch.tensor([0.5, 1.0, -1.0]))  # item biases
        net.user_bias.weight.copy_(torch.tensor([[10.0, 20.0]]))  # user biases
    expected = [[12.5, 11.0, 15.0], [19.5, 21.0, 16.0]]  # p_u q_i + b_i + b_u
    assert net.scores(torch.eye(2)).tolist() == expected


@pytest.mark.parametrize("y_range", [None, (0, 5.5)])
def test_linear_network_equals_dot_product_both_ways(y_range):
    torch.manual_seed(0)
    dot = DotProduct(3, 4, n_factors=5, y_range=y_range)
    net = from_dot_product(dot)
    assert type(net) is LinearNetwork and net.y_range == y_range
    assert torch.allclose(net(X), dot(X), atol=1e-6)
    back = to_dot_product(LinearNetwork(3, 4, n_factors=5, y_range=y_range))
    assert type(back) is DotProduct
    assert torch.allclose(back(X), from_dot_product(back)(X), atol=1e-6)


def test_bias_network_equals_dot_product_bias_both_ways():
    torch.manual_seed(1)
    dot = DotProductBias(3, 4, n_factors=5)
    with torch.no_grad():
        for p in dot.parameters():
            p.normal_(0, 1.0)  # large enough that every term matters
    net = from_dot_product(dot)
    assert type(net) is LinearNetworkBias
    assert torch.allclose(net(X), dot(X), atol=1e-6)
    back = to_dot_product(net)
    assert type(back) is DotProductBias
    for a, b in zip(back.parameters(), dot.parameters()):
        assert torch.equal(a, b)


def test_scores_of_every_user_is_the_rating_matrix():
    torch.manual_seed(2)
    dot = DotProduct(6, 7, n_factors=3)
    net = from_dot_product(dot)
    P, Q = dot.user_factors.weight, dot.item_factors.weight
    assert torch.allclose(net.scores(torch.eye(6)), P @ Q.T, atol=1e-6)


def test_shapes_and_y_range():
    net = LinearNetworkBias(10, 20, n_factors=4, y_range=(0, 5.5))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1000)
    out = net(torch.tensor([[0, 0], [9, 19], [3, 7]]))
    assert out.shape == (3,) and (out >= 0).all() and (out <= 5.5).all()
    assert net.hidden.weight.shape == (4, 10) and net.output.weight.shape == (20, 4)
    assert net.output.bias.shape == (20,) and net.user_bias.weight.shape == (1, 10)
    assert net.scores(F.one_hot(torch.tensor([1, 2]), 10).float()).shape == (2, 20)


@pytest.mark.parametrize("cls", [DotProduct, DotProductBias])
def test_gradients_are_the_same(cls):
    torch.manual_seed(3)
    dot = cls(3, 4, n_factors=5)
    net = from_dot_product(dot)
    y = torch.tensor([4.0, 3.0, 5.0, 1.0, 2.0])
    F.mse_loss(dot(X), y).backward()
    F.mse_loss(net(X), y).backward()
    assert torch.allclose(net.hidden.weight.grad.T, dot.user_factors.weight.grad, atol=1e-7)
    assert torch.allclose(net.output.weight.grad, dot.item_factors.weight.grad, atol=1e-7)
    if cls is DotProductBias:
        assert torch.allclose(net.output.bias.grad, dot.item_bias.weight.grad[:, 0], atol=1e-7)
        assert torch.allclose(net.user_bias.weight.grad.T, dot.user_bias.weight.grad, atol=1e-7)
    # Item 0 is rated once (row 0 of X): its weights learn from that rating alone, with the
    # weight 1/len(X) that the mean over the batch gives it.
    full = net.output.weight.grad[0].clone()
    net.zero_grad()
    F.mse_loss(net(X[:1]), y[:1]).backward()
    assert torch.allclose(full, net.output.weight.grad[0] / len(X), atol=1e-7)


def test_training_follows_the_embedding_model():
    g = torch.Generator().manual_seed(4)
    x = torch.stack([torch.randint(0, 8, (200,), generator=g),
                     torch.randint(0, 9, (200,), generator=g)], dim=1)
    y = torch.randint(1, 6, (200,), generator=g).float()
    torch.manual_seed(4)
    dot = DotProductBias(8, 9, n_factors=3)
    net = from_dot_product(dot)
    a = fit_plain(dot, x, y, epochs=5, lr=0.05, bs=32, optimizer="adam", seed=0)
    b = fit_plain(net, x, y, epochs=5, lr=0.05, bs=32, optimizer="adam", seed=0)
    assert a[-1] < a[0]
    assert torch.allclose(torch.tensor(a), torch.tensor(b), rtol=1e-4)
    assert torch.allclose(dot(x), net(x), atol=1e-4)


def test_rejects_other_models():
    with pytest.raises(TypeError, match="DotProduct"):
        from_dot_product(DotProductBiasParams(3, 4, n_factors=2))
    with pytest.raises(TypeError, match="LinearNetwork"):
        to_dot_product(DotProduct(3, 4, n_factors=2))


# -- the nuclear norm and Soft-Impute ----------------------------------------------------------
def test_nuclear_norm_by_hand_and_as_the_cheapest_factorisation():
    assert nuclear_norm(np.array([[3.0, 0.0], [0.0, -4.0]])) == pytest.approx(7.0)
    rng = np.random.default_rng(0)
    p, q = rng.normal(size=(6, 3)), rng.normal(size=(5, 3))
    w = p @ q.T
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    balanced_p, balanced_q = u * np.sqrt(s), vt.T * np.sqrt(s)
    assert np.allclose(balanced_p @ balanced_q.T, w)
    half_l2 = lambda a, b: ((a**2).sum() + (b**2).sum()) / 2
    assert half_l2(balanced_p, balanced_q) == pytest.approx(nuclear_norm(w))
    for c in (0.3, 1.0, 3.0):  # any other factorisation pays more
        assert half_l2(p * c, q / c) >= nuclear_norm(w) - 1e-9


def test_shrink_singular_values_by_hand():
    # diag(3, 1) rotated: singular values 3 and 1 -> 2 and 0, same singular vectors.
    rot = np.array([[0.6, -0.8], [0.8, 0.6]])
    w = rot @ np.diag([3.0, 1.0]) @ rot.T
    expected = rot @ np.diag([2.0, 0.0]) @ rot.T
    assert np.allclose(shrink_singular_values(w, 1.0), expected)
    assert np.allclose(shrink_singular_values(w, 0.0), w)
    assert np.allclose(shrink_singular_values(w, 5.0), 0.0)
    with pytest.raises(ValueError, match="lam"):
        shrink_singular_values(w, -1.0)


def test_soft_impute_fully_observed_is_one_shrink():
    w = np.random.default_rng(1).normal(size=(5, 4))
    filled = soft_impute(w, np.ones_like(w, dtype=bool), lam=0.5, n_iter=3)
    assert np.allclose(filled, shrink_singular_values(w, 0.5))


def test_soft_impute_without_penalty_leaves_holes_at_zero():
    w = np.arange(12.0).reshape(3, 4)
    mask = np.eye(3, 4, dtype=bool)
    filled = soft_impute(w, mask, lam=0.0, n_iter=10)
    assert np.allclose(filled[mask], w[mask]) and np.allclose(filled[~mask], 0.0)


def test_soft_impute_is_a_fixed_point_and_recovers_a_planted_low_rank_matrix():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=(40, 2)) @ rng.normal(size=(30, 2)).T  # rank 2
    mask = rng.random(truth.shape) < 0.5
    filled = soft_impute(truth, mask, lam=1.0, n_iter=300)
    again = shrink_singular_values(np.where(mask, truth, filled), 1.0)
    assert np.abs(again - filled).max() < 1e-6  # converged: one more step changes nothing
    held_out = np.sqrt(((filled - truth)[~mask] ** 2).mean())
    assert held_out < 0.2 * truth[~mask].std()  # the holes are filled, not left at 0
    assert np.linalg.matrix_rank(filled, tol=1e-6) == 2  # the penalty found the rank


def test_soft_impute_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        soft_impute(np.zeros((2, 3)), np.ones((3, 2), dtype=bool), lam=1.0)
    with pytest.raises(ValueError, match="finite"):
        soft_impute(np.array([[np.nan, 1.0]]), np.array([[True, True]]), lam=1.0)
    with pytest.raises(ValueError, match="n_iter"):
        soft_impute(np.ones((2, 2)), np.ones((2, 2), dtype=bool), lam=1.0, n_iter=0)

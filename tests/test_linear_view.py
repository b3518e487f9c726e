"""The linear-network view equals the embedding models, in values and in gradients."""

import pytest
import torch
from torch.nn import functional as F

from cfcourse.linear_view import (
    LinearNetwork,
    LinearNetworkBias,
    from_dot_product,
    to_dot_product,
)
from cfcourse.models import DotProduct, DotProductBias, DotProductBiasParams
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
    # Item 0's column only gets a gradient from the one rating of item 0.
    assert net.output.weight.grad[1:].abs().sum() > 0
    if cls is DotProductBias:
        assert torch.allclose(net.output.bias.grad, dot.item_bias.weight.grad[:, 0], atol=1e-7)
        assert torch.allclose(net.user_bias.weight.grad.T, dot.user_bias.weight.grad, atol=1e-7)


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

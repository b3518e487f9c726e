"""Bayesian MF: the Gibbs conditionals against closed forms, and the sampler on planted data."""

import numpy as np
import pandas as pd
import pytest
import torch

from cfcourse.models.bayesian import BayesianMF, conditional


@pytest.fixture
def tiny():
    rng = np.random.default_rng(0)
    design = np.column_stack([np.ones(6), rng.normal(size=(6, 2))])
    target = rng.normal(size=6)
    return design, target, np.array([0.1, -0.2, 0.3]), np.array([2.0, 0.5, 1.5]), 3.0


def test_conditional_mean_is_the_ridge_solution(tiny):
    design, target, m, lam, alpha = tiny
    mean, _ = conditional(design, target, m, lam, alpha)
    # Ridge as ordinary least squares on an augmented system.
    a = np.vstack([np.sqrt(alpha) * design, np.diag(np.sqrt(lam))])
    b = np.concatenate([np.sqrt(alpha) * target, np.sqrt(lam) * m])
    ridge, *_ = np.linalg.lstsq(a, b, rcond=None)
    np.testing.assert_allclose(mean, ridge, rtol=1e-10)


def test_conditional_covariance_is_the_inverse_hessian(tiny):
    design, target, m, lam, alpha = tiny
    _, cov = conditional(design, target, m, lam, alpha)
    x, y, mt, lt = (torch.tensor(v) for v in (design, target, m, lam))

    def neg_log_posterior(w):
        return 0.5 * alpha * ((y - x @ w) ** 2).sum() + 0.5 * (lt * (w - mt) ** 2).sum()

    hessian = torch.autograd.functional.hessian(neg_log_posterior, torch.zeros(3, dtype=torch.float64))
    np.testing.assert_allclose(cov, np.linalg.inv(hessian.numpy()), rtol=1e-10)


def test_draws_of_rows_have_the_conditional_mean_and_covariance():
    rng = np.random.default_rng(1)
    n_items, d = 4, 3
    other = np.column_stack([rng.normal(size=n_items), rng.normal(size=(n_items, d - 1))])
    owner = np.array([0, 0, 0, 1, 1, 1, 1])            # two users
    item = np.array([0, 1, 2, 0, 1, 2, 3])
    target = rng.normal(size=len(owner))
    hyper = (np.array([0.0, 0.2, -0.1]), np.array([1.0, 2.0, 0.5]))
    # 10,000 copies of the two users in one call: each copy is an independent draw.
    copies = 10000
    owners = (owner[None, :] + 2 * np.arange(copies)[:, None]).ravel()
    order = np.argsort(owners, kind="stable")
    segments = (order, np.searchsorted(owners[order], np.arange(2 * copies + 1)))
    drawn = BayesianMF(n_factors=d - 1)._draw_rows(
        rng, np.zeros((2 * copies, d)), np.tile(other[item], (copies, 1)), np.tile(target, copies),
        segments, hyper, 2.0)
    draws = drawn.reshape(copies, 2, d)
    for user in (0, 1):
        rows = owner == user
        design = np.column_stack([np.ones(rows.sum()), other[item[rows], 1:]])
        mean, cov = conditional(design, target[rows] - other[item[rows], 0], *hyper, 2.0)
        np.testing.assert_allclose(draws[:, user].mean(0), mean, atol=0.02)
        np.testing.assert_allclose(np.cov(draws[:, user].T), cov, atol=0.02)


def test_hyperparameter_draws_follow_the_normal_gamma_posterior():
    rng = np.random.default_rng(2)
    rows = rng.normal(1.5, 0.5, size=(400, 2))           # precision 4, mean 1.5
    draws = [BayesianMF._draw_hyper(rng, rows) for _ in range(2000)]
    means = np.array([m for m, _ in draws])
    precisions = np.array([p for _, p in draws])
    n, total = len(rows), rows.sum(0)
    ss = (rows**2).sum(0) - total**2 / (n + 1)
    np.testing.assert_allclose(precisions.mean(0), (1 + n / 2) / (1 + ss / 2), rtol=0.02)
    np.testing.assert_allclose(means.mean(0), total / (n + 1), atol=0.01)


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(3)
    n_users, n_items, k = 60, 40, 2
    p, q = rng.normal(size=(n_users, k)), rng.normal(size=(n_items, k))
    pairs = pd.DataFrame([(u, i) for u in range(n_users) for i in range(n_items)],
                         columns=["user", "item"]).sample(frac=0.5, random_state=0)
    truth = 3.0 + (p[pairs["user"]] * q[pairs["item"]]).sum(1)
    ratings = pairs.assign(truth=truth, rating=truth + rng.normal(0, 0.3, len(pairs)))
    return ratings.iloc[:900].reset_index(drop=True), ratings.iloc[900:].reset_index(drop=True)


def test_the_posterior_average_recovers_planted_ratings(planted):
    train, test = planted
    model = BayesianMF(n_factors=2, n_iter=60, burn_in=20, random_state=0).fit(train)
    averaged = np.sqrt(((model.predict(test) - test["truth"]) ** 2).mean())
    mean_only = np.sqrt(((train["rating"].mean() - test["truth"]) ** 2).mean())
    assert averaged < 0.4 * mean_only, "the sampler should learn the planted structure"
    # One sample alone is noisier than the average over samples.
    single = BayesianMF(n_factors=2, n_iter=21, burn_in=20, random_state=0).fit(train)
    assert averaged < np.sqrt(((single.predict(test) - test["truth"]) ** 2).mean())
    assert len(model.samples_) == 40 and len(model.trace_) == 60


def test_same_seed_same_model_and_row_order_does_not_matter(planted):
    train, test = planted
    a = BayesianMF(n_factors=2, n_iter=8, burn_in=2, random_state=5).fit(train)
    b = BayesianMF(n_factors=2, n_iter=8, burn_in=2, random_state=5).fit(train)
    np.testing.assert_array_equal(a.predict(test), b.predict(test))
    shuffled = test.sample(frac=1.0, random_state=1)
    np.testing.assert_allclose(a.predict(shuffled), a.predict(test)[shuffled.index])


def test_unknown_ids_and_bad_parameters(planted):
    train, _ = planted
    model = BayesianMF(n_factors=2, n_iter=5, burn_in=1).fit(train)
    new = pd.DataFrame({"user": [999, 0], "item": [0, 999]})
    with pytest.raises(KeyError, match="999"):
        model.predict(new)
    assert np.isfinite(model.predict(new, unknown="bias")).all()
    with pytest.raises(ValueError, match="not fitted"):
        BayesianMF().predict(new)
    with pytest.raises(ValueError, match="burn_in"):
        BayesianMF(n_iter=5, burn_in=5).fit(train)
    with pytest.raises(ValueError, match="n_factors"):
        BayesianMF(n_factors=0).fit(train)
    with pytest.raises(ValueError, match="no parameter"):
        BayesianMF().set_params(rank=3)
    assert BayesianMF().set_params(n_iter=7).get_params()["n_iter"] == 7

"""Bayesian MF: the Gibbs conditionals against closed forms, and the sampler on planted data."""

import numpy as np
import pandas as pd
import pytest
import torch

from cfcourse.models.bayesian import BayesianMF, _by_row, _draw_hyper, _draw_rows, conditional


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
    pattern, values = _by_row(owners, np.tile(item, copies), np.tile(target, copies),
                              2 * copies, n_items)
    drawn = _draw_rows(rng, other, pattern, values, hyper, 2.0)
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
    draws = [_draw_hyper(rng, rows) for _ in range(2000)]
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
    assert model.user_samples_.shape == (40, len(model.users_), 3) and len(model.trace_) == 60


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
    with pytest.raises(ValueError, match="unknown parameter"):
        BayesianMF().set_params(rank=3)
    assert BayesianMF().set_params(n_iter=7).get_params()["n_iter"] == 7


def test_the_conditional_draws_average_to_the_conjugate_posterior_mean():
    # Items fixed, hyperparameters and noise fixed: the user block alone is conjugate, so its
    # draws' average prediction must be the ridge (posterior-mean) prediction, x · mean.
    rng = np.random.default_rng(4)
    other = rng.normal(size=(5, 3))
    owner, item = np.zeros(5, dtype=int), np.arange(5)
    target = rng.normal(size=5)
    hyper = (np.zeros(3), np.array([1.0, 3.0, 3.0]))
    pattern, values = _by_row(owner, item, target, 1, 5)
    draws = np.concatenate([_draw_rows(rng, other, pattern, values, hyper, 4.0)
                            for _ in range(20000)])                    # (20000, 3)
    design = np.column_stack([np.ones(5), other[:, 1:]])
    mean, _ = conditional(design, target - other[:, 0], *hyper, 4.0)
    np.testing.assert_allclose((draws @ design.T).mean(0), design @ mean, atol=0.01)


def test_predictions_average_scores_and_ignore_how_each_sample_is_rotated(planted):
    train, test = planted
    model = BayesianMF(n_factors=2, n_iter=12, burn_in=4, random_state=1).fit(train)
    per_sample = model.sample_predictions(test)
    assert per_sample.shape == (8, len(test))
    np.testing.assert_allclose(model.predict(test),
                               np.clip(per_sample.mean(0), *model.rating_range_), rtol=1e-6)
    # score_matrix against a loop over samples and pairs.
    s = 3
    p, q = model.user_samples_[s], model.item_samples_[s]
    loop = model.global_mean_ + p[:, :1] + q[:, 0][None] + p[:, 1:] @ q[:, 1:].T
    grid = pd.DataFrame([(u, i) for u in model.users_.ids_ for i in model.items_.ids_],
                        columns=["user", "item"])
    np.testing.assert_allclose(model.sample_predictions(grid)[s].reshape(loop.shape), loop,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.score_matrix().ravel(),
                               model.sample_predictions(grid).mean(0), rtol=1e-5, atol=1e-5)
    # Chapter 1's invariance: rotating one sample's factors (P A, Q A⁻ᵀ) changes no score.
    before = model.score_matrix()
    a = np.array([[2.0, 1.0], [0.5, -1.0]], dtype=np.float32)
    model.user_samples_[s, :, 1:] = model.user_samples_[s, :, 1:] @ a
    model.item_samples_[s, :, 1:] = model.item_samples_[s, :, 1:] @ np.linalg.inv(a).T
    np.testing.assert_allclose(model.score_matrix(), before, rtol=1e-4, atol=1e-4)


def test_top_k_ranks_the_score_matrix_and_skips_training_pairs(planted):
    train, _ = planted
    model = BayesianMF(n_factors=2, n_iter=6, burn_in=2).fit(train)
    scores = model.score_matrix()
    best = model.top_k(k=3)
    user = model.users_.ids_[0]
    seen = set(train.loc[train["user"] == user, "item"])
    unseen = [i for i in np.argsort(-scores[0], kind="stable") if model.items_.ids_[i] not in seen]
    assert list(best[user]) == list(model.items_.decode(np.array(unseen[:3])))
    everything = model.top_k(k=len(model.items_), exclude=train.iloc[:0])
    assert len(everything[user]) == len(model.items_), "an empty exclusion keeps every item"
    with pytest.raises(ValueError, match="k must"):
        model.top_k(k=0)


def test_clone_shape_and_fit_starts_from_scratch(planted):
    train, test = planted
    model = BayesianMF(n_factors=2, n_iter=6, burn_in=2, random_state=3)
    params = model.get_params()
    copy = type(model)(**params)          # what sklearn.base.clone does
    assert copy.get_params() == params and not hasattr(copy, "user_samples_")
    first = model.fit(train.iloc[:500]).fit(train).predict(test)
    np.testing.assert_array_equal(first, copy.fit(train).predict(test))
    assert not hasattr(model, "user_factors_"), "no single factor matrix: average scores"
    _, fell_back = model.predict(pd.DataFrame({"user": [999], "item": [0]}), unknown="bias",
                                 return_fallback=True)
    assert fell_back.tolist() == [True]


def test_sklearn_clone_gives_an_unfitted_copy(planted):
    clone = pytest.importorskip("sklearn.base").clone
    train, test = planted
    model = BayesianMF(n_factors=2, n_iter=5, burn_in=1, random_state=2).fit(train)
    copy = clone(model)
    assert copy.get_params() == model.get_params() and not hasattr(copy, "user_samples_")
    np.testing.assert_array_equal(copy.fit(train).predict(test), model.predict(test))

"""Ranking metrics on hand-computed lists, checked against scikit-learn, and the helpers
that turn a fitted model into top-k lists."""

import copy

import numpy as np
import pandas as pd
import pytest

import cfcourse
from cfcourse.data import planted_ratings
from cfcourse.data.interactions import implicit_feedback
from cfcourse.data.split import per_user_holdout
from cfcourse.metrics import (
    evaluate_ranking,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    relevant_items,
)

LOG3 = np.log2(3)  # the discount of rank 2 is 1 / log2(3)


@pytest.fixture(scope="module")
def ratings():
    return planted_ratings(n_users=60, n_items=80, n_ratings=800, n_factors=3, seed=1).ratings


@pytest.fixture(scope="module")
def model(ratings):
    return cfcourse.fit(ratings, epochs=3, n_factors=4, bs=128, lr=0.02)


# -- the three metrics, by hand -----------------------------------------------------------
def test_metrics_by_hand_at_k3():
    ranked, relevant = [3, 1, 2, 5], {1, 5, 9}
    assert precision_at_k(ranked, relevant, k=3) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, relevant, k=3) == pytest.approx(1 / 3)
    ideal = 1 + 1 / LOG3 + 1 / 2  # three relevant items fill ranks 1-3
    assert ndcg_at_k(ranked, relevant, k=3) == pytest.approx((1 / LOG3) / ideal)


def test_metrics_by_hand_at_k4():
    ranked, relevant = [3, 1, 2, 5], {1, 5, 9}
    assert precision_at_k(ranked, relevant, k=4) == 0.5
    assert recall_at_k(ranked, relevant, k=4) == pytest.approx(2 / 3)
    dcg = 1 / LOG3 + 1 / np.log2(5)  # hits at ranks 2 and 4
    assert ndcg_at_k(ranked, relevant, k=4) == pytest.approx(dcg / (1 + 1 / LOG3 + 1 / 2))


def test_ideal_dcg_uses_at_most_k_relevant_items():
    # 1 relevant item at rank 1 of a k=5 list: the ideal list also has one hit.
    assert ndcg_at_k(["a", "b"], {"a"}, k=5) == 1.0
    # 6 relevant items, all 5 slots filled with hits: perfect.
    assert ndcg_at_k(list("abcde"), set("abcdef"), k=5) == pytest.approx(1.0)


def test_extremes_and_short_lists():
    assert ndcg_at_k([7, 8], {1}, k=2) == 0.0
    assert precision_at_k([1], {1}, k=4) == 0.25, "a short list still divides by k"
    assert recall_at_k([], {1, 2}, k=3) == 0.0


@pytest.mark.parametrize("k", [0, -1, 2.0, True])
def test_bad_k(k):
    with pytest.raises(ValueError, match="positive integer"):
        precision_at_k([1], {1}, k=k)


@pytest.mark.parametrize("metric", [recall_at_k, ndcg_at_k])
def test_empty_relevant_set_is_an_error(metric):
    with pytest.raises(ValueError, match="skip such users"):
        metric([1, 2], set(), k=2)


def test_ndcg_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(20):
        truth = (rng.random(30) < 0.2).astype(float)
        if truth.sum() == 0:
            continue
        scores = rng.permutation(30).astype(float)  # no ties
        ranked = np.argsort(-scores)
        ours = ndcg_at_k(ranked, set(np.flatnonzero(truth)), k=7)
        theirs = metrics.ndcg_score(truth[None], scores[None], k=7)
        assert ours == pytest.approx(theirs)


# -- evaluating many users ----------------------------------------------------------------
def test_evaluate_ranking_skips_users_without_relevant_items():
    test = pd.DataFrame({"user": [1, 1, 2, 3], "item": [10, 11, 10, 12],
                         "rating": [5.0, 2.0, 4.0, 3.0]})
    assert relevant_items(test) == {1: {10}, 2: {10}}
    lists = {1: [10, 12], 2: [12, 13], 3: [12, 10]}
    out = evaluate_ranking(lists, test, k=2)
    assert out["precision"] == pytest.approx((0.5 + 0.0) / 2)
    assert out["recall"] == pytest.approx((1.0 + 0.0) / 2)
    assert out["ndcg"] == pytest.approx(0.5)
    assert (out["users"], out["skipped"]) == (2, 1)
    missing = evaluate_ranking({}, test, k=2)  # nobody recommended anything
    assert missing["precision"] == 0.0
    with pytest.raises(ValueError, match="nothing is relevant"):
        evaluate_ranking(lists, test, k=2, threshold=6)


# -- the per-user holdout -------------------------------------------------------------------
def test_per_user_holdout_takes_n_from_each_active_user(ratings):
    train, test = per_user_holdout(ratings, n_holdout=3, min_ratings=10, seed=0)
    counts = ratings["user"].value_counts()
    held = test["user"].value_counts()
    assert set(held.index) == set(counts.index[counts >= 10])
    assert (held == 3).all()
    assert len(train) + len(test) == len(ratings)
    together = pd.concat([train, test]).sort_values(["user", "item"], ignore_index=True)
    assert together.equals(ratings.sort_values(["user", "item"], ignore_index=True))
    again, _ = per_user_holdout(ratings, n_holdout=3, min_ratings=10, seed=0)
    assert again.equals(train)
    other, _ = per_user_holdout(ratings, n_holdout=3, min_ratings=10, seed=1)
    assert not other.equals(train)


@pytest.mark.parametrize("n,m", [(0, 5), (5, 5), (-1, 3)])
def test_per_user_holdout_rejects_bad_sizes(ratings, n, m):
    with pytest.raises(ValueError, match="n_holdout < min_ratings"):
        per_user_holdout(ratings, n_holdout=n, min_ratings=m)


# -- from a model to lists ------------------------------------------------------------------
def test_score_matrix_is_the_unclipped_prediction(model, ratings):
    scores = model.score_matrix()
    assert scores.shape == (len(model.users_), len(model.items_))
    pairs = ratings.head(50)
    u, i = model.users_.encode(pairs["user"]), model.items_.encode(pairs["item"])
    inside = (scores[u, i] > 0.5) & (scores[u, i] < 5.0)
    assert inside.sum() > 40
    assert np.allclose(scores[u, i][inside], model.predict(pairs)[inside], atol=1e-5)


def test_score_matrix_needs_a_dot_bias_model(model):
    other = copy.copy(model).set_params(kind="nn")  # the guard reads the kind
    with pytest.raises(TypeError, match="dot_bias"):
        other.score_matrix()


def test_popularity_counts_ratings(model, ratings):
    counts = model.popularity(ratings)
    expected = ratings["item"].value_counts().reindex(model.items_.ids_).to_numpy()
    assert np.array_equal(counts, expected)


def test_top_k_excludes_training_pairs_and_sorts(model, ratings):
    scores = model.score_matrix()
    lists = model.top_k(scores=scores, k=5)
    assert set(lists) == set(model.users_.ids_.tolist())
    for user in model.users_.ids_[:10].tolist():
        seen = set(ratings.loc[ratings["user"] == user, "item"])
        assert not seen & set(lists[user].tolist())
        u = model.users_.encode([user])[0]
        got = scores[u, model.items_.encode(lists[user])]
        assert np.all(np.diff(got) <= 0), "best first"
        unseen = [i for i in range(len(model.items_)) if model.items_.ids_[i] not in seen]
        assert got[0] == pytest.approx(scores[u, unseen].max())


def test_top_k_with_shared_scores_and_explicit_exclusion(model):
    popular = np.arange(len(model.items_), dtype=float)  # the last item is the most popular
    lists = model.top_k(scores=popular, k=2, exclude=pd.DataFrame({"user": [], "item": []}))
    last = model.items_.ids_[::-1][:2]
    assert all(np.array_equal(v, last) for v in lists.values())
    user = model.users_.ids_[0]
    blocked = pd.DataFrame({"user": [user, 99999], "item": [last[0], last[0]]})
    lists = model.top_k(scores=popular, k=2, exclude=blocked)
    assert lists[user].tolist() == model.items_.ids_[::-1][1:3].tolist()


def test_top_k_drops_excluded_items_when_too_few_remain(ratings):
    df = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "rating": [4.0, 3.0, 5.0]})
    small = cfcourse.fit(df, epochs=30, n_factors=2)
    lists = small.top_k(scores=np.array([1.0, 2.0]), k=5)
    assert lists[1].tolist() == [] and lists[2].tolist() == [2]


def test_top_k_rejects_nan(model):
    with pytest.raises(ValueError, match="NaN"):
        model.top_k(scores=np.full(len(model.items_), np.nan))


# -- implicit feedback ----------------------------------------------------------------------
def test_implicit_feedback_marks_rated_pairs(ratings):
    frame = implicit_feedback(ratings, negatives=1.0, seed=0)
    positives, negatives = frame[frame["rating"] == 1], frame[frame["rating"] == 0]
    assert len(positives) == len(ratings)
    rated = set(zip(ratings["user"], ratings["item"]))
    assert set(zip(positives["user"], positives["item"])) == rated
    assert not set(zip(negatives["user"], negatives["item"])) & rated
    assert not frame.duplicated(["user", "item"]).any()
    assert 0.5 * len(ratings) < len(negatives) <= len(ratings)
    assert set(negatives["item"]) <= set(ratings["item"])
    assert frame["rating"].dtype == np.float32
    with pytest.raises(ValueError, match="positive"):
        implicit_feedback(ratings, negatives=0)

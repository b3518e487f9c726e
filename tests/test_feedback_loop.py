"""Feedback loops: concentration measures by hand, and the simulation on a tiny world."""

import numpy as np
import pandas as pd
import pytest

from cfcourse.data import planted_ratings
from cfcourse.feedback_loop import _measure, gini, simulate_feedback, top_share

FIT = {"n_factors": 4, "epochs": 4, "bs": 128, "lr": 0.03}


def test_gini_by_hand():
    assert gini([3, 3, 3, 3]) == 0.0
    assert gini([0, 0, 0, 4]) == pytest.approx(0.75), "one film holds all: (n - 1) / n"
    assert gini([1, 2, 3]) == pytest.approx(2 / 9)
    assert gini([0, 0]) == 0.0


def test_gini_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, size=40).astype(float)
    pairwise = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())
    assert gini(x) == pytest.approx(pairwise)
    assert gini(7 * x) == pytest.approx(gini(x)), "only shares matter"


@pytest.mark.parametrize("bad", [[], [1, -1], [1, np.nan]])
def test_gini_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match="counts"):
        gini(bad)


def test_top_share_by_hand():
    assert top_share([5, 3, 1, 1], share=0.25) == 0.5
    assert top_share([5, 3, 1, 1], share=0.5) == 0.8
    assert top_share([1, 9], share=0.01) == 0.9, "at least one film"
    with pytest.raises(ValueError, match="share"):
        top_share([1, 2], share=0)


def test_measure_by_hand():
    scores = np.array([[1.0, 2.0], [3.0, 6.0]])  # 6.0 is clipped to 5.0
    truth = np.array([[1.0, 1.0], [3.0, 4.0]])
    ratings = pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [4.0, 2.0]})
    row = _measure(0, np.array([1, 1]), scores, truth, None, ratings)
    assert row["catalogue_rmse"] == pytest.approx(np.sqrt(0.5)), "errors 0, 1, 0, 1 after clipping"
    assert row["catalogue_bias"] == pytest.approx(0.5), "mean signed error (0 + 1 + 0 + 1) / 4"
    assert row["mean_rating"] == pytest.approx(3.0)
    assert row["gini"] == 0.0 and np.isnan(row["mean_true_score"])


@pytest.fixture(scope="module")
def world():
    return planted_ratings(n_users=60, n_items=40, n_ratings=400, n_factors=3, seed=4)


@pytest.fixture(scope="module")
def runs(world):
    return {explore: simulate_feedback(world, rounds=2, k=3, explore=explore, seed=0, **FIT)
            for explore in (0, 3)}


def test_simulation_adds_a_slate_per_user_per_round(world, runs):
    run = runs[0]
    assert len(run.ratings) == len(world.ratings) + 2 * 60 * 3
    assert not run.ratings.duplicated(["user", "item"]).any(), "nobody rates a film twice"
    assert run.ratings["rating"].between(0.5, 5.0).all()
    history = run.history
    assert history["round"].tolist() == [0, 1, 2]
    assert np.isnan(history["mean_true_score"].iloc[0])
    assert history["mean_rating"].iloc[0] == pytest.approx(world.ratings["rating"].mean())
    assert history["mean_rating"].iloc[-1] == pytest.approx(run.ratings["rating"].mean())
    assert history["gini"].iloc[0] == pytest.approx(
        gini(world.ratings["item"].value_counts().reindex(range(1, 41), fill_value=0)))
    assert "2 rounds" in repr(run)


def test_exploitation_concentrates_and_exploration_spreads(runs):
    exploit, explore = runs[0].history, runs[3].history
    assert exploit["gini"].iloc[-1] > explore["gini"].iloc[-1]
    assert (exploit["films_shown"].iloc[1:] < explore["films_shown"].iloc[1:]).all()
    assert (exploit["mean_true_score"].iloc[1:] > explore["mean_true_score"].iloc[1:]).all()


def test_exploitation_collects_a_selected_sample(runs):
    """Slates of the model's best guesses collect higher ratings than random slates:
    the new ratings are missing not at random."""
    exploit, explore = runs[0].history, runs[3].history
    assert exploit["mean_rating"].iloc[-1] > explore["mean_rating"].iloc[-1] + 0.1, (
        "the model's picks should be rated higher than random picks")


def test_same_seed_same_run(world, runs):
    again = simulate_feedback(world, rounds=2, k=3, explore=0, seed=0, **FIT)
    assert again.ratings.equals(runs[0].ratings)


@pytest.mark.parametrize("kwargs,match", [
    ({"rounds": 0}, "rounds >= 1"),
    ({"k": 3, "explore": 4}, "explore <= k"),
    ({"rounds": 10, "k": 5}, "more than half"),
])
def test_simulation_rejects_bad_settings(world, kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_feedback(world, **kwargs)

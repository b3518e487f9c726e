"""The comparison protocol: inner-split tuning, seeds, spread, bootstrap."""

import numpy as np
import pandas as pd
import pytest

from cfcourse.compare import (
    clearly_better,
    grid_search,
    inner_split,
    over_seeds,
    paired_bootstrap,
    summarize,
)


@pytest.fixture
def ratings():
    rng = np.random.default_rng(0)
    return pd.DataFrame({"user": rng.integers(0, 30, 400), "item": rng.integers(0, 40, 400),
                         "rating": rng.normal(3.5, 1.0, 400)})


def test_inner_split_only_partitions_the_training_rows(ratings):
    fit_part, tune_part = inner_split(ratings, valid_pct=0.25, seed=1)
    assert len(fit_part) + len(tune_part) == len(ratings)
    together = pd.concat([fit_part, tune_part]).sort_values(["user", "item", "rating"])
    pd.testing.assert_frame_equal(together.reset_index(drop=True),
                                  ratings.sort_values(["user", "item", "rating"])
                                  .reset_index(drop=True))


def test_grid_search_finds_the_setting_closest_to_the_tuning_mean(ratings):
    # The constant that minimises squared error on the tuning part is its mean.
    def score(params, fit_part, tune_part):
        return float(np.sqrt(((tune_part["rating"] - params["c"]) ** 2).mean()))

    _, tune_part = inner_split(ratings, seed=3)
    grid = {"c": [2.0, 3.0, round(tune_part["rating"].mean(), 2), 4.5]}
    result = grid_search(ratings, grid, score, seed=3)
    assert result.best_params == {"c": grid["c"][2]}
    assert len(result.table) == 4 and result.best_score == result.table["score"].min()
    assert "4 settings" in repr(result)


def test_grid_search_tries_every_combination(ratings):
    seen = []
    grid_search(ratings, {"a": [1, 2], "b": [0, 1, 2]},
                lambda p, f, t: seen.append(p) or p["a"] + p["b"])
    assert len(seen) == 6 and {"a": 2, "b": 2} in seen


@pytest.mark.parametrize("grid", [{}, {"a": []}, {"a": "abc"}])
def test_grid_search_rejects_empty_grids(ratings, grid):
    with pytest.raises(ValueError, match="grid"):
        grid_search(ratings, grid, lambda p, f, t: 0.0)


def test_grid_search_rejects_non_finite_scores(ratings):
    with pytest.raises(ValueError, match="finite"):
        grid_search(ratings, {"a": [1]}, lambda p, f, t: float("nan"))


def test_over_seeds_and_summarize():
    runs = over_seeds(lambda s: {"rmse": 1.0 + s / 10}, seeds=[0, 1, 2])
    assert list(runs["seed"]) == [0, 1, 2]
    runs["method"] = "m"
    other = over_seeds(lambda s: 0.5 + s, seeds=[0, 1])
    assert list(other["value"]) == [0.5, 1.5]
    both = pd.concat([runs, pd.DataFrame({"method": "best", "rmse": [0.2, 0.4], "seed": [0, 1]})])
    table = summarize(both, by="method", value="rmse")
    assert list(table.index) == ["best", "m"]
    assert table.loc["m", "sd"] == pytest.approx(0.1)
    assert table.loc["best", "mean ± sd"] == "0.3000 ± 0.1414"
    with pytest.raises(ValueError, match="no column"):
        summarize(both, value="mae")


def test_clearly_better_needs_the_gap_to_exceed_the_spread():
    assert clearly_better([1.0, 1.1], [2.0, 2.1])
    assert not clearly_better([2.0, 2.1], [1.0, 1.1])        # worse, not better
    assert not clearly_better([1.0, 1.4], [1.3, 1.5])        # gap 0.2 < spread
    with pytest.raises(ValueError, match="two runs"):
        clearly_better([1.0], [2.0, 2.1])


def test_paired_bootstrap_brackets_the_true_gap():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=5000)
    low, high = paired_bootstrap(noise * 0.9, noise, n_boot=300)
    gap = np.sqrt((0.81 * noise**2).mean()) - np.sqrt((noise**2).mean())
    assert low < gap < high < 0
    low, high = paired_bootstrap(noise, noise[::-1], n_boot=300)
    assert low < 0 < high                                   # same distribution: a tie
    with pytest.raises(ValueError, match="aligned"):
        paired_bootstrap(noise, noise[:10])

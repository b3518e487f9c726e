"""Reading a fitted model: bias tables, the PCA map, one prediction taken apart."""

import copy

import numpy as np
import pandas as pd
import pytest

import cfcourse
from cfcourse.data import planted_ratings
from cfcourse.interpret import axis_ends, bias_table, explain_prediction, pca_items


@pytest.fixture(scope="module")
def ratings():
    planted = planted_ratings(n_users=60, n_items=50, n_ratings=900, n_factors=3, seed=2)
    return planted.ratings.assign(title=lambda d: "Film " + d["item"].astype(str))


@pytest.fixture(scope="module")
def model(ratings):
    return cfcourse.fit(ratings, epochs=3, n_factors=6, bs=128, lr=0.02)


def test_bias_table_counts_means_and_biases(model, ratings):
    table = bias_table(model, ratings)
    assert list(table.columns) == ["item", "title", "n_ratings", "mean_rating", "bias"]
    assert len(table) == ratings["item"].nunique()
    assert table["n_ratings"].is_monotonic_decreasing
    stats = ratings.groupby("item")["rating"].agg(["size", "mean"])
    row = table.iloc[0]
    assert row["n_ratings"] == stats.loc[row["item"], "size"]
    assert row["mean_rating"] == pytest.approx(stats.loc[row["item"], "mean"])
    weights = model.item_bias_
    assert row["bias"] == pytest.approx(weights[model.items_.encode([row["item"]])[0]])
    assert row["title"] == f"Film {row['item']}"


def test_bias_table_filters_and_checks_ids(model, ratings):
    few = bias_table(model, ratings, min_ratings=30)
    assert len(few) < ratings["item"].nunique() and (few["n_ratings"] >= 30).all()
    stranger = pd.DataFrame({"user": [1], "item": [424242], "rating": [3.0]})
    with pytest.raises(KeyError, match="424242"):
        bias_table(model, stranger)


def test_pca_matches_an_eigendecomposition(model):
    items = model.items_.ids_[:20]
    coords, explained = pca_items(model, items, n_components=3)
    vectors = model.item_factors_[model.items_.encode(items)]
    centred = (vectors - vectors.mean(axis=0)).astype(np.float64)
    values, vecs = np.linalg.eigh(np.cov(centred, rowvar=False))  # ascending order
    for c in range(3):
        ours = coords[f"pc{c + 1}"].to_numpy()
        theirs = centred @ vecs[:, -(c + 1)]
        assert np.allclose(np.abs(ours), np.abs(theirs), atol=1e-5)  # up to sign
        assert np.allclose(ours, theirs, atol=1e-5) or np.allclose(ours, -theirs, atol=1e-5)
    assert np.allclose(explained, values[::-1][:3] / values.sum())
    assert np.all(np.diff(explained) <= 0) and explained.sum() <= 1


def test_pca_orients_each_axis_and_names_films(model):
    coords, _ = pca_items(model, model.items_.ids_[:10], n_components=2)
    for axis in ("pc1", "pc2"):
        furthest = coords[axis].abs().idxmax()
        assert coords.loc[furthest, axis] > 0
    assert coords["title"].str.startswith("Film ").all()


@pytest.mark.parametrize("items,n", [([1], 1), ([1, 2, 3], 0), ([1, 2, 3], 4)])
def test_pca_rejects_bad_sizes(model, items, n):
    with pytest.raises(ValueError, match="n_components"):
        pca_items(model, items, n_components=n)


def test_axis_ends_lists_both_ends():
    coords = pd.DataFrame({"title": list("abcde"), "pc1": [0.0, -2.0, 3.0, 1.0, -1.0]})
    ends = axis_ends(coords, "pc1", n=2)
    assert ends["low pc1"].tolist() == ["b", "e"]
    assert ends["high pc1"].tolist() == ["c", "d"]
    with pytest.raises(KeyError, match="pc9"):
        axis_ends(coords, "pc9")


def test_explain_prediction_adds_up_to_predict(model, ratings):
    user, item = ratings["user"].iloc[0], ratings["item"].iloc[0]
    parts = explain_prediction(model, user, item)
    assert parts.name == f"Film {item}"
    assert parts["total"] == pytest.approx(parts.drop("total").sum())
    predicted = model.predict(pd.DataFrame({"user": [user], "item": [item]}))[0]
    assert np.clip(parts["total"], 0.5, 5.0) == pytest.approx(predicted, abs=1e-5)
    with pytest.raises(KeyError, match="424242"):
        explain_prediction(model, 424242, item)


def test_string_ids_without_titles():
    df = pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "x"],
                       "rating": [4.0, 2.0, 5.0]})
    small = cfcourse.fit(df, epochs=30, n_factors=2)
    assert explain_prediction(small, "a", "x").name == "x"
    assert bias_table(small, df)["title"].tolist() == ["x", "y"]


def test_needs_a_dot_bias_model(model, ratings):
    other = copy.copy(model).set_params(kind="nn")  # the guard reads the kind
    with pytest.raises(TypeError, match="dot_bias"):
        bias_table(other, ratings)

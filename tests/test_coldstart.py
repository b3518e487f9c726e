"""Cold start: one-hot features, closed-form ridge with leave-one-out choice, new vectors."""

import copy

import numpy as np
import pandas as pd
import pytest

import cfcourse
from cfcourse.coldstart import (
    MetadataRidge,
    embedding_table,
    item_features,
    predict_with_vectors,
    user_features,
)
from cfcourse.data import planted_ratings


@pytest.fixture(scope="module")
def ratings():
    return planted_ratings(n_users=50, n_items=40, n_ratings=700, n_factors=3, seed=3).ratings


@pytest.fixture(scope="module")
def model(ratings):
    return cfcourse.fit(ratings, epochs=3, n_factors=5, bs=128, lr=0.02)


# -- features ---------------------------------------------------------------------------
def test_user_features_one_hot_each_block():
    users = pd.DataFrame({"user": [7, 8, 9, 10], "age": [17, 18, 25, 56],
                          "gender": ["F", "M", "M", "F"],
                          "occupation": ["student", "writer", "writer", "other"]})
    x = user_features(users)
    assert x.index.tolist() == [7, 8, 9, 10] and x.index.name == "user"
    assert x.loc[7, "age <18"] == 1 and x.loc[8, "age 18-24"] == 1
    assert x.loc[9, "age 25-34"] == 1 and x.loc[10, "age 56+"] == 1
    assert (x.sum(axis=1) == 3).all(), "one age group, one gender, one occupation"
    assert x.loc[8, "occupation writer"] == 1 and x.loc[8, "gender M"] == 1
    with pytest.raises(ValueError, match="occupation"):
        user_features(users.drop(columns="occupation"))


def test_item_features_genres_and_decades():
    items = pd.DataFrame({"item": [1, 2, 3], "year": pd.array([1995, 1969, None], "Int64"),
                          "genres": ["Comedy|Drama", "Drama", None]})
    x = item_features(items)
    assert x.loc[1, ["Comedy", "Drama", "decade 1990s"]].tolist() == [1, 1, 1]
    assert x.loc[2, "decade 1960s"] == 1 and x.loc[2, "Comedy"] == 0
    assert x.loc[3, "decade unknown"] == 1 and x.loc[3, ["Comedy", "Drama"]].sum() == 0
    with pytest.raises(ValueError, match="genres"):
        item_features(items.drop(columns="genres"))


# -- ridge --------------------------------------------------------------------------------
def _toy(n=30, seed=0):
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 3)), columns=list("abc"))
    y = pd.DataFrame({"bias": x @ [1.0, -2.0, 0.5] + 3 + rng.normal(0, 0.1, n),
                      "f0": x["a"] * 0.5 + rng.normal(0, 0.1, n)})
    return x, y


def test_ridge_matches_the_augmented_normal_equations():
    x, y = _toy()
    alpha = 2.5
    ridge = MetadataRidge(alphas=alpha).fit(x, y)
    design = np.hstack([np.ones((len(x), 1)), x.to_numpy()])
    penalty = alpha * np.diag([0.0, 1, 1, 1])  # the intercept is not penalised
    w = np.linalg.solve(design.T @ design + penalty, design.T @ y.to_numpy())
    assert np.allclose(ridge.predict(x).to_numpy(), design @ w)
    assert ridge.alpha_ == alpha and ridge.coef_.shape == (3, 2)


def test_leave_one_out_error_matches_refitting():
    x, y = _toy(n=15)
    ridge = MetadataRidge(alphas=1.0).fit(x, y)
    errors = []
    for j in range(len(x)):
        rest = x.index != j
        fit = MetadataRidge(alphas=1.0).fit(x[rest], y[rest])
        errors.append(((fit.predict(x[~rest]).to_numpy() - y[~rest].to_numpy()) ** 2).mean())
    assert ridge.loo_errors_[1.0] == pytest.approx(np.mean(errors))


def test_ridge_picks_the_alpha_with_least_loo_error():
    x, y = _toy()
    ridge = MetadataRidge(alphas=(0.01, 1e6)).fit(x, y)
    assert ridge.alpha_ == 0.01, "a real linear signal wants little shrinkage"
    rng = np.random.default_rng(5)  # 20 useless features for 30 rows: fitting them overfits
    junk = pd.DataFrame(rng.normal(size=(30, 20)))
    noise = pd.DataFrame({"bias": rng.normal(size=30)})
    assert MetadataRidge(alphas=(0.01, 1e6)).fit(junk, noise).alpha_ == 1e6


def test_ridge_without_features_is_the_mean_vector():
    x, y = _toy()
    ridge = MetadataRidge().fit(x.iloc[:, :0], y)
    out = ridge.predict(x.iloc[:3, :0])
    assert np.allclose(out.to_numpy(), np.tile(y.mean().to_numpy(), (3, 1)))


def test_ridge_beats_the_mean_on_new_rows():
    x, y = _toy(n=80, seed=1)
    ridge = MetadataRidge().fit(x[:60], y[:60])
    error = ((ridge.predict(x[60:]) - y[60:]) ** 2).to_numpy().mean()
    baseline = ((y[60:] - y[:60].mean()) ** 2).to_numpy().mean()
    assert error < 0.1 * baseline


def test_ridge_errors():
    x, y = _toy()
    with pytest.raises(ValueError, match="alphas"):
        MetadataRidge(alphas=-1).fit(x, y)
    with pytest.raises(KeyError, match="no features"):
        MetadataRidge().fit(x.iloc[:5], y)
    with pytest.raises(RuntimeError, match="not fitted"):
        MetadataRidge().predict(x)
    with pytest.raises(ValueError, match="other columns"):
        MetadataRidge().fit(x, y).predict(x[["b", "a", "c"]])
    assert "alphas" in repr(MetadataRidge())


# -- vectors and predictions ------------------------------------------------------------------
def test_embedding_table_holds_bias_then_factors(model):
    table = embedding_table(model, "item")
    assert table.shape == (len(model.items_), 6) and table.index.name == "item"
    assert list(table.columns) == ["bias", "f0", "f1", "f2", "f3", "f4"]
    first = model.items_.ids_[0]
    assert table.loc[first, "bias"] == pytest.approx(model.item_bias_[0])
    with pytest.raises(ValueError, match="side"):
        embedding_table(model, "film")
    other = copy.copy(model).set_params(kind="nn")  # the guard reads the kind
    with pytest.raises(TypeError, match="dot_bias"):
        embedding_table(other, "user")


def test_predict_with_the_models_own_vectors_is_predict(model, ratings):
    pairs = ratings.head(40)
    assert np.allclose(predict_with_vectors(model, pairs), model.predict(pairs), atol=1e-5)


def test_predict_for_a_new_user(model, ratings):
    users = embedding_table(model, "user")
    newcomer = pd.DataFrame([users.mean()], index=pd.Index([999], name="user"))
    pairs = pd.DataFrame({"user": [999, 999], "item": model.items_.ids_[:2]})
    items = embedding_table(model, "item").loc[pairs["item"]].to_numpy()
    expected = (model.global_mean_ + newcomer["bias"].iloc[0] + items[:, 0]
                + items[:, 1:] @ newcomer.iloc[0, 1:].to_numpy())
    got = predict_with_vectors(model, pairs, user_vectors=newcomer)
    assert np.allclose(got, np.clip(expected, 0.5, 5.0))
    with pytest.raises(KeyError, match="user 999 has no vector"):
        predict_with_vectors(model, pairs)
    with pytest.raises(ValueError, match="columns"):
        predict_with_vectors(model, pairs, user_vectors=newcomer.iloc[:, :3])


# -- brand-new users: the protocol of chapter 12 -------------------------------------------

def _taste_by_feature(n_users=120, seed=0):
    """Users with a=1 take items 0-9, the others items 10-19; column c is pure noise."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n_users)
    rows = [(u, int(rng.integers(0, 10)) + 10 * (1 - a[u])) for u in range(n_users)
            for _ in range(6)]
    frame = pd.DataFrame(rows, columns=["user", "item"]).drop_duplicates().assign(rating=1.0)
    noise = rng.integers(0, 2, n_users).astype(float)
    users = pd.DataFrame({"a": a.astype(float), "b": 1.0 - a, "c": noise}, index=range(n_users))
    items = pd.DataFrame({"g": [1.0] * 10 + [0.0] * 10}, index=range(20))
    return frame, users, items


def test_newcomer_table_learned_methods_use_the_features():
    from cfcourse.coldstart import NEWCOMER_METHODS, newcomer_table
    from cfcourse.compare import paired_verdict

    frame, users, items = _taste_by_feature()
    sets = {"a, b": ["a", "b"], "c only": ["c"]}
    table = newcomer_table(frame, users, items, seeds=(0, 1, 2), feature_sets=sets, k=5,
                           n_factors=4, epochs=20, als_iter=5, batch_size=64)
    assert sorted(table["method"].unique()) == sorted(NEWCOMER_METHODS)
    assert len(table) == 3 * len(NEWCOMER_METHODS)
    learned = table[table["method"].isin(["two-tower", "metadata ridge"])]
    assert set(learned["features"]) == {"a, b"}, "the inner split should pick the informative set"
    for other in ("popularity",):
        said, gaps = paired_verdict(table, "two-tower", other, "ndcg", higher_is_better=True)
        assert said == "two-tower beats popularity", (said, gaps)
    with pytest.raises(ValueError, match="lacks"):
        newcomer_table(frame, users, items, seeds=(0,), feature_sets={"x": ["nope"]})


def test_paired_verdict_sees_a_gap_the_unpaired_rule_calls_a_tie():
    from cfcourse.compare import clearly_better, paired_verdict

    # three splits of very different difficulty; x is 0.01 better on every one
    frame = pd.DataFrame({"method": ["x", "y"] * 3, "seed": [0, 0, 1, 1, 2, 2],
                          "ndcg": [0.41, 0.40, 0.61, 0.60, 0.51, 0.50]})
    x = frame.loc[frame["method"] == "x", "ndcg"].to_numpy()
    y = frame.loc[frame["method"] == "y", "ndcg"].to_numpy()
    assert not clearly_better(-x, -y), "unpaired, the split-to-split spread hides the gap"
    said, gaps = paired_verdict(frame, "x", "y", "ndcg", higher_is_better=True)
    assert said == "x beats y" and np.allclose(gaps, 0.01)
    assert paired_verdict(frame, "y", "x", "ndcg", higher_is_better=True)[0] == "x beats y"
    noisy = frame.assign(ndcg=[0.41, 0.40, 0.60, 0.61, 0.51, 0.50])
    assert paired_verdict(noisy, "x", "y", "ndcg", higher_is_better=True)[0] == "x and y tie"
    with pytest.raises(ValueError, match="no rows for 'z'"):
        paired_verdict(frame, "x", "z", "ndcg")

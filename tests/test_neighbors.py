import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cfcourse.data import planted_ratings, random_split
from cfcourse.metrics import rmse
from cfcourse.models import neighbors
from cfcourse.models.baselines import BiasBaseline, GlobalMean
from cfcourse.models.neighbors import KNNRegressor, centred_cosine

# Four users x four films, 12 ratings summing to 36: mu = 3. With a GlobalMean
# baseline the residuals z = r - 3 are
#        i1  i2  i3  i4
#   u1    2   1  -2   .
#   u2    1  -1  -1   2
#   u3    1   2   .  -1
#   u4    .   .  -2  -2
TINY = pd.DataFrame({
    "user": [1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4],
    "item": [1, 2, 3, 1, 2, 3, 4, 1, 2, 4, 3, 4],
    "rating": [5.0, 4, 1, 4, 2, 2, 5, 4, 5, 2, 1, 1],
})
# Similarities of u1 with the three users who rated i4, over co-rated films:
S12 = (2 * 1 + 1 * -1 + -2 * -1) / np.sqrt((4 + 1 + 4) * (1 + 1 + 1))  # i1-i3: 0.577
S13 = (2 * 1 + 1 * 2) / np.sqrt((4 + 1) * (1 + 4))  # i1, i2: 0.8
S14 = (-2 * -2) / np.sqrt(4 * 4)  # i3 alone: 1.0
Z4 = {2: 2.0, 3: -1.0, 4: -2.0}  # residuals on i4
U1_I4 = pd.DataFrame({"user": [1], "item": [4]})


def tiny_model(**params):
    return KNNRegressor(baseline=GlobalMean(), **params).fit(TINY)


def test_similarity_by_hand():
    sim = tiny_model(shrinkage=0).similarity_
    assert sim.dtype == np.float32 and sim.shape == (4, 4)
    assert np.allclose(sim[0, 1:], [S12, S13, S14])
    assert np.allclose(sim, sim.T) and np.all(np.diag(sim) == 0)


def test_prediction_by_hand_uses_the_top_k_positive_neighbours():
    # k=2: u4 (1.0) and u3 (0.8); u2 (0.577) is left out.
    expected = 3 + (S14 * Z4[4] + S13 * Z4[3]) / (S14 + S13)
    assert np.isclose(expected, 3 - 2.8 / 1.8)
    assert np.allclose(tiny_model(k=2, shrinkage=0).predict(U1_I4), [expected])
    everyone = 3 + (S12 * Z4[2] + S13 * Z4[3] + S14 * Z4[4]) / (S12 + S13 + S14)
    assert np.allclose(tiny_model(k=40, shrinkage=0).predict(U1_I4), [everyone])


def test_shrinkage_by_hand_changes_who_is_a_neighbour():
    # s' = n / (n + 4) s: u2 (3 co-ratings) 0.247, u3 (2) 0.267, u4 (1) 0.2.
    s12, s13, s14 = 3 / 7 * S12, 2 / 6 * S13, 1 / 5 * S14
    model = tiny_model(k=2, shrinkage=4)
    assert np.allclose(model.similarity_[0, 1:], [s12, s13, s14])
    expected = 3 + (s13 * Z4[3] + s12 * Z4[2]) / (s13 + s12)  # u4 dropped out
    assert np.allclose(model.predict(U1_I4), [expected])
    assert model.predict(U1_I4)[0] > 3 > tiny_model(k=2, shrinkage=0).predict(U1_I4)[0]


def test_min_support_drops_thin_pairs():
    model = tiny_model(k=2, shrinkage=0, min_support=2)
    assert model.similarity_[0, 3] == 0  # u1-u4 share one film
    expected = 3 + (S13 * Z4[3] + S12 * Z4[2]) / (S13 + S12)
    assert np.allclose(model.predict(U1_I4), [expected])


def test_fallback_and_coverage():
    # u3 on i3: raters u1 (2 co-ratings), u2 (3, negative), u4 (1).
    model = tiny_model(shrinkage=0, min_support=3)
    pairs = pd.DataFrame({"user": [3, 1, 1], "item": [3, 4, 99]})
    pred, covered = model.predict(pairs, unknown="bias", return_coverage=True)
    assert covered.tolist() == [False, True, False]
    assert pred[0] == 3.0 and pred[2] == 3.0  # the baseline, mu
    biased = KNNRegressor(shrinkage=0, min_support=3).fit(TINY)
    pred, covered = biased.predict(pairs, unknown="bias", return_coverage=True)
    fallback = BiasBaseline().fit(TINY).predict(pairs, unknown="bias")
    assert np.allclose(pred[~covered], fallback[~covered])


def test_unknown_ids_raise_naming_the_id():
    model = tiny_model()
    with pytest.raises(KeyError, match=r"user \S*42"):
        model.predict(pd.DataFrame({"user": [1, 42], "item": [1, 1]}))
    with pytest.raises(KeyError, match=r"item \S*99"):
        KNNRegressor(kind="item").fit(TINY).predict(pd.DataFrame({"user": [1], "item": [99]}))


def dense_similarity(z, rated, shrinkage, min_support):
    """The definition, pair by pair, with dense numpy."""
    n = len(z)
    out = np.zeros((n, n))
    for u in range(n):
        for v in range(n):
            both = rated[u] & rated[v]
            norm = np.sqrt((z[u, both] ** 2).sum() * (z[v, both] ** 2).sum())
            if u == v or both.sum() < min_support or norm == 0:
                continue
            count = both.sum()
            out[u, v] = count / (count + shrinkage) * (z[u, both] @ z[v, both]) / norm
    return out


@pytest.mark.parametrize("shrinkage, min_support", [(0.0, 1), (5.0, 1), (2.0, 3)])
def test_centred_cosine_matches_a_dense_oracle(shrinkage, min_support):
    rng = np.random.default_rng(0)
    rated = rng.random((12, 9)) < 0.5
    z = np.where(rated, rng.normal(size=(12, 9)), 0.0)
    z[0, np.flatnonzero(rated[0])[0]] = 0.0  # a rated residual that is exactly 0
    rows, cols = np.nonzero(rated)
    sparse = sp.csr_matrix((z[rows, cols], (rows, cols)), shape=z.shape)
    got = centred_cosine(sparse, shrinkage, min_support)
    assert np.allclose(got, dense_similarity(z, rated, shrinkage, min_support), atol=1e-6)


def dense_predict(model, df):
    """Brute force: loop over pairs, sort the candidates, average."""
    out = model.baseline_.predict(df, unknown="bias")
    z = model.residuals_.toarray()
    rated = model.residuals_.copy()
    rated.data[:] = 1
    rated = rated.toarray() > 0
    for q, (user, item) in enumerate(zip(df["user"], df["item"])):
        u, i = model.users_.encode([user])[0], model.items_.encode([item])[0]
        row, col = (u, i) if model.kind == "user" else (i, u)
        sims = model.similarity_[row].astype(np.float64)
        candidates = np.flatnonzero(rated[:, col] & (sims > 0))
        best = candidates[np.argsort(-sims[candidates], kind="stable")][: model.k]
        if len(best):
            out[q] += np.average(z[best, col], weights=sims[best])
    return out


@pytest.mark.parametrize("kind", ["user", "item"])
def test_batched_prediction_matches_brute_force(kind, monkeypatch):
    data = planted_ratings(n_users=40, n_items=30, n_ratings=500, seed=2).ratings
    train, valid = random_split(data, 0.2, seed=0)
    valid = valid[valid["user"].isin(train["user"]) & valid["item"].isin(train["item"])]
    # min_support=2: pairs with one co-rating all tie at s' = 1 / (1 + 3), and
    # ties at the k-th place may be broken either way.
    model = KNNRegressor(kind=kind, k=5, shrinkage=3, min_support=2).fit(train)
    expected = dense_predict(model, valid)
    assert np.allclose(model.predict(valid), expected)
    monkeypatch.setattr(neighbors, "_BATCH_CELLS", 50)  # many small batches
    assert np.allclose(model.predict(valid), expected)


def test_item_based_is_user_based_on_the_transposed_ratings():
    swapped = TINY.rename(columns={"user": "item", "item": "user"})
    pairs = pd.DataFrame({"user": [1, 2, 3, 4], "item": [4, 3, 3, 1]})
    by_item = KNNRegressor(kind="item", k=2, shrinkage=1, baseline=GlobalMean()).fit(TINY)
    by_user = KNNRegressor(kind="user", k=2, shrinkage=1, baseline=GlobalMean()).fit(swapped)
    flipped = pairs.rename(columns={"user": "item", "item": "user"})
    assert np.allclose(by_item.predict(pairs), by_user.predict(flipped))


@pytest.mark.parametrize("kind", ["user", "item"])
def test_predict_agrees_on_a_frame_and_its_reordered_rows(kind):
    data = planted_ratings(n_users=50, n_items=40, n_ratings=600, seed=3).ratings
    train, valid = random_split(data, 0.2, seed=0)
    model = KNNRegressor(kind=kind, k=10).fit(train)
    whole, covered = model.predict(valid, unknown="bias", return_coverage=True)
    shuffled = valid.sample(frac=1.0, random_state=1)
    again, covered_again = model.predict(shuffled, unknown="bias", return_coverage=True)
    assert np.allclose(again, whole[shuffled.index])
    assert (covered_again == covered[shuffled.index]).all()
    one_by_one = [model.predict(valid.iloc[[q]], unknown="bias")[0] for q in range(5)]
    assert np.allclose(one_by_one, whole[:5])


def test_fit_leaves_the_given_baseline_untouched():
    # refitting from scratch, clone and the rest: tests/test_estimator_contract.py
    baseline = BiasBaseline(reg_user=1, reg_item=1)
    model = KNNRegressor(k=3, baseline=baseline).fit(TINY)
    assert not hasattr(baseline, "mean_"), "fit works on a copy of the baseline"
    assert model.baseline_.reg_user == 1 and model.k == 3
    assert repr(model) == "KNNRegressor(kind='user', k=3, shrinkage=100.0, min_support=1)"


def test_neighbours_beat_biases_on_planted_data():
    data = planted_ratings(n_users=200, n_items=150, n_ratings=6000, noise=0.3, seed=0)
    train, valid = random_split(data.ratings, 0.2, seed=0)
    biases = rmse(BiasBaseline().fit(train).predict(valid, unknown="bias"), valid["rating"])
    for kind in ("user", "item"):
        model = KNNRegressor(kind=kind).fit(train)
        pred, covered = model.predict(valid, unknown="bias", return_coverage=True)
        assert rmse(pred, valid["rating"]) < biases - 0.05
        assert covered.mean() > 0.9


@pytest.mark.parametrize("change, message", [
    (lambda df: df.drop(columns="user"), "lacks column"),
    (lambda df: df.assign(rating=df["rating"].where(df.index != 3)), "NaN"),
    (lambda df: df.assign(rating=df["rating"] * 2), "outside"),
    (lambda df: pd.concat([df, df.iloc[[5]]]), "duplicate"),
])
def test_bad_training_frames_get_a_clear_error(change, message):
    with pytest.raises(ValueError, match=message):
        KNNRegressor().fit(change(TINY))


@pytest.mark.parametrize("params", [{"kind": "film"}, {"k": 0}, {"k": 2.0},
                                    {"min_support": 0}, {"shrinkage": -1.0}])
def test_bad_hyperparameters_are_named(params):
    name = next(iter(params))
    with pytest.raises(ValueError, match=name):
        KNNRegressor(**params).fit(TINY)


def test_predict_checks_its_input_and_state():
    with pytest.raises(RuntimeError, match="not fitted"):
        KNNRegressor().predict(TINY)
    model = tiny_model()
    with pytest.raises(ValueError, match="lacks column"):
        model.predict(TINY.drop(columns="item"))
    with pytest.raises(ValueError, match="policy"):
        model.predict(TINY, unknown="skip")

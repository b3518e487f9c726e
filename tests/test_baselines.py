import numpy as np
import pandas as pd
import pytest

from cfcourse.data import planted_ratings, random_split
from cfcourse.metrics import rmse
from cfcourse.models.baselines import BiasBaseline, GlobalMean

# Four ratings; mu = (5 + 3 + 4 + 2) / 4 = 3.5.
FOUR = pd.DataFrame({"user": [1, 1, 2, 3], "item": [10, 20, 10, 20],
                     "rating": [5.0, 3.0, 4.0, 2.0]})


def test_global_mean_predicts_the_training_mean():
    model = GlobalMean().fit(FOUR)
    assert model.mean_ == 3.5
    assert model.predict(pd.DataFrame({"user": [7], "item": [8]})).tolist() == [3.5]
    assert repr(model) == "GlobalMean()"


def test_biases_one_round_by_hand():
    model = BiasBaseline(reg_user=1, reg_item=2, n_iter=1).fit(FOUR)
    # Items first, with b_u = 0: b_i = sum(r - mu) / (reg_item + n_i).
    b10 = ((5 - 3.5) + (4 - 3.5)) / (2 + 2)  # 0.5
    b20 = ((3 - 3.5) + (2 - 3.5)) / (2 + 2)  # -0.5
    # Then users: b_u = sum(r - mu - b_i) / (reg_user + n_u).
    b1 = ((5 - 3.5 - b10) + (3 - 3.5 - b20)) / (1 + 2)  # 1/3
    b2 = (4 - 3.5 - b10) / (1 + 1)  # 0
    b3 = (2 - 3.5 - b20) / (1 + 1)  # -1/2
    assert model.mean_ == 3.5
    assert np.allclose(model.item_bias_, [b10, b20])
    assert np.allclose(model.user_bias_, [b1, b2, b3])
    assert np.allclose(model.user_bias_, [1 / 3, 0, -0.5])
    pair = pd.DataFrame({"user": [1], "item": [20]})
    assert np.allclose(model.predict(pair), [3.5 + 1 / 3 - 0.5])


def test_biases_two_rounds_by_hand():
    model = BiasBaseline(reg_user=1, reg_item=2, n_iter=2).fit(FOUR)
    b1, b2, b3 = 1 / 3, 0.0, -0.5  # from round one
    b10 = ((5 - 3.5 - b1) + (4 - 3.5 - b2)) / 4  # 5/12
    b20 = ((3 - 3.5 - b1) + (2 - 3.5 - b3)) / 4  # -11/24
    expected_users = [((5 - 3.5 - b10) + (3 - 3.5 - b20)) / 3,  # 25/72
                      (4 - 3.5 - b10) / 2,  # 1/24
                      (2 - 3.5 - b20) / 2]  # -25/48
    assert np.allclose(model.item_bias_, [5 / 12, -11 / 24])
    assert np.allclose(model.user_bias_, expected_users)
    assert np.allclose(model.user_bias_, [25 / 72, 1 / 24, -25 / 48])


def test_without_damping_biases_fit_an_additive_matrix_exactly():
    users, items = np.meshgrid([1, 2, 3], [10, 20, 30, 40], indexing="ij")
    a, c = np.array([0.5, -0.5, 0.0]), np.array([1.0, 0.0, -1.0, 0.5])
    table = pd.DataFrame({"user": users.ravel(), "item": items.ravel(),
                          "rating": (3 + a[:, None] + c[None, :]).ravel()})
    model = BiasBaseline(reg_user=0, reg_item=0, n_iter=5).fit(table)
    assert np.allclose(model.predict(table), table["rating"])


def test_damping_pulls_rare_films_towards_zero():
    # Film 1: one 5. Film 2: ten 4s. Film 3: ten 2s, so mu = 65 / 21 = 3.1.
    train = pd.DataFrame({"user": range(1, 22), "item": [1] + [2] * 10 + [3] * 10,
                          "rating": [5.0] + [4.0] * 10 + [2.0] * 10})
    plain = BiasBaseline(reg_user=0, reg_item=0, n_iter=1).fit(train)
    damped = BiasBaseline(reg_user=0, reg_item=10, n_iter=1).fit(train)
    assert plain.item_bias_[0] > plain.item_bias_[1]  # one 5 beats ten 4s...
    assert damped.item_bias_[0] < damped.item_bias_[1]  # ...until damped


def test_unknown_ids_raise_naming_the_id_or_fall_back_to_bias():
    model = BiasBaseline(reg_user=1, reg_item=2, n_iter=1).fit(FOUR)
    with pytest.raises(KeyError, match=r"user \S*99"):
        model.predict(pd.DataFrame({"user": [1, 99], "item": [10, 10]}))
    with pytest.raises(KeyError, match=r"item \S*77"):
        model.predict(pd.DataFrame({"user": [1], "item": [77]}))
    pred = model.predict(pd.DataFrame({"user": [99, 1, 99], "item": [10, 77, 77]}),
                         unknown="bias")
    assert np.allclose(pred, [3.5 + 0.5, 3.5 + 1 / 3, 3.5])


@pytest.mark.parametrize("cls", [GlobalMean, BiasBaseline])
def test_predict_agrees_on_a_frame_and_its_reordered_rows(cls):
    data = planted_ratings(n_users=30, n_items=20, n_ratings=200, seed=1).ratings
    model = cls().fit(data)
    whole = model.predict(data)
    shuffled = data.sample(frac=1.0, random_state=0)
    assert np.allclose(model.predict(shuffled), whole[shuffled.index])
    one_by_one = [model.predict(data.iloc[[k]])[0] for k in range(5)]
    assert np.allclose(one_by_one, whole[:5])


def test_repr_states_the_hyperparameters():
    # refitting from scratch, clone and the rest: tests/test_estimator_contract.py
    model = BiasBaseline(reg_user=3, reg_item=4, n_iter=2).fit(FOUR)
    assert repr(model) == "BiasBaseline(reg_user=3, reg_item=4, n_iter=2)"


def test_biases_beat_the_mean_on_planted_data():
    data = planted_ratings(n_users=200, n_items=150, n_ratings=6000, noise=0.3, seed=0)
    train, valid = random_split(data.ratings, 0.2, seed=0)
    mean = rmse(GlobalMean().fit(train).predict(valid), valid["rating"])
    biases = rmse(BiasBaseline().fit(train).predict(valid, unknown="bias"), valid["rating"])
    assert biases < mean - 0.1


@pytest.mark.parametrize("cls", [GlobalMean, BiasBaseline])
@pytest.mark.parametrize("change, message", [
    (lambda df: df.drop(columns="rating"), "lacks column"),
    (lambda df: df.assign(rating=[5.0, np.nan, 4.0, 2.0]), "NaN"),
    (lambda df: df.assign(rating=[5.0, 3.0, 4.0, 9.0]), "outside"),
    (lambda df: pd.concat([df, df.iloc[:1]]), "duplicate"),
])
def test_bad_training_frames_get_a_clear_error(cls, change, message):
    with pytest.raises(ValueError, match=message):
        cls().fit(change(FOUR))


@pytest.mark.parametrize("params", [{"reg_user": -1}, {"reg_item": np.inf},
                                    {"n_iter": 0}, {"n_iter": 2.5}])
def test_bad_hyperparameters_are_named(params):
    name = next(iter(params))
    with pytest.raises(ValueError, match=name):
        BiasBaseline(**params).fit(FOUR)


@pytest.mark.parametrize("cls", [GlobalMean, BiasBaseline])
def test_predict_checks_its_input_and_state(cls):
    with pytest.raises(RuntimeError, match="not fitted"):
        cls().predict(FOUR)
    model = cls().fit(FOUR)
    with pytest.raises(ValueError, match="lacks column"):
        model.predict(FOUR.drop(columns="item"))
    with pytest.raises(ValueError, match="policy"):
        model.predict(FOUR, unknown="ignore")

"""Bad input found when the package was tried as a new user would: one clear error each."""

import numpy as np
import pandas as pd
import pytest

import cfcourse
from cfcourse.data import planted_ratings

SMALL = {"epochs": 6, "n_factors": 4, "bs": 128}


@pytest.fixture(scope="module")
def ratings():
    return planted_ratings(n_users=50, n_items=40, n_ratings=800, n_factors=3, seed=0).ratings


@pytest.fixture(scope="module")
def model(ratings):
    return cfcourse.fit(ratings, **SMALL)


def test_load_of_a_numeric_npy_names_the_problem(tmp_path):
    np.save(tmp_path / "numbers.npy", np.arange(5.0))
    with pytest.raises(ValueError, match="not a cfcourse model file"):
        cfcourse.load(tmp_path / "numbers.npy")


def test_load_of_a_damaged_file_never_suggests_pickle(tmp_path, model):
    model.save(tmp_path / "m.npz")
    whole = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="damaged") as caught:
        cfcourse.load(tmp_path / "cut.npz")
    assert "pickle" not in str(caught.value), "a model file never needs pickle"


def test_save_into_a_missing_folder_names_the_folder(tmp_path, model):
    target = tmp_path / "no" / "such" / "m.npz"
    with pytest.raises(FileNotFoundError) as caught:
        model.save(target)
    assert str(target.parent) in str(caught.value) and ".part" not in str(caught.value)
    assert not list(tmp_path.rglob("*.part*")), "nothing is left half-written"


def test_a_reversed_rating_range_is_called_reversed(ratings):
    with pytest.raises(ValueError, match="reversed"):
        cfcourse.fit(ratings, rating_range=(5, 1), **SMALL)


def test_divergence_names_the_learning_rate(ratings):
    with pytest.raises(FloatingPointError, match=r"lr=1e\+06"):
        cfcourse.fit(ratings, lr=1e6, **SMALL)


def test_a_fit_no_better_than_the_mean_names_the_learning_rate(ratings):
    with pytest.raises(ValueError, match=r"no better than predicting the global mean.*lr=1e-09"):
        cfcourse.fit(ratings, lr=1e-9, **SMALL)


def test_an_unknown_option_is_named(ratings):
    with pytest.raises(ValueError, match=r"unknown option.*'n_layers'"):
        cfcourse.fit(ratings, n_layers=3)
    with pytest.raises(ValueError, match=r"'layers'.*do not apply to kind='dot_bias'"):
        cfcourse.fit(ratings, layers=[8])


def test_predict_says_which_rows_fell_back(ratings, model):
    query = pd.DataFrame({"user": [ratings["user"].iloc[0], 10**6, 10**6],
                          "item": [ratings["item"].iloc[0], ratings["item"].iloc[0], 10**6]})
    pred, fell_back = model.predict(query, unknown="bias", return_fallback=True)
    assert fell_back.tolist() == [False, True, True]
    assert pred[2] == pytest.approx(model.global_mean_), "a pair of strangers gets the mean"
    assert np.array_equal(pred, model.predict(query, unknown="bias"))


def test_fit_takes_a_callback_per_epoch(ratings):
    seen = []
    cfcourse.fit(ratings, callback=lambda epoch, network: seen.append(epoch), **SMALL)
    assert seen == list(range(SMALL["epochs"]))


def test_the_estimator_refuses_use_before_fit(ratings):
    from cfcourse.models.base import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted"):
        cfcourse.Recommender().recommend(1)
    with pytest.raises(NotFittedError):
        cfcourse.Recommender().user_factors_  # noqa: B018


def test_the_compiled_engine_names_the_learning_rate_when_it_diverges(ratings):
    pytest.importorskip("numba")
    with pytest.raises(FloatingPointError, match=r"lr=1e\+06"):
        cfcourse.fit(ratings, engine="compiled", lr=1e6, threads=1, epochs=3, n_factors=4)


def test_the_nn_kind_takes_the_callback_too(ratings):
    seen = []
    cfcourse.fit(ratings, kind="nn", epochs=4, lr=0.01, layers=[8], bs=128,
                 callback=lambda epoch, network: seen.append(epoch))
    assert seen == [0, 1, 2, 3], "fit(callback=) must reach every kind's training loop"

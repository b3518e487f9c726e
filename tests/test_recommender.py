import numpy as np
import pandas as pd
import pytest
import torch

import cfcourse
from cfcourse.data import planted_ratings, random_split
from cfcourse.metrics import rmse

SMALL = {"epochs": 10, "n_factors": 8, "bs": 256, "lr": 0.2}


@pytest.fixture(scope="module")
def data():
    planted = planted_ratings(n_users=120, n_items=80, n_ratings=4000, n_factors=4, noise=0.3,
                              seed=0)
    ratings = planted.ratings.assign(title=lambda d: "Film " + d["item"].astype(str))
    train, valid = random_split(ratings, 0.1, seed=0)
    return train, valid[valid["user"].isin(train["user"]) & valid["item"].isin(train["item"])]


@pytest.fixture(scope="module")
def model(data):
    return cfcourse.fit(data[0], **SMALL)


def test_fit_learns_better_than_the_mean(data, model):
    train, valid = data
    baseline = rmse(np.full(len(valid), train["rating"].mean()), valid["rating"])
    assert rmse(model.predict(valid), valid["rating"]) < 0.9 * baseline
    assert model.history_[-1] < model.history_[0]
    assert "120 users" in repr(model)


def test_predict_is_aligned_with_rows_in_any_order(data, model):
    valid = data[1]
    forward = model.predict(valid)
    shuffled = valid.sample(frac=1.0, random_state=1)
    expected = pd.Series(forward, index=valid.index).loc[shuffled.index].to_numpy()
    assert np.allclose(model.predict(shuffled), expected)
    one_by_one = [model.predict(valid.iloc[[k]])[0] for k in range(5)]
    assert np.allclose(one_by_one, forward[:5], atol=1e-6)
    assert model.predict(valid.iloc[:0]).shape == (0,)


def test_predictions_stay_in_rating_range(data, model):
    out = model.predict(data[1])
    assert out.min() >= 0.5 and out.max() <= 5.0


def test_unknown_ids_raise_or_fall_back(model):
    strangers = pd.DataFrame({"user": [1, 99999], "item": [99999, 1]})
    with pytest.raises(KeyError, match="user 99999 is not in the training data"):
        model.predict(strangers)
    out = model.predict(strangers, unknown="bias")
    mean, ub, ib = model.global_mean_, model.user_bias_, model.item_bias_
    u1 = model.users_.encode([1])[0]
    i1 = model.items_.encode([1])[0]
    assert np.allclose(out, [mean + ub[u1], mean + ib[i1]], atol=1e-6)
    with pytest.raises(ValueError, match="'raise' or 'bias'"):
        model.predict(strangers, unknown="zero")


def test_recommend_excludes_rated_and_is_sorted(data, model):
    train = data[0]
    user = int(train["user"].iloc[0])
    recs = model.recommend(user, k=5)
    assert list(recs.columns) == ["item", "title", "score"] and len(recs) == 5
    assert recs["score"].is_monotonic_decreasing
    assert not set(recs["item"]) & set(train.loc[train["user"] == user, "item"])
    everything = model.recommend(user, k=1000, exclude_rated=False)
    assert len(everything) == len(model.items_)
    assert np.isclose(everything["score"].iloc[0], model.predict(pd.DataFrame(
        {"user": [user], "item": [everything["item"].iloc[0]]}))[0], atol=1e-5)


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_recommend_rejects_bad_k(model, k):
    with pytest.raises(ValueError, match="positive integer"):
        model.recommend(1, k=k)


def test_recommend_unknown_user(model):
    with pytest.raises(KeyError, match="user 424242"):
        model.recommend(424242)


def test_similar_items_by_cosine(model):
    sims = model.similar_items(1, k=4)
    assert len(sims) == 4 and 1 not in set(sims["item"])
    factors = model.item_factors_
    i, j = model.items_.encode([1, sims["item"].iloc[0]])
    expected = factors[i] @ factors[j] / np.linalg.norm(factors[i]) / np.linalg.norm(factors[j])
    assert np.isclose(sims["similarity"].iloc[0], expected, atol=1e-5)


def test_save_and_load_round_trip(tmp_path, data, model):
    path = tmp_path / "model.npz"
    model.save(path)
    back = cfcourse.load(path)
    assert np.allclose(back.predict(data[1]), model.predict(data[1]))
    assert back.recommend(1, k=3).equals(model.recommend(1, k=3))
    assert not list(tmp_path.glob("*.part*"))


def test_load_refuses_pickles_and_foreign_files(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    with pytest.raises(ValueError, match="not a cfcourse model"):
        cfcourse.load(tmp_path / "other.npz")
    np.save(tmp_path / "evil.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        cfcourse.load(tmp_path / "evil.npy")


def test_nn_kind_fits_predicts_and_round_trips(tmp_path, data):
    model = cfcourse.fit(data[0], kind="nn", epochs=3, layers=[16], bs=256)
    out = model.predict(data[1])
    assert out.shape == (len(data[1]),) and out.min() >= 0.5 and out.max() <= 5.0
    model.save(tmp_path / "nn.npz")
    assert np.allclose(cfcourse.load(tmp_path / "nn.npz").predict(data[1]), out)
    assert len(model.recommend(1, k=3)) == 3


def test_string_ids_and_no_titles(tmp_path):
    df = pd.DataFrame({"user": ["ann", "ann", "bob", "bob", "cy"], "item": ["x", "y", "x", "z", "y"],
                       "rating": [5.0, 3.0, 4.0, 1.0, 2.0]})
    model = cfcourse.fit(df, epochs=2, n_factors=2)
    assert list(model.recommend("cy", k=2).columns) == ["item", "score"]
    model.save(tmp_path / "s.npz")
    assert cfcourse.load(tmp_path / "s.npz").recommend("cy", k=2)["item"].tolist() == \
        model.recommend("cy", k=2)["item"].tolist()


@pytest.mark.parametrize("kwargs,match", [
    ({"kind": "svd"}, "kind must be one of"),
    ({"n_layers": 3}, "unknown option"),
])
def test_fit_rejects_bad_options(data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cfcourse.fit(data[0], **kwargs)


@pytest.mark.parametrize("frame,match", [
    (pd.DataFrame({"userId": [1], "movieId": [2], "rating": [3.0]}), "lacks column"),
    (pd.DataFrame({"user": [1, 1], "item": [2, 2], "rating": [3.0, 4.0]}), "duplicate"),
    (pd.DataFrame({"user": [1], "item": [2], "rating": [np.nan]}), "NaN"),
    (pd.DataFrame({"user": [1], "item": [2], "rating": [9.0]}), "outside"),
    (pd.DataFrame({"user": [1], "item": [2], "rating": ["five"]}), "not numbers"),
    (pd.DataFrame({"user": [], "item": [], "rating": []}), "empty"),
])
def test_fit_rejects_bad_frames(frame, match):
    with pytest.raises(ValueError, match=match):
        cfcourse.fit(frame)


def test_fit_is_reproducible(data):
    # to the bit on the CPU; a GPU's atomic additions may differ in the last bits
    a = cfcourse.fit(data[0], random_state=3, device="cpu", **SMALL).predict(data[1])
    b = cfcourse.fit(data[0], random_state=3, device="cpu", **SMALL).predict(data[1])
    assert np.array_equal(a, b)


def test_nn_unknown_fallback_uses_baseline_biases(data):
    from cfcourse.models.baselines import BiasBaseline

    model = cfcourse.fit(data[0], kind="nn", epochs=3, layers=[8], bs=256)
    base = BiasBaseline().fit(data[0])
    strangers = pd.DataFrame({"user": [1, 777777], "item": [888888, 1]})
    assert np.allclose(model.predict(strangers, unknown="bias"),
                       base.predict(strangers, unknown="bias"), atol=1e-5)


# -- devices: env.device() unless the caller says otherwise -------------------------------------
class _Stop(Exception):
    pass


@pytest.mark.parametrize("kind,trainer", [("dot_bias", "fit_sparse"), ("nn", "fit_plain")])
def test_fit_trains_on_env_device(data, monkeypatch, kind, trainer):
    from cfcourse import env, recommender

    seen = {}

    def spy(model, x, y, **kwargs):
        seen.update(model=next(model.parameters()).device.type, x=x.device.type, y=y.device.type)
        raise _Stop

    monkeypatch.setattr(env, "device", lambda: torch.device("meta"))  # any device but the CPU
    monkeypatch.setattr(recommender, trainer, spy)
    with pytest.raises(_Stop):
        cfcourse.fit(data[0], kind=kind, epochs=1)
    assert seen == {"model": "meta", "x": "meta", "y": "meta"}, "model and data together"


def test_a_device_passed_to_fit_or_load_wins(tmp_path, data, monkeypatch):
    from cfcourse import env

    monkeypatch.setattr(env, "device", lambda: torch.device("meta"))
    model = cfcourse.fit(data[0], device="cpu", **SMALL)
    assert model.device_ == torch.device("cpu")
    model.save(tmp_path / "m.npz")
    assert cfcourse.load(tmp_path / "m.npz").device_.type == "meta", "load follows env.device()"
    back = cfcourse.load(tmp_path / "m.npz", device="cpu")
    assert back.device_ == torch.device("cpu")
    assert np.allclose(back.predict(data[1]), model.predict(data[1]))


def test_ci_scale_fits_on_the_cpu_even_with_cuda(data, monkeypatch):
    from cfcourse import env

    monkeypatch.setenv("CFCOURSE_SCALE", "ci")
    monkeypatch.setattr(env, "_cuda_available", lambda: True)
    assert cfcourse.fit(data[0], epochs=2, bs=256, n_factors=2).device_ == torch.device("cpu")


# -- engines: PyTorch minibatches or the compiled per-rating loop ------------------------------
def test_auto_picks_torch_when_a_torch_only_option_is_given_and_records_it(model):
    assert SMALL.get("bs") is not None, "the module's model passes bs"
    assert model.engine == "auto" and model.engine_ == "torch" \
        and model.options_["engine"] == "torch"


def test_auto_picks_the_compiled_engine_on_the_cpu_when_numba_imports(data, monkeypatch):
    from cfcourse import compiled
    from cfcourse.recommender import _engine

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(compiled, "available", lambda: True)
    assert _engine("auto", "dot_bias", cpu, {"epochs": 3}) == "compiled"
    assert _engine("auto", "dot_bias", cpu, {"optimizer": "row_adagrad"}) == "torch"
    assert _engine("auto", "dot_bias", gpu, {}) == "torch", "on a GPU, PyTorch"
    assert _engine("auto", "nn", cpu, {}) == "torch", "the compiled engine trains dot_bias only"
    monkeypatch.setattr(compiled, "available", lambda: False)
    assert _engine("auto", "dot_bias", cpu, {}) == "torch", "without numba, PyTorch"
    monkeypatch.undo()
    if compiled.available():
        fitted = cfcourse.fit(data[0], epochs=3, n_factors=4)
        assert fitted.engine_ == "compiled" and fitted.options_["order"] == "blocks"


def test_compiled_engine_learns_records_itself_and_round_trips(tmp_path, data):
    pytest.importorskip("numba")
    train, valid = data
    model = cfcourse.fit(train, engine="compiled", epochs=10, n_factors=8, threads=1)
    assert model.engine_ == "compiled" and model.options_["order"] == "blocks"
    baseline = rmse(np.full(len(valid), train["rating"].mean()), valid["rating"])
    assert rmse(model.predict(valid), valid["rating"]) < 0.9 * baseline, (
        "the compiled engine should beat predicting the mean")
    again = cfcourse.fit(train, engine="compiled", epochs=10, n_factors=8, threads=1)
    assert np.array_equal(again.predict(valid), model.predict(valid)), (
        "one thread and a seed: the same model to the bit")
    model.save(tmp_path / "c.npz")
    back = cfcourse.load(tmp_path / "c.npz")
    assert back.engine_ == "compiled" and np.allclose(back.predict(valid), model.predict(valid))


def test_compiled_engine_uses_its_own_settings(data, monkeypatch):
    pytest.importorskip("numba")
    from cfcourse import compiled
    from cfcourse.recommender import COMPILED_DEFAULTS, DEFAULTS

    seen = {}

    def spy(model, x, y, **kwargs):
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr(compiled, "fit_compiled", spy)
    with pytest.raises(_Stop):
        cfcourse.fit(data[0], engine="compiled", order="shuffle")
    assert seen["lr"] == COMPILED_DEFAULTS["lr"] and seen["reg"] == COMPILED_DEFAULTS["reg"]
    assert seen["order"] == "shuffle" and seen["epochs"] == COMPILED_DEFAULTS["epochs"]
    assert seen["reg_bias"] == DEFAULTS["dot_bias"]["reg_bias"], "reg_bias is shared"
    with pytest.raises(_Stop):
        cfcourse.fit(data[0], engine="compiled", lr=0.01)
    assert seen["lr"] == 0.01, "a given lr wins over the engine's default"


def test_auto_engine_picks_compiled_on_the_cpu_and_torch_otherwise(data, monkeypatch):
    from cfcourse import compiled, recommender

    def stop(*args, **kwargs):
        raise _Stop

    calls = []
    monkeypatch.setattr(recommender, "fit_sparse", lambda *a, **k: calls.append("torch") or stop())
    monkeypatch.setattr(compiled, "fit_compiled", lambda *a, **k: calls.append("compiled") or stop())
    monkeypatch.setattr(compiled, "available", lambda: True)
    for device in ("cpu", "meta"):  # meta stands for any device but the CPU (a GPU)
        with pytest.raises(_Stop):
            cfcourse.fit(data[0], engine="auto", device=device)
    monkeypatch.setattr(compiled, "available", lambda: False)  # numba missing
    with pytest.raises(_Stop):
        cfcourse.fit(data[0], engine="auto", device="cpu")
    assert calls == ["compiled", "torch", "torch"]


@pytest.mark.parametrize("kwargs,match", [
    ({"engine": "numba"}, "engine must be one of"),
    ({"engine": "compiled", "kind": "nn"}, "trains kind='dot_bias' only"),
    ({"engine": "compiled", "device": "meta"}, "runs on the CPU"),
    ({"engine": "compiled", "order": "random"}, "order must be one of"),
    ({"engine": "compiled", "n_layers": 2}, "unknown option"),
    ({"engine": "torch", "order": "by_user"}, "belong to engine='compiled'"),
])
def test_fit_rejects_bad_engine_options(data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cfcourse.fit(data[0], **kwargs)


def test_the_package_works_without_numba():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['numba'] = None\n"  # import numba fails from here on
        "import pandas as pd, cfcourse\n"
        "from cfcourse import compiled\n"
        "df = pd.DataFrame({'user': [1, 1, 2], 'item': [1, 2, 1], 'rating': [4.0, 3.0, 5.0]})\n"
        "assert not compiled.available()\n"
        "assert cfcourse.fit(df, engine='auto', epochs=30, device='cpu').engine_ == 'torch'\n"
        "try:\n"
        "    cfcourse.fit(df, engine='compiled', epochs=1)\n"
        "except ImportError as err:\n"
        "    assert 'numba' in str(err)\n"
        "else:\n"
        "    raise AssertionError('engine=compiled without numba should raise ImportError')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]


# -- kind="bayes": Gibbs sampling behind the same estimator ---------------------------------------
def test_bayes_kind_predicts_the_samplers_average_and_round_trips(tmp_path, data):
    from cfcourse.models.bayesian import BayesianMF

    train, valid = data
    model = cfcourse.fit(train, kind="bayes", n_factors=3, n_iter=30, burn_in=10)
    sampler = BayesianMF(n_factors=3, n_iter=30, burn_in=10).fit(train)
    assert np.allclose(model.predict(valid), sampler.predict(valid), atol=1e-5), (
        "the estimator is the sampler: the same posterior average")
    baseline = rmse(np.full(len(valid), train["rating"].mean()), valid["rating"])
    assert rmse(model.predict(valid), valid["rating"]) < 0.9 * baseline
    assert np.allclose(model.score_matrix(), sampler.score_matrix())
    assert model.engine_ == "gibbs" and len(model.history_) == 30
    with pytest.raises(AttributeError, match="average means nothing"):
        model.user_factors_  # noqa: B018
    recs = model.recommend(int(train["user"].iloc[0]), k=3)
    assert len(recs) == 3 and recs["score"].is_monotonic_decreasing
    model.save(tmp_path / "b.npz")
    back = cfcourse.load(tmp_path / "b.npz")
    assert np.allclose(back.predict(valid), model.predict(valid))
    assert back.top_k(k=3).keys() == model.top_k(k=3).keys()

"""One contract for every estimator of the package (scikit-learn's conventions).

The rating models (predict stars) and the top-k models of chapters 11 and 12 (score every
item for a user) are checked the same way.

For each estimator: ``fit`` returns ``self``; a refit starts from scratch (fit on A then on B
equals a fresh fit on B); predictions do not depend on the order of the query rows; use
before ``fit`` raises ``NotFittedError``; ``sklearn.base.clone`` gives an unfitted copy with the
same hyperparameters, which fits to the same predictions.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from cfcourse.coldstart import MetadataRidge
from cfcourse.data import planted_ratings, random_split
from cfcourse.data.synthetic import planted_interactions
from cfcourse.models.base import NotFittedError
from cfcourse.models.baselines import BiasBaseline, GlobalMean
from cfcourse.models.bayesian import BayesianMF
from cfcourse.models.bpr import BPR
from cfcourse.models.ease import EASE
from cfcourse.models.ials import ImplicitALS
from cfcourse.models.item_knn import ItemKNN
from cfcourse.models.neighbors import KNNRegressor
from cfcourse.models.neural_scorer import PairwiseRanker
from cfcourse.models.popularity import Popularity
from cfcourse.recommender import Recommender


def _ratings(seed):
    world = planted_ratings(n_users=60, n_items=40, n_ratings=1000, n_factors=3, noise=0.3,
                            seed=seed)
    train, query = random_split(world.ratings, 0.2, seed=seed)
    known = query["user"].isin(train["user"]) & query["item"].isin(train["item"])
    return train, query[known]


def _features(seed, n=80):
    """A metadata table and a target table indexed by the same ids (MetadataRidge's input)."""
    rng = np.random.default_rng(seed)
    ids = pd.Index(np.arange(n) + 100 * seed, name="user")
    x = pd.DataFrame(rng.normal(size=(n, 4)), index=ids, columns=list("abcd"))
    y = pd.DataFrame(x.to_numpy() @ rng.normal(size=(4, 2)) + 0.1 * rng.normal(size=(n, 2)),
                     index=ids, columns=["bias", "f0"])
    return (x, y), x.sample(frac=1.0, random_state=seed).iloc[:30]


def _fit_ratings(model, data):
    return model.fit(data[0])


def _predict_ratings(model, query):
    return np.asarray(model.predict(query))


def _fit_features(model, data):
    return model.fit(*data[0])


def _predict_features(model, query):
    return model.predict(query).to_numpy()


@dataclass
class Case:
    make: Callable
    data: Callable = _ratings
    fit: Callable = _fit_ratings
    predict: Callable = _predict_ratings


def _needs_numba():
    pytest.importorskip("numba")
    return Recommender(engine="compiled", n_factors=4, epochs=4, threads=1)


CASES = {
    "GlobalMean": Case(GlobalMean),
    "BiasBaseline": Case(lambda: BiasBaseline(reg_user=5, n_iter=3)),
    "KNNRegressor-user": Case(lambda: KNNRegressor(kind="user", k=10)),
    "KNNRegressor-item": Case(lambda: KNNRegressor(kind="item", k=10)),
    "MetadataRidge": Case(MetadataRidge, _features, _fit_features, _predict_features),
    "Recommender-dot_bias": Case(lambda: Recommender(n_factors=4, epochs=4, bs=256)),
    "Recommender-dot_bias-compiled": Case(_needs_numba),
    "Recommender-nn": Case(lambda: Recommender(kind="nn", epochs=5, lr=0.01, layers=[8], bs=128)),
    "Recommender-bayes": Case(lambda: Recommender(kind="bayes", n_factors=3, n_iter=12,
                                                  burn_in=4)),
    "BayesianMF": Case(lambda: BayesianMF(n_factors=3, n_iter=12, burn_in=4)),
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request):
    return CASES[request.param]


def _query(case, seed):
    data = case.data(seed)
    return data, data[1]


def test_fit_returns_self(case):
    model = case.make()
    data, _ = _query(case, 0)
    assert case.fit(model, data) is model


def test_refit_starts_from_scratch(case):
    first, second = case.data(0), case.data(1)
    refitted = case.fit(case.fit(case.make(), first), second)
    fresh = case.fit(case.make(), second)
    assert np.allclose(case.predict(refitted, second[1]), case.predict(fresh, second[1]),
                       atol=1e-6), "a second fit must forget the first one's data"


def test_predictions_do_not_depend_on_row_order(case):
    data, query = _query(case, 0)
    model = case.fit(case.make(), data)
    forward = case.predict(model, query)
    backward = case.predict(model, query.iloc[::-1])
    assert np.allclose(forward, backward[::-1], atol=1e-6)


def test_use_before_fit_raises_a_clear_error(case):
    _, query = _query(case, 0)
    with pytest.raises(NotFittedError, match="not fitted"):
        case.predict(case.make(), query)


def test_clone_is_an_unfitted_copy_that_fits_the_same(case):
    data, query = _query(case, 0)
    model = case.fit(case.make(), data)
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        case.predict(copy, query)
    assert np.allclose(case.predict(case.fit(copy, data), query), case.predict(model, query),
                       atol=1e-6), "same hyperparameters, same data: the same model"


def test_set_params_names_a_wrong_parameter(case):
    with pytest.raises(ValueError, match="unknown parameter|unknown option"):
        case.make().set_params(no_such_parameter=1)


# -- the top-k (implicit-feedback) models: fit(interactions), scores(users) -------------------
def _interactions(seed):
    world = planted_interactions(n_users=40, n_items=30, n_interactions=400, n_factors=3,
                                 seed=seed)
    frame = world.interactions[["user", "item"]]
    users = frame["user"].drop_duplicates().to_numpy()[:12]
    return frame, users


def _scores(model, users):
    return model.scores(users)


TOPK = {
    "Popularity": lambda: Popularity(),
    "ItemKNN": lambda: ItemKNN(n_neighbors=10),
    "EASE": lambda: EASE(reg=10.0),
    "ImplicitALS": lambda: ImplicitALS(n_factors=3, n_iter=3),
    "BPR": lambda: BPR(n_factors=3, n_iter=2, batch_size=64),
    "PairwiseRanker-mlp": lambda: PairwiseRanker(scorer="mlp", n_factors=3, hidden=(4,),
                                                 n_iter=2, batch_size=64),
}
TOPK_CASES = {name: Case(make, _interactions, _fit_ratings, _scores)
              for name, make in TOPK.items()}


@pytest.fixture(params=list(TOPK_CASES), ids=list(TOPK_CASES))
def topk_case(request):
    return TOPK_CASES[request.param]


def test_topk_models_follow_the_contract(topk_case):
    case = topk_case
    first, second = case.data(0), case.data(1)
    model = case.make()
    assert case.fit(model, first) is model, "fit returns self"
    refitted = case.fit(model, second)
    fresh = case.fit(case.make(), second)
    assert np.allclose(case.predict(refitted, second[1]), case.predict(fresh, second[1]),
                       atol=1e-6), "a second fit must forget the first one's data"
    forward = case.predict(fresh, second[1])
    assert np.allclose(case.predict(fresh, second[1][::-1]), forward[::-1], atol=1e-6)
    copy = clone(fresh)
    assert copy.get_params() == fresh.get_params()
    with pytest.raises(NotFittedError, match="not fitted"):
        case.predict(copy, second[1])
    assert np.allclose(case.predict(case.fit(copy, second), second[1]), forward, atol=1e-6)

import numpy as np
import pandas as pd
import pytest

from cfcourse.data import (
    ML25M_SHAPE,
    QUALITIES,
    enjoyment,
    favourite_pizzas,
    make_pizza_world,
    planted_ratings,
    random_split,
    write_ratings_csv,
)


def frame(n):
    return pd.DataFrame({"user": np.arange(n), "item": np.arange(n) % 7, "rating": np.ones(n)})


def test_split_sizes_are_exact_and_disjoint():
    train, valid = random_split(frame(1000), valid_pct=0.2, seed=1)
    assert (len(train), len(valid)) == (800, 200)
    assert set(train["user"]).isdisjoint(valid["user"])
    assert set(train["user"]) | set(valid["user"]) == set(range(1000))


def test_split_is_reproducible_and_seed_dependent():
    a, _ = random_split(frame(100), 0.2, seed=3)
    b, _ = random_split(frame(100), 0.2, seed=3)
    c, _ = random_split(frame(100), 0.2, seed=4)
    assert a.equals(b) and not a.equals(c)


@pytest.mark.parametrize("pct", [0, 1, -0.1, 1.5])
def test_split_rejects_bad_share(pct):
    with pytest.raises(ValueError, match="between 0 and 1"):
        random_split(frame(10), pct)


def test_split_rejects_tiny_frames():
    with pytest.raises(ValueError, match="at least 2"):
        random_split(frame(1), 0.5)


def test_pizza_world_is_seeded_and_consistent():
    a = make_pizza_world(n_people=30, n_pizzas=25, density=1.0, noise=0.0, seed=5)
    b = make_pizza_world(n_people=30, n_pizzas=25, density=1.0, noise=0.0, seed=5)
    assert a.ratings.equals(b.ratings)
    assert len(a.ratings) == 30 * 25
    assert a.pizzas["name"].iloc[-1] == "Pizza 25"  # beyond the named menu
    row = a.ratings.iloc[17]
    tastes = a.people.loc[row["user"], list(QUALITIES)]
    qualities = a.pizzas.loc[row["item"], list(QUALITIES)]
    assert np.isclose(row["rating"], enjoyment(tastes, qualities), atol=1e-6)
    assert a.pizzas[list(QUALITIES)].abs().to_numpy().max() <= 1.0
    assert "30 people × 25 pizzas" in repr(a)


def test_pizza_density_and_noise():
    world = make_pizza_world(n_people=400, n_pizzas=20, density=0.25, noise=0.2, seed=0)
    assert 0.2 < len(world.ratings) / (400 * 20) < 0.3
    truth = enjoyment(world.people.loc[world.ratings["user"], list(QUALITIES)].to_numpy(),
                      world.pizzas.loc[world.ratings["item"], list(QUALITIES)].to_numpy())
    assert 0.18 < np.std(world.ratings["rating"] - truth) < 0.22


def test_pizza_true_scores_and_unrated_pairs():
    world = make_pizza_world(n_people=6, n_pizzas=5, density=0.5, noise=0.0, seed=2)
    truth = world.true_scores()
    assert truth.shape == (6, 5)
    # hand-computed: person 3's tastes dotted with pizza 4's qualities
    tastes = world.people.loc[3, list(QUALITIES)].to_numpy(dtype=float)
    qualities = world.pizzas.loc[4, list(QUALITIES)].to_numpy(dtype=float)
    assert np.isclose(truth[3, 4], sum(t * q for t, q in zip(tastes, qualities)))
    # with no noise the observed ratings are the truth at the rated pairs
    r = world.ratings
    assert np.allclose(truth[r["user"], r["item"]], r["rating"], atol=1e-6)
    holes = world.unrated_pairs()
    assert len(holes) + len(r) == 6 * 5
    rated = set(zip(r["user"], r["item"]))
    assert not rated & set(zip(holes["user"], holes["item"]))


@pytest.mark.parametrize("kwargs,match", [
    ({"n_people": 0}, "at least one"), ({"density": 0}, "density"), ({"noise": -1}, "negative"),
])
def test_pizza_world_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_pizza_world(**kwargs)


def test_favourite_pizzas_ranks_by_dot_product():
    world = make_pizza_world(seed=0)
    spice_lover = [0.0, 1.0, 0.0]
    top = favourite_pizzas(spice_lover, world.pizzas, k=3)
    assert top["score"].is_monotonic_decreasing and len(top) == 3
    assert top["name"].iloc[0] in {"Nduja", "Diavola", "Buffalo"}
    with pytest.raises(ValueError, match="positive"):
        favourite_pizzas(spice_lover, world.pizzas, k=0)


def test_planted_ratings_shape_and_range():
    data = planted_ratings(n_users=300, n_items=200, n_ratings=5000, n_factors=4, seed=0)
    r = data.ratings
    assert len(r) == 5000 and not r.duplicated(["user", "item"]).any()
    assert r["rating"].between(0.5, 5).all() and set((r["rating"] * 2) % 1) == {0.0}
    assert r["user"].min() >= 1 and r["user"].max() <= 300
    assert data.user_factors.shape == (300, 4) and data.item_factors.shape == (200, 4)
    assert 0.5 < data.noise_floor < 0.65  # noise 0.5 plus half-star rounding
    counts = r["item"].value_counts()
    assert counts.iloc[0] > 5 * counts.median(), "popularity follows a power law"


def test_planted_ratings_truth_explains_the_ratings():
    data = planted_ratings(n_users=200, n_items=100, n_ratings=4000, noise=0.3, seed=1)
    u = data.ratings["user"].to_numpy() - 1
    i = data.ratings["item"].to_numpy() - 1
    truth = data.mean + data.user_bias[u] + data.item_bias[i] + np.sum(
        data.user_factors[u] * data.item_factors[i], axis=1)
    clipped = np.clip(truth, 0.5, 5)
    rmse = np.sqrt(np.mean((clipped - data.ratings["rating"]) ** 2))
    assert rmse < 0.45 < np.std(data.ratings["rating"])


def test_planted_ratings_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="do not fit"):
        planted_ratings(n_users=10, n_items=10, n_ratings=60)
    with pytest.raises(ValueError, match="at least 1"):
        planted_ratings(n_factors=0)


def test_ml25m_shape_shrunk_as_chapter_9_does_is_a_valid_world():
    # Chapters 9 and 10 and the benchmarks build data "of ML-25M's shape" at smaller sizes by
    # shrinking users and films by sqrt(share): the shape must survive that (enough pairs).
    share = 20_000 / ML25M_SHAPE["n_ratings"]
    shape = {k: round(v * share ** 0.5) for k, v in ML25M_SHAPE.items() if k != "n_ratings"}
    data = planted_ratings(**shape, n_ratings=20_000, seed=0)
    assert len(data.ratings) == 20_000
    assert not data.ratings.duplicated(["user", "item"]).any()
    density = 20_000 / (shape["n_users"] * shape["n_items"])
    full = ML25M_SHAPE["n_ratings"] / (ML25M_SHAPE["n_users"] * ML25M_SHAPE["n_items"])
    assert density == pytest.approx(full, rel=1e-3), "shrinking by sqrt keeps the density"


def test_write_ratings_csv_uses_the_real_layout(tmp_path):
    data = planted_ratings(n_users=20, n_items=20, n_ratings=50, seed=2)
    write_ratings_csv(data.ratings, tmp_path / "ratings.csv")
    lines = (tmp_path / "ratings.csv").read_text().splitlines()
    assert lines[0] == "userId,movieId,rating,timestamp" and len(lines) == 51
    from cfcourse.data import load_ratings

    back = load_ratings("ml-25m", tmp_path)
    assert np.allclose(back["rating"], data.ratings["rating"])

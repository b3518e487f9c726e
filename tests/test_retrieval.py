"""cfcourse.retrieval: exact search against brute force, the MIPS reduction, faiss indexes."""

import numpy as np
import pytest

from cfcourse.retrieval import (
    ServingLoop,
    build_index,
    exact_top_k,
    mips_query,
    mips_transform,
    recall_at_k_vs_exact,
    search,
)

pytest.importorskip("faiss")


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(500, 8)) * rng.uniform(0.2, 2.0, size=(500, 1))  # uneven norms
    return items.astype(np.float32), rng.normal(size=(20, 8)).astype(np.float32)


def test_exact_top_k_equals_brute_force(table):
    items, queries = table
    scores, top = exact_top_k(queries, items, k=10)
    full = queries @ items.T
    brute = np.argsort(-full, axis=1)[:, :10]
    assert np.array_equal(top, brute)
    assert np.allclose(scores, np.take_along_axis(full, brute, axis=1))


def test_exact_top_k_hand_example_and_exclude():
    items = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    query = np.array([[1.0, 0.9]])  # dot products 1.0, 1.8, 1.9
    assert exact_top_k(query, items, k=3)[1].tolist() == [[2, 1, 0]]
    assert exact_top_k(query, items, k=2, exclude={0: [2]})[1].tolist() == [[1, 0]]


def test_mips_transform_turns_distance_order_into_dot_order():
    items = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    query = np.array([[1.0, 0.9]])
    plain = ((items - query) ** 2).sum(axis=1)  # 0.81, 2.21, 0.01: distance order 2, 0, 1
    assert np.argsort(plain).tolist() == [2, 0, 1], "without the transform the orders differ"
    augmented, big = mips_transform(items)
    assert np.isclose(big, 2.0)
    assert np.allclose(np.linalg.norm(augmented, axis=1), big), "every item should have norm M"
    dist = ((augmented - mips_query(query)) ** 2).sum(axis=1)
    assert np.argsort(dist).tolist() == [2, 1, 0], "nearest should be the top dot products"
    # the identity ||p~ - q~||^2 = ||p||^2 + M^2 - 2 p.q, exactly
    assert np.allclose(dist, (query**2).sum() + big**2 - 2 * (items @ query[0]))


def test_mips_transform_preserves_order_on_a_random_table(table):
    items, queries = table
    augmented, _ = mips_transform(items)
    dist = ((mips_query(queries)[:, None, :] - augmented[None, :, :]) ** 2).sum(axis=2)
    assert np.array_equal(np.argsort(dist, axis=1)[:, :10], exact_top_k(queries, items, 10)[1])


def test_flat_index_is_exact_and_ivf_with_every_cell_is_exact(table):
    items, queries = table
    exact = exact_top_k(queries, items, k=10)[1]
    assert np.array_equal(search(build_index(items, "flat"), queries, 10)[1], exact)
    ivf = build_index(items, "ivf", nlist=8, nprobe=8)
    assert np.array_equal(search(ivf, queries, 10)[1], exact), "probing every cell is exhaustive"


def test_approximate_indexes_trade_recall_for_work(table):
    items, queries = table
    exact = exact_top_k(queries, items, k=10)[1]
    one_cell = recall_at_k_vs_exact(search(build_index(items, "ivf", nlist=32, nprobe=1),
                                           queries, 10)[1], exact)
    more_cells = recall_at_k_vs_exact(search(build_index(items, "ivf", nlist=32, nprobe=16),
                                             queries, 10)[1], exact)
    assert one_cell < more_cells, "probing more cells should find more of the true top 10"
    hnsw = recall_at_k_vs_exact(search(build_index(items, "hnsw", m=16, ef_search=128),
                                       queries, 10)[1], exact)
    assert hnsw >= 0.9, f"HNSW with a wide search should find most of the top 10, got {hnsw}"


def test_recall_hand_example_and_bad_input():
    assert recall_at_k_vs_exact([[1, 2, 9], [4, 5, 6]], [[1, 2, 3], [6, 5, 4]]) == pytest.approx(
        (2 / 3 + 1) / 2)
    with pytest.raises(ValueError, match="kind must be one of"):
        build_index(np.eye(3), "annoy")
    with pytest.raises(ValueError, match="NaN"):
        exact_top_k(np.eye(2), np.array([[np.nan, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="same model"):
        exact_top_k(np.ones((1, 3)), np.eye(2))
    with pytest.raises(ValueError, match="k must be"):
        exact_top_k(np.ones((1, 2)), np.eye(2), k=3)


def test_serving_loop_filters_seen_items_and_reranks():
    items = np.eye(4, dtype=np.float32)
    ids = np.array([10, 11, 12, 13])
    taste = {7: np.array([4.0, 3.0, 2.0, 1.0], dtype=np.float32)}
    index = build_index(items, "flat")
    loop = ServingLoop(taste.get, index, ids, seen={7: {10}}, n_candidates=4)
    assert loop.recommend(7, k=2) == [11, 12]
    reverse = ServingLoop(taste.get, index, ids, rerank=lambda user, c: c.astype(float),
                          n_candidates=3)
    assert reverse.recommend(7, k=3) == [12, 11, 10], "rerank should reorder the candidates"
    timed = loop.latency([7, 7], k=1)
    assert timed["lists"] == {7: [11]} and timed["p99_ms"] >= timed["p50_ms"] > 0
    with pytest.raises(ValueError, match="one id per index row"):
        ServingLoop(taste.get, index, ids[:3])

"""Retrieval: find a user's best items among millions without scoring them all.

A factor model scores item :math:`i` for user :math:`u` as the inner product
:math:`s_{ui} = \\mathbf{p}_u \\cdot \\mathbf{q}_i`. The *exact* top-k multiplies the query by
the whole item table, :math:`O(n_{items} \\, d)` per query, and keeps the k largest with a
partial sort. An approximate nearest-neighbour (ANN) index answers the same question in
far fewer operations, at the price of sometimes missing a true top-k item: its *recall*.

Inner products are not distances (an item is not its own best match, and the triangle
inequality fails), so indexes built for Euclidean distance need a reduction. The one of
Bachrach et al. (2014) appends one coordinate so that every item has the same norm
:math:`M = \\max_i \\lVert\\mathbf{q}_i\\rVert`:

.. math:: \\tilde{\\mathbf{q}}_i = (\\mathbf{q}_i, \\sqrt{M^2 - \\lVert\\mathbf{q}_i\\rVert^2}),
          \\qquad \\tilde{\\mathbf{p}}_u = (\\mathbf{p}_u, 0),

and then :math:`\\lVert\\tilde{\\mathbf{p}}_u - \\tilde{\\mathbf{q}}_i\\rVert^2 =
\\lVert\\mathbf{p}_u\\rVert^2 + M^2 - 2\\,\\mathbf{p}_u \\cdot \\mathbf{q}_i`: the nearest item
in the new space is the item of largest inner product in the old one.

The indexes come from faiss (``pip install faiss-cpu``), imported only when used.

>>> import numpy as np
>>> items = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
>>> exact_top_k(np.array([[1.0, 1.0]]), items, k=2)[1].tolist()
[[1, 2]]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["INDEX_KINDS", "ServingLoop", "build_index", "exact_top_k", "factor_table", "index_bytes",
           "measure_search", "mips_query", "mips_transform", "recall_at_k_vs_exact",
           "search"]

INDEX_KINDS = ("flat", "ivf", "hnsw")


def _faiss():
    """Import faiss, or explain how to install it."""
    try:
        import faiss
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("cfcourse.retrieval needs faiss for its indexes: run "
                          "`pip install faiss-cpu` (or %pip install faiss-cpu in a notebook)."
                          ) from error
    return faiss


def _as_table(x, name: str) -> np.ndarray:
    """A C-contiguous float32 matrix, or a clear error."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-d table (rows are vectors), got shape "
                         f"{x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values; check the model that made them.")
    return x


def exact_top_k(queries, items, k: int = 10, exclude: Mapping | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` items of largest inner product for every query, by brute force.

    Scores are ``queries @ items.T`` (shape ``(n_queries, n_items)``); ``np.argpartition``
    keeps the k largest in :math:`O(n_{items})` and only those k are sorted.

    Parameters
    ----------
    queries : array, shape (n_queries, d)
    items : array, shape (n_items, d)
    exclude : mapping row -> sequence of item positions, optional
        Positions never returned for that query row (items a user already has).

    Returns
    -------
    (scores, positions) : arrays of shape (n_queries, k), best first.
    """
    queries, items = _as_table(queries, "queries"), _as_table(items, "items")
    if queries.shape[1] != items.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} columns but items have "
                         f"{items.shape[1]}; both must come from the same model.")
    k = _check_k(k, len(items))
    scores = queries @ items.T  # (n_queries, n_items)
    for row, positions in (exclude or {}).items():
        scores[row, np.asarray(positions, dtype=np.int64)] = -np.inf
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (n_queries, k), unordered
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    return np.take_along_axis(scores, top, axis=1), top


def factor_table(n_items: int, n_factors: int = 64, n_users: int = 1000, n_clusters: int = 64,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic ``(users, items)`` factor tables shaped like learned ones, for scale tests.

    Learned factors are not uniform noise: items form taste clusters, and popular items
    have longer vectors. Here each item is a cluster centre plus noise, its length scaled
    by a log-normal "popularity"; users are drawn around the same centres. Synthetic, and
    said so wherever it is used.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, n_factors))
    def around(n):  # points near random centres, shape (n, n_factors)
        return centres[rng.integers(0, n_clusters, n)] + 0.7 * rng.normal(size=(n, n_factors))
    items = around(n_items) * rng.lognormal(0.0, 0.3, size=(n_items, 1))
    users = around(n_users)
    return (users / np.sqrt(n_factors)).astype(np.float32), (items / np.sqrt(n_factors)
                                                             ).astype(np.float32)


def _check_k(k, n_items: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 < k <= n_items:
        raise ValueError(f"k must be an integer between 1 and the number of items "
                         f"({n_items}), got {k!r}.")
    return int(k)


def mips_transform(items) -> tuple[np.ndarray, float]:
    """Append :math:`\\sqrt{M^2 - \\lVert q_i\\rVert^2}` to every item (Bachrach et al. 2014).

    Returns the ``(n_items, d + 1)`` table, whose rows all have norm ``M``, and ``M``.
    Pair it with :func:`mips_query`; Euclidean nearest neighbours are then the top inner
    products.
    """
    items = _as_table(items, "items").astype(np.float64)
    norms2 = (items**2).sum(axis=1)
    big = float(np.sqrt(norms2.max()))
    extra = np.sqrt(np.maximum(big**2 - norms2, 0.0))  # clip rounding below zero
    return np.hstack([items, extra[:, None]]).astype(np.float32), big


def mips_query(queries) -> np.ndarray:
    """Append a 0 to every query, to search a :func:`mips_transform` table."""
    queries = _as_table(queries, "queries")
    return np.hstack([queries, np.zeros((len(queries), 1), np.float32)])


def build_index(items, kind: str = "hnsw", *, nlist: int = 256, nprobe: int = 8, m: int = 32,
                ef_construction: int = 80, ef_search: int = 64, seed: int = 0):
    """A faiss inner-product index over ``items`` (rows in ``items`` order).

    Parameters
    ----------
    kind : {"flat", "ivf", "hnsw"}
        ``flat`` compares the query with every item (exact). ``ivf`` clusters the items into
        ``nlist`` cells with k-means and searches the ``nprobe`` cells whose centres score
        highest. ``hnsw`` builds a layered graph in which each item links to about ``m``
        neighbours; a search walks it greedily, keeping ``ef_search`` candidates.
    seed : int
        Seeds the k-means of ``ivf`` (the same seed gives the same index).

    Examples
    --------
    >>> items = np.eye(4, dtype=np.float32)
    >>> search(build_index(items, "flat"), items[[2]], k=1)[1].tolist()
    [[2]]
    """
    faiss = _faiss()
    items = _as_table(items, "items")
    d = items.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        if not 0 < nprobe <= nlist <= len(items):
            raise ValueError(f"need 0 < nprobe <= nlist <= n_items, got nprobe={nprobe}, "
                             f"nlist={nlist}, n_items={len(items)}.")
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(items)
        index.nprobe = nprobe
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    else:
        raise ValueError(f"kind must be one of {INDEX_KINDS}, got {kind!r}.")
    index.add(items)
    return index


def search(index, queries, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, positions)`` of the ``k`` best items per query row, best first."""
    queries = _as_table(queries, "queries")
    if queries.shape[1] != index.d:
        raise ValueError(f"the index holds {index.d}-d vectors but the queries have "
                         f"{queries.shape[1]} columns.")
    return index.search(queries, _check_k(k, index.ntotal))


def index_bytes(index) -> int:
    """Bytes the index takes when serialised: vectors plus its structure (cells, graph)."""
    return int(_faiss().serialize_index(index).size)


def recall_at_k_vs_exact(found, exact) -> float:
    """Mean share of each row of ``exact`` (true top-k positions) that ``found`` recovered.

    >>> recall_at_k_vs_exact(np.array([[1, 2, 9]]), np.array([[1, 2, 3]]))
    0.6666666666666666
    """
    found, exact = np.asarray(found), np.asarray(exact)
    if found.shape[0] != exact.shape[0]:
        raise ValueError(f"found has {found.shape[0]} rows and exact {exact.shape[0]}; "
                         "pass the same queries to both.")
    hits = [len(np.intersect1d(f, e)) / len(e) for f, e in zip(found, exact)]
    return float(np.mean(hits))


def measure_search(search_one: Callable, queries, k: int, exact) -> dict:
    """Run ``search_one(query_row) -> positions`` one query at a time; recall and queries/s.

    One query at a time is how a service receives requests; batching queries would
    flatter the exact search (one big matrix product) and hide per-request latency.
    """
    queries = _as_table(queries, "queries")
    found, seconds = [], []
    for row in queries:
        start = time.perf_counter()
        found.append(np.asarray(search_one(row[None, :])).ravel()[:k])
        seconds.append(time.perf_counter() - start)
    seconds = np.asarray(seconds)
    return {"recall": recall_at_k_vs_exact(np.vstack(found), exact),
            "qps": float(len(seconds) / seconds.sum()),
            "p50_ms": float(np.percentile(seconds, 50) * 1e3),
            "p99_ms": float(np.percentile(seconds, 99) * 1e3)}


class ServingLoop:
    """Request → user vector → ANN candidates → re-rank → drop seen items → top k.

    Parameters
    ----------
    user_vector : callable, user -> array of shape (d,)
        The user tower (or a factor lookup) for one request.
    index : faiss index over the item vectors, rows in ``item_ids`` order.
    item_ids : array of item ids, one per index row.
    rerank : callable (user, candidate item ids) -> scores, optional
        The full model; by default the candidates keep their retrieval order.
    seen : mapping user -> collection of item ids, optional
        Items never returned to that user.
    n_candidates : int
        How many items the index retrieves before re-ranking (more: better recall, slower).

    Examples
    --------
    >>> items = np.eye(3, dtype=np.float32)
    >>> taste = {0: np.array([3.0, 2.0, 1.0])}  # user 0 scores the items 3, 2, 1
    >>> loop = ServingLoop(taste.get, build_index(items, "flat"), np.array([10, 11, 12]),
    ...                    seen={0: {10}}, n_candidates=3)
    >>> loop.recommend(0, k=2)
    [11, 12]
    """

    def __init__(self, user_vector: Callable, index, item_ids, rerank: Callable | None = None,
                 seen: Mapping | None = None, n_candidates: int = 100):
        self.user_vector, self.index, self.rerank = user_vector, index, rerank
        self.item_ids = np.asarray(item_ids)
        self.seen = seen or {}
        if len(self.item_ids) != index.ntotal:
            raise ValueError(f"item_ids has {len(self.item_ids)} ids but the index holds "
                             f"{index.ntotal} vectors; pass one id per index row.")
        self.n_candidates = min(int(n_candidates), index.ntotal)

    def recommend(self, user, k: int = 10) -> list:
        """The top ``k`` item ids for one request, best first."""
        query = np.asarray(self.user_vector(user), dtype=np.float32).reshape(1, -1)
        _, positions = self.index.search(query, self.n_candidates)
        candidates = self.item_ids[positions[0][positions[0] >= 0]]  # -1: fewer found
        seen = self.seen.get(user, ())
        if len(seen):
            candidates = candidates[~np.isin(candidates, list(seen))]
        if self.rerank is not None and len(candidates):
            scores = np.asarray(self.rerank(user, candidates))
            candidates = candidates[np.argsort(-scores, kind="stable")]
        return candidates[:k].tolist()

    def latency(self, users, k: int = 10) -> dict:
        """Serve each of ``users`` once; p50 and p99 milliseconds per request, and the lists."""
        lists, seconds = {}, []
        for user in users:
            start = time.perf_counter()
            lists[user] = self.recommend(user, k)
            seconds.append(time.perf_counter() - start)
        ms = np.asarray(seconds) * 1e3
        return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                "lists": lists}

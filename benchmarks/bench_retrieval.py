"""Retrieval at ML-25M's catalogue size: exact search vs faiss IVF and HNSW, and the serving loop.

Run: ``python benchmarks/bench.py --only retrieval``. The item table is synthetic
(``cfcourse.retrieval.factor_table``: taste clusters, log-normal vector lengths), 59,047 x 64
float32, the number of rated films in ML-25M. Every method answers the same queries one at a
time with ``faiss.omp_set_num_threads(2)`` and two BLAS threads for the exact NumPy search.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")

import numpy as np

TITLE = "Retrieval: exact vs IVF vs HNSW on a 59,047 x 64 table, and the serving loop"
N_ITEMS, N_FACTORS, N_QUERIES, K, N_CANDIDATES = 59_047, 64, 1000, 10, 100


def _row(name: str, setting: str, run: dict, build: float, mb: float, base_qps: float) -> str:
    return (f"| {name} | {setting} | {run['recall']:.3f} | {run['qps']:,.0f} | "
            f"{run['qps'] / base_qps:.1f}x | {run['p50_ms']:.3f} | {run['p99_ms']:.3f} | "
            f"{build:.1f} | {mb:.1f} |")


def run() -> list[str]:
    import faiss

    from cfcourse.retrieval import (
        ServingLoop,
        build_index,
        exact_top_k,
        factor_table,
        index_bytes,
        measure_search,
        recall_at_k_vs_exact,
    )

    faiss.omp_set_num_threads(2)
    queries, table = factor_table(N_ITEMS, N_FACTORS, n_users=N_QUERIES, seed=0)
    exact = exact_top_k(queries, table, K)[1]
    lines = [(f"Synthetic {N_ITEMS:,} x {N_FACTORS} float32 item table (factor_table, seed 0), "
             f"{N_QUERIES} queries answered one at a time, 2 threads for every method; recall@{K} "
             "against the exact top 10; build = seconds to train and fill the index; MB = "
             "serialised index size (the raw vectors are "
             f"{table.nbytes / 1e6:.1f} MB). faiss {faiss.__version__}."), "",
             "| method | setting | recall@10 | queries/s | vs exact | p50 ms | p99 ms | build s | MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    base = measure_search(lambda q: exact_top_k(q, table, K)[1], queries, K, exact)
    lines.append(_row("exact (NumPy matmul + argpartition)", "-", base, 0.0,
                      table.nbytes / 1e6, base["qps"]))
    start = time.perf_counter()
    flat = build_index(table, "flat")
    built = time.perf_counter() - start
    lines.append(_row("faiss flat", "-", measure_search(lambda q: flat.search(q, K)[1], queries,
                                                        K, exact), built,
                      index_bytes(flat) / 1e6, base["qps"]))
    nlist = 1024
    start = time.perf_counter()
    ivf = build_index(table, "ivf", nlist=nlist, nprobe=1)
    built = time.perf_counter() - start
    for nprobe in (1, 4, 8, 16, 32, 64):
        ivf.nprobe = nprobe
        lines.append(_row("faiss IVF", f"nlist={nlist} nprobe={nprobe}",
                          measure_search(lambda q: ivf.search(q, K)[1], queries, K, exact),
                          built, index_bytes(ivf) / 1e6, base["qps"]))
    start = time.perf_counter()
    hnsw = build_index(table, "hnsw", m=32, ef_construction=80)
    built = time.perf_counter() - start
    for ef in (16, 32, 64, 128, 256):
        hnsw.hnsw.efSearch = ef
        lines.append(_row("faiss HNSW", f"M=32 efSearch={ef}",
                          measure_search(lambda q: hnsw.search(q, K)[1], queries, K, exact),
                          built, index_bytes(hnsw) / 1e6, base["qps"]))
    # the serving loop: user tower (a 64x64 linear layer) -> HNSW top 100 -> exact re-rank ->
    # drop 20 "seen" items -> top 10
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(N_FACTORS, N_FACTORS)).astype(np.float32) / np.sqrt(N_FACTORS)
    features = queries @ np.linalg.inv(weight)
    seen = {u: set(rng.choice(N_ITEMS, 20, replace=False).tolist()) for u in range(N_QUERIES)}
    def user_vector(u):
        return features[u] @ weight
    def rerank(u, candidates):
        return table[candidates] @ user_vector(u)
    hnsw.hnsw.efSearch = 128
    loop = ServingLoop(user_vector, hnsw, np.arange(N_ITEMS), rerank=rerank, seen=seen,
                       n_candidates=N_CANDIDATES)
    served = loop.latency(range(N_QUERIES), k=K)
    truth = exact_top_k(queries, table, K, exclude={u: list(s) for u, s in seen.items()})[1]
    got = np.array([served["lists"][u] for u in range(N_QUERIES)])
    lines += ["", (f"Serving loop, {N_QUERIES} requests one at a time on 2 threads: user tower "
              "(64 x 64 linear layer) -> HNSW (M=32, efSearch=128) top "
              f"{N_CANDIDATES} -> exact re-rank -> remove 20 seen items -> top {K}: "
              f"p50 {served['p50_ms']:.3f} ms, p99 {served['p99_ms']:.3f} ms per request; "
              f"recall@{K} against the exact filtered top {K}: "
              f"{recall_at_k_vs_exact(got, truth):.3f}.")]
    lines += ["", ("Ten million items, on paper: the exact search's time per query grows "
              "linearly with the catalogue, so at this rate it would take about "
              f"{1e3 / base['qps'] * 1e7 / N_ITEMS:.0f} ms per query, and the table alone is "
              f"{1e7 * N_FACTORS * 4 / 1e9:.2f} GB of float32.")]
    return lines


if __name__ == "__main__":
    print("\n".join(run()))

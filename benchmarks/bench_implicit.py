"""Our ImplicitALS and BPR against the `implicit` library, like for like, on ML-100k.

Run with ``python benchmarks/bench.py --only implicit``. Same split (leave-last-out by time,
one test interaction per user), same factors, penalty, confidence, sweeps/epochs and seeds;
NDCG@10 over the full catalogue with training items excluded, evaluated by the same code
(the peer's factors are put into our model object). Seconds are the fit alone.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

TITLE = "Implicit feedback: our ImplicitALS and BPR vs the implicit library (ML-100k)"
SEEDS = (0, 1, 2)
FACTORS, ALS_REG, ALPHA, ALS_ITER = 64, 1.0, 10.0, 15
BPR_LR, BPR_REG, BPR_EPOCHS = 0.05, 0.01, 20


def run() -> list[str]:
    import implicit
    from threadpoolctl import threadpool_limits

    from cfcourse.data import load_movielens
    from cfcourse.data.split import leave_last_out
    from cfcourse.metrics import evaluate_ranking
    from cfcourse.models.bpr import BPR
    from cfcourse.models.ials import ImplicitALS

    ratings = load_movielens("ml-100k")
    train, test = leave_last_out(ratings[["user", "item", "timestamp"]], n=1)

    def ndcg(model) -> float:
        lists = model.recommend(test["user"].unique(), k=10, exclude=train)
        return float(evaluate_ranking(lists, test.assign(rating=1.0), k=10, threshold=1.0)["ndcg"])

    def timed(fit, *args):
        start = time.perf_counter()
        out = fit(*args)
        return out, time.perf_counter() - start

    results: dict[str, list[tuple[float, float]]] = {}
    for seed in SEEDS:
        ours, seconds = timed(ImplicitALS(FACTORS, reg=ALS_REG, alpha=ALPHA, n_iter=ALS_ITER,
                                          random_state=seed).fit, train)
        results.setdefault("ours ImplicitALS", []).append((ndcg(ours), seconds))
        binary = ours._start_fit(train)  # the same user and item order as ours
        confidence = binary.copy()
        confidence.data = 1 + ALPHA * confidence.data  # Hu et al.'s c = 1 + alpha r
        for label, use_cg in (("implicit ALS, exact (use_cg=False)", False),
                              ("implicit ALS, default conjugate gradient", True)):
            with threadpool_limits(1, "blas"):
                peer = implicit.als.AlternatingLeastSquares(
                    factors=FACTORS, regularization=ALS_REG, alpha=1.0, iterations=ALS_ITER,
                    random_state=seed, num_threads=2, use_cg=use_cg, dtype=np.float64,
                    calculate_training_loss=False)
                _, seconds = timed(peer.fit, sp.csr_matrix(confidence), False)
            ours.user_factors_, ours.item_factors_ = peer.user_factors, peer.item_factors
            results.setdefault(label, []).append((ndcg(ours), seconds))
        mine, seconds = timed(BPR(FACTORS, reg=BPR_REG, lr=BPR_LR, n_iter=BPR_EPOCHS,
                                  batch_size=1024, random_state=seed).fit, train)
        results.setdefault("ours BPR (mini-batch 1024, 1 thread)", []).append((ndcg(mine), seconds))
        peer = implicit.bpr.BayesianPersonalizedRanking(
            factors=FACTORS, learning_rate=BPR_LR, regularization=BPR_REG,
            iterations=BPR_EPOCHS, random_state=seed, num_threads=2)
        with threadpool_limits(1, "blas"):
            _, seconds = timed(peer.fit, sp.csr_matrix(binary), False)
        scorer = ImplicitALS(FACTORS)  # a factor model object to evaluate the peer's factors
        scorer.users_, scorer.items_ = mine.users_, mine.items_
        scorer.user_factors_ = np.asarray(peer.user_factors)
        scorer.item_factors_ = np.asarray(peer.item_factors)
        results.setdefault("implicit BPR (per-sample SGD, 2 threads)", []).append(
            (ndcg(scorer), seconds))

    lines = [(f"ML-100k, leave-last-out by timestamp ({len(train):,} training interactions, "
             f"{len(test)} test users). iALS: {FACTORS} factors, reg {ALS_REG} (as λI), "
             f"confidence 1 + {ALPHA:g}·r (implicit gets the matrix 1 + {ALPHA:g}·r and "
             f"alpha=1), {ALS_ITER} sweeps, float64; implicit with num_threads=2 and BLAS "
             f"limited to 1 thread; ours a Python loop of k×k solves on 1 thread. BPR: "
             f"{FACTORS} factors, lr {BPR_LR}, reg {BPR_REG}, {BPR_EPOCHS} epochs of as many "
             "triples as interactions; ours applies the summed per-triple steps of a "
             "mini-batch of 1024 at once, implicit's is per-sample Hogwild SGD with an item "
             f"bias column ({implicit.__version__}). Seeds {list(SEEDS)}; mean ± sd."), "",
             "| method | NDCG@10 | fit seconds |", "|---|---:|---:|"]
    for label, rows in results.items():
        values, seconds = np.array(rows).T
        lines.append(f"| {label} | {values.mean():.4f} ± {values.std(ddof=1):.4f} | "
                     f"{seconds.mean():.2f} ± {seconds.std(ddof=1):.2f} |")
    als_gap = (np.mean([v for v, _ in results["ours ImplicitALS"]])
               - np.mean([v for v, _ in results["implicit ALS, exact (use_cg=False)"]]))
    ratio = (np.mean([s for _, s in results["ours ImplicitALS"]])
             / np.mean([s for _, s in results["implicit ALS, exact (use_cg=False)"]]))
    lines += ["", (f"Ours minus implicit (exact) NDCG@10: {als_gap:+.4f}; our iALS fit takes "
                   f"{ratio:.1f}× implicit's exact solver's time.")]
    return lines

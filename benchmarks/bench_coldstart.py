"""Brand-new users on ML-100k: popularity, the metadata ridge and the two-tower model.

Run with ``python benchmarks/bench.py --only coldstart``. The protocol is chapter 12's
(``cfcourse.coldstart.newcomer_table``): 20% of the users held out entirely, all their
interactions the test; the ridge and the two-tower each choose their user features (all
three, or age and gender) on an inner cold split of the training users; NDCG@10 over
the whole catalogue. The chapter's CPU-scale sizes, over five seeds that were not used
while the chapter's settings were explored (10-14; the chapter shows 10-12).
"""

from __future__ import annotations

import time

import numpy as np

TITLE = "Brand-new users: two-tower vs metadata ridge vs popularity (ML-100k, cold-start split)"
SEEDS = (10, 11, 12, 13, 14)
K, FACTORS, EPOCHS, ALS_ITER, BATCH, COLD_SHARE = 10, 32, 4, 10, 1024, 0.2


def run() -> list[str]:
    import torch

    from cfcourse.coldstart import item_features, newcomer_table, user_features
    from cfcourse.compare import paired_verdict, summarize
    from cfcourse.data import load_items, load_movielens, load_users

    torch.set_num_threads(1)  # the chapter's setting: small batches gain nothing from threads
    ratings = load_movielens("ml-100k")
    interactions = ratings[["user", "item", "timestamp"]].assign(rating=1.0)
    ux, ix = user_features(load_users()), item_features(load_items())
    sets = {"age, gender, occupation": list(ux.columns),
            "age, gender": [c for c in ux.columns if not c.startswith("occupation")]}
    start = time.perf_counter()
    table = newcomer_table(interactions, ux, ix, seeds=SEEDS, feature_sets=sets,
                           frac=COLD_SHARE, k=K, n_factors=FACTORS, epochs=EPOCHS,
                           als_iter=ALS_ITER, batch_size=BATCH)
    seconds = time.perf_counter() - start
    summary = summarize(table.assign(loss=-table["ndcg"]), value="loss")
    lines = [(f"{COLD_SHARE:.0%} of the users held out per seed, seeds {SEEDS}; NDCG@{K} "
              f"over all films; {FACTORS} factors; two-tower {EPOCHS} epochs (batch {BATCH}, "
              f"in-batch negatives with the logQ correction), iALS {ALS_ITER} sweeps; "
              f"{seconds:.0f} s in all."), "",
             "| method | NDCG@10, mean ± sd | features chosen (per seed) |",
             "|---|---:|---|"]
    for method, row in summary.iterrows():
        chosen = table.loc[table["method"] == method, "features"].tolist()
        lines.append(f"| {method} | {-row['mean']:.4f} ± {row['sd']:.4f} | "
                     f"{', '.join(f'`{c}`' for c in chosen)} |")
    lines += ["", ("Seed by seed (the same held-out users for every method; a gap is claimed "
                   "when its mean exceeds its sd):"), ""]
    for other in ("popularity", "metadata ridge", "ablation: unit-vector towers"):
        said, gaps = paired_verdict(table, "two-tower", other, "ndcg", higher_is_better=True)
        lines.append(f"- {said}: gaps {', '.join(f'{g:+.4f}' for g in gaps)} "
                     f"(mean {np.mean(gaps):+.4f}, sd {np.std(gaps, ddof=1):.4f})")
    return lines

"""The course's speed and accuracy claims, measured in one run: `make bench`.

Writes benchmarks/RESULTS.md (machine, date, command, and one table per claim):

- tune:       the grid search on an inner split that chose cfcourse.fit's DEFAULTS (the
              PyTorch engine's; the compiled engine's are tuned in bench_cornac.py);
- api:        cfcourse.fit (engine="torch") vs Surprise's SVD and SVD++ on ML-100k, each tuned
              with the same budget on an inner split, three seeds each (the book's protocol);
- bayes:      Bayesian MF by Gibbs sampling, cfcourse.models.bayesian vs myFM, cfcourse.fit
              and Surprise SVD++, three seeds;
- ml100k:     time to reach fastai's recipe RMSE on the course's 80/20 split, fastai vs
              cfcourse.fit with its defaults (the compiled engine on a CPU with numba);
- throughput: training ratings/s at ML-25M's size on this CPU, with the RMSE reached,
              next to fastai's own pipeline on the same data;
- loading:    parsing a 25M-row ratings.csv (real layout) first and cached, under /usr/bin/time -v;
- gpu:        seconds per 25M-row epoch on a GPU ("not measured" when there is none).

Wall-clock numbers vary with the machine and its load; the ratios in one run are the point.
Nothing here is asserted: tests never check speed.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import importlib
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore")
HERE = Path(__file__).resolve().parent


def machine() -> str:
    cpu = "unknown CPU"
    try:
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    import fastai

    return (f"{cpu}, {os.cpu_count()} cores visible, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), fastai {fastai.__version__}, "
            f"Python {platform.python_version()}, GPU: {gpu}")


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


# -- tune: where cfcourse.fit's DEFAULTS come from ----------------------------------------------
# The grids below are the whole search; `--only tune` reruns it. The data is an inner split of
# the training part of the course's 80/20 split (seed 42), so no chapter's validation rating is
# ever used to choose a default.
TUNE_GRID = {
    "dot_bias": {"n_factors": [32, 64, 128], "epochs": [8, 12, 16], "lr": [0.1, 0.2],
                 "reg": [0.05, 0.1, 0.2]},
    "nn": {"epochs": [3, 5, 8], "lr": [1e-3, 3e-3], "wd": [0.01, 0.1]},
}
TUNE_SEEDS = (0, 1, 2)


def _tune_kind(kind: str, train) -> list[str]:
    import cfcourse
    from cfcourse.compare import grid_search, over_seeds, summarize
    from cfcourse.metrics import rmse
    from cfcourse.recommender import DEFAULTS

    def score(params, fit_part, tune_part):
        model = cfcourse.fit(fit_part, kind=kind, engine="torch", **params)
        return rmse(model.predict(tune_part, unknown="bias"), tune_part["rating"])

    grid = TUNE_GRID[kind]
    result, seconds = timed(lambda: grid_search(train, grid, score, valid_pct=0.1, seed=0))
    current = {name: DEFAULTS[kind][name] for name in grid}
    # The best setting and the current defaults, each over three seeds on the same inner split.
    from cfcourse.compare import inner_split

    fit_part, tune_part = inner_split(train, valid_pct=0.1, seed=0)
    runs = []
    for label, params in (("grid's best", result.best_params), ("DEFAULTS", current)):
        frame = over_seeds(lambda s, p=params: rmse(
            cfcourse.fit(fit_part, kind=kind, random_state=s, engine="torch", **p).predict(
                tune_part, unknown="bias"),
            tune_part["rating"]), TUNE_SEEDS)
        runs.append(frame.assign(setting=f"{label}: {params}"))
    import pandas as pd

    table = summarize(pd.concat(runs), by="setting", value="value")
    top = result.table.sort_values("score").head(5)
    rows = [f"### kind={kind!r}: {len(result.table)} settings, {seconds:.0f} s", "",
            "Grid: " + ", ".join(f"`{k}` ∈ {v}" for k, v in grid.items()) +
            "; every other option at its default. Five best settings (inner-split RMSE, seed 0):",
            "", "| " + " | ".join(top.columns) + " |", "|" + "---:|" * len(top.columns)]
    rows += ["| " + " | ".join(f"{v:.4f}" if name == "score" else str(v)
                               for name, v in row.items()) + " |"
             for row in top.to_dict("records")]
    rows += ["", "Over seeds 0, 1, 2 on the same inner split:", "",
             "| setting | inner-split RMSE, mean ± sd |", "|---|---:|"]
    rows += [f"| {name} | {value} |" for name, value in table["mean ± sd"].items()]
    from cfcourse.compare import clearly_better

    best_runs, current_runs = (r["value"] for r in runs)
    if result.best_params == current:
        verdict = "The DEFAULTS are the grid's best."
    elif clearly_better(best_runs, current_runs):
        verdict = (f"The grid's best is clearly better (gap beyond the spread): DEFAULTS[{kind!r}] "
                   f"should be {result.best_params}.")
    else:
        verdict = "The two tie (gap within the spread): the DEFAULTS stay."
    return rows + ["", verdict, ""]


def bench_tune() -> list[str]:
    from cfcourse.data import load_movielens, random_split

    train, _ = random_split(load_movielens("ml-100k"), valid_pct=0.2, seed=42)
    rows = ["`cfcourse.fit`'s DEFAULTS (cfcourse/recommender.py) are the settings below. The search "
            "runs on an inner 90/10 split of the training part of the course's 80/20 split of "
            "ML-100k (`random_split(..., valid_pct=0.2, seed=42)`), so no chapter's validation "
            "rating was used to choose them. Rule: the DEFAULTS are the grid's best unless a "
            "setting already in use ties with it (gap within the seed spread).", ""]
    for kind in TUNE_GRID:
        rows += _tune_kind(kind, train)
    return rows


# -- api: cfcourse.fit vs Surprise, under the comparison protocol --------------------------------
# Each method gets the same budget: the four settings of a 2 × 2 grid, tuned on an inner split of
# the training part; the chosen setting is then fitted with three seeds and scored once on the
# held-out 10 %. Epochs stay at each library's default; factors are 64 for both SVD models (SVD++
# keeps its default 20: at 64 factors one fit takes minutes here).
API_GRIDS = {
    "cfcourse.fit (dot_bias, 64 factors, 12 epochs)": {"lr": [0.1, 0.2], "reg": [0.05, 0.1]},
    "Surprise SVD (64 factors, 20 epochs)": {"lr_all": [0.005, 0.01], "reg_all": [0.02, 0.05]},
    "Surprise SVD++ (20 factors, 20 epochs)": {"lr_all": [0.005, 0.01], "reg_all": [0.02, 0.05]},
}


def _api_fitter(name: str):
    """fit(train, params, seed) -> predict(frame) for one of the API_GRIDS methods."""
    from surprise import SVD, Dataset, Reader, SVDpp

    import cfcourse

    if name.startswith("cfcourse"):
        def fit(train, params, seed):
            model = cfcourse.fit(train, random_state=seed, n_factors=64, epochs=12,
                                 engine="torch", **params)
            return lambda frame: model.predict(frame, unknown="bias")
        return fit
    algo = SVD if "SVD++" not in name else SVDpp
    size = {"n_factors": 64} if algo is SVD else {}

    def fit(train, params, seed):
        trainset = Dataset.load_from_df(train[["user", "item", "rating"]],
                                        Reader(rating_scale=(1, 5))).build_full_trainset()
        model = algo(random_state=seed, **size, **params)
        model.fit(trainset)
        return lambda frame: np.array([model.predict(u, i).est
                                       for u, i in zip(frame["user"], frame["item"])])
    return fit


def _seed_runs(name: str, fit_seed, test, seeds=(0, 1, 2)) -> list[dict]:
    """Fit with each seed (``fit_seed(seed)`` returns a predict function) and score on ``test``."""
    from cfcourse.metrics import rmse

    runs = []
    for seed in seeds:
        predict, seconds = timed(lambda seed=seed: fit_seed(seed))
        runs.append({"method": name, "seed": seed, "seconds": seconds,
                     "rmse": rmse(predict(test), test["rating"])})
    return runs


def bench_api() -> list[str]:
    import pandas as pd

    from cfcourse.compare import clearly_better, grid_search, summarize
    from cfcourse.data import load_movielens, random_split
    from cfcourse.metrics import rmse

    train, test = random_split(load_movielens("ml-100k"), valid_pct=0.1, seed=42)
    runs, chosen, tune_seconds = [], {}, {}
    for name, grid in API_GRIDS.items():
        fit = _api_fitter(name)
        result, tune_seconds[name] = timed(lambda fit=fit, grid=grid: grid_search(
            train, grid, lambda p, f, t: rmse(fit(f, p, 0)(t), t["rating"]), seed=0))
        chosen[name] = result.best_params
        runs += _seed_runs(name, lambda seed, fit=fit, best=result.best_params:
                           fit(train, best, seed), test)
    runs = pd.DataFrame(runs)
    table = summarize(runs, by="method", value="rmse")
    rows = ["ML-100k, `random_split(valid_pct=0.1, seed=42)`: 90,000 training ratings, 10,000 "
            "held out. Budget: four settings per method (grids below), tuned on an inner 90/10 "
            "split of the training part; then three seeds of the chosen setting, scored once on "
            "the held-out ratings.", "",
            "| method | grid | chosen | tuning seconds | fit seconds (mean) | held-out RMSE, "
            "mean ± sd |", "|---|---|---|---:|---:|---:|"]
    for name in table.index:
        seconds = runs.loc[runs["method"] == name, "seconds"].mean()
        rows.append(f"| {name} | {API_GRIDS[name]} | {chosen[name]} | {tune_seconds[name]:.0f} | "
                    f"{seconds:.1f} | {table.loc[name, 'mean ± sd']} |")
    best, *others = list(table.index)
    verdicts = []
    for other in others:
        a = runs.loc[runs["method"] == best, "rmse"]
        b = runs.loc[runs["method"] == other, "rmse"]
        word = "clearly better than" if clearly_better(a, b) else "tied with (gap within spread)"
        verdicts.append(f"{best} is {word} {other}")
    return rows + ["", "; ".join(verdicts) + "."]


# -- bayes: Bayesian MF by Gibbs sampling, ours against myFM ----------------------------------------
BAYES = {"n_factors": 10, "n_iter": 200, "burn_in": 20}


def _myfm_fitter(train):
    """fit(seed) -> predict(frame) for myFM on one-hot user and item features, BAYES sizes."""
    def fit(seed):
        import myfm
        import scipy.sparse as sp
        from sklearn.preprocessing import OneHotEncoder

        encoder = OneHotEncoder(handle_unknown="ignore").fit(train[["user", "item"]])
        model = myfm.MyFMRegressor(rank=BAYES["n_factors"], random_seed=seed)
        model.fit(sp.csr_matrix(encoder.transform(train[["user", "item"]])),
                  train["rating"].to_numpy(), n_iter=BAYES["n_iter"],
                  n_kept_samples=BAYES["n_iter"] - BAYES["burn_in"])
        return lambda frame: np.clip(model.predict(
            sp.csr_matrix(encoder.transform(frame[["user", "item"]]))), 1, 5)
    return fit


def bench_bayes() -> list[str]:
    import pandas as pd

    import cfcourse
    from cfcourse.compare import clearly_better, summarize
    from cfcourse.data import load_movielens, random_split
    from cfcourse.models.bayesian import BayesianMF

    train, test = random_split(load_movielens("ml-100k"), valid_pct=0.1, seed=42)

    def ours_fit(seed):
        model = BayesianMF(**BAYES, random_state=seed).fit(train)
        return lambda frame: model.predict(frame, unknown="bias")

    def sgd_fit(seed):
        model = cfcourse.fit(train, random_state=seed, engine="torch")
        return lambda frame: model.predict(frame, unknown="bias")

    def svdpp_fit(seed):  # Surprise's defaults (20 factors, 20 epochs), as its authors ship it
        return _api_fitter("Surprise SVD++")(train, {}, seed)

    ours = (f"ours: cfcourse.models.bayesian.BayesianMF, rank {BAYES['n_factors']}, "
            f"{BAYES['n_iter']} sweeps ({BAYES['burn_in']} burn-in)")
    peer = (f"myFM 0.4 MyFMRegressor, rank {BAYES['n_factors']}, {BAYES['n_iter']} "
            f"iterations ({BAYES['n_iter'] - BAYES['burn_in']} kept)")
    methods = {ours: ours_fit, peer: _myfm_fitter(train),
               "cfcourse.fit (SGD MF, DEFAULTS)": sgd_fit,
               "Surprise SVD++ (library defaults: 20 factors, 20 epochs)": svdpp_fit}
    runs = []
    for name, fit in methods.items():  # one method after the other, in one process
        runs += _seed_runs(name, fit, test)
    runs = pd.DataFrame(runs)
    table = summarize(runs, by="method", value="rmse")
    rows = [("ML-100k, `random_split(valid_pct=0.1, seed=42)` (the api section's split); three "
             "seeds each (0, 1, 2); no tuning: the two Bayesian models learn their prior's scale "
             "and run the same rank and number of sweeps, the SGD model uses its DEFAULTS (tuned "
             "on an inner split as in the first section), SVD++ runs Surprise's defaults. Seconds "
             "are the fit alone, one method at a time in this process."), "",
            "| method | fit seconds (mean) | held-out RMSE, mean ± sd |", "|---|---:|---:|"]
    for name in table.index:
        seconds = runs.loc[runs["method"] == name, "seconds"].mean()
        rows.append(f"| {name} | {seconds:.1f} | {table.loc[name, 'mean ± sd']} |")

    def of(name, column="rmse"):
        return runs.loc[runs["method"] == name, column].to_numpy()

    ratio = of(ours, "seconds").mean() / of(peer, "seconds").mean()
    gap = of(ours).mean() - of(peer).mean()
    rows += ["", (f"Ours against myFM: {ratio:.2f}× its fit time (target ≤ 2×), RMSE "
                  f"{gap:+.4f} (target within ±0.003).")]
    short = dict(zip(methods, ("ours", "myFM", "cfcourse.fit", "SVD++")))
    verdicts = [f"{short[a]} is clearly better than {short[b]}" for a in methods for b in methods
                if a != b and clearly_better(of(a), of(b))]
    return rows + ["", ("; ".join(verdicts) or "No method is clearly better than another") + "."]


# -- ml100k: time to accuracy -------------------------------------------------------------------
def bench_ml100k() -> list[str]:
    from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (patches Learner)
    from fastai.collab import collab_learner

    import cfcourse
    from cfcourse.data import load_movielens, random_split
    from cfcourse.fastai_glue import collab_dataloaders
    from cfcourse.metrics import rmse

    train, valid = random_split(load_movielens("ml-100k"), valid_pct=0.2, seed=42)

    def fastai_recipe():
        dls = collab_dataloaders(train, valid, bs=64)
        learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5))
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(5, 5e-3, wd=0.1)
            pred, target = learn.get_preds()
        return rmse(pred, target)

    target, fastai_seconds = timed(fastai_recipe)
    reached = {}
    start = time.perf_counter()
    paused = [0.0]

    def watch(epoch, model):  # evaluation time is excluded from the clock
        t0 = time.perf_counter()
        x = torch.as_tensor(np.stack([
            model_users.encode(valid["user"].to_numpy(), unknown="ignore"),
            model_items.encode(valid["item"].to_numpy(), unknown="ignore")], axis=1))
        known = (x >= 0).all(dim=1)
        pred = np.full(len(valid), float(model.mean))
        pred[known.numpy()] = model.predict(x[known]).numpy()
        error = rmse(pred, valid["rating"])
        if error <= target and "epoch" not in reached:
            reached.update(epoch=epoch + 1, seconds=t0 - start - paused[0], rmse=error)
        paused[0] += time.perf_counter() - t0

    from cfcourse.data import IdIndex

    model_users, model_items = IdIndex(train["user"], "user"), IdIndex(train["item"], "item")
    model = cfcourse.fit(train, callback=watch)
    total = time.perf_counter() - start - paused[0]
    final = rmse(model.predict(valid, unknown="bias"), valid["rating"])
    rows = ["| pipeline | seconds | valid RMSE |", "|---|---:|---:|",
            f"| fastai recipe: collab_learner, bs=64, fit_one_cycle(5, 5e-3, wd=0.1) | "
            f"{fastai_seconds:.1f} | {target:.4f} |",
            f"| cfcourse.fit (defaults: engine {model.engine_!r}), whole run | {total:.1f} | "
            f"{final:.4f} |"]
    if reached:
        rows.append(f"| cfcourse.fit, time to reach {target:.4f} (epoch {reached['epoch']}) | "
                    f"{reached['seconds']:.1f} | {reached['rmse']:.4f} |")
        rows += ["", f"Time to the recipe's accuracy: {fastai_seconds / reached['seconds']:.1f}× "
                 "sooner (goal: ≥ 10×)."]
    else:
        rows += ["", "cfcourse.fit did not reach the recipe's RMSE in this run."]
    return rows


# -- throughput at ML-25M's size --------------------------------------------------------------
def _ml25m_shaped(n_ratings: int, device: str):
    from cfcourse.data import ML25M_SHAPE, planted_ratings, random_split

    shape = {**ML25M_SHAPE, "n_ratings": n_ratings}
    data, gen_seconds = timed(lambda: planted_ratings(**shape, n_factors=32, seed=0))
    train, valid = random_split(data.ratings, valid_pct=0.01, seed=0)
    x = torch.as_tensor(train[["user", "item"]].to_numpy().astype(np.int64) - 1).to(device)
    y = torch.as_tensor(train["rating"].to_numpy().copy()).to(device)
    xv = torch.as_tensor(valid[["user", "item"]].to_numpy().astype(np.int64) - 1).to(device)
    note = (f"Data: planted_ratings at ML-25M's shape, {n_ratings:,} ratings "
            f"(generated in {gen_seconds:.1f} s; noise floor RMSE {data.noise_floor:.3f}); "
            "99% train, 1% held out.")
    return shape, train, valid, x, y, xv, note


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _fastai_recipe_epoch(train, valid, device: str, fp16: bool, n_batches: int = 30,
                         n_factors: int = 100, bs: int = 4096) -> float:
    """Seconds per epoch of fastai's collab_learner on its own loaders.

    ``n_batches`` batches of a subset are timed and scaled to the whole epoch (a full epoch
    on fastai's loaders takes minutes here); the defaults are the article's recipe.
    """
    from fastai.callback.schedule import fit_one_cycle  # noqa: F401
    from fastai.collab import collab_learner

    from cfcourse.fastai_glue import collab_dataloaders

    sub = train.iloc[: bs * n_batches]
    dls = collab_dataloaders(sub, valid.iloc[:bs], bs=bs, device=torch.device(device))
    learn = collab_learner(dls, n_factors=n_factors, y_range=(0, 5.5))
    if fp16:
        learn = learn.to_fp16()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, 3e-3, wd=1e-3)  # warm-up: CUDA context, kernels, imports
        _sync(device)
        _, seconds = timed(lambda: (learn.fit_one_cycle(1, 3e-3, wd=1e-3), _sync(device)))
    return seconds / len(dls.train) * (len(train) / bs)


def _ours_rows(shape, x, y, xv, valid, device: str, variants) -> tuple[list[str], list[float]]:
    """Table rows for our variants, and each one's seconds per epoch."""
    from cfcourse.metrics import rmse
    from cfcourse.models.sparse_dot_bias import SparseDotBias
    from cfcourse.train import fit_sparse

    def fresh():
        torch.manual_seed(0)
        return SparseDotBias(shape["n_users"], shape["n_items"], 64, mean=float(y.mean()),
                             y_range=(0.5, 5.0)).to(device)

    rows, seconds = [], []
    for label, epochs, opts in variants:
        warm = torch.arange(min(len(x), 2 * opts["bs"]), device=device)
        fit_sparse(fresh(), x[warm], y[warm], epochs=1, **opts)  # warm-up, then start afresh
        model = fresh()
        _sync(device)
        start = time.perf_counter()
        fit_sparse(model, x, y, epochs=epochs, reg=0.02, reg_bias=0.005, **opts)
        _sync(device)
        per_epoch = (time.perf_counter() - start) / epochs
        error = rmse(model.predict(xv).cpu().numpy(), valid["rating"])
        rows.append(f"| {label}, {epochs} epoch{'s' * (epochs > 1)} | {per_epoch:.1f} | "
                    f"{len(x) / per_epoch:,.0f} | {error:.4f} |")
        seconds.append(per_epoch)
    return rows, seconds


_HEADER = ["| pipeline | seconds / epoch | ratings / s | held-out RMSE |", "|---|---:|---:|---:|"]


def bench_throughput(n_ratings: int) -> list[str]:
    shape, train, valid, x, y, xv, note = _ml25m_shaped(n_ratings, "cpu")
    big = {"bs": 32768, "lr": 0.1}
    ours, ours_seconds = _ours_rows(shape, x, y, xv, valid, "cpu", [
        ("ours: fit_sparse, fused_row_adagrad (no autograd), 64 factors, bs=32768, lr=0.1", 3,
         {"optimizer": "fused_row_adagrad", **big}),
        ("ours: fit_sparse, fused_row_adagrad (no autograd), 64 factors, bs=4096, lr=0.1", 1,
         {"optimizer": "fused_row_adagrad", "bs": 4096, "lr": 0.1}),
        ("ours: fit_sparse, row_adagrad (autograd), 64 factors, bs=32768, lr=0.1", 1,
         {"optimizer": "row_adagrad", **big}),
        ("ours: fit_sparse, sparse_adam (autograd), 64 factors, bs=32768, lr=0.01", 1,
         {"optimizer": "sparse_adam", "bs": 32768, "lr": 0.01})])
    rows = [note, "Like for like: every row trains the same biased dot-product model; the fastai "
            "rows at 64 factors match ours in size and batch, the last row is the article's "
            "recipe as published (100 factors, bs=4096).", "", *_HEADER, *ours]
    fastai_seconds = []
    for n_factors, bs, label in ((64, 32768, "same size and batch as ours"),
                                 (64, 4096, "same size, bs=4096"),
                                 (100, 4096, "the article's recipe")):
        per_epoch = _fastai_recipe_epoch(train, valid, "cpu", fp16=False, n_factors=n_factors,
                                         bs=bs)
        fastai_seconds.append(per_epoch)
        rows.append(f"| fastai collab_learner on fastai's loaders, {n_factors} factors, bs={bs}, "
                    f"wd=1e-3 ({label}; 30 batches timed, scaled to the epoch) | "
                    f"{per_epoch:.1f} | {len(train) / per_epoch:,.0f} | n/a |")
    return rows + ["", f"Like for like (64 factors), ours against fastai per epoch: "
                   f"{fastai_seconds[0] / ours_seconds[0]:.1f}× at bs=32768, "
                   f"{fastai_seconds[1] / ours_seconds[1]:.1f}× at bs=4096."]


def bench_gpu(n_ratings: int, device: str = "cuda") -> list[str]:
    if device == "cuda" and not torch.cuda.is_available():
        return ["Not measured: no GPU on this machine. `make bench` on a machine with CUDA "
                "fills this table."]
    shape, train, valid, x, y, xv, note = _ml25m_shaped(n_ratings, device)
    name = torch.cuda.get_device_name(0) if device == "cuda" else device
    ours, seconds = _ours_rows(shape, x, y, xv, valid, device, [
        ("ours: fit_sparse, fused_row_adagrad, 64 factors, bs=65536, lr=0.2", 3,
         {"optimizer": "fused_row_adagrad", "bs": 65536, "lr": 0.2}),
        ("ours: fit_sparse, fused_row_adagrad, 64 factors, bs=16384, lr=0.1", 3,
         {"optimizer": "fused_row_adagrad", "bs": 16384, "lr": 0.1})])
    recipe = _fastai_recipe_epoch(train, valid, device, fp16=device == "cuda")
    return [f"{note} Device: {name}; tensors resident on it.", "", *_HEADER, *ours,
            f"| the article's fastai recipe: fastai's loaders, 100 factors, bs=4096, fp16, "
            f"wd=1e-3 (30 batches timed, scaled to the epoch) | {recipe:.1f} | "
            f"{len(train) / recipe:,.0f} | n/a |", "",
            f"Ours (bs=65536) against the recipe: {recipe / seconds[0]:.0f}× faster per epoch "
            "(goals: ≤ 3 s per 25 M-row epoch, ≥ 20×)."]


# -- loading ------------------------------------------------------------------------------------
def _time_v(code: str, env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS in GB of ``python -c code`` under /usr/bin/time -v."""
    out = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-c", code], env=env,
                         capture_output=True, text=True, check=True).stderr
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", out)
    h, m, s = wall.groups()
    seconds = int(h or 0) * 3600 + int(m) * 60 + float(s)
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out).group(1))
    return seconds, peak_kb / 1e6


def bench_loading(n_ratings: int) -> list[str]:
    from cfcourse.data import ML25M_SHAPE, planted_ratings, write_ratings_csv

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ml-25m"
        folder.mkdir()
        ratings = planted_ratings(**{**ML25M_SHAPE, "n_ratings": n_ratings}, seed=1).ratings
        start = time.perf_counter()
        write_ratings_csv(ratings, folder / "ratings.csv")
        write_seconds = time.perf_counter() - start
        del ratings
        size_mb = (folder / "ratings.csv").stat().st_size / 1e6
        env = {**os.environ, "CFCOURSE_CACHE": str(Path(tmp) / "cache")}
        code = (f"from cfcourse.data import load_ratings; "
                f"df = load_ratings('ml-25m', {str(folder)!r}); assert len(df) == {n_ratings}")
        first = _time_v(code, env)
        cached = _time_v(code, env)
    return [f"A {size_mb:,.0f} MB ratings.csv of {n_ratings:,} rows in ML-25M's layout "
            f"(written in {write_seconds:.0f} s), loaded by `load_ratings('ml-25m', path)` in a "
            "fresh process under `/usr/bin/time -v` (whole process: Python start and imports "
            "included).", "",
            "| load | wall seconds | peak RSS (GB) | goal |", "|---|---:|---:|---|",
            f"| first (parse + write .npy cache) | {first[0]:.1f} | {first[1]:.2f} | ≤ 60 s, ≤ 2 GB |",
            f"| cached | {cached[0]:.1f} | {cached[1]:.2f} | ≤ 5 s |"]


SECTIONS = {"tune": bench_tune, "api": bench_api, "bayes": bench_bayes, "ml100k": bench_ml100k,
            "throughput": bench_throughput,
            "loading": bench_loading, "gpu": bench_gpu}
TITLES = {"tune": "How cfcourse.fit's DEFAULTS were chosen",
          "api": "cfcourse.fit vs Surprise on ML-100k, same tuning budget, three seeds",
          "bayes": "Bayesian MF (Gibbs sampling): ours vs myFM on ML-100k",
          "ml100k": "ML-100k time to accuracy (the course's 80/20 split)",
          "throughput": "Training throughput at ML-25M's size (CPU)",
          "loading": "Loading 25 M ratings",
          "gpu": "GPU: seconds per 25 M-row epoch"}
# Sections that live in their own file, benchmarks/bench_<name>.py: each defines TITLE, run()
# returning the section's markdown lines, and SIZED = True when run() takes n_ratings.
PLUGINS = ("cornac", "implicit", "retrieval", "coldstart")
SIZED = {"throughput", "loading", "gpu"}
sys.path.insert(0, str(HERE))
for _name in PLUGINS:
    if (HERE / f"bench_{_name}.py").is_file():
        _module = importlib.import_module(f"bench_{_name}")
        SECTIONS[_name], TITLES[_name] = _module.run, _module.TITLE
        if getattr(_module, "SIZED", False):
            SIZED.add(_name)


def _steal_ticks() -> int:
    """CPU time the hypervisor gave to other guests (``steal`` in /proc/stat), in ticks."""
    try:
        return int(Path("/proc/stat").read_text().split("\n")[0].split()[8])
    except (OSError, IndexError, ValueError):
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--ratings", type=int, default=25_000_095,
                        help="rows for the throughput, loading and gpu sections")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--section", choices=list(SECTIONS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.section:  # child process: run one section, print its body
        kwargs = {"n_ratings": args.ratings} if args.section in SIZED else {}
        print("\n".join(SECTIONS[args.section](**kwargs)), flush=True)
        return
    command = "python benchmarks/bench.py " + " ".join(sys.argv[1:])
    stamp = (f"*Run {datetime.datetime.now().isoformat(timespec='minutes')} on {machine()}; "
             f"command: `{command.strip()}`; this section in a fresh Python process; "
             "load average {load} at its start.*")
    sections = _read_sections(Path(args.out))
    for name in args.only:
        print(f"== {name}", flush=True)
        start_load = f"{os.getloadavg()[0]:.1f}"
        steal = _steal_ticks()
        child = subprocess.run([sys.executable, __file__, "--section", name,
                                "--ratings", str(args.ratings)],
                               capture_output=True, text=True, check=False)
        if child.returncode:
            sys.exit(f"section {name} failed:\n{child.stderr[-4000:]}")
        body = child.stdout.strip().split("\n")
        stolen = (_steal_ticks() - steal) / os.sysconf("SC_CLK_TCK")
        if stolen > 1:
            body += ["", f"(The hypervisor gave {stolen:.0f} CPU-seconds to other machines "
                     "during this section; its times are inflated by that.)"]
        print("\n".join(body), flush=True)
        with open(str(args.out) + ".lock", "w") as lock:  # two runs at once lose nothing
            fcntl.flock(lock, fcntl.LOCK_EX)
            sections = _read_sections(Path(args.out))
            sections[TITLES[name]] = [stamp.replace("{load}", start_load), "", *body]
            _write_sections(Path(args.out), sections)  # after each section: a crash loses nothing
    print(f"wrote {args.out}")


_PREAMBLE = ["# Benchmark results", "",
             "`make bench` runs every section; `python benchmarks/bench.py --only NAME ...` "
             "reruns some and keeps the others. Each section states when, where and how it was "
             "run. Wall-clock times vary with the machine and its load; the ratios within one "
             "section are the point. Nothing here is asserted by the tests.", ""]


def _read_sections(path: Path) -> dict[str, list[str]]:
    """The ``## title`` sections of an existing RESULTS.md, in file order."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().split("\n") if path.is_file() else []:
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {k: v[:len(v) - next((i for i, x in enumerate(reversed(v)) if x.strip()), len(v))]
            for k, v in sections.items()}


def _write_sections(path: Path, sections: dict[str, list[str]]) -> None:
    order = [TITLES[name] for name in SECTIONS if TITLES[name] in sections]
    order += [title for title in sections if title not in order]
    lines = list(_PREAMBLE)
    for title in order:
        body = sections[title]
        while body and not body[0].strip():
            body = body[1:]
        lines += [f"## {title}", "", *body, ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()

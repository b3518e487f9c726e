"""The compiled engine raced against cornac's MF, and against the PyTorch path on ML-100k.

`python benchmarks/bench.py --only cornac [--ratings N]` (the section of benchmarks/RESULTS.md).

Part 1, the race, on three planted worlds (99% train, 1% held out, the split of the throughput
section):

- 5 M ratings shrunk as chapter 9 shrinks ML-25M (people and films scaled by
  sqrt(5 M / 25 M), so ratings per person shrink too; 8 planted factors, noise 0.5): the data
  the issue's measurements were taken on;
- 5 M ratings on all of ML-25M's 162,541 people and 59,047 films (about 30 ratings per person;
  32 planted factors): a sparser world;
- N ratings at ML-25M's shape (default: its full 25,000,095; 32 planted factors).

Both libraries train the same biased dot-product model with 64 factors, on the same 0-based id
arrays, on 2 threads:

- cornac 3.x `MF(k=64, use_bias=True, num_threads=2)`: plain SGD at a constant learning rate,
  Cython + OpenMP, visiting the ratings in the order given. To read the held-out RMSE after
  every epoch we call the function `MF.fit` calls,
  `cornac.models.mf.backend_cpu.fit_sgd`, one epoch at a time on the same arrays (its learning
  rate is constant and it does not shuffle, so this is the same run as `max_iter` epochs), with
  `MF._init`'s initialisation (N(0, 0.01) factors, zero biases).
- ours: `cfcourse.compiled.fit_compiled`, row-wise Adagrad per rating, `order="blocks"` (the
  default), one-cycle schedule over the run's epochs.

Each library's settings are chosen from a grid of 16 on an inner 90/10 split of the training
part (the same budget; a run that diverges scores infinity): each library's learning rate and
L2 (4 x 4; ours' one-cycle warm-up share at its default 0.25). The held-out 1% is then
used once per run. Time to target:
the target is cornac's best held-out RMSE over EPOCHS epochs; ours' run is the shortest of
several epoch budgets whose final held-out RMSE reaches it (each budget is its own run, since
the one-cycle schedule depends on it). Both are then timed as a user waits, TIMINGS times
each, taken in turn: cornac's plain `fit_sgd` call of as many epochs as it needed, and ours'
plain `fit_compiled` call with no callback (blocks reproduce the evaluated run to the bit,
which the bench checks); the bench reports the ratio of the medians, the range of the pairs'
ratios and the fastest against the fastest. Evaluation is outside every clock, and the same
numpy code for both. One seed each (a speed race); accuracy is compared under the seed
protocol in part 2.
On each race's inner split the bench also sweeps two constants of the kernel, BLOCKS and
PREFETCH, with the tuned setting (SWEEP_EPOCHS epochs, SWEEP_SEEDS).

Part 2, ML-100k: cfcourse.fit(engine="compiled") against cfcourse.fit(engine="torch") with
its DEFAULTS, each tuned with the budget `--only tune` gave the torch DEFAULTS (54 settings of
n_factors x epochs x lr x reg, on an inner split of the training part), held out on
random_split(ml-100k, valid_pct=0.1, seed=42), three seeds each, both on one thread.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pandas as pd
import torch

TITLE = "The compiled engine against cornac's MF, and against the PyTorch path on ML-100k"
SIZED = True

N_FACTORS = 64
THREADS = 2
EPOCHS = 10  # cornac's run (and every tuning run)
# Grids of 16 settings each, the same budget and the same shape: 4 learning rates x 4 L2
# strengths, each holding its library's default. Ours' one-cycle warm-up share stays at
# fit_compiled's default 0.25. The grids were widened after the previous runs (12 each), whose
# choices lay on an edge: cornac's reg 0.01 (the lowest) at 25 M, ours' lr 0.4 and reg 0.05
# (both the highest) on the sparse 5 M world; so cornac's L2 now reaches down to 0.005, ours'
# learning rate up to 0.8 and its L2 up to 0.1. (An earlier grid of ours with lr 0.05 and
# reg 0.01 never chose either; reg 0.01 is back, for the symmetry of the two grids.)
CORNAC_GRID = {"lr": (0.01, 0.02, 0.04, 0.08), "reg": (0.005, 0.01, 0.02, 0.05)}  # default 0.02
OURS_GRID = {"lr": (0.1, 0.2, 0.4, 0.8), "reg": (0.01, 0.02, 0.05, 0.1)}
OURS_REG_BIAS = 0.01
OURS_BUDGETS = tuple(range(2, EPOCHS + 1))  # epoch budgets for time to target, shortest first
# Part 2's grid: the same size as benchmarks/bench.py's TUNE_GRID["dot_bias"] (3 x 3 x 2 x 3);
# lr and reg are ranges for a step per rating. A first run with lr [0.05, 0.1] and reg
# [0.02, 0.05, 0.1] chose the top of both, so both moved up.
ML100K_GRID = {"n_factors": [32, 64, 128], "epochs": [8, 12, 16], "lr": [0.1, 0.2],
               "reg": [0.05, 0.1, 0.2]}
SEEDS = (0, 1, 2)
SWEEP_BLOCKS, SWEEP_SEEDS, SWEEP_EPOCHS = (8, 16, 32, 64), (0, 1, 2), 4
SWEEP_PREFETCH = (0, 4, 8, 16)  # a prefetch changes no value: the RMSE column must not move
TIMINGS = 5  # plain calls of each library, in turn, behind each time to target


def _data(n_ratings: int, shrunk: bool = False):
    """The planted world of a race: ML-25M's shape, or shrunk to ``n_ratings`` as chapter 9
    shrinks it (people and films scaled by sqrt(n_ratings / 25 M), 8 factors, noise 0.5)."""
    from cfcourse.data import ML25M_SHAPE, planted_ratings, random_split

    if shrunk:
        k = np.sqrt(n_ratings / ML25M_SHAPE["n_ratings"])
        shape = {"n_users": round(ML25M_SHAPE["n_users"] * k),
                 "n_items": round(ML25M_SHAPE["n_items"] * k), "n_ratings": n_ratings}
        planted = {"n_factors": 8, "noise": 0.5}
    else:
        shape, planted = {**ML25M_SHAPE, "n_ratings": n_ratings}, {"n_factors": 32}
    start = time.perf_counter()
    world = planted_ratings(**shape, **planted, seed=0)
    seconds = time.perf_counter() - start
    train, valid = random_split(world.ratings, valid_pct=0.01, seed=0)
    how = ("shrunk as chapter 9 shrinks ML-25M" if shrunk else "at ML-25M's shape")
    note = (f"Data: planted_ratings {how}: {shape['n_users']:,} people, "
            f"{shape['n_items']:,} films, {n_ratings:,} ratings, {planted['n_factors']} planted "
            f"factors (generated in {seconds:.1f} s; noise floor RMSE "
            f"{world.noise_floor:.3f}); 99% train ({len(train):,}), 1% held out.")
    return shape, train, valid, note


def _arrays(frame):
    users = frame["user"].to_numpy().astype(np.int64) - 1
    items = frame["item"].to_numpy().astype(np.int64) - 1
    return users, items, frame["rating"].to_numpy().astype(np.float32)


def _label(setting: dict) -> str:
    """A grid setting as the table prints it, e.g. ``lr=0.1, reg=0.02``."""
    return ", ".join(f"{k}={v}" for k, v in setting.items())


def _rmse(pred, truth) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - truth) ** 2)))


def _held_rmse(mean, user_factors, item_factors, user_bias, item_bias, held) -> float:
    """Held-out RMSE of a biased dot-product model's tables, clipped to the star range: the
    same numpy code for both libraries, and no torch call between ours' epochs (torch's idle
    worker threads would take cores from the next epoch)."""
    hu, hi, hr = held
    pred = (mean + user_bias[hu] + item_bias[hi]
            + np.einsum("nk,nk->n", user_factors[hu], item_factors[hi]))
    return _rmse(np.clip(pred, 0.5, 5.0), hr)


def _cornac_start(shape, r):
    """Cornac's tables as ``MF._init`` starts them (N(0, 0.01) factors, zero biases) and the
    global mean, as both of cornac's runs start."""
    from cornac.utils.init_utils import normal

    rng = np.random.RandomState(0)
    big_u = normal([shape["n_users"], N_FACTORS], std=0.01, random_state=rng, dtype=np.float32)
    big_v = normal([shape["n_items"], N_FACTORS], std=0.01, random_state=rng, dtype=np.float32)
    bu = np.zeros(shape["n_users"], np.float32)
    bi = np.zeros(shape["n_items"], np.float32)
    return big_u, big_v, bu, bi, np.float32(r.mean())


def _cornac_run(shape, fit, held, epochs, lr, reg):
    """(held-out RMSE after each epoch, training seconds of each epoch) of cornac's SGD."""
    from cornac.models.mf import backend_cpu

    u, i, r = fit
    big_u, big_v, bu, bi, mu = _cornac_start(shape, r)
    curve, seconds = [], []
    for _ in range(epochs):
        start = time.perf_counter()
        backend_cpu.fit_sgd(u, i, r, big_u, big_v, bu, bi, lr, reg, mu, 1, THREADS,
                            True, False, False)
        seconds.append(time.perf_counter() - start)
        curve.append(_held_rmse(mu, big_u, big_v, bu, bi, held))
    return curve, seconds


def _cornac_timed(shape, fit, held, epochs, lr, reg):
    """(seconds, final held-out RMSE) of one plain ``fit_sgd`` call of ``epochs`` epochs, as
    ``MF.fit`` makes it: what a user waits for."""
    from cornac.models.mf import backend_cpu

    u, i, r = fit
    big_u, big_v, bu, bi, mu = _cornac_start(shape, r)
    start = time.perf_counter()
    backend_cpu.fit_sgd(u, i, r, big_u, big_v, bu, bi, lr, reg, mu, epochs, THREADS,
                        True, False, False)
    seconds = time.perf_counter() - start
    return seconds, _held_rmse(mu, big_u, big_v, bu, bi, held)


def _ours_start(shape, fit, seed):
    """The training tensors and a fresh model, as both of ours' runs start."""
    from cfcourse.models.sparse_dot_bias import SparseDotBias

    u, i, r = fit
    x, y = torch.from_numpy(np.stack([u, i], 1)), torch.from_numpy(r)
    torch.manual_seed(seed)
    return x, y, SparseDotBias(shape["n_users"], shape["n_items"], N_FACTORS,
                               mean=float(r.mean()), y_range=(0.5, 5.0))


def _ours_held_rmse(model, held) -> float:
    """:func:`_held_rmse` of ours' model, read from its tables' memory (no torch call)."""
    wu, wi, bu, bi = (t.weight.detach().numpy() for t in (
        model.user_factors, model.item_factors, model.user_bias, model.item_bias))
    return _held_rmse(np.float32(model.mean), wu, wi, bu[:, 0], bi[:, 0], held)


def _ours_timed(shape, fit, held, epochs, lr, reg, pct_start=0.25, seed=0):
    """(seconds, final held-out RMSE) of one plain fit_compiled call: what a user waits for.

    No callback, so the tables are written back once, at the end, not after every epoch as
    the evaluated runs need."""
    from cfcourse.compiled import fit_compiled

    x, y, model = _ours_start(shape, fit, seed)
    start = time.perf_counter()
    fit_compiled(model, x, y, epochs=epochs, lr=lr, reg=reg, reg_bias=OURS_REG_BIAS,
                 seed=seed, pct_start=pct_start, order="blocks", threads=THREADS)
    seconds = time.perf_counter() - start
    return seconds, _ours_held_rmse(model, held)


def _ours_run(shape, fit, held, epochs, lr, reg, pct_start=0.25, seed=0):
    """(held-out RMSE after each epoch, training seconds of each epoch) of fit_compiled."""
    from cfcourse.compiled import fit_compiled

    x, y, model = _ours_start(shape, fit, seed)
    curve, spent, mark = [], [], [time.perf_counter()]

    def after(epoch, model):
        spent.append(time.perf_counter() - mark[0])
        curve.append(_ours_held_rmse(model, held))
        mark[0] = time.perf_counter()  # evaluation off the clock

    fit_compiled(model, x, y, epochs=epochs, lr=lr, reg=reg, reg_bias=OURS_REG_BIAS,
                 seed=seed, pct_start=pct_start, order="blocks", threads=THREADS,
                 callback=after)
    return curve, spent


def _sweep(shape, inner, setting, name, values, meaning) -> list[str]:
    """Ours at SWEEP_EPOCHS epochs with each of ``values`` for the module constant
    ``cfcourse.compiled.<name>``, on the inner split (the held-out 1% is not used): why the
    constant is what it is."""
    from cfcourse import compiled

    chosen, rows = getattr(compiled, name), []
    try:
        for value in values:
            setattr(compiled, name, value)
            runs = []
            for seed in SWEEP_SEEDS:
                curve, sec = _ours_run(shape, *inner, SWEEP_EPOCHS, **setting, seed=seed)
                runs.append((curve[-1], float(np.sum(sec))))
            error, seconds = np.array(runs).T
            rows.append(f"| {value}{' (the default)' if value == chosen else ''} | "
                        f"{error.mean():.4f} ± {error.std(ddof=1):.4f} | "
                        f"{seconds.mean():.2f} ± {seconds.std(ddof=1):.2f} |")
    finally:
        setattr(compiled, name, chosen)
    return ["", (f"`{name}`, {meaning}, on the inner split: ours with its tuned setting, "
                 f"{SWEEP_EPOCHS} epochs, seeds {SWEEP_SEEDS} (mean ± sd):"), "",
            f"| {name} | inner-split RMSE | seconds (with setup) |", "|---:|---:|---:|", *rows]


def _race(n_ratings: int, shrunk: bool = False) -> list[str]:
    from cfcourse.compare import inner_split

    shape, train, valid, note = _data(n_ratings, shrunk)
    fit_part, tune_part = inner_split(train, valid_pct=0.1, seed=0)
    inner = _arrays(fit_part), _arrays(tune_part)
    # warm-up: numba compiles (or loads) its kernel, OpenMP starts its threads
    small = tuple(a[:10_000] for a in inner[0])
    _ours_run(shape, small, inner[1], 1, 0.1, 0.05)
    _cornac_run(shape, small, inner[1], 1, 0.01, 0.02)
    rows = [note, "", ("Settings tuned on an inner 90/10 split of the training "
                       f"part, {EPOCHS} epochs each (final inner RMSE; the held-out 1% is not "
                       "used; inf: diverged):"), "",
            "| library | setting | inner-split RMSE |", "|---|---|---:|"]
    best = {}
    for name, run, grid in (("cornac MF", _cornac_run, CORNAC_GRID),
                            ("ours, compiled", _ours_run, OURS_GRID)):
        scores = {}
        for values in itertools.product(*grid.values()):
            setting = dict(zip(grid, values))
            try:
                final = run(shape, *inner, EPOCHS, **setting)[0][-1]
            except FloatingPointError:  # ours refuses a diverged run
                final = float("inf")
            scores[values] = final if np.isfinite(final) else float("inf")
        best[name] = dict(zip(grid, min(scores, key=scores.get)))
        rows += [f"| {name} | {_label(dict(zip(grid, v)))} | {s:.4f} |"
                 for v, s in scores.items()]
    rows += _sweep(shape, inner, best["ours, compiled"], "BLOCKS", SWEEP_BLOCKS,
                   "the grid's side")
    rows += _sweep(shape, inner, best["ours, compiled"], "PREFETCH", SWEEP_PREFETCH,
                   "how many ratings ahead the kernel fetches rows (0: none)")
    del inner, fit_part, tune_part
    full, held = _arrays(train), _arrays(valid)
    n = len(full[0])
    c_curve, c_sec = _cornac_run(shape, full, held, EPOCHS, **best["cornac MF"])
    target_epoch = int(np.argmin(c_curve))
    target = c_curve[target_epoch]
    c_time = float(np.sum(c_sec[: target_epoch + 1]))
    ours = {}
    for budget in OURS_BUDGETS:
        ours[budget] = _ours_run(shape, full, held, budget, **best["ours, compiled"])
        if ours[budget][0][-1] <= target:
            break
    reached = [b for b, (curve, _) in ours.items() if curve[-1] <= target]
    c_epoch = float(np.median(c_sec))
    rows += ["", f"Held-out RMSE and speed, {n:,} training ratings, {N_FACTORS} factors, "
             f"{THREADS} threads each:", "",
             ("| run | first epoch, s | seconds / epoch (median) | ratings / s "
              "| held-out RMSE per epoch |"),
             "|---|---:|---:|---:|---|"]
    rows.append(f"| cornac MF, {_label(best['cornac MF'])}, {EPOCHS} epochs "
                f"| {c_sec[0]:.2f} | {c_epoch:.2f} | {n / c_epoch:,.0f} | "
                f"{', '.join(f'{v:.4f}' for v in c_curve)} |")
    for budget, (curve, sec) in ours.items():
        o_epoch = float(np.median(sec))
        rows.append(f"| ours, fit_compiled blocks, {_label(best['ours, compiled'])}, "
                    f"{budget} epochs | {sec[0]:.2f} | {o_epoch:.2f} | {n / o_epoch:,.0f} | "
                    f"{', '.join(f'{v:.4f}' for v in curve)} |")
    # ours' first epoch also holds the one-off work of fit_compiled: checking the data and
    # laying the ratings out in blocks
    setup = float(np.median([sec[0] - np.median(sec[1:]) for _, sec in ours.values()
                             if len(sec) > 1]))
    rows += ["", f"Target: cornac's best held-out RMSE, {target:.4f}, reached after "
             f"{target_epoch + 1} epochs ({c_time:.1f} s of training in the evaluated run "
             "above)."]
    if reached:
        budget = reached[0]
        rows += _times_to_target(shape, full, held, target_epoch + 1, best, budget,
                                 ours[budget][0][-1])
    else:
        rows.append(f"Ours does not reach it within the budgets {OURS_BUDGETS}; its best "
                    f"is {min(min(c) for c, _ in ours.values()):.4f}.")
    ours_epoch = float(np.median(np.concatenate([s for _, s in ours.values()])))
    rows.append(f"Per epoch, ours against cornac: {c_epoch / ours_epoch:.1f}× "
                "(median epoch over all of ours' runs; both on the same data and threads). "
                f"Ours' first epoch includes its one-off setup (checks, and the blocks layout), "
                f"about {setup:.2f} s (first epoch minus the later epochs' median, median over "
                "the runs); it is inside every time to target above.")
    return rows


def _times_to_target(shape, full, held, c_epochs, best, budget, evaluated) -> list[str]:
    """Both times to target from plain calls, TIMINGS pairs taken in turn (cornac, then
    ours), so that a slow spell of the shared machine falls on both: the medians' ratio, and
    the range of the pairs' ratios."""
    pairs = []
    for _ in range(TIMINGS):
        c_time, c_final = _cornac_timed(shape, full, held, c_epochs, **best["cornac MF"])
        o_time, o_final = _ours_timed(shape, full, held, budget, **best["ours, compiled"])
        assert abs(o_final - evaluated) < 1e-6, "blocks should reproduce the evaluated run"
        pairs.append((c_time, o_time, c_final))
    c_times, o_times, c_finals = (np.array(v) for v in zip(*pairs))
    ratios = c_times / o_times
    c_med, o_med = float(np.median(c_times)), float(np.median(o_times))
    return [(f"Ours reaches it with a {budget}-epoch run (RMSE {evaluated:.4f}). Timed as a "
            f"user waits, {TIMINGS} times each, taken in turn: cornac's plain {c_epochs}-epoch "
            f"`fit_sgd` call (as `MF.fit` makes it; held-out RMSE "
            f"{c_finals.min():.4f} to {c_finals.max():.4f}, its threads race) takes "
            f"{c_med:.2f} s (median; {c_times.min():.2f} to {c_times.max():.2f}); ours' plain "
            f"`fit_compiled` call, without a callback (setup and one write-back of the tables "
            f"included), {o_med:.2f} s ({o_times.min():.2f} to {o_times.max():.2f}). Ours is "
            f"**{c_med / o_med:.1f}× sooner** (ratio of the medians; the pairs' ratios run "
            f"from {ratios.min():.1f}× to {ratios.max():.1f}×; fastest against fastest, "
            f"{c_times.min() / o_times.min():.1f}×).")]


def _ml100k() -> list[str]:
    import cfcourse
    from cfcourse.compare import clearly_better, grid_search, summarize
    from cfcourse.data import load_movielens, random_split
    from cfcourse.metrics import rmse
    from cfcourse.recommender import DEFAULTS

    train, valid = random_split(load_movielens("ml-100k"), valid_pct=0.1, seed=42)

    # One thread each (torch.set_num_threads(1), threads=1): like for like, reproducible to the
    # bit, and not distorted by thread oversubscription on a shared machine.
    torch.set_num_threads(1)

    def score(params, fit_part, tune_part):
        model = cfcourse.fit(fit_part, engine="compiled", threads=1, **params)
        return rmse(model.predict(tune_part, unknown="bias"), tune_part["rating"])

    start = time.perf_counter()
    result = grid_search(train, ML100K_GRID, score, valid_pct=0.1, seed=0)
    tune_s = time.perf_counter() - start
    chosen = result.best_params
    runs = []
    for label, opts in (("torch, DEFAULTS", {"engine": "torch"}),
                        ("compiled, tuned", {"engine": "compiled", "threads": 1, **chosen})):
        for seed in SEEDS:
            start = time.perf_counter()
            model = cfcourse.fit(train, random_state=seed, **opts)
            seconds = time.perf_counter() - start
            error = rmse(model.predict(valid, unknown="bias"), valid["rating"])
            runs.append({"method": label, "seed": seed, "rmse": error, "seconds": seconds})
    frame = pd.DataFrame(runs)
    table = summarize(frame, by="method", value="rmse")
    secs = summarize(frame, by="method", value="seconds", digits=2)
    top = result.table.sort_values("score").head(5)
    torch_defaults = {k: DEFAULTS["dot_bias"][k] for k in ML100K_GRID}
    rows = ["", "### ML-100k: cfcourse.fit, compiled against torch", "",
            "Split: `random_split(load_movielens('ml-100k'), valid_pct=0.1, seed=42)`. The "
            "compiled engine was tuned with the torch DEFAULTS' budget (54 settings): "
            + ", ".join(f"`{k}` ∈ {v}" for k, v in ML100K_GRID.items())
            + f", on an inner 90/10 split of the training part ({tune_s:.0f} s). The torch "
            f"path uses its DEFAULTS ({torch_defaults}, bs=4096, fused_row_adagrad). Five best "
            "compiled settings (inner-split RMSE):", "",
            "| " + " | ".join(top.columns) + " |", "|" + "---:|" * len(top.columns)]
    rows += ["| " + " | ".join(f"{v:.4f}" if c == "score" else str(v) for c, v in r.items())
             + " |" for r in top.to_dict("records")]
    rows += ["", f"Held out, seeds {SEEDS} (fit time includes building the vocabulary):", "",
             "| method | held-out RMSE, mean ± sd | fit seconds, mean ± sd |", "|---|---:|---:|"]
    rows += [f"| {m} | {table.loc[m, 'mean ± sd']} | {secs.loc[m, 'mean ± sd']} |"
             for m in table.index]
    a = frame[frame.method == "compiled, tuned"]["rmse"]
    b = frame[frame.method == "torch, DEFAULTS"]["rmse"]
    verdict = ("compiled clearly better" if clearly_better(a, b) else "torch clearly better"
               if clearly_better(b, a) else "a tie (gap within the seed spread)")
    rows += ["", f"Accuracy: {verdict}. Chosen COMPILED_DEFAULTS: {chosen}.",
             "Both engines ran on one thread (torch.set_num_threads(1), threads=1), so every "
             "run here is reproducible to the bit (the compiled engine's default order, blocks, "
             "is also reproducible on more threads)."]
    return rows


def run(n_ratings: int = 25_000_095) -> list[str]:
    """The races at 5 M ratings (shrunk, then sparse) and at ``n_ratings`` (ML-25M's full size
    by default), then ML-100k."""
    import numba

    rows = [f"cornac {__import__('cornac').__version__}, numba {numba.__version__} "
            f"({numba.config.NUMBA_NUM_THREADS} threads available; {THREADS} used). "
            "Wall-clock times on a shared machine: read the ratios.", ""]
    small = min(5_000_000, n_ratings)
    races = [(small, True, "shrunk as chapter 9 shrinks ML-25M"),
             (small, False, "on all of ML-25M's people and films")]
    if n_ratings > small:
        races.append((n_ratings, False, "at ML-25M's shape"))
    for size, shrunk, how in races:
        rows += ["", f"### The race at {size:,} ratings, {how}", ""]
        try:
            rows += _race(size, shrunk)
        except MemoryError:
            rows += [f"Not measured at {size:,} ratings: out of memory on this machine."]
    return rows + _ml100k()

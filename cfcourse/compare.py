"""The comparison protocol as code: tune on an inner split, repeat over seeds, claim an
order only when the gap exceeds the spread.

Every table in the book that ranks methods is built with these helpers, so that each
method gets the same tuning budget and every ranking is backed by its spread
(the book's page "How we compare models" states the protocol).

Examples
--------
>>> import numpy as np
>>> clearly_better([0.90, 0.91, 0.90], [0.95, 0.96, 0.94])   # lower is better
True
>>> clearly_better([0.90, 0.93, 0.90], [0.91, 0.92, 0.92])
False
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cfcourse.data.split import random_split

__all__ = [
    "GridResult",
    "clearly_better",
    "grid_search",
    "inner_split",
    "over_seeds",
    "paired_bootstrap",
    "paired_verdict",
    "summarize",
]


def inner_split(train: pd.DataFrame, valid_pct: float = 0.1,
                seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the *training* ratings into a fitting part and a tuning part.

    Hyperparameters are chosen on the tuning part; the reported validation split
    is never seen until the one final evaluation.
    """
    return random_split(train, valid_pct=valid_pct, seed=seed)


@dataclass
class GridResult:
    """What :func:`grid_search` found: the best setting and every setting's score."""

    best_params: dict
    best_score: float
    table: pd.DataFrame

    def __repr__(self) -> str:
        return (f"GridResult(best_params={self.best_params}, best_score={self.best_score:.4f}, "
                f"{len(self.table)} settings tried)")


def _settings(grid: Mapping[str, Sequence]) -> list[dict]:
    if not grid:
        raise ValueError("the grid is empty; give at least one hyperparameter with its values.")
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) or not len(values):
            raise ValueError(f"grid[{name!r}] must be a non-empty list of values, got {values!r}.")
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*grid.values())]


def grid_search(train: pd.DataFrame, grid: Mapping[str, Sequence],
                score: Callable[[dict, pd.DataFrame, pd.DataFrame], float],
                valid_pct: float = 0.1, seed: int = 0) -> GridResult:
    """Try every combination in ``grid`` on an inner split of ``train``; lower scores win.

    ``score(params, fit_part, tune_part)`` fits a model with ``params`` on ``fit_part``
    and returns its error on ``tune_part`` (RMSE, say). The number of combinations is
    the method's tuning budget: give every method in a comparison the same one.
    """
    fit_part, tune_part = inner_split(train, valid_pct=valid_pct, seed=seed)
    rows = []
    for params in _settings(grid):
        value = float(score(params, fit_part, tune_part))
        if not np.isfinite(value):
            raise ValueError(f"score returned {value} for {params}; it must be a finite error.")
        rows.append({**params, "score": value})
    table = pd.DataFrame(rows)
    best = int(table["score"].to_numpy().argmin())
    best_params = {name: rows[best][name] for name in grid}
    return GridResult(best_params, rows[best]["score"], table)


def over_seeds(run: Callable[[int], float | Mapping[str, float]],
               seeds: Sequence[int] = (0, 1, 2)) -> pd.DataFrame:
    """Call ``run(seed)`` for each seed; one row per seed.

    ``run`` returns a number (stored as ``value``) or a mapping of named numbers.
    """
    if len(seeds) < 1:
        raise ValueError("give at least one seed (the protocol asks for three or more).")
    rows = []
    for seed in seeds:
        result = run(seed)
        values = dict(result) if isinstance(result, Mapping) else {"value": float(result)}
        rows.append({"seed": seed, **values})
    return pd.DataFrame(rows)


def summarize(frame: pd.DataFrame, by: str = "method", value: str = "rmse",
              digits: int = 4) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1) and count of ``value`` per ``by``, best first.

    The column ``mean ± sd`` is the one the book's tables print.
    """
    for column in (by, value):
        if column not in frame.columns:
            raise ValueError(f"the frame has no column {column!r}; it has {list(frame.columns)}.")
    groups = frame.groupby(by, sort=False)[value]
    table = pd.DataFrame({"mean": groups.mean(), "sd": groups.std(ddof=1).fillna(0.0),
                          "n": groups.size()}).sort_values("mean")
    table["mean ± sd"] = [f"{m:.{digits}f} ± {s:.{digits}f}"
                          for m, s in zip(table["mean"], table["sd"])]
    return table


def clearly_better(a, b) -> bool:
    """True when ``a`` (errors, lower is better) beats ``b`` by more than their spread.

    The gap between the means must exceed the sum of the two standard deviations
    over seeds; anything less is reported as a tie.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        raise ValueError("need at least two runs (seeds) of each method to measure a spread.")
    return bool(b.mean() - a.mean() > a.std(ddof=1) + b.std(ddof=1))


def paired_verdict(frame: pd.DataFrame, a: str, b: str, value: str,
                   higher_is_better: bool = False, by: str = "method",
                   pair: str = "seed") -> tuple[str, np.ndarray]:
    """Compare ``a`` and ``b`` run by run: is the mean of their paired gaps beyond its spread?

    When each seed changes what both methods are tested on (a new split), most of a
    column's spread is between splits, not between methods; the gap on the same split is
    what measures the methods. ``frame`` holds one row per (``by``, ``pair``) with the
    score in ``value``. Returns the verdict (``"a beats b"``, ``"b beats a"`` or
    ``"a and b tie"``) and the gaps ``a - b``, one per ``pair``.

    >>> frame = pd.DataFrame({"method": ["x", "y"] * 3, "seed": [0, 0, 1, 1, 2, 2],
    ...                       "ndcg": [0.50, 0.48, 0.60, 0.59, 0.40, 0.38]})
    >>> paired_verdict(frame, "x", "y", "ndcg", higher_is_better=True)[0]
    'x beats y'
    """
    wide = frame.pivot(index=pair, columns=by, values=value)
    for name in (a, b):
        if name not in wide.columns:
            raise ValueError(f"no rows for {name!r} in column {by!r}; it has {list(wide.columns)}.")
    both = wide[[a, b]].dropna()
    gaps = (both[a] - both[b]).to_numpy(dtype=np.float64)
    errors = -gaps if higher_is_better else gaps  # below zero: a is better
    if clearly_better(errors, 0 * errors):
        return f"{a} beats {b}", gaps
    if clearly_better(-errors, 0 * errors):
        return f"{b} beats {a}", gaps
    return f"{a} and {b} tie", gaps


def paired_bootstrap(errors_a, errors_b, n_boot: int = 1000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float]:
    """Interval for ``RMSE(a) - RMSE(b)`` on the same test rows, by resampling rows.

    ``errors_a`` and ``errors_b`` are the two models' residuals on the same rows. An
    interval entirely below zero means ``a`` is better on this test set.
    """
    ea = np.asarray(errors_a, dtype=np.float64).reshape(-1)
    eb = np.asarray(errors_b, dtype=np.float64).reshape(-1)
    if ea.shape != eb.shape or ea.size == 0:
        raise ValueError("the two error arrays must be non-empty and aligned row by row.")
    rng = np.random.default_rng(seed)
    gaps = np.empty(n_boot)
    for start in range(0, n_boot, 100):  # 100 resamples at a time bounds the memory
        rows = rng.integers(0, ea.size, size=(min(100, n_boot - start), ea.size))
        gaps[start:start + len(rows)] = (np.sqrt((ea[rows] ** 2).mean(1))
                                         - np.sqrt((eb[rows] ** 2).mean(1)))
    tail = (1 - level) / 2
    low, high = np.quantile(gaps, [tail, 1 - tail])
    return float(low), float(high)

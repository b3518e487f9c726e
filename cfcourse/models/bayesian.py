"""Bayesian matrix factorisation fitted by Gibbs sampling.

The model is the course's biased dot product,

.. math::  r_{ui} = \\mu + b_u + c_i + p_u \\cdot q_i + \\varepsilon, \\qquad
           \\varepsilon \\sim \\mathcal N(0, 1/\\alpha),

with Gaussian priors on every row, :math:`[b_u, p_u] \\sim \\mathcal N(m, \\mathrm{diag}(\\lambda)^{-1})`
(the same for items), and conjugate Normal-Gamma hyperpriors on each coordinate's mean
:math:`m_k` and precision :math:`\\lambda_k`, and a Gamma prior on the noise precision
:math:`\\alpha`. Weight decay is this model's prior with :math:`\\lambda` fixed by hand; SGD
finds the single most probable point. Here :math:`\\lambda` and :math:`\\alpha` are learned,
and predictions average over posterior samples (Salakhutdinov & Mnih 2008).

One sweep of the sampler draws every user's row given the items' (a ridge regression per
user, so the draw is Gaussian with the ridge solution as its mean and the inverse Hessian as
its covariance: :func:`conditional`), then every item's row, then the hyperparameters.
Factors are only defined up to an invertible map (chapter 1), so samples of factors are never
averaged: :meth:`BayesianMF.predict` averages *predicted ratings* over the kept samples.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> df = pd.DataFrame({"user": rng.integers(0, 20, 300), "item": rng.integers(0, 15, 300)})
>>> df = df.drop_duplicates(["user", "item"]).assign(rating=3.0)
>>> model = BayesianMF(n_factors=2, n_iter=30, burn_in=10, random_state=0).fit(df)
>>> bool(np.allclose(model.predict(df), 3.0, atol=0.05))
True
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cfcourse.data.encode import IdIndex
from cfcourse.data.validate import validate_ratings

__all__ = ["BayesianMF", "conditional"]


def conditional(design: np.ndarray, target: np.ndarray, prior_mean: np.ndarray,
                prior_precision: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of one row given the other side's rows.

    Minimising ``alpha * ||target - design @ w||² + (w - m)ᵀ diag(λ) (w - m)`` is a ridge
    regression; the Gaussian conditional has that minimiser as its mean and the inverse of
    (half) the Hessian, ``(alpha XᵀX + diag(λ))⁻¹``, as its covariance.
    """
    precision = alpha * design.T @ design + np.diag(prior_precision)
    cov = np.linalg.inv(precision)
    mean = cov @ (alpha * design.T @ target + prior_precision * prior_mean)
    return mean, cov


def _segments(owner: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Ratings sorted by owner, and where each owner's run starts (CSR-style ``indptr``)."""
    order = np.argsort(owner, kind="stable")
    return order, np.searchsorted(owner[order], np.arange(n + 1))


class BayesianMF:
    """Biased matrix factorisation averaged over its posterior (Gibbs sampling).

    Parameters
    ----------
    n_factors : int
        Length ``k`` of each factor vector.
    n_iter : int
        Gibbs sweeps in all, burn-in included.
    burn_in : int
        Sweeps discarded before predictions start being averaged.
    thin : int
        Keep every ``thin``-th sample after burn-in (memory: one copy of the factors each).
    init_std : float
        Standard deviation of the starting factors.
    random_state : int
        Seed of the sampler: same data, same seed, same samples.

    Attributes
    ----------
    global_mean_ : float
        ``mu``, the mean training rating (fixed, not sampled).
    users_, items_ : IdIndex
        The training ids.
    samples_ : list of dict
        The kept samples: ``user`` ``(n_users, k+1)`` and ``item`` ``(n_items, k+1)`` arrays
        (bias in column 0), and the noise precision ``alpha``.
    trace_ : list of float
        Training RMSE of each sweep's sample (a single draw, not the average).
    """

    def __init__(self, n_factors: int = 10, n_iter: int = 200, burn_in: int = 20,
                 thin: int = 1, init_std: float = 0.1, random_state: int = 0):
        self.n_factors = n_factors
        self.n_iter = n_iter
        self.burn_in = burn_in
        self.thin = thin
        self.init_std = init_std
        self.random_state = random_state

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in
                ("n_factors", "n_iter", "burn_in", "thin", "init_std", "random_state")}

    def set_params(self, **params) -> BayesianMF:
        for name, value in params.items():
            if name not in self.get_params():
                raise ValueError(f"BayesianMF has no parameter {name!r}; "
                                 f"it has {sorted(self.get_params())}.")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        return "BayesianMF(" + ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()) + ")"

    def _check_params(self) -> None:
        for name in ("n_factors", "n_iter", "thin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not 0 <= self.burn_in < self.n_iter:
            raise ValueError(f"burn_in must be at least 0 and below n_iter={self.n_iter} so that "
                             f"some samples are kept, got {self.burn_in!r}.")

    # -- one sweep ------------------------------------------------------------------------------
    def _draw_rows(self, rng, rows, other, target, segments, hyper, alpha):
        """Draw every row [b, p] of one side given the other side's rows ``other``.

        ``other`` holds, for each rating, the other side's row; ``segments`` is
        ``(order, indptr)``: the ratings sorted by their row on this side, and where each
        row's run starts (every row owns at least one rating: the ids come from training).
        """
        order, indptr = segments
        n, d = rows.shape
        other = other[order]
        design = np.concatenate([np.ones((len(order), 1)), other[:, 1:]], axis=1)  # (N, d)
        y = target[order] - other[:, 0]  # the other side's bias moves into the target
        precision = np.empty((n, d, d))
        rhs = np.empty((n, d))
        for row in range(n):  # XᵀX and Xᵀy of each row's ratings: small BLAS calls
            x = design[indptr[row]:indptr[row + 1]]
            precision[row] = x.T @ x
            rhs[row] = x.T @ y[indptr[row]:indptr[row + 1]]
        mean_prior, prec_prior = hyper
        precision = alpha * precision + np.diag(prec_prior)[None]
        rhs = alpha * rhs + (prec_prior * mean_prior)[None]
        chol = np.linalg.cholesky(precision)                      # (n, d, d), L Lᵀ = Λ
        mean = np.linalg.solve(precision, rhs[..., None])[..., 0]
        noise = rng.standard_normal((n, d))
        # x = mean + L⁻ᵀ z has covariance (L Lᵀ)⁻¹ = Λ⁻¹.
        return mean + np.linalg.solve(np.swapaxes(chol, 1, 2), noise[..., None])[..., 0]

    @staticmethod
    def _draw_hyper(rng, rows):
        """Normal-Gamma draw of each column's prior mean and precision given the rows."""
        a0, b0, gamma0 = 1.0, 1.0, 1.0  # weak hyperprior: mean 1, broad
        n = len(rows)
        total, sq = rows.sum(0), (rows**2).sum(0)
        mean_post = total / (n + gamma0)
        # Marginal sums of squares around the posterior mean of the Normal-Gamma.
        ss = sq - (n + gamma0) * mean_post**2
        precision = rng.gamma(a0 + n / 2, 1 / (b0 + 0.5 * ss + 1e-12))
        mean = mean_post + rng.standard_normal(rows.shape[1]) / np.sqrt((n + gamma0) * precision)
        return mean, precision

    def fit(self, ratings: pd.DataFrame) -> BayesianMF:
        """Run the sampler on ``ratings`` (columns ``user``, ``item``, ``rating``); returns self."""
        self._check_params()
        validate_ratings(ratings, rating_range=None)
        self.users_ = IdIndex(ratings["user"].to_numpy(), "user")
        self.items_ = IdIndex(ratings["item"].to_numpy(), "item")
        u = self.users_.encode(ratings["user"].to_numpy())
        i = self.items_.encode(ratings["item"].to_numpy())
        r = ratings["rating"].to_numpy(dtype=np.float64)
        self.global_mean_ = float(r.mean())
        self.rating_range_ = (float(r.min()), float(r.max()))
        y = r - self.global_mean_
        rng = np.random.default_rng(self.random_state)
        d = self.n_factors + 1
        users = np.concatenate([np.zeros((len(self.users_), 1)),
                                rng.normal(0, self.init_std, (len(self.users_), d - 1))], 1)
        items = np.concatenate([np.zeros((len(self.items_), 1)),
                                rng.normal(0, self.init_std, (len(self.items_), d - 1))], 1)
        by_user, by_item = _segments(u, len(users)), _segments(i, len(items))
        alpha = 1.0
        self.samples_, self.trace_ = [], []
        for sweep in range(self.n_iter):
            users = self._draw_rows(rng, users, items[i], y, by_user,
                                    self._draw_hyper(rng, users), alpha)
            items = self._draw_rows(rng, items, users[u], y, by_item,
                                    self._draw_hyper(rng, items), alpha)
            resid = y - users[u, 0] - items[i, 0] - (users[u, 1:] * items[i, 1:]).sum(1)
            alpha = rng.gamma(1.0 + len(y) / 2, 1 / (1.0 + 0.5 * (resid**2).sum()))
            self.trace_.append(float(np.sqrt((resid**2).mean())))
            if sweep >= self.burn_in and (sweep - self.burn_in) % self.thin == 0:
                self.samples_.append({"user": users.astype(np.float32),
                                      "item": items.astype(np.float32), "alpha": float(alpha)})
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "samples_"):
            raise ValueError("this BayesianMF is not fitted yet; call fit(ratings) first.")

    def predict(self, df: pd.DataFrame, unknown: str = "raise") -> np.ndarray:
        """Posterior-mean predicted ratings for the rows of ``df``, clipped to the training range.

        ``unknown="bias"`` scores an unseen user (item) with the item's (user's) average bias
        alone; ``"raise"`` raises ``KeyError`` naming the id.
        """
        self._check_fitted()
        if unknown not in ("raise", "bias"):
            raise ValueError(f"unknown must be 'raise' or 'bias', got {unknown!r}.")
        validate_ratings(df, columns=("user", "item"), allow_duplicates=True, allow_empty=True)
        policy = "ignore" if unknown == "bias" else "raise"
        u = self.users_.encode(df["user"].to_numpy(), unknown=policy)
        i = self.items_.encode(df["item"].to_numpy(), unknown=policy)
        known_u, known_i = u >= 0, i >= 0
        both = known_u & known_i
        total = np.zeros(len(df))
        for s in self.samples_:
            pu, qi = s["user"][np.maximum(u, 0)], s["item"][np.maximum(i, 0)]
            total += np.where(known_u, pu[:, 0], 0) + np.where(known_i, qi[:, 0], 0)
            total += np.where(both, (pu[:, 1:] * qi[:, 1:]).sum(1), 0)
        return np.clip(self.global_mean_ + total / len(self.samples_), *self.rating_range_)

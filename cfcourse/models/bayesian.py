"""Bayesian matrix factorisation fitted by Gibbs sampling.

The model is the course's biased dot product,

.. math::  r_{ui} = \\mu + b_u + c_i + p_u \\cdot q_i + \\varepsilon, \\qquad
           \\varepsilon \\sim \\mathcal N(0, 1/\\alpha),

with Gaussian priors on every row, :math:`[b_u, p_u] \\sim \\mathcal N(m, \\mathrm{diag}(\\lambda)^{-1})`
(the same for items), conjugate Normal-Gamma hyperpriors on each coordinate's mean
:math:`m_k` and precision :math:`\\lambda_k`, and a Gamma prior on the noise precision
:math:`\\alpha`. Weight decay is this model's prior with :math:`\\lambda` fixed by hand; SGD
finds the single most probable point. Here :math:`\\lambda` and :math:`\\alpha` are learned,
and predictions average over posterior samples (Salakhutdinov & Mnih 2008).

One sweep of the sampler draws every user's row given the items' (a ridge regression per
user, so the draw is Gaussian with the ridge solution as its mean and the inverse Hessian as
its covariance: :func:`conditional`), then every item's row, then the hyperparameters.
Factors are only defined up to an invertible map (chapter 1), so samples of factors are never
averaged: :meth:`BayesianMF.predict`, :meth:`~BayesianMF.score_matrix` and
:meth:`~BayesianMF.top_k` average *scores* over the kept samples.

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
import scipy.sparse as sp

from cfcourse.data.encode import IdIndex
from cfcourse.data.validate import validate_ratings
from cfcourse.models.base import Params, check_fitted

__all__ = ["BayesianMF", "conditional"]

def conditional(design: np.ndarray, target: np.ndarray, prior_mean: np.ndarray,
                prior_precision: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of one row given the other side's rows.

    Minimising ``alpha * ||target - design @ w||² + (w - m)ᵀ diag(λ) (w - m)`` is a ridge
    regression; the Gaussian conditional has that minimiser as its mean and the inverse of
    (half) the Hessian, ``(alpha XᵀX + diag(λ))⁻¹``, as its covariance.

    Examples
    --------
    >>> mean, cov = conditional(np.ones((4, 1)), np.full(4, 2.0), np.zeros(1), np.ones(1), 1.0)
    >>> float(mean[0]), float(cov[0, 0])   # (4 * 2) / (4 + 1), 1 / (4 + 1)
    (1.6, 0.2)
    """
    precision = alpha * design.T @ design + np.diag(prior_precision)
    cov = np.linalg.inv(precision)
    mean = cov @ (alpha * design.T @ target + prior_precision * prior_mean)
    return mean, cov


def _by_row(owner: np.ndarray, other: np.ndarray, y: np.ndarray, n_owner: int,
            n_other: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Two CSR matrices ``(n_owner, n_other)`` with one structure: ones, and the targets ``y``."""
    order = np.lexsort((other, owner))
    indptr = np.searchsorted(owner[order], np.arange(n_owner + 1))
    shape = (n_owner, n_other)
    return (sp.csr_matrix((np.ones(len(order)), other[order], indptr), shape=shape),
            sp.csr_matrix((y[order], other[order], indptr), shape=shape))


def _draw_rows(rng: np.random.Generator, other: np.ndarray, pattern: sp.csr_matrix,
               values: sp.csr_matrix, hyper: tuple[np.ndarray, np.ndarray],
               alpha: float) -> np.ndarray:
    """Draw every row ``[b, p]`` of one side given the other side's rows ``other``.

    Row ``r`` regresses its targets minus the other side's bias on ``[1, q_j]``: its
    ``XᵀX`` is the sum of the outer products ``[1, q_j][1, q_j]ᵀ`` over the ``j`` it rated,
    so one sparse product ``pattern @ outer`` gives every row's at once.
    """
    n_other, d = other.shape
    design = other.copy()
    design[:, 0] = 1.0                                           # (n_other, d): [1, q_j]
    outer = (design[:, :, None] * design[:, None, :]).reshape(n_other, d * d)
    gram = np.asarray(pattern @ outer).reshape(-1, d, d)         # (n, d, d): XᵀX per row
    xty = values @ design - pattern @ (other[:, :1] * design)    # (n, d): Xᵀ(y - c)
    mean_prior, prec_prior = hyper
    precision = alpha * gram + np.diag(prec_prior)               # (n, d, d)
    rhs = alpha * xty + prec_prior * mean_prior                  # (n, d)
    chol = np.linalg.cholesky(precision)                         # L Lᵀ = Λ
    # mean = Λ⁻¹ rhs = L⁻ᵀ L⁻¹ rhs, and L⁻ᵀ z has covariance (L Lᵀ)⁻¹ = Λ⁻¹: one pass does both.
    half = np.linalg.solve(chol, rhs[..., None])
    noise = rng.standard_normal(half.shape)
    return np.linalg.solve(np.swapaxes(chol, 1, 2), half + noise)[..., 0]


def _draw_hyper(rng: np.random.Generator, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normal-Gamma draw of each column's prior mean and precision given the rows."""
    a0, b0, gamma0 = 1.0, 1.0, 1.0  # weak hyperprior: mean 0, precision about 1, broad
    n = len(rows)
    total, sq = rows.sum(0), (rows**2).sum(0)
    mean_post = total / (n + gamma0)
    ss = sq - (n + gamma0) * mean_post**2  # sum of squares around the posterior mean
    precision = rng.gamma(a0 + n / 2, 1 / (b0 + 0.5 * ss + 1e-12))
    mean = mean_post + rng.standard_normal(rows.shape[1]) / np.sqrt((n + gamma0) * precision)
    return mean, precision


class BayesianMF(Params):
    """Biased matrix factorisation averaged over its posterior (Gibbs sampling).

    Parameters
    ----------
    n_factors : int
        Length ``k`` of each factor vector.
    n_iter : int
        Gibbs sweeps in all, burn-in included.
    burn_in : int
        Sweeps discarded before samples are kept: the chain forgets its random start.
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
    rating_range_ : tuple of float
        Lowest and highest training rating; :meth:`predict` clips to it.
    users_, items_ : IdIndex
        The training ids; rows of the samples follow them.
    user_samples_, item_samples_ : ndarray, ``(n_samples, n_users | n_items, k + 1)``
        The kept samples, bias in column 0, factors after it (float32). There is no single
        ``user_factors_``: factors are defined only up to an invertible map, so their average
        means nothing; average scores instead.
    alpha_samples_ : ndarray, ``(n_samples,)``
        The kept draws of the noise precision ``alpha``.
    trace_ : list of float
        Training RMSE of each sweep's sample (a single draw, not the average).

    Notes
    -----
    ``get_params``/``set_params`` come from :class:`~cfcourse.models.base.Params`, so
    ``sklearn.base.clone`` works; using a method before ``fit`` raises
    :class:`~cfcourse.models.base.NotFittedError`.

    Examples
    --------
    >>> BayesianMF(n_factors=4, n_iter=50).set_params(burn_in=10)
    BayesianMF(n_factors=4, n_iter=50, burn_in=10, thin=1, init_std=0.1, random_state=0)
    """

    def __init__(self, n_factors: int = 10, n_iter: int = 200, burn_in: int = 20,
                 thin: int = 1, init_std: float = 0.1, random_state: int = 0):
        self.n_factors = n_factors
        self.n_iter = n_iter
        self.burn_in = burn_in
        self.thin = thin
        self.init_std = init_std
        self.random_state = random_state

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

    def fit(self, ratings: pd.DataFrame) -> BayesianMF:
        """Run the sampler from scratch on ``ratings`` (``user``, ``item``, ``rating``); returns self."""
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
        n_users, n_items = len(self.users_), len(self.items_)
        by_user = _by_row(u, i, y, n_users, n_items)
        by_item = _by_row(i, u, y, n_items, n_users)
        self._rated = (by_user[0].indptr, by_user[0].indices)  # training pairs, for top_k
        rng = np.random.default_rng(self.random_state)
        users = rng.normal(0, self.init_std, (n_users, self.n_factors + 1))
        items = rng.normal(0, self.init_std, (n_items, self.n_factors + 1))
        users[:, 0] = items[:, 0] = 0.0  # biases start at zero
        alpha, kept, self.trace_ = 1.0, [], []
        for sweep in range(self.n_iter):
            users = _draw_rows(rng, items, *by_user, _draw_hyper(rng, users), alpha)
            items = _draw_rows(rng, users, *by_item, _draw_hyper(rng, items), alpha)
            pu, qi = users[u], items[i]                                    # (N, k + 1)
            resid = y - pu[:, 0] - qi[:, 0] - np.einsum("nk,nk->n", pu[:, 1:], qi[:, 1:])
            sse = float(resid @ resid)
            alpha = rng.gamma(1.0 + len(y) / 2, 1 / (1.0 + 0.5 * sse))
            self.trace_.append(float(np.sqrt(sse / len(y))))
            if sweep >= self.burn_in and (sweep - self.burn_in) % self.thin == 0:
                kept.append((users.astype(np.float32), items.astype(np.float32), alpha))
        self.user_samples_ = np.stack([s[0] for s in kept])
        self.item_samples_ = np.stack([s[1] for s in kept])
        self.alpha_samples_ = np.array([s[2] for s in kept])
        return self

    def _encode(self, ratings: pd.DataFrame, unknown: str) -> tuple[np.ndarray, np.ndarray]:
        check_fitted(self, "user_samples_")
        if unknown not in ("raise", "bias"):
            raise ValueError(f"unknown must be 'raise' or 'bias', got {unknown!r}.")
        validate_ratings(ratings, columns=("user", "item"), allow_duplicates=True,
                         allow_empty=True)
        policy = "ignore" if unknown == "bias" else "raise"
        return (self.users_.encode(ratings["user"].to_numpy(), unknown=policy),
                self.items_.encode(ratings["item"].to_numpy(), unknown=policy))

    def sample_predictions(self, ratings: pd.DataFrame, unknown: str = "raise") -> np.ndarray:
        """Each kept sample's unclipped score for each row of ``ratings``, ``(n_samples, n)``.

        .. math:: s^{(t)}_{ui} = \\mu + b^{(t)}_u + c^{(t)}_i + p^{(t)}_u \\cdot q^{(t)}_i

        ``unknown="bias"`` leaves out the terms of an unseen user (item): the known side's
        bias alone; ``"raise"`` raises ``KeyError`` naming the id.
        """
        u, i = self._encode(ratings, unknown)
        known_u, known_i = u >= 0, i >= 0
        pu = self.user_samples_[:, np.maximum(u, 0)] * known_u[None, :, None]   # (S, n, k+1)
        qi = self.item_samples_[:, np.maximum(i, 0)] * known_i[None, :, None]
        return (self.global_mean_ + pu[..., 0] + qi[..., 0]
                + np.einsum("snk,snk->sn", pu[..., 1:], qi[..., 1:]))

    def predict(self, ratings: pd.DataFrame, unknown: str = "raise",
                return_fallback: bool = False):
        """Posterior-mean predicted ratings for the rows of ``ratings``, clipped to the training range.

        .. math:: \\hat r_{ui} = \\frac1T \\sum_t s^{(t)}_{ui}

        Parameters
        ----------
        unknown : {"raise", "bias"}
            An unseen user or item raises ``KeyError`` naming it, or falls back to the
            global mean plus the known side's bias.
        return_fallback : bool
            Also return a boolean array, True for the rows that fell back.
        """
        u, i = self._encode(ratings, unknown)
        out = np.empty(len(ratings))
        for start in range(0, len(ratings), 8192):  # bounds the (S, rows, k) memory
            chunk = ratings.iloc[start:start + 8192]
            out[start:start + len(chunk)] = self.sample_predictions(chunk, unknown).mean(0)
        out = np.clip(out, *self.rating_range_)
        return (out, (u < 0) | (i < 0)) if return_fallback else out

    def score_matrix(self) -> np.ndarray:
        """Every user's posterior-average score for every item, ``(n_users, n_items)``, unclipped.

        The factor part is ``(1/T) Σ_t P_t Q_tᵀ``: the samples' factors side by side,
        ``[P_1 … P_T] [Q_1 … Q_T]ᵀ``, make it one product.
        """
        check_fitted(self, "user_samples_")
        n_samples, n_users, _ = self.user_samples_.shape
        p = np.moveaxis(self.user_samples_[..., 1:], 0, 1).reshape(n_users, -1)  # (U, T·k)
        q = np.moveaxis(self.item_samples_[..., 1:], 0, 1).reshape(len(self.items_), -1)
        bias_u, bias_i = self.user_samples_[..., 0].mean(0), self.item_samples_[..., 0].mean(0)
        return (self.global_mean_ + bias_u[:, None] + bias_i[None, :]
                + (p.astype(np.float64) @ q.T.astype(np.float64)) / n_samples)

    def top_k(self, k: int = 10, exclude: pd.DataFrame | None = None) -> dict:
        """The ``k`` best items for every user by :meth:`score_matrix`, as raw ids, best first.

        ``exclude``: ``user, item`` pairs never to recommend; ``None`` excludes the training
        pairs. Returns ``{user id: array of item ids}``; ties keep the lower item position first.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}.")
        scores = self.score_matrix()
        if exclude is None:
            indptr, indices = self._rated
            rows = np.repeat(np.arange(len(self.users_)), np.diff(indptr))
            scores[rows, indices] = -np.inf
        else:
            u = self.users_.encode(exclude["user"].to_numpy(), unknown="ignore")
            i = self.items_.encode(exclude["item"].to_numpy(), unknown="ignore")
            keep = (u >= 0) & (i >= 0)
            scores[u[keep], i[keep]] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]                 # (U, k)
        allowed = np.take_along_axis(scores, order, axis=1) > -np.inf
        ids = self.items_.decode(order)
        return {user: ids[row][allowed[row]] for row, user in enumerate(self.users_.ids_.tolist())}

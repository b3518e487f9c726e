"""The public API: ``fit`` a recommender, then ``predict``, ``recommend``, ``save`` and ``load``.

>>> import cfcourse
>>> model = cfcourse.fit(train)                     # doctest: +SKIP
>>> model.predict(valid)                            # doctest: +SKIP
>>> model.recommend(user=42, k=10)                  # doctest: +SKIP

Unknown-id policy: ``predict`` raises ``KeyError`` naming the first unknown user or
item; with ``unknown="bias"`` it predicts ``mu + b_u + b_i`` using whichever
biases are known (``mu`` alone for a pair of strangers). ``recommend`` and
``similar_items`` always raise for an unknown id: there is nothing to rank from.

Devices: ``fit`` and ``load`` put the model on :func:`cfcourse.env.device` unless
given a ``device``; every method takes NumPy/pandas in and gives NumPy/pandas out,
whatever the device.

Engines (``kind="dot_bias"``): ``engine="torch"`` trains with minibatch row-wise Adagrad in
PyTorch (:func:`cfcourse.train.fit_sparse`, CPU or GPU); ``engine="compiled"`` with the
numba loop over single ratings (:func:`cfcourse.compiled.fit_compiled`, CPU only, all cores,
lock-free); ``engine="auto"`` picks the compiled one on the CPU when numba imports, PyTorch
otherwise. The fitted model records its engine in ``model.engine``.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from cfcourse import env
from cfcourse.data.encode import IdIndex
from cfcourse.data.validate import validate_ratings
from cfcourse.models.baselines import BiasBaseline
from cfcourse.models.neural import CollabNN
from cfcourse.models.sparse_dot_bias import SparseDotBias
from cfcourse.train import fit_plain, fit_sparse

__all__ = [
    "COMPILED_DEFAULTS", "DEFAULTS", "ENGINES", "fit", "load", "popularity_scores", "Recommender",
    "score_matrix", "top_k",
]

# Chosen by `python benchmarks/bench.py --only tune`: a grid search on an inner split of the
# training part of ML-100k's 80/20 split (no chapter's validation rating is used); the grid, the
# rule and the scores are in benchmarks/RESULTS.md.
DEFAULTS = {
    "dot_bias": {"n_factors": 32, "epochs": 12, "lr": 0.2, "bs": 4096, "reg": 0.1,
                 "reg_bias": 0.01, "optimizer": "fused_row_adagrad"},
    "nn": {"layers": [100, 50], "dropout": 0.1, "epochs": 5, "lr": 3e-3, "bs": 1024, "wd": 0.01},
}
_FORMAT = "cfcourse-recommender-1"

ENGINES = ("torch", "compiled", "auto")
# The compiled engine steps once per rating, so its learning rate and L2 are its own; it shares
# n_factors, epochs and reg_bias with DEFAULTS["dot_bias"] and ignores bs and optimizer.
# lr and reg: the best of the grid lr in [0.05, 0.1] x reg in [0.05, 0.1] (four settings, the
# budget benchmarks/bench.py's "api" section gives the torch path) on an inner 90/10 split of
# the training part of ML-100k's random_split(valid_pct=0.1, seed=42), at DEFAULTS' 32 factors
# and 12 epochs. Held out over three seeds it was as accurate as the torch path with DEFAULTS.
COMPILED_DEFAULTS = {"lr": 0.1, "reg": 0.05, "order": "by_user", "threads": None}
_COMPILED_ONLY = ("order", "threads")


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer number of results, got {k!r}.")
    return int(k)


def _rated_lists(users: np.ndarray, items: np.ndarray, n_users: int):
    """CSR-style lists of the items each user rated: (indptr, indices)."""
    order = np.lexsort((items, users))
    indptr = np.searchsorted(users[order], np.arange(n_users + 1))
    return indptr.astype(np.int64), items[order].astype(np.int64)


@dataclass
class Recommender:
    """A fitted recommender. Build it with :func:`fit` or :func:`load`, not directly."""

    kind: str
    options: dict
    users: IdIndex
    items: IdIndex
    model: torch.nn.Module
    rated_indptr: np.ndarray
    rated_indices: np.ndarray
    titles: dict = field(default_factory=dict)
    history_: list = field(default_factory=list)
    fallback_user_bias: np.ndarray | None = None  # kind="nn" only: BiasBaseline's b_u
    fallback_item_bias: np.ndarray | None = None

    def __repr__(self) -> str:
        return (f"Recommender(kind={self.kind!r}, {len(self.users):,} users, "
                f"{len(self.items):,} items)")

    @property
    def engine(self) -> str:
        """What trained the model: ``"torch"`` or ``"compiled"`` (see :func:`fit`)."""
        return self.options.get("engine", "torch")

    # -- scoring ---------------------------------------------------------------------------
    def _bias_only(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """mu + known biases, for the pairs where the full model cannot score."""
        mean, user_bias, item_bias = self._biases()
        out = np.full(len(u), mean, dtype=np.float32)
        out += np.where(u >= 0, user_bias[np.maximum(u, 0)], 0)
        out += np.where(i >= 0, item_bias[np.maximum(i, 0)], 0)
        return out

    @property
    def device(self) -> torch.device:
        """Where the model's weights live (see :func:`cfcourse.env.device`)."""
        return next(self.model.parameters()).device

    def _biases(self):
        """(mu, b_u, b_i): the model's own biases, or a BiasBaseline's for the NN."""
        m = self.model
        if isinstance(m, SparseDotBias):
            return (float(m.mean), m.user_bias.weight[:, 0].detach().cpu().numpy(),
                    m.item_bias.weight[:, 0].detach().cpu().numpy())
        return self.options["_mean"], self.fallback_user_bias, self.fallback_item_bias

    def _score_pairs(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.stack([u, i], axis=1), dtype=torch.long).to(self.device)
        with torch.no_grad():
            if isinstance(self.model, SparseDotBias):
                return self.model.predict(x).cpu().numpy()
            self.model.eval()
            if not len(x):
                return np.empty(0, dtype=np.float32)
            out = torch.cat([self.model(x[s:s + 65536]) for s in range(0, len(x), 65536)])
            return out.clamp(*self.options["_range"]).cpu().numpy()

    def predict(self, df: pd.DataFrame, unknown: str = "raise") -> np.ndarray:
        """Predicted ratings, aligned with the rows of ``df`` (columns ``user``, ``item``).

        Parameters
        ----------
        unknown : {"raise", "bias"}
            What to do with a user or item not seen in training: raise ``KeyError``
            naming it, or fall back to the global mean plus the known bias.
        """
        if unknown not in ("raise", "bias"):
            raise ValueError(f"unknown must be 'raise' or 'bias', got {unknown!r}.")
        validate_ratings(df, columns=("user", "item"), allow_duplicates=True, allow_empty=True)
        u = self.users.encode(df["user"].to_numpy(), unknown="ignore" if unknown == "bias" else "raise")
        i = self.items.encode(df["item"].to_numpy(), unknown="ignore" if unknown == "bias" else "raise")
        both = (u >= 0) & (i >= 0)
        out = self._bias_only(u, i)
        out[both] = self._score_pairs(u[both], i[both])
        return out

    def _title_frame(self, positions: np.ndarray, scores: np.ndarray, name: str) -> pd.DataFrame:
        ids = self.items.decode(positions)
        frame = pd.DataFrame({"item": ids})
        if self.titles:
            frame["title"] = [self.titles.get(int(x), "") for x in ids]
        frame[name] = scores
        return frame

    def _item_scores(self, u: int) -> np.ndarray:
        n = len(self.items)
        return self._score_pairs(np.full(n, u), np.arange(n))

    def recommend(self, user, k: int = 10, exclude_rated: bool = True) -> pd.DataFrame:
        """The ``k`` items with the highest predicted rating for ``user``, best first.

        Returns a DataFrame with ``item``, ``title`` (when titles were given at fit
        time) and ``score``. Items the user rated in training are left out unless
        ``exclude_rated=False``.
        """
        k = _check_k(k)
        u = int(self.users.encode([user])[0])
        scores = self._item_scores(u).astype(np.float64)
        if exclude_rated:
            scores[self.rated_indices[self.rated_indptr[u]:self.rated_indptr[u + 1]]] = -np.inf
        k = min(k, int(np.isfinite(scores).sum()))
        top = np.argpartition(-scores, k - 1)[:k] if k else np.empty(0, dtype=np.int64)
        top = top[np.argsort(-scores[top], kind="stable")]
        return self._title_frame(top, scores[top], "score")

    def similar_items(self, item, k: int = 10) -> pd.DataFrame:
        """The ``k`` items whose factor vectors have the highest cosine similarity to ``item``."""
        k = _check_k(k)
        i = int(self.items.encode([item])[0])
        factors = self.model.item_factors.weight.detach().cpu().numpy()
        norms = np.linalg.norm(factors, axis=1) + 1e-12
        sims = factors @ factors[i] / (norms * norms[i])
        sims[i] = -np.inf
        k = min(k, len(sims) - 1)
        top = np.argsort(-sims, kind="stable")[:k]
        return self._title_frame(top, sims[top], "similarity")

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the model to one ``.npz`` file (plain arrays and JSON; no pickle)."""
        meta = {"format": _FORMAT, "kind": self.kind, "options": self.options,
                "n_users": len(self.users), "n_items": len(self.items),
                "title_ids": list(self.titles), "history": self.history_}
        arrays = {f"state/{k}": v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}
        arrays.update(users=_plain(self.users.ids_), items=_plain(self.items.ids_),
                      rated_indptr=self.rated_indptr,
                      rated_indices=self.rated_indices,
                      titles=np.array(list(self.titles.values()), dtype=str),
                      fallback_user_bias=np.asarray(self._biases()[1]),
                      fallback_item_bias=np.asarray(self._biases()[2]),
                      meta=np.array(json.dumps(meta)))
        tmp = f"{os.fspath(path)}.part.npz"
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)


def _plain(ids: np.ndarray) -> np.ndarray:
    """Ids as an array NumPy can store without pickle (strings instead of objects)."""
    return ids.astype(str) if ids.dtype == object else ids


def _build_model(kind: str, n_users: int, n_items: int, opts: dict, mean: float,
                 y_range: tuple[float, float]) -> torch.nn.Module:
    if kind == "dot_bias":
        return SparseDotBias(n_users, n_items, opts["n_factors"], mean=mean, y_range=y_range)
    return CollabNN(n_users, n_items, layers=tuple(opts["layers"]), dropout=opts["dropout"],
                    y_range=(y_range[0], y_range[1] + 0.5))


def _engine(engine, kind: str, device: torch.device) -> str:
    """The engine that will train: "torch" or "compiled"."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {list(ENGINES)}, got {engine!r}.")
    if engine == "auto":
        from cfcourse import compiled

        return "compiled" if kind == "dot_bias" and device.type == "cpu" and \
            compiled.available() else "torch"
    if engine == "compiled":
        if kind != "dot_bias":
            raise ValueError(f"engine='compiled' trains kind='dot_bias' only, got {kind!r}.")
        if device.type != "cpu":
            raise ValueError(f"engine='compiled' runs on the CPU, got device {device}; use "
                             "engine='torch' (or 'auto') on a GPU.")
    return engine


def _options(kind: str, given: dict, engine: str = "torch") -> dict:
    if kind not in DEFAULTS:
        raise ValueError(f"kind must be one of {sorted(DEFAULTS)}, got {kind!r}.")
    if engine == "compiled":
        from cfcourse.compiled import ORDERS

        order = given.get("order", COMPILED_DEFAULTS["order"])
        if order not in ORDERS:
            raise ValueError(f"order must be one of {list(ORDERS)}, got {order!r}.")
        return _options(kind, {k: v for k, v in given.items() if k not in _COMPILED_ONLY}) | \
            {**COMPILED_DEFAULTS, **given, "engine": "compiled"}
    unknown = set(given) - set(DEFAULTS[kind])
    if unknown & set(_COMPILED_ONLY):
        raise ValueError(f"option(s) {sorted(unknown & set(_COMPILED_ONLY))} belong to "
                         "engine='compiled'; pass engine='compiled' (or 'auto' on the CPU).")
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for kind={kind!r}; "
                         f"valid ones: {sorted(DEFAULTS[kind])}.")
    for name in ("epochs", "bs"):
        value = given.get(name, DEFAULTS[kind][name])
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}; "
                             f"the default is {DEFAULTS[kind][name]}.")
    return {**DEFAULTS[kind], **given, **({"engine": "torch"} if kind == "dot_bias" else {})}


def fit(ratings: pd.DataFrame, kind: str = "dot_bias", rating_range=(0.5, 5.0), seed: int = 0,
        device=None, engine: str = "torch", **options) -> Recommender:
    """Fit a recommender on a ratings frame (columns ``user``, ``item``, ``rating``, optional ``title``).

    Parameters
    ----------
    kind : {"dot_bias", "nn"}
        ``"dot_bias"``: :math:`\\hat r_{ui} = \\mu + b_u + b_i + p_u\\cdot q_i`, trained with
        row-sparse updates (:mod:`cfcourse.models.sparse_dot_bias`); the default and the course's best model.
        ``"nn"``: :class:`~cfcourse.models.neural.CollabNN`.
    rating_range : (low, high) or None
        Ratings outside it are an error (MovieLens: 0.5-5); predictions are clipped to it.
        ``None`` accepts any finite rating and clips to the observed range.
    seed : int
        Same data, same seed, same model: to the bit with ``engine="torch"`` on the CPU; on
        a GPU the order of atomic additions may change the last bits from run to run. The
        compiled engine is reproducible to the bit with ``threads=1``; its multi-threaded
        runs are not (its threads update shared rows without locks, and which write lands
        last depends on timing).
    device : torch.device or str, optional
        Where to train and keep the model; default :func:`cfcourse.env.device`
        (the CPU at ``CFCOURSE_SCALE=ci``).
    engine : {"torch", "compiled", "auto"}
        ``kind="dot_bias"`` only. ``"torch"``: minibatch row-wise Adagrad
        (:func:`~cfcourse.train.fit_sparse`), on any device. ``"compiled"``: the same
        update one rating at a time, compiled with numba
        (:func:`~cfcourse.compiled.fit_compiled`), CPU only; its ``lr`` and ``reg`` default to
        :data:`COMPILED_DEFAULTS`, ``bs`` and ``optimizer`` are ignored, and it takes
        ``order`` and ``threads``. ``"auto"``: compiled on the CPU when numba imports, torch
        otherwise (and on a GPU). The result's ``engine`` says which one ran.
    **options
        Override :data:`DEFAULTS` for the kind (e.g. ``n_factors=64, epochs=10``).
    """
    device = env.device() if device is None else torch.device(device)
    engine = _engine(engine, kind, device)
    opts = _options(kind, options, engine)
    validate_ratings(ratings, rating_range=rating_range)
    users, items = IdIndex(ratings["user"].to_numpy(), "user"), IdIndex(ratings["item"].to_numpy(), "item")
    u, i = users.encode(ratings["user"].to_numpy()), items.encode(ratings["item"].to_numpy())
    y = torch.tensor(ratings["rating"].to_numpy(dtype=np.float32))
    x = torch.as_tensor(np.stack([u, i], axis=1))
    low, high = rating_range or (float(y.min()), float(y.max()))
    mean = float(y.mean())
    torch.manual_seed(seed)
    model = _build_model(kind, len(users), len(items), opts, mean, (low, high)).to(device)
    x, y = x.to(device), y.to(device)  # before the optimiser: it sizes its state on the model
    if engine == "compiled":
        from cfcourse.compiled import fit_compiled

        history = fit_compiled(model, x, y, epochs=opts["epochs"], lr=opts["lr"],
                               reg=opts["reg"], reg_bias=opts["reg_bias"], seed=seed,
                               order=opts["order"], threads=opts["threads"])
    elif kind == "dot_bias":
        history = fit_sparse(model, x, y, epochs=opts["epochs"], lr=opts["lr"], bs=opts["bs"],
                             reg=opts["reg"], reg_bias=opts["reg_bias"], seed=seed,
                             optimizer=opts["optimizer"])
    else:
        history = fit_plain(model, x, y, epochs=opts["epochs"], lr=opts["lr"], bs=opts["bs"],
                            wd=opts["wd"], optimizer="adam", seed=seed)
    titles = {}
    if "title" in ratings.columns:
        first = ratings.drop_duplicates("item")
        titles = dict(zip(first["item"].astype(int), first["title"].astype(str)))
    indptr, indices = _rated_lists(u, i, len(users))
    fallback = BiasBaseline().fit(ratings) if kind == "nn" else None
    return Recommender(kind, {**opts, "_mean": mean, "_range": [low, high]}, users, items, model,
                       indptr, indices, titles, history,
                       None if fallback is None else fallback.user_bias_,
                       None if fallback is None else fallback.item_bias_)


def load(path: str | os.PathLike, device=None) -> Recommender:
    """Read a model written by :meth:`Recommender.save`. Loads arrays only (``allow_pickle=False``).

    The model goes to ``device`` (default :func:`cfcourse.env.device`), wherever it was saved from.
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"{path} is not a cfcourse model file, or it is damaged ({err}). "
                         "Save the model again with model.save(path).") from None
    with archive as data:
        try:
            meta = json.loads(str(data["meta"]))
        except KeyError:
            raise ValueError(f"{path} is not a cfcourse model file (no metadata); pass a file "
                             "written by model.save(path).") from None
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path} has format {meta.get('format')!r}; expected {_FORMAT!r}. "
                             "Fit and save the model again with this version of cfcourse.")
        opts = meta["options"]
        users, items = IdIndex(data["users"], "user"), IdIndex(data["items"], "item")
        model = _build_model(meta["kind"], meta["n_users"], meta["n_items"], opts, opts["_mean"],
                             tuple(opts["_range"]))
        state = {k[len("state/"):]: torch.from_numpy(data[k]) for k in data.files
                 if k.startswith("state/")}
        model.load_state_dict(state)
        model.to(env.device() if device is None else torch.device(device))
        titles = dict(zip(meta["title_ids"], data["titles"].tolist()))
        return Recommender(meta["kind"], opts, users, items, model, data["rated_indptr"],
                           data["rated_indices"], titles, meta["history"],
                           data["fallback_user_bias"], data["fallback_item_bias"])


def score_matrix(model: Recommender) -> np.ndarray:
    """Every user's unclipped score for every item, ``(n_users, n_items)``.

    .. math:: s_{ui} = \\mu + b_u + b_i + p_u \\cdot q_i

    Rows and columns follow ``model.users`` and ``model.items``. Unlike
    ``model.predict`` it is not clipped to the star range, so two films above
    five stars keep their order instead of tying.
    """
    net = model.model
    if not isinstance(net, SparseDotBias):
        raise TypeError(f"score_matrix needs a kind='dot_bias' model, got kind={model.kind!r}.")
    p = net.user_factors.weight.detach().cpu().numpy()  # (n_users, k)
    q = net.item_factors.weight.detach().cpu().numpy()  # (n_items, k)
    b_u = net.user_bias.weight.detach().cpu().numpy()  # (n_users, 1)
    b_i = net.item_bias.weight.detach().cpu().numpy()[:, 0]  # (n_items,)
    return float(net.mean) + b_u + b_i + p @ q.T


def popularity_scores(model: Recommender, ratings: pd.DataFrame) -> np.ndarray:
    """How many ratings each of ``model.items`` has in ``ratings``, as ``(n_items,)`` floats."""
    validate_ratings(ratings, columns=("user", "item"))
    positions = model.items.encode(ratings["item"].to_numpy(), unknown="ignore")
    return np.bincount(positions[positions >= 0], minlength=len(model.items)).astype(float)


def _exclusion_mask(model: Recommender, exclude: pd.DataFrame | None) -> np.ndarray:
    """Boolean ``(n_users, n_items)``: True where a pair must not be recommended."""
    mask = np.zeros((len(model.users), len(model.items)), dtype=bool)
    if exclude is None:  # the model's own training pairs
        rows = np.repeat(np.arange(len(model.users)), np.diff(model.rated_indptr))
        mask[rows, model.rated_indices] = True
        return mask
    u = model.users.encode(exclude["user"].to_numpy(), unknown="ignore")
    i = model.items.encode(exclude["item"].to_numpy(), unknown="ignore")
    keep = (u >= 0) & (i >= 0)
    mask[u[keep], i[keep]] = True
    return mask


def top_k(model: Recommender, scores: np.ndarray, k: int = 10,
          exclude: pd.DataFrame | None = None) -> dict:
    """The ``k`` best items for every user by ``scores``, as raw ids, best first.

    Parameters
    ----------
    scores : array, ``(n_users, n_items)`` or ``(n_items,)``
        Aligned with ``model.users`` / ``model.items``; one row is shared by all users
        (e.g. :func:`popularity_scores`).
    exclude : DataFrame or None
        ``user, item`` pairs never to recommend (what each user already rated).
        ``None`` excludes the pairs the model was trained on.

    Returns
    -------
    dict
        ``{user id: array of item ids}``. Ties keep the lower item position first.
    """
    k = _check_k(k)
    n_users, n_items = len(model.users), len(model.items)
    scores = np.broadcast_to(np.asarray(scores, dtype=np.float64), (n_users, n_items))
    if not np.isfinite(scores).all():
        raise ValueError("scores hold NaN or infinite values; rank finite numbers only.")
    masked = np.where(_exclusion_mask(model, exclude), -np.inf, scores)  # (U, I)
    k = min(k, n_items)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]  # (U, k)
    allowed = np.take_along_axis(masked, order, axis=1) > -np.inf
    ids = model.items.decode(order)
    return {user: ids[row][allowed[row]] for row, user in enumerate(model.users.ids_.tolist())}

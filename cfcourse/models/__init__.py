"""Every model of the course, one file per family.

- :mod:`~cfcourse.models.baselines`: the global mean and the user/item bias model (NumPy).
- :mod:`~cfcourse.models.neighbors`: user and item k-nearest neighbours on sparse matrices.
- :mod:`~cfcourse.models.dot_product`: ``DotProduct`` and ``DotProductBias`` (chapters 1-5) and
  the package's one embedding initialisation.
- :mod:`~cfcourse.models.sparse_dot_bias`: ``SparseDotBias``, the model :func:`cfcourse.fit`
  trains (row-sparse gradients).
- :mod:`~cfcourse.models.neural`: ``CollabNN`` (embeddings into an MLP) and the MLP builder.
- :mod:`~cfcourse.models.side_info`: ``MetaNN``, an MLP that also reads genres and demographics.
- :mod:`~cfcourse.models.linear_view`: matrix factorisation as a two-layer linear network,
  nuclear norm and Soft-Impute.
- :mod:`~cfcourse.models.bayesian`: ``BayesianMF``, biased MF averaged over its posterior.
- :mod:`~cfcourse.models.base`: ``Params`` (get/set_params) and ``NotFittedError``, shared by all.
- :mod:`~cfcourse.models.topk`: ``TopKModel``, the shared fit/scores/recommend interface of the
  implicit-feedback models.
- :mod:`~cfcourse.models.popularity`, :mod:`~cfcourse.models.item_knn`,
  :mod:`~cfcourse.models.ease`, :mod:`~cfcourse.models.ials`, :mod:`~cfcourse.models.bpr`:
  ``Popularity``, ``ItemKNN``, ``EASE``, ``ImplicitALS``, ``BPR`` (chapter 11).
- :mod:`~cfcourse.models.neural_scorer`: ``PairwiseRanker``, BPR-trained embeddings with a dot
  or MLP scorer.
- :mod:`~cfcourse.models.two_tower`: ``TwoTowerModel``, user and item towers trained with
  in-batch negatives and the logQ correction; serves new users from their features (chapter 12).

The PyTorch modules most chapters use are importable from here directly.
"""

import importlib

# Name -> the module that defines it. Imported on first use, so that the NumPy-only models
# (baselines, neighbours, the sampler) do not pull in torch.
_HOMES = {
    **dict.fromkeys(["INIT_STD", "DotProduct", "DotProductBias", "DotProductBiasParams",
                     "create_params", "embedding", "sigmoid_range"], "dot_product"),
    "CollabNN": "neural", "emb_sz_rule": "neural", "SparseDotBias": "sparse_dot_bias",
}


def __getattr__(name):
    if name in _HOMES:
        return getattr(importlib.import_module(f"cfcourse.models.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'cfcourse.models' has no attribute {name!r}")


__all__ = [
    "INIT_STD",
    "CollabNN",
    "DotProduct",
    "DotProductBias",
    "DotProductBiasParams",
    "SparseDotBias",
    "create_params",
    "emb_sz_rule",
    "embedding",
    "sigmoid_range",
]

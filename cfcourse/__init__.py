"""cfcourse: the tested companion package of *Collaborative Filtering: from a pizza to
25 million ratings*.

The public API::

    import cfcourse
    model = cfcourse.fit(train_df)          # kind="dot_bias" (default) or "nn"
    model.predict(valid_df)                 # numpy array aligned with the rows
    model.recommend(user, k=10)             # item, title, score; rated items excluded
    model.similar_items(item, k=10)
    model.save(path); cfcourse.load(path)   # arrays and JSON only, no pickle

Modules, bottom layer first: :mod:`cfcourse.env`; :mod:`cfcourse.data`; the models
(:mod:`cfcourse.models`, :mod:`cfcourse.models.linear_view`, :mod:`cfcourse.models.side_info`,
:mod:`cfcourse.models.baselines`, :mod:`cfcourse.models.neighbors`, :mod:`cfcourse.data.dot_world`,
:mod:`cfcourse.models.bayesian`); training (:mod:`cfcourse.train`,
:mod:`cfcourse.models.sparse_dot_bias`, :mod:`cfcourse.fastai_glue`, :mod:`cfcourse.fastai_glue`,
:mod:`cfcourse.distributed`); then :mod:`cfcourse.recommender` (the API above),
:mod:`cfcourse.metrics`, :mod:`cfcourse.metrics`, :mod:`cfcourse.interpret`,
:mod:`cfcourse.coldstart`, :mod:`cfcourse.feedback_loop`, :mod:`cfcourse.compare` (the comparison protocol), :mod:`cfcourse.widgets`, :mod:`cfcourse.plots`.
"""

__version__ = "0.1.0"
__all__ = ["Recommender", "__version__", "fit", "load"]


def __getattr__(name):
    # The API pulls in torch; importing it lazily keeps `import cfcourse` instant.
    if name in ("fit", "load", "Recommender"):
        from cfcourse import recommender

        return getattr(recommender, name)
    raise AttributeError(f"module 'cfcourse' has no attribute {name!r}")

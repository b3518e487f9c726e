"""cfcourse: the tested companion package of *Collaborative Filtering: from a pizza to
25 million ratings*.

Modules, bottom layer first: :mod:`cfcourse.env` (scale, device, seeding),
:mod:`cfcourse.data` (MovieLens, splits, generated worlds), :mod:`cfcourse.models`,
:mod:`cfcourse.train`, :mod:`cfcourse.metrics`, :mod:`cfcourse.widgets` and
:mod:`cfcourse.plots`.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]

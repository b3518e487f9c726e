"""What every estimator of the package shares: its parameters and the not-fitted error.

scikit-learn's estimator conventions, without depending on scikit-learn: hyperparameters are
the constructor's arguments, stored untouched under the same names; :meth:`Params.get_params`
reads them back from the signature and :meth:`Params.set_params` changes them, so
``sklearn.base.clone(model)`` gives an unfitted copy. Learned state ends in ``_``; using it
before ``fit`` raises :class:`NotFittedError`.

>>> class Shrink(Params):
...     def __init__(self, alpha=1.0):
...         self.alpha = alpha
>>> Shrink(alpha=2.0).set_params(alpha=3.0).get_params()
{'alpha': 3.0}
"""

from __future__ import annotations

import inspect

__all__ = ["NotFittedError", "Params", "check_fitted"]


class NotFittedError(RuntimeError, ValueError):
    """A model was used before ``fit``: fit it first."""


def check_fitted(model, attribute: str) -> None:
    """Raise :class:`NotFittedError` unless ``model`` has the fitted ``attribute``."""
    if not hasattr(model, attribute):
        raise NotFittedError(f"this {type(model).__name__} is not fitted yet; call "
                             "fit(...) on training data first.")


class Params:
    """``get_params``/``set_params`` from the constructor's signature."""

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [name for name, p in signature.parameters.items()
                if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's arguments as stored (``deep`` is accepted for scikit-learn)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> Params:
        """Change hyperparameters (refit to use them); returns ``self``."""
        valid = self._param_names()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for {type(self).__name__}; "
                             f"valid ones: {valid}.")
        for name, value in params.items():
            setattr(self, name, value)
        return self

"""Ids to row positions and back: the encoder every model uses for its users and items.
"""

from __future__ import annotations

import numpy as np

__all__ = ["IdIndex"]


class IdIndex:
    """Maps raw ids (users or items) to positions ``0..n-1`` and back.

    Parameters
    ----------
    ids : array-like
        The ids seen in training; duplicates are fine.
    name : str
        ``"user"`` or ``"item"``: used in error messages.

    Examples
    --------
    >>> index = IdIndex([30, 10, 20, 10], name="item")
    >>> index.encode([10, 30]).tolist()
    [0, 2]
    >>> index.decode([1]).tolist()
    [20]
    """

    def __init__(self, ids, name: str = "user"):
        self.ids_ = np.unique(np.asarray(ids))
        self.name = name

    def __len__(self) -> int:
        return len(self.ids_)

    def __repr__(self) -> str:
        return f"IdIndex({len(self)} {self.name}s)"

    def __contains__(self, id_) -> bool:
        return bool(self.known(np.asarray([id_]))[0])

    def known(self, ids) -> np.ndarray:
        """Boolean mask: which of ``ids`` were seen in training."""
        ids = np.asarray(ids)
        if len(self) == 0:  # an index built from no ids knows none
            return np.zeros(ids.shape, dtype=bool)
        pos = np.searchsorted(self.ids_, ids).clip(0, len(self) - 1)
        return self.ids_[pos] == ids

    def encode(self, ids, unknown: str = "raise") -> np.ndarray:
        """Positions of ``ids``; an unknown id raises ``KeyError`` (or gives -1 with ``unknown="ignore"``)."""
        ids = np.asarray(ids)
        mask = self.known(ids)
        if not mask.all() and unknown == "raise":
            first = ids[~mask][0]
            first = first.item() if isinstance(first, np.generic) else first
            raise KeyError(
                f"{self.name} {first!r} is not in the training data ({(~mask).sum()} unknown "
                f"{self.name} id(s) in this call); it may only be in the validation split. "
                f"Drop those rows, or use a fallback for unknown {self.name}s."
            )
        return np.where(mask, np.searchsorted(self.ids_, ids), -1).astype(np.int64)

    def decode(self, positions) -> np.ndarray:
        """The raw ids at ``positions``."""
        return self.ids_[np.asarray(positions)]

"""Validation at the boundary: one clear error per problem, naming the value and the fix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["validate_ratings"]


_RENAMES = {"userId": "user", "user_id": "user", "movieId": "item", "item_id": "item",
            "movie": "item", "score": "rating", "stars": "rating"}


def _checked_range(rating_range) -> tuple[float, float]:
    """``(low, high)`` from ``rating_range``, refusing what would flag every rating.

    A reversed pair such as ``(5, 1)`` makes ``low <= r <= high`` false for every ``r``,
    so without this check every rating would be reported as out of range.
    """
    try:
        low, high = rating_range
        low, high = float(low), float(high)
    except (TypeError, ValueError):
        raise ValueError(f"rating_range must be a pair (lowest, highest), e.g. (0.5, 5.0), or "
                         f"None to skip the check; got {rating_range!r}.") from None
    if np.isnan(low) or np.isnan(high):
        raise ValueError(f"rating_range={rating_range!r} holds NaN; pass numbers such as "
                         "(0.5, 5.0), or None to skip the check.")
    if low > high:
        raise ValueError(f"rating_range={rating_range!r} is reversed: its lowest value {low:g} "
                         f"is above its highest {high:g}, so every rating would be out of "
                         f"range; pass ({high:g}, {low:g}).")
    return low, high


def validate_ratings(
    df: pd.DataFrame,
    columns: Sequence[str] = ("user", "item", "rating"),
    rating_range: tuple[float, float] | None = (0.5, 5.0),
    allow_duplicates: bool = False,
    allow_empty: bool = False,
) -> None:
    """Raise a clear ``ValueError`` if ``df`` is not a usable ratings frame.

    Checks, in order: it is a non-empty DataFrame; it has ``columns``; ``rating``
    is numeric, with no NaN, inside ``rating_range`` (``None`` skips the range);
    ids have no NaN; and (unless ``allow_duplicates``) each (user, item) pair
    appears once. An empty frame is an error unless ``allow_empty``. A reversed
    ``rating_range`` such as ``(5, 1)`` is refused as such (it would put every rating
    outside it).

    Examples
    --------
    >>> validate_ratings(pd.DataFrame({"user": [1], "item": [2], "rating": [4.0]}))
    >>> validate_ratings(pd.DataFrame({"user": [1], "item": [2], "rating": [4.0]}), rating_range=(5, 1))
    Traceback (most recent call last):
    ...
    ValueError: rating_range=(5, 1) is reversed: its lowest value 5 is above its highest 1, so every rating would be out of range; pass (1, 5).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame of ratings, got {type(df).__name__}; "
                        "build one with pd.DataFrame({'user': ..., 'item': ..., 'rating': ...}).")
    if len(df) == 0 and not allow_empty:
        raise ValueError("the ratings frame is empty; there is nothing to learn from. Check the "
                         "file or the filter that produced it.")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        hints = {k: v for k, v in _RENAMES.items() if k in df.columns and v in missing}
        fix = (f" Rename them: df.rename(columns={hints})" if hints
               else f" The frame has {list(df.columns)}; rename the matching ones with "
                    "df.rename(columns={'old name': 'new name'}).")
        raise ValueError(f"the ratings frame lacks column(s) {missing}.{fix}")
    if "rating" in columns:
        rating = df["rating"]
        if not pd.api.types.is_numeric_dtype(rating):
            raise ValueError(
                f"'rating' holds {rating.dtype} values (e.g. {rating.iloc[0]!r}), not numbers; "
                "convert with pd.to_numeric(df['rating'])."
            )
        bad = rating.isna().to_numpy()
        if bad.any():
            raise ValueError(f"'rating' has {bad.sum()} NaN value(s), first at row "
                             f"{np.flatnonzero(bad)[0]}; drop or fill them before fitting.")
        if rating_range is not None:
            low, high = _checked_range(rating_range)
            outside = ~rating.between(low, high).to_numpy()
            if outside.any():
                row = np.flatnonzero(outside)[0]
                raise ValueError(
                    f"rating {rating.iloc[row]} at row {row} is outside {low}-{high} "
                    f"({outside.sum()} such rows); fix the data or pass rating_range."
                )
    for name in [c for c in ("user", "item") if c in columns]:
        if df[name].isna().any():
            raise ValueError(f"'{name}' has {df[name].isna().sum()} missing id(s); drop those rows.")
    if not allow_duplicates and {"user", "item"} <= set(columns):
        dup = df.duplicated(["user", "item"]).to_numpy()
        if dup.any():
            first = np.flatnonzero(dup)[0]  # per column, so ids keep their own dtype
            user, item = df["user"].iloc[first], df["item"].iloc[first]
            raise ValueError(
                f"{dup.sum()} duplicate (user, item) pair(s), e.g. user {user} and item "
                f"{item}; keep one rating per pair, e.g. "
                "df.groupby(['user', 'item'], as_index=False)['rating'].mean()."
            )

"""The pizza world of chapter 1: pizzas with known qualities, people with known tastes.

Each pizza has three qualities in [-1, 1] (thin to thick crust, mild to hot, little to
lots of cheese); each person has three tastes in [-1, 1] (how much they like each
quality). How much a person enjoys a pizza is the dot product of the two, a score
from -3 (hates it) to +3 (loves it), plus a little noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["QUALITIES", "PizzaWorld", "enjoyment", "favourite_pizzas", "make_pizza_world"]

QUALITIES = ("thickness", "spice", "cheese")
# Named pizzas get plausible qualities (thickness, spice, cheese); more pizzas are random.
_NAMED_PIZZAS = {
    "Margherita": (-0.3, -0.6, 0.3), "Marinara": (-0.4, -0.3, -1.0), "Diavola": (-0.2, 0.9, 0.4),
    "Quattro Formaggi": (-0.2, -0.7, 1.0), "Chicago deep dish": (1.0, 0.0, 0.9),
    "Calzone": (0.6, -0.2, 0.6), "Capricciosa": (-0.1, -0.2, 0.4), "Napoletana": (-0.5, 0.1, 0.2),
    "Hawaiian": (0.3, -0.8, 0.4), "Pepperoni": (0.2, 0.5, 0.6), "Sicilian": (0.8, 0.1, 0.1),
    "Bianca": (-0.3, -0.8, 0.7), "Funghi": (-0.2, -0.6, 0.3), "Nduja": (-0.3, 1.0, 0.3),
    "Detroit square": (0.9, 0.1, 0.8), "Romana": (-0.9, 0.0, 0.2),
    "Vegetariana": (0.0, -0.4, 0.2), "Tonno": (-0.2, -0.1, 0.1), "Prosciutto": (-0.3, -0.5, 0.4),
    "Buffalo": (0.4, 0.8, 0.6),
}
_PEOPLE_NAMES = ["Ana", "Ben", "Chen", "Dara", "Emeka", "Freya", "Giulia", "Hiro", "Ines", "Jon"]


@dataclass
class PizzaWorld:
    """A generated world: who is who, and what they rated.

    Attributes
    ----------
    pizzas : DataFrame
        ``item``, ``name`` and one column per quality.
    people : DataFrame
        ``user``, ``name`` and one column per taste.
    ratings : DataFrame
        ``user``, ``item``, ``rating``: the observed scores (a ``density`` share of all pairs).
    noise : float
        Standard deviation of the noise added to each score: the best RMSE any model can hope for.
    """

    pizzas: pd.DataFrame
    people: pd.DataFrame
    ratings: pd.DataFrame
    noise: float

    def true_scores(self) -> np.ndarray:
        """Noise-free enjoyment of every (person, pizza) pair, rated or not.

        Returns an array of shape ``(n_people, n_pizzas)``: row ``user``, column
        ``item``. Real data never offers this; the pizza world does, so a model's
        predictions for the *unrated* pairs can be scored against the truth.
        """
        tastes = self.people[list(QUALITIES)].to_numpy(dtype=float)  # (n_people, 3)
        qualities = self.pizzas[list(QUALITIES)].to_numpy(dtype=float)  # (n_pizzas, 3)
        return tastes @ qualities.T

    def unrated_pairs(self) -> pd.DataFrame:
        """The ``user``, ``item`` pairs that have no rating: the holes a model must fill."""
        rated = np.zeros((len(self.people), len(self.pizzas)), dtype=bool)
        rated[self.ratings["user"].to_numpy(), self.ratings["item"].to_numpy()] = True
        user, item = np.nonzero(~rated)
        return pd.DataFrame({"user": user, "item": item})

    def __repr__(self) -> str:
        return (f"PizzaWorld({len(self.people)} people × {len(self.pizzas)} pizzas, "
                f"{len(self.ratings)} ratings, noise={self.noise})")


def enjoyment(tastes, qualities) -> np.ndarray:
    """The dot product of tastes and qualities: ``(..., 3) · (..., 3) -> (...)``."""
    return np.sum(np.asarray(tastes, dtype=float) * np.asarray(qualities, dtype=float), axis=-1)


def favourite_pizzas(tastes, pizzas: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    """The ``k`` pizzas a person with these ``tastes`` would enjoy most, best first.

    ``pizzas`` is :attr:`PizzaWorld.pizzas` (or any frame with the quality columns).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive whole number of pizzas, got {k!r}; "
                         "pass e.g. k=5.")
    if np.shape(tastes) != (len(QUALITIES),):
        raise ValueError(f"tastes must be {len(QUALITIES)} numbers, one per quality "
                         f"{QUALITIES}, got shape {np.shape(tastes)}.")
    scored = pizzas.assign(score=enjoyment(tastes, pizzas[list(QUALITIES)].to_numpy()))
    return scored.sort_values("score", ascending=False).head(k).reset_index(drop=True)


def _names(base: list[str], n: int, prefix: str) -> list[str]:
    return [base[i] if i < len(base) else f"{prefix} {i + 1}" for i in range(n)]


def make_pizza_world(
    n_people: int = 100, n_pizzas: int = 20, density: float = 0.5, noise: float = 0.1, seed: int = 0
) -> PizzaWorld:
    """Generate a seeded pizza world and the ratings its people gave.

    Parameters
    ----------
    n_people, n_pizzas : int
        Sizes of the world (at least 1 each).
    density : float
        Share of (person, pizza) pairs that were rated, in (0, 1].
    noise : float
        Standard deviation of Gaussian noise on each rating.
    seed : int
        Same seed, same world.

    Examples
    --------
    >>> world = make_pizza_world(n_people=5, n_pizzas=4, density=1.0, noise=0.0, seed=1)
    >>> len(world.ratings)
    20
    """
    if n_people < 1 or n_pizzas < 1:
        raise ValueError(f"need at least one person and one pizza, got {n_people} and {n_pizzas}.")
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density is a share of pairs in (0, 1], got {density!r}.")
    if noise < 0:
        raise ValueError(f"noise is a standard deviation and cannot be negative, got {noise!r}.")
    rng = np.random.default_rng(seed)
    qualities = rng.uniform(-1, 1, size=(n_pizzas, 3))
    named = np.array(list(_NAMED_PIZZAS.values()))[:n_pizzas]
    qualities[: len(named)] = np.clip(named + rng.normal(0, 0.1, named.shape), -1, 1)
    tastes = rng.uniform(-1, 1, size=(n_people, 3))
    pizzas = pd.DataFrame(qualities, columns=list(QUALITIES))
    pizzas.insert(0, "name", _names(list(_NAMED_PIZZAS), n_pizzas, "Pizza"))
    pizzas.insert(0, "item", np.arange(n_pizzas))
    people = pd.DataFrame(tastes, columns=list(QUALITIES))
    people.insert(0, "name", _names(_PEOPLE_NAMES, n_people, "Person"))
    people.insert(0, "user", np.arange(n_people))

    user, item = np.divmod(np.arange(n_people * n_pizzas), n_pizzas)
    keep = rng.random(len(user)) < density
    keep[rng.integers(len(user))] = True  # never an empty world
    user, item = user[keep], item[keep]
    scores = enjoyment(tastes[user], qualities[item]) + rng.normal(0, noise, size=len(user))
    ratings = pd.DataFrame({"user": user, "item": item, "rating": scores.astype("float32")})
    return PizzaWorld(pizzas, people, ratings, noise)

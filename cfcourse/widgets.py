"""The pizza explorer of chapter 1: move tastes and qualities, watch the dot product."""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np

from cfcourse.data.pizza import QUALITIES, PizzaWorld, enjoyment, favourite_pizzas

__all__ = ["explain_score", "pizza_explorer"]


def explain_score(tastes, qualities) -> str:
    """The dot product written out term by term, e.g. ``0.50×0.20 + … = 0.31``."""
    terms = " + ".join(f"({t:+.2f}×{q:+.2f})" for t, q in zip(tastes, qualities))
    return f"{terms} = {enjoyment(tastes, qualities):+.2f}"


def _sliders(values, description: str) -> list[widgets.FloatSlider]:
    return [
        widgets.FloatSlider(value=round(float(v), 2), min=-1.0, max=1.0, step=0.05,
                            description=f"{name}", continuous_update=True,
                            style={"description_width": "70px"}, tooltip=f"{description} {name}",
                            layout=widgets.Layout(width="300px"))
        for name, v in zip(QUALITIES, values)
    ]


def _top_table(tastes, world: PizzaWorld, k: int) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(r['name'])}</td><td style='text-align:right'>{r['score']:+.2f}</td></tr>"
        for _, r in favourite_pizzas(tastes, world.pizzas, k).iterrows()
    )
    return f"<table><tr><th>pizza</th><th>score</th></tr>{rows}</table>"


def pizza_explorer(world: PizzaWorld, person: int = 0, pizza: int = 0, k: int = 5) -> widgets.Box:
    """An interactive explorer for one person and one pizza of ``world``.

    Sliders set the person's three tastes and the pizza's three qualities (each in
    [-1, 1]). The panel shows their dot product (the predicted enjoyment, -3 to
    +3) term by term, and the ``k`` pizzas of the world this person would enjoy most.
    """
    if not 0 <= person < len(world.people) or not 0 <= pizza < len(world.pizzas):
        raise ValueError(f"person must be in 0..{len(world.people) - 1} and pizza in "
                         f"0..{len(world.pizzas) - 1}; got {person} and {pizza}.")
    who = world.people.iloc[person]
    what = world.pizzas.iloc[pizza]
    taste_sliders = _sliders(who[list(QUALITIES)], "taste for")
    quality_sliders = _sliders(what[list(QUALITIES)], "quality")
    score = widgets.HTML()
    top = widgets.HTML()

    def update(_change=None) -> None:
        tastes = np.array([s.value for s in taste_sliders])
        qualities = np.array([s.value for s in quality_sliders])
        score.value = (f"<b>{html.escape(who['name'])} × {html.escape(what['name'])}</b>: "
                       f"predicted enjoyment {explain_score(tastes, qualities)}")
        top.value = f"<b>{html.escape(who['name'])}'s top {k}</b>" + _top_table(tastes, world, k)

    for slider in taste_sliders + quality_sliders:
        slider.observe(update, names="value")
    update()
    columns = widgets.HBox([
        widgets.VBox([widgets.HTML(f"<b>{html.escape(who['name'])}'s tastes</b>"), *taste_sliders]),
        widgets.VBox([widgets.HTML(f"<b>{html.escape(what['name'])}'s qualities</b>"),
                      *quality_sliders]),
    ])
    return widgets.VBox([columns, score, top])

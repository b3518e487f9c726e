import matplotlib

matplotlib.use("Agg")  # tests only: no display here

import numpy as np
import pytest

from cfcourse.data import make_pizza_world
from cfcourse.plots import plot_losses, plot_recovery
from cfcourse.widgets import explain_score, pizza_explorer


def test_explain_score_writes_the_sum():
    assert explain_score([1, 0, -1], [0.5, 0.2, 0.5]) == "(+1.00×+0.50) + (+0.00×+0.20) + (-1.00×+0.50) = +0.00"


def test_explorer_reacts_to_sliders():
    world = make_pizza_world(n_people=10, n_pizzas=20, seed=0)
    box = pizza_explorer(world, person=1, pizza=2)
    columns, score, top = box.children
    tastes, qualities = columns.children
    for slider, value in zip(tastes.children[1:], [0.0, 1.0, 0.0]):
        slider.value = value
    for slider, value in zip(qualities.children[1:], [0.0, 1.0, 0.0]):
        slider.value = value
    assert score.value.endswith("= +1.00")
    assert "Nduja" in top.value or "Diavola" in top.value


def test_explorer_rejects_unknown_person():
    world = make_pizza_world(n_people=3, n_pizzas=4, seed=0)
    with pytest.raises(ValueError, match="person must be in 0..2"):
        pizza_explorer(world, person=3)


def test_plots_draw_what_they_are_given():
    ax = plot_losses({"train": [3, 2, 1], "valid": [3, 2.5, 2.4]}, floor=0.5, log=True)
    assert len(ax.get_lines()) == 3 and ax.get_yscale() == "log"
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(20, 3))
    axes = plot_recovery(truth @ rng.normal(size=(3, 3)), truth, ["a", "b", "c"])
    assert len(axes) == 3 and axes[0].get_xlabel() == "planted a"

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


def test_loss_plot_draws_each_curve_at_its_values():
    curves = {"train": [3, 2, 1], "valid": [3, 2.5, 2.4]}
    ax = plot_losses(curves, floor=0.5, log=True)
    drawn = {line.get_label(): line for line in ax.get_lines()}
    for name, values in curves.items():
        assert np.allclose(drawn[name].get_xdata(), [1, 2, 3]), "epochs count from 1"
        assert np.allclose(drawn[name].get_ydata(), values), f"{name} is drawn at its values"
    assert np.allclose(drawn["noise floor"].get_ydata(), 0.5) and ax.get_yscale() == "log"


def test_recovery_plot_puts_a_linear_copy_on_the_diagonal():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(20, 3))
    axes = plot_recovery(truth @ rng.normal(size=(3, 3)), truth, ["a", "b", "c"])
    for k, ax in enumerate(axes):
        points = ax.collections[0].get_offsets()
        assert np.allclose(points[:, 0], truth[:, k]), "x is the planted factor"
        assert np.allclose(points[:, 1], points[:, 0], atol=1e-8), (
            "learned factors that are a linear map of the planted ones land on the diagonal")
    assert axes[0].get_xlabel() == "planted a"

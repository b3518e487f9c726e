import random
import warnings

import numpy as np
import pytest
import torch

from cfcourse import env


@pytest.mark.parametrize("value", ["ci", "cpu", "gpu", " CPU "])
def test_scale_from_environment(monkeypatch, value):
    monkeypatch.setenv("CFCOURSE_SCALE", value)
    monkeypatch.setattr(env, "_cuda_available", lambda: True)  # gpu on a GPU: no warning
    assert env.scale() == value.strip().lower()


def test_scale_follows_cuda_when_unset(monkeypatch):
    monkeypatch.delenv("CFCOURSE_SCALE", raising=False)
    monkeypatch.setattr(env, "_cuda_available", lambda: True)
    assert env.scale() == "gpu"
    monkeypatch.setattr(env, "_cuda_available", lambda: False)
    assert env.scale() == "cpu"


def test_bad_scale_names_the_choices(monkeypatch):
    monkeypatch.setenv("CFCOURSE_SCALE", "laptop")
    with pytest.raises(ValueError, match="ci, cpu, gpu"):
        env.scale()


def test_by_scale_picks_one(monkeypatch):
    monkeypatch.setattr(env, "_cuda_available", lambda: True)
    for name, expected in [("ci", 1), ("cpu", 2), ("gpu", 3)]:
        monkeypatch.setenv("CFCOURSE_SCALE", name)
        assert env.by_scale(ci=1, cpu=2, gpu=3) == expected


def test_device_is_cpu_at_ci_scale_even_with_cuda(monkeypatch):
    monkeypatch.setenv("CFCOURSE_SCALE", "ci")
    monkeypatch.setattr(env, "_cuda_available", lambda: True)
    assert env.device() == torch.device("cpu")
    monkeypatch.setenv("CFCOURSE_SCALE", "gpu")
    assert env.device() == torch.device("cuda")


def test_colab_and_kaggle_detection(monkeypatch):
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    assert not env.in_kaggle() and not env.in_colab()
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    assert env.in_kaggle()
    monkeypatch.setitem(__import__("sys").modules, "google.colab", object())
    assert env.in_colab()


def test_seed_everything_repeats_every_generator():
    env.seed_everything(7)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    env.seed_everything(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_seed_must_be_a_non_negative_integer():
    with pytest.raises(ValueError, match="non-negative integer"):
        env.seed_everything(-1)


def test_gpu_scale_without_cuda_warns_once(monkeypatch):
    monkeypatch.setenv("CFCOURSE_SCALE", "gpu")
    monkeypatch.setattr(env, "_cuda_available", lambda: False)
    monkeypatch.setattr(env, "_warned_gpu_without_cuda", False)
    with pytest.warns(RuntimeWarning, match="no CUDA GPU.*CFCOURSE_SCALE=cpu") as caught:
        picked = (env.by_scale(ci=1, cpu=2, gpu=3), env.scale(), env.device())
    assert picked == (3, "gpu", torch.device("cpu"))
    assert len([w for w in caught if w.category is RuntimeWarning]) == 1, "once, not per call"


@pytest.mark.parametrize("value,cuda", [("gpu", True), ("cpu", False), ("ci", False)])
def test_no_warning_when_the_scale_fits_the_machine(monkeypatch, value, cuda):
    monkeypatch.setenv("CFCOURSE_SCALE", value)
    monkeypatch.setattr(env, "_cuda_available", lambda: cuda)
    monkeypatch.setattr(env, "_warned_gpu_without_cuda", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert env.scale() == value

"""Rating metrics accept tensors as they come out of a model (with grad, on any device)."""

import numpy as np
import torch

from cfcourse.metrics import mae, rmse


def test_metrics_take_tensors_that_require_grad():
    pred = torch.tensor([3.0, 4.0, 5.0], requires_grad=True) * 1.0
    target = torch.tensor([[3.0], [5.0], [3.0]])              # any shape with 3 values
    assert rmse(pred, target) == np.sqrt(5 / 3)
    assert mae(pred, target.numpy()) == 1.0

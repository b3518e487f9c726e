"""Temporal splits: hand fixtures, no future in training, every tested user has history."""

import pandas as pd
import pytest

from cfcourse.data.split import leave_last_out, time_cut
from cfcourse.data.synthetic import planted_interactions

# user 1 watched b, c, a (in time order); user 2 only a; user 3 c then b; ties for user 4
FRAME = pd.DataFrame({"user": [1, 1, 1, 2, 3, 3, 4, 4],
                      "item": ["a", "b", "c", "a", "b", "c", "a", "b"],
                      "timestamp": [30, 10, 20, 5, 8, 7, 50, 50]})


def test_leave_last_out_by_hand():
    train, test = leave_last_out(FRAME, n=1)
    assert sorted(map(tuple, test[["user", "item"]].values.tolist())) == [
        (1, "a"), (3, "b"), (4, "b")]  # user 2 has one interaction only: kept in training
    assert len(train) + len(test) == len(FRAME)
    assert (train["user"] == 2).sum() == 1


def test_leave_last_out_n_and_min_history():
    _, test = leave_last_out(FRAME, n=2, min_history=1)
    assert sorted(test["item"][test["user"] == 1]) == ["a", "c"]
    assert set(test["user"]) == {1}, "users 3 and 4 have only 2 interactions: nothing left"


def test_leave_last_out_holds_no_future_in_training():
    data = planted_interactions(n_users=80, n_items=60, n_interactions=1500, seed=3).interactions
    train, test = leave_last_out(data, n=3, min_history=2)
    last_train = train.groupby("user")["timestamp"].max()
    first_test = test.groupby("user")["timestamp"].min()
    assert (last_train[first_test.index] <= first_test).all()
    assert (train.groupby("user").size()[test["user"].unique()] >= 2).all()
    assert (test.groupby("user").size() == 3).all()


def test_time_cut_by_hand_and_no_leak():
    train, test = time_cut(FRAME, at=20)
    assert train["timestamp"].max() < 20 <= test["timestamp"].min()
    assert set(test["user"]) == {1}, "user 4 starts after the cut: no history, so not tested"
    assert set(test["user"]) <= set(train["user"])


def test_time_cut_rejects_a_cut_outside_the_data():
    with pytest.raises(ValueError, match="one side empty"):
        time_cut(FRAME, at=1)


def test_temporal_splits_need_timestamps():
    with pytest.raises(ValueError, match="per_user_holdout"):
        leave_last_out(FRAME.drop(columns="timestamp"))
    with pytest.raises(ValueError, match="n >= 1"):
        leave_last_out(FRAME, n=0)

"""Sampled vs full-catalogue metrics, coverage and popular share, with hand oracles."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cfcourse.data.synthetic import planted_interactions
from cfcourse.metrics import (
    catalogue_coverage,
    full_rank,
    popular_share,
    sampled_hit_rate,
    sampled_rank,
)

SCORES = np.array([[0.5, 0.9, 0.1, 0.7, 0.3],
                   [0.2, 0.2, 0.8, 0.1, 0.0]])


def test_full_rank_by_hand_with_exclusion_and_ties():
    assert full_rank(SCORES, [3, 2]).tolist() == [1, 0]  # 0.9 beats 0.7; 0.8 is the best
    excluded = sp.csr_matrix(np.array([[0, 1, 0, 0, 0], [0, 0, 0, 0, 0]]))
    assert full_rank(SCORES, [3, 2], excluded).tolist() == [0, 0]  # the 0.9 was a training item
    assert full_rank(SCORES, [0, 0]).tolist() == [2, 2]  # row 2: the tie with item 1 counts against
    assert full_rank(SCORES, [-1, 2]).tolist() == [5, 0]  # unknown item: always a miss


def test_sampled_rank_with_every_negative_is_the_full_rank():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(20, 30))
    positive = rng.integers(0, 30, 20)
    np.testing.assert_array_equal(sampled_rank(scores, positive, n_negatives=29),
                                  full_rank(scores, positive))


def test_sampled_negatives_skip_training_items():
    scores = np.array([[0.0, 9.0, 1.0, 2.0]])  # item 1 would beat the positive, but is trained
    excluded = np.array([[False, True, False, False]])
    assert sampled_rank(scores, [3], excluded, n_negatives=2).tolist() == [0]
    with pytest.raises(ValueError, match="lower n_negatives"):
        sampled_rank(scores, [3], excluded, n_negatives=3)


def test_coverage_and_popular_share_by_hand():
    lists = {1: ["a", "b"], 2: ["a", "c"]}
    assert catalogue_coverage(lists, n_items=4) == 0.75
    train = pd.DataFrame({"user": [1, 2, 3, 1, 2, 3], "item": ["a", "a", "a", "b", "b", "d"]})
    assert popular_share(lists, train, top=0.34) == 0.5  # top 1 of 3 items = {a}: 2 of 4 slots
    assert popular_share(lists, train, top=0.67) == 0.75  # {a, b}: 3 of 4 slots


def test_sampled_and_full_metrics_can_disagree_on_the_order():
    """Krichene & Rendle (2020): a model sharp for a few users beats a blurred one on
    full Recall@10 and loses to it on sampled HR@10."""
    world = planted_interactions(n_users=300, n_items=1000, n_interactions=6000, signal=3.0,
                                 seed=0)
    users = np.arange(1, 301)
    truth = world.true_scores(users)
    positive = truth.argmax(axis=1)  # each user's truly best item is the held-out one
    rng = np.random.default_rng(0)
    sharp = truth.copy()  # exact for 30 % of users, random for the rest
    lost = rng.random(len(users)) > 0.3
    sharp[lost] = rng.normal(size=(lost.sum(), truth.shape[1]))
    # blurred knows each user's top tenth of the catalogue, but not the order inside it
    tenth = np.argsort(np.argsort(-truth, axis=1), axis=1) // (truth.shape[1] // 10)
    blurred = -tenth + rng.random(truth.shape)
    full = {name: (full_rank(s, positive) < 10).mean()
            for name, s in (("sharp", sharp), ("blurred", blurred))}
    sampled = {name: sampled_hit_rate(s, positive, k=10, n_negatives=100)
               for name, s in (("sharp", sharp), ("blurred", blurred))}
    assert full["sharp"] > full["blurred"] + 0.1, full
    assert sampled["blurred"] > 0.8, sampled
    assert sampled["blurred"] > sampled["sharp"] + 0.1, sampled

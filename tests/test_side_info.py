"""MetaNN and side_info: hand-made metadata tables, shapes, ranges, unknown policy, seeding."""

import pandas as pd
import pytest
import torch

from cfcourse.models.neural import emb_sz_rule
from cfcourse.models.side_info import UNKNOWN, MetaNN, side_info
from cfcourse.train import fit_plain

USERS = pd.DataFrame({"user": [10, 20, 30], "age": [20, 30, 40],
                      "gender": ["F", "M", "F"], "occupation": ["writer", "artist", "writer"]})
ITEMS = pd.DataFrame({"item": [1, 2], "genres": ["Comedy|Drama", "War"]})


def test_side_info_by_hand():
    side = side_info([30, 10], [2, 1], USERS, ITEMS)  # model rows in another order
    assert side.genre_names == ["Comedy", "Drama", "War"]
    assert side.genres.tolist() == [[0, 0, 1], [1, 1, 0]]
    assert side.gender_names == [UNKNOWN, "F", "M"]
    assert side.occupation_names == [UNKNOWN, "artist", "writer"]
    assert side.gender.tolist() == [1, 1] and side.occupation.tolist() == [2, 2]
    # ages 20, 30, 40: mean 30, population std sqrt(200/3)
    std = (200 / 3) ** 0.5
    assert side.age.tolist() == pytest.approx([10 / std, -10 / std])
    assert repr(side) == "SideInfo(2 users, 2 items, 3 genres, 2 occupations, 2 genders)"


def test_missing_ids_raise_or_fill():
    with pytest.raises(KeyError, match="user '#na#' has no row.*unknown='fill'"):
        side_info(["#na#", 10], [1], USERS, ITEMS)
    with pytest.raises(KeyError, match="item 99"):
        side_info([10], [99], USERS, ITEMS)
    side = side_info(["#na#", 10], ["#na#", 1], USERS, ITEMS, unknown="fill")
    assert side.gender[0] == 0 and side.occupation[0] == 0  # the #unknown# slot
    assert side.age[0] == 0.0  # the mean age, standardised
    assert side.genres[0].sum() == 0 and side.genres[1].sum() == 2


def test_unknown_categories_with_a_reused_vocabulary():
    side = side_info([10, 20, 30], [1, 2], USERS, ITEMS)
    new_users = pd.DataFrame({"user": [40], "age": [50], "gender": ["X"],
                              "occupation": ["astronaut"]})
    new_items = pd.DataFrame({"item": [3], "genres": ["Comedy|Space"]})
    with pytest.raises(ValueError, match="gender 'X' is not in the vocabulary"):
        side_info([40], [1], new_users, ITEMS, like=side)
    with pytest.raises(ValueError, match="genre 'Space'"):
        side_info([10], [3], USERS, new_items, like=side)
    filled = side_info([40], [3], new_users, new_items, unknown="fill", like=side)
    assert filled.gender.tolist() == [0] and filled.occupation.tolist() == [0]
    assert filled.genres.tolist() == [[1, 0, 0]]  # Comedy kept, Space dropped
    assert filled.age.item() == pytest.approx((50 - side.age_mean) / side.age_std)
    assert filled.occupation_names == side.occupation_names


def test_bad_tables_and_policy():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['occupation'\]"):
        side_info([10], [1], USERS.drop(columns="occupation"), ITEMS)
    with pytest.raises(ValueError, match="missing ages"):
        side_info([10], [1], USERS.assign(age=[20, None, 40]), ITEMS)
    with pytest.raises(ValueError, match="twice"):
        side_info([10], [1], pd.concat([USERS, USERS]), ITEMS)
    with pytest.raises(ValueError, match="'raise' or 'fill'"):
        side_info([10], [1], USERS, ITEMS, unknown="ignore")


def test_model_shapes_widths_and_y_range():
    torch.manual_seed(0)
    side = side_info([10, 20, 30], [1, 2], USERS, ITEMS)
    model = MetaNN(side, user_sz=4, item_sz=5, layers=(8, 6))
    x = torch.tensor([[0, 0], [1, 1], [2, 0]])
    # 4 + 5 ids, 3 genres, occupation and gender embeddings by the rule, 1 age
    width = 4 + 5 + 3 + emb_sz_rule(3) + emb_sz_rule(3) + 1
    assert model.features(x).shape == (3, width)
    assert model.layers[0].in_features == width
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1000)
    out = model(x)
    assert out.shape == (3,) and (out >= 0).all() and (out <= 5.5).all()
    assert model.layers(model.features(x)).abs().max() > 100, "squashing was needed"
    raw = MetaNN(side, layers=(4,), y_range=None)
    assert raw(x).shape == (3,)


def test_features_carry_the_metadata():
    side = side_info([10, 20, 30], [1, 2], USERS, ITEMS)
    model = MetaNN(side, layers=(4,), use_ids=False)
    f = model.features(torch.tensor([[1, 0], [1, 1]]))  # user 20 with both films
    assert f[:, :3].tolist() == [[1, 1, 0], [0, 0, 1]]  # genres first without ids
    assert torch.equal(f[0, 3:], f[1, 3:]), "same user, same user features"
    assert f[0, -1].item() == pytest.approx(side.age[1].item())
    assert not hasattr(model, "user_factors")


def test_same_seed_same_model_and_training():
    side = side_info([10, 20, 30], [1, 2], USERS, ITEMS)
    x = torch.tensor([[0, 0], [1, 1], [2, 0], [0, 1], [2, 1]] * 4)
    y = torch.tensor([4.0, 2.0, 5.0, 3.0, 1.0] * 4)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = MetaNN(side, layers=(8,), dropout=0.1)
        losses = fit_plain(model, x, y, epochs=30, lr=0.01, bs=5, optimizer="adam", seed=0)
        runs.append((losses, model.eval()(x)))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    assert runs[0][0][-1] < runs[0][0][0] / 2, "it learns the twenty ratings"


def test_buffers_follow_the_model():
    side = side_info([10, 20, 30], [1, 2], USERS, ITEMS)
    model = MetaNN(side, layers=(4,))
    names = {name for name, _ in model.named_buffers()}
    assert names == {"genres", "age", "gender", "occupation"}
    before = model.genres.clone()
    side.genres.add_(1)  # the caller changes or reuses its side information
    assert torch.equal(model.genres, before), "a copy, so side can be reused"

"""minifcn.heads: one description of a net's tasks, for datasets, models, the summed loss (Sec. 5) and checkpoints."""

import numpy as np
import pytest

import minifcn as mf
import minifcn.functional as F
from minifcn.data import Shapes, TwoLabelShapes
from minifcn.heads import Head, Heads


def test_heads_of_a_dataset_in_label_order_and_chosen():
    both = Heads.of_dataset(TwoLabelShapes("val", 32, length=1))
    assert [(h.name, h.n_class, h.index) for h in both] == [("shape", 6, 0), ("colour", 3, 1)] and both.several
    colour = Heads.of_dataset(TwoLabelShapes("val", 32, length=1), ["colour"])
    assert [(h.name, h.index) for h in colour] == [("colour", 1)]  # the dataset's index, not the position here
    one = Heads.of_dataset(Shapes("val", 32, length=1))
    assert not one.several and one.first == Head(None, tuple(Shapes.classes)) and one.first.index is None
    with pytest.raises(ValueError, match="choose distinct names among shape, colour"):
        Heads.of_dataset(TwoLabelShapes("val", 32, length=1), ["colour", "colour"])


def test_meta_round_trip_and_matching_a_dataset():
    both = Heads.of_dataset(TwoLabelShapes("val", 32, length=1))
    meta = both.meta()
    assert meta["heads"] == {"shape": 6, "colour": 3} and meta["n_class"] == 6 and meta["classes"][1] == "disc"
    back = Heads.from_meta(meta)
    assert [(h.name, h.classes, h.index) for h in back] == [(h.name, h.classes, None) for h in both]
    assert [h.index for h in back.on(TwoLabelShapes("val", 32, length=1))] == [0, 1]
    assert Heads.single(["a", "b"]).meta() == {"n_class": 2, "classes": ["a", "b"], "heads": None, "head_classes": None}
    with pytest.raises(ValueError, match=r"the net predicts \{'shape': 6, 'colour': 3\} classes but the dataset has 6"):
        back.on(Shapes("val", 32, length=1))
    with pytest.raises(ValueError, match="the net predicts 3 classes but the dataset has 6"):
        Heads.single(["a", "b", "c"]).on(Shapes("val", 32, length=1))


def test_the_loss_is_the_sum_of_each_heads_loss_on_its_labels(rng):
    heads = Heads((Head("a", ("x", "y", "z"), 1), Head("b", ("u", "v"), 0)))
    out = {"a": mf.Tensor(rng.standard_normal((2, 3, 4, 5))), "b": mf.Tensor(rng.standard_normal((2, 2, 4, 5)))}
    labels = np.stack([rng.integers(0, 2, (2, 4, 5)), rng.integers(0, 3, (2, 4, 5))], axis=-1)
    expected = (
        F.softmax_cross_entropy(out["a"], labels[..., 1]).data + F.softmax_cross_entropy(out["b"], labels[..., 0]).data
    )
    assert heads.loss(out, labels).data == pytest.approx(expected, rel=1e-12)
    single = Heads.single(("u", "v"))
    assert single.loss(out["b"], labels[..., 0]).data == pytest.approx(
        F.softmax_cross_entropy(out["b"], labels[..., 0]).data
    )

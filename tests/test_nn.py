"""minifcn.nn: Module bookkeeping, layers, and the bilinear initialisation of Sec. 3.3."""

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

import minifcn as mf
import minifcn.functional as F
import minifcn.nn as nn
from minifcn.gradcheck import gradcheck


class Tiny(nn.Module):
    def __init__(self, dtype=np.float32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(2, 3, 3, padding=1, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)
        )
        self.score = nn.Conv2d(3, 4, 1, dtype=dtype)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.score(self.drop(self.features(x)))


def test_named_parameters_are_dotted_and_in_definition_order():
    names = [name for name, _ in Tiny().named_parameters()]
    assert names == ["features.0.weight", "features.0.bias", "score.weight", "score.bias"]
    assert list(Tiny().state_dict()) == names


def test_state_dict_round_trip_gives_identical_scores(tmp_path, rng):
    mf.manual_seed(1)
    a = Tiny().eval()
    mf.manual_seed(2)
    b = Tiny().eval()
    x = mf.Tensor(rng.standard_normal((1, 2, 7, 5)).astype(np.float32))
    assert not np.allclose(a(x).data, b(x).data)
    mf.save(tmp_path / "tiny.npz", a.state_dict())
    b.load_state_dict(mf.load(tmp_path / "tiny.npz"))
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_mismatched_state_lists_every_problem():
    state = Tiny().state_dict()
    state["score.weight"] = np.zeros((5, 3, 1, 1), np.float32)
    del state["score.bias"]
    state["fc8.weight"] = np.zeros(1)
    with pytest.raises(ValueError) as err:
        Tiny().load_state_dict(state)
    message = str(err.value)
    assert "missing keys: ['score.bias']" in message
    assert "unexpected keys: ['fc8.weight']" in message
    assert "score.weight: checkpoint (5, 3, 1, 1), model (4, 3, 1, 1)" in message


def test_non_strict_load_skips_missing_keys():
    model = Tiny()
    before = model.score.bias.data.copy()
    state = {"score.weight": np.ones((4, 3, 1, 1), np.float32)}
    model.load_state_dict(state, strict=False)
    np.testing.assert_array_equal(model.score.weight.data, 1.0)
    np.testing.assert_array_equal(model.score.bias.data, before)


def test_eval_turns_dropout_off(rng):
    model = Tiny()
    x = mf.Tensor(rng.standard_normal((1, 2, 6, 6)).astype(np.float32))
    assert model.training and model.drop.training
    model.eval()
    assert not model.drop.training
    np.testing.assert_array_equal(model(x).data, model(x).data)
    model.train()
    assert model.drop.training


def test_zero_grad_and_parameter_multipliers(rng):
    model = Tiny()
    model(mf.Tensor(rng.standard_normal((1, 2, 4, 4)).astype(np.float32))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    p = nn.Parameter(np.zeros(3, np.float32), lr_mult=2, decay_mult=0)
    assert p.requires_grad and (p.lr_mult, p.decay_mult) == (2.0, 0.0)


def test_gradcheck_through_a_small_network(rng):
    model = Tiny(dtype=np.float64).eval()
    x = mf.Tensor(rng.standard_normal((2, 2, 5, 6)), requires_grad=True)
    params = list(model.parameters())

    def f(x, *ps):
        return model(x)

    gradcheck(f, [x, *params])


def test_layer_errors_name_the_layer():
    model = Tiny()
    with pytest.raises(ValueError, match=r"layer 0 = Conv2d\(2, 3, .*input has 5 channels .*expects 2"):
        model(mf.Tensor(np.zeros((1, 5, 4, 4), np.float32)))


def test_bilinear_kernel_values():
    # f = 2: taps 1 - |k - 1.5| / 2 = 0.25, 0.75, 0.75, 0.25
    np.testing.assert_allclose(nn.bilinear_kernel(4), np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25]))
    # odd size 3 (f = 2, centre 1): 0.5, 1, 0.5
    np.testing.assert_allclose(nn.bilinear_kernel(3)[1], [0.5, 1.0, 0.5])


@pytest.mark.parametrize("factor", [2, 3, 8])
def test_bilinear_upsampling_equals_bilinear_interpolation_away_from_borders(rng, factor):
    C, H, W = 2, 5, 6
    x = rng.standard_normal((1, C, H, W))
    w = nn.bilinear_upsampling_weight(C, 2 * factor, dtype=np.float64)
    y = F.conv_transpose2d(mf.Tensor(x), mf.Tensor(w), stride=factor).data  # (1, C, (H+1)f, (W+1)f)
    # Output o sits at input coordinate (o - (f - 0.5)) / f: linear interpolation between two inputs.
    center = factor - 0.5
    rows = (np.arange(y.shape[2]) - center) / factor
    cols = (np.arange(y.shape[3]) - center) / factor
    inside_r = (rows >= 0) & (rows <= H - 1)
    inside_c = (cols >= 0) & (cols <= W - 1)
    rr, cc = np.meshgrid(rows[inside_r], cols[inside_c], indexing="ij")
    for c in range(C):
        expected = map_coordinates(x[0, c], [rr, cc], order=1)
        np.testing.assert_allclose(y[0, c][np.ix_(inside_r, inside_c)], expected, rtol=1e-12, atol=1e-12)


def test_bilinear_upsampling_keeps_classes_apart():
    x = np.zeros((1, 3, 4, 4))
    x[0, 1] = 1.0  # only class 1 has score
    y = F.conv_transpose2d(mf.Tensor(x), mf.Tensor(nn.bilinear_upsampling_weight(3, 4, np.float64)), stride=2).data
    assert np.all(y[0, 0] == 0) and np.all(y[0, 2] == 0) and y[0, 1].max() > 0


def test_forgetting_super_init_is_a_clear_error():
    class Forgetful(nn.Module):
        def __init__(self):
            self.conv = nn.Conv2d(1, 1, 3)

    with pytest.raises(RuntimeError, match=r"Forgetful: call super\(\).__init__\(\) before assigning attributes"):
        Forgetful()

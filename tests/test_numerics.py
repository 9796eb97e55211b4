"""float32 that keeps its digits: sums over many pixels, batch norm, the loss, and a whole net against float64.

A float32 sum of 10^5 terms accumulated one by one loses digits in proportion
to the count; batch norm's backward pass subtracts such sums from each other
and keeps only what is left. The tests measure float32 against float64 on the
same inputs, so a regression to running float32 sums shows as a number.
"""

import numpy as np
import pytest

import minifcn as mf
import minifcn.functional as F
from minifcn.functional import reduce
from minifcn.models import FCN8s


def _relative(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 2, 700, 900), (3, 5, 64, 65)])
def test_channel_sums_are_float64_sums(shape, rng):
    a = (rng.standard_normal(shape) + 10).astype(np.float32)  # a large mean: the case that loses digits
    b = rng.standard_normal(shape).astype(np.float32)
    sum_a, sum_ab = reduce.channel_sums(a, b)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    assert sum_a.dtype == sum_ab.dtype == np.float64
    # Each block of 256 values is a float32 sum or dot product: a few float32 roundings of the block, however many
    # blocks there are (a running float32 sum of 630,000 values of mean 10 is off by ~8e-6 of the total).
    np.testing.assert_allclose(sum_a, a64.sum(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(sum_ab, (a64 * b64).sum(axis=(0, 2, 3)), rtol=0, atol=1e-6 * np.abs(a64 * b64).sum())
    np.testing.assert_allclose(reduce.channel_sum(a), sum_a)


def test_loss_mean_keeps_its_digits_on_a_large_image(rng):
    scores = rng.standard_normal((1, 4, 1500, 1500)) * 3
    labels = rng.integers(0, 4, (1, 1500, 1500))
    labels[0, :100] = 255
    loss32 = float(F.softmax_cross_entropy(mf.Tensor(scores.astype(np.float32)), labels).data)
    loss64 = float(F.softmax_cross_entropy(mf.Tensor(scores), labels).data)
    assert abs(loss32 - loss64) / loss64 < 1e-6  # one float32 rounding per pixel's loss; the sum adds none


def _twin_nets(rng, backbone="tiny-bn", n_class=5):
    """The same FCN-8s in float64 and float32, score layers made random so that every layer gets a gradient."""
    mf.manual_seed(0)
    net64 = FCN8s(n_class=n_class, backbone=backbone, dtype=np.float64)
    for name, p in net64.named_parameters():
        if name.startswith("score"):
            p.data = rng.standard_normal(p.shape) * 0.01
    net32 = FCN8s(n_class=n_class, backbone=backbone, dtype=np.float32)
    net32.load_state_dict({k: v.astype(np.float32) for k, v in net64.state_dict().items()})
    return net32.train(), net64.train()


def _gradients(net, image, labels):
    loss = F.softmax_cross_entropy(net(mf.Tensor(image)), labels)
    loss.backward()
    return float(loss.data), {name: p.grad for name, p in net.named_parameters() if p.grad is not None}


def test_tiny_bn_fcn8s_float32_gradients_within_1e3_of_float64(rng):
    """The issue-14 target: every float32 gradient within 1e-3 (relative L2) of float64, in training mode.

    2x3x48x54 with pad 100 makes conv1's maps 246x252 (~124,000 values per
    channel for batch norm's sums). Before the float64 sums this was 6e-2
    (bn1_1.weight); it is ~5e-5 now.
    """
    net32, net64 = _twin_nets(rng)
    image = rng.standard_normal((2, 3, 48, 54))
    labels = rng.integers(0, 5, (2, 48, 54))
    loss32, grads32 = _gradients(net32, image.astype(np.float32), labels)
    loss64, grads64 = _gradients(net64, image, labels)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    assert grads32.keys() == grads64.keys() and len(grads64) > 40
    for name, g64 in grads64.items():
        if name.startswith(("conv", "fc")) and name.endswith(".bias"):
            # A bias just before batch norm has a zero gradient (the norm subtracts the mean): in float32 it must
            # stay negligible beside the gradient of the norm's own shift, which is what it would otherwise get.
            norm_bias = "bn" + name.split(".")[0].lstrip("conv").lstrip("fc") + ".bias"
            assert np.linalg.norm(grads32[name]) < 1e-3 * np.linalg.norm(grads64[norm_bias]), name
        else:
            assert _relative(grads32[name], g64) < 1e-3, name

"""The pieces of benchmarks/search_camvid.py (and of camvid_nets.py, which it imports) that its published figures rest
on: CutMix, the trunks with other numbers of convolutions, the net with a skip from pool2, the dilated net that stays
at 1/8, the net with global context, the per-image standardisation, joined splits, weight averaging, the dropout
put back, instance normalisation, the row channel, the wider trunk (minifcn's small-bn), ResNet's shortcuts,
progressive resizing, deep supervision, the splits kept by drive or spread, blur and noise, MixStyle, and local
contrast normalisation (camvid_inputs.py)."""

import copy
import importlib

import numpy as np
import pytest

import minifcn as mf
from minifcn.models import FCN8s


@pytest.fixture(scope="module")
def search(load_benchmark):
    return load_benchmark("search_camvid")


@pytest.fixture(scope="module")
def nets(search):
    return importlib.import_module("camvid_nets")  # search_camvid.py put benchmarks/ on the path


def test_cutmix_pastes_one_box_of_the_next_image_with_its_labels(search):
    N, H, W = 5, 12, 16
    x = np.broadcast_to(np.arange(N, dtype=np.float32)[:, None, None, None], (N, 3, H, W)).copy()
    y = np.broadcast_to(np.arange(N)[:, None, None], (N, H, W)).copy()
    mixed_x, mixed_y = search.cutmix(x, y, 1.0, np.random.default_rng(0))
    assert mixed_x.shape == x.shape and mixed_y.shape == y.shape
    for i in range(N):
        pasted = mixed_y[i] == (i + 1) % N
        assert np.all(pasted | (mixed_y[i] == i))  # each pixel its own or the next image's
        assert np.array_equal(mixed_x[i], np.where(pasted, (i + 1) % N, i)[None].repeat(3, 0))  # images as labels
        rows, cols = np.flatnonzero(pasted.any(1)), np.flatnonzero(pasted.any(0))
        if rows.size:  # the pasted pixels fill their bounding box: one rectangle
            assert (
                np.all(pasted[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]) and pasted.sum() == rows.size * cols.size
            )
    assert x[0, 0, 0, 0] == 0 and y[1, 0, 0] == 1  # the inputs are left as they were
    unchanged = search.cutmix(x, y, 0.0, np.random.default_rng(0))
    assert np.array_equal(unchanged[0], x) and np.array_equal(unchanged[1], y)


def test_cutmix_boxes_cover_a_uniform_share_of_the_area_and_the_chosen_share_of_images(search):
    N, H, W = 4000, 36, 48
    x, y = np.zeros((N, 1, H, W), np.float32), np.zeros((N, H, W), np.int64)
    y[1::2] = 1  # every image's next one differs from it everywhere
    _, mixed = search.cutmix(x, y, 0.5, np.random.default_rng(1))
    area = (mixed != y).mean(axis=(1, 2))
    assert abs((area > 0).mean() - 0.5) < 0.03  # half the images chosen (a few boxes round to nothing)
    chosen = area[area > 0]
    assert abs(chosen.mean() - 0.5) < 0.03 and abs(np.median(chosen) - 0.5) < 0.05  # area ~ U(0, 1)


def test_the_trunk_with_vgg16s_convolution_counts_is_tiny_bns_own(search):
    recipe = dict(search.BASE, **search.VARIANTS["fc6 4x4, enet weights, 1.8x iterations"])
    mf.manual_seed(0)
    own = search.build(recipe, 11)
    mf.manual_seed(0)
    rebuilt = search.build(dict(recipe, convs=(2, 2, 3, 3, 3)), 11)
    assert own.trunk_names == rebuilt.trunk_names and own.crop_offsets == rebuilt.crop_offsets
    for (name, a), (_, b) in zip(own.named_parameters(), rebuilt.named_parameters()):
        assert a.shape == b.shape and np.array_equal(a.data, b.data), name
    fewer = search.build(dict(recipe, widths=(8, 16, 48, 96, 128), convs=(1, 1, 2, 2, 2)), 11)
    convs = [n for n in fewer.trunk_names if n.startswith("conv")]
    assert convs == ["conv1_1", "conv2_1", "conv3_2", "conv3_3", "conv4_2", "conv4_3", "conv5_2", "conv5_3"]
    assert fewer.conv3_2.weight.shape == (48, 16, 3, 3) and fewer.crop_offsets == own.crop_offsets


def test_the_wider_trunk_takes_its_stage_and_fc_widths_and_leaves_tiny_bns_own(search):
    from minifcn.models import backbones

    widths, fc = backbones.TINY_WIDTHS, backbones.TINY_FC
    wide = search.build(dict(search.BASE, **search.VARIANTS["finalist, widths 16-32-64-128-256, fc 512"]), 11)
    assert wide.conv1_1.weight.shape == (16, 3, 3, 3) and wide.conv5_3.weight.shape == (256, 256, 3, 3)
    assert wide.fc6.weight.shape == (512, 256, 4, 4) and wide.fc7.weight.shape == (512, 512, 1, 1)
    assert wide.score_pool3.weight.shape == (11, 64, 1, 1) and wide.score_pool4.weight.shape == (11, 128, 1, 1)
    assert (backbones.TINY_WIDTHS, backbones.TINY_FC) == (widths, fc) == ((4, 8, 32, 64, 128), 256)
    plain = search.build(dict(search.BASE, **search.FINALIST), 11)
    assert plain.fc7.weight.shape == (256, 256, 1, 1) and plain.crop_offsets == wide.crop_offsets
    small = FCN8s(11, "small-bn", pad=21, fc6_kernel=4)  # the trunk minifcn names small-bn
    assert [(n, p.shape) for n, p in small.named_parameters()] == [(n, p.shape) for n, p in wide.named_parameters()]


def finalist_and(search, **change) -> tuple:
    """The finalist's net and the net with ``change`` to its recipe, both built from seed 0."""
    recipe = dict(search.BASE, **search.FINALIST)
    mf.manual_seed(0)
    plain = search.build(recipe, 11)
    mf.manual_seed(0)
    return plain, search.build(dict(recipe, **change), 11)


def test_dropout_goes_back_after_relu6_and_relu7_and_leaves_the_net_as_it_was_when_scoring(search):
    plain, dropped = finalist_and(search, dropout=0.5)
    assert dropped.trunk_names[-8:] == ["fc6", "bn6", "relu6", "drop6", "fc7", "bn7", "relu7", "drop7"]
    assert plain.trunk_names == [n for n in dropped.trunk_names if not n.startswith("drop")]
    assert dropped.drop6.p == dropped.drop7.p == 0.5
    x = mf.Tensor(np.random.default_rng(0).standard_normal((1, 3, 60, 80)).astype(np.float32))
    plain.eval(), dropped.eval()
    assert np.array_equal(plain(x).data, dropped(x).data)  # the same weights; dropout is the identity in eval
    dropped.train()
    ones = mf.Tensor(np.ones((2, 256, 5, 7), np.float32))
    kept = dropped.drop7(ones).data
    assert set(np.unique(kept)) == {0.0, 2.0} and abs((kept == 0).mean() - 0.5) < 0.05  # inverted dropout
    restored = search.build(dict(search.BASE, **search.FINALIST), 11)
    assert restored.trunk_names == plain.trunk_names  # the builder is restored afterwards


def test_instance_norm_equals_its_loop_and_passes_a_gradient_check(nets):
    from minifcn.gradcheck import gradcheck

    rng = np.random.default_rng(0)
    x, gamma, beta = rng.standard_normal((2, 3, 4, 5)) * 3 + 1, rng.standard_normal(3), rng.standard_normal(3)
    y = nets.InstanceNorm()(mf.Tensor(x), mf.Tensor(gamma), mf.Tensor(beta)).data
    for n in range(2):
        for c in range(3):
            values = [x[n, c, i, j] for i in range(4) for j in range(5)]
            mean = sum(values) / 20
            var = sum((v - mean) ** 2 for v in values) / 20
            expected = [(v - mean) / np.sqrt(var + 1e-5) * gamma[c] + beta[c] for v in values]
            assert np.allclose(y[n, c].ravel(), expected, rtol=0, atol=1e-12)
    inputs = [mf.Tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    assert gradcheck(lambda *t: nets.InstanceNorm()(*t), inputs, atol=1e-8)


def test_half_instance_norm_keeps_one_images_light_out_of_its_first_half(search):
    plain, ibn = finalist_and(search, ibn=2)
    assert ibn.crop_offsets == plain.crop_offsets
    kinds = {n: type(getattr(ibn, n)).__name__ for n in ibn.trunk_names if n.startswith("bn")}
    assert [n for n, k in kinds.items() if k == "HalfInstanceNorm"] == ["bn1_1", "bn1_2", "bn2_1", "bn2_2"]
    assert ibn.bn2_1.k == 4 and ibn.bn2_1.bn.num_features == 4  # tiny-bn's stage 2 is 8 wide
    assert len(list(ibn.parameters())) == len(list(plain.parameters())) + 8  # each has its own gamma and beta too
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 6, 7)).astype(np.float32)
    brighter = x.copy()
    brighter[0] = brighter[0] * 3 + 2  # one image's light changed
    for training in (True, False):
        ibn.bn2_1.train(training)
        a, b = ibn.bn2_1(mf.Tensor(x)).data, ibn.bn2_1(mf.Tensor(brighter)).data
        assert np.allclose(a[:, :4], b[:, :4], atol=1e-5)  # the instance-normalised half: unchanged
        assert not np.allclose(a[0, 4:], b[0, 4:], atol=1e-2)  # the batch-normalised half sees the change


def test_mixstyle_mixes_each_images_channel_statistics_with_anothers_as_a_direct_loop_does(nets):
    rng = np.random.default_rng(4)
    N, C, H, W = 4, 3, 5, 6
    x = rng.standard_normal((N, C, H, W)) * rng.uniform(0.5, 3, (N, C, 1, 1)) + rng.uniform(-2, 2, (N, C, 1, 1))
    w = rng.standard_normal((N, C, H, W))  # the loss sum(y * w): dy = w
    draws = np.random.default_rng(11)  # the module's draws, in its order: the batch's chance, lam, the other image
    assert draws.random() < 0.5
    lam, other = draws.beta(0.1, 0.1, N), draws.permutation(N)
    assert np.all(other != np.arange(N)) and np.any((lam > 0.1) & (lam < 0.9))  # draws that mix
    mix = nets.MixStyle(np.random.default_rng(11), p=0.5)
    t = mf.Tensor(x, requires_grad=True)
    y = mix(t)
    (y * mf.Tensor(w)).sum().backward()
    expected, grad = np.empty_like(x), np.empty_like(x)
    for n in range(N):
        for c in range(C):
            m, o = n, other[n]
            own_mean, own_std = x[m, c].mean(), np.sqrt(x[m, c].var() + 1e-6)
            to_mean = lam[n] * own_mean + (1 - lam[n]) * x[o, c].mean()
            to_std = lam[n] * own_std + (1 - lam[n]) * np.sqrt(x[o, c].var() + 1e-6)
            expected[n, c] = (x[n, c] - own_mean) / own_std * to_std + to_mean
            grad[n, c] = w[n, c] * to_std / own_std  # the statistics held fixed
    assert np.allclose(y.data, expected, atol=1e-12) and np.allclose(t.grad, grad, atol=1e-12)
    assert nets.MixStyle(np.random.default_rng(9), p=0.5)(mf.Tensor(x)).data is x  # 0.87 drawn: this batch kept
    mix.eval()
    assert mix(mf.Tensor(x)).data is x  # scoring: the identity


def test_mixstyle_goes_after_the_first_pools_and_leaves_the_scoring_net_as_it_was(search, nets):
    plain, _ = finalist_and(search)
    mixed = nets.with_mixstyle(copy.deepcopy(plain), 3, seed=0)
    assert [type(getattr(mixed, f"pool{k}")).__name__ for k in range(1, 6)] == ["Then"] * 3 + ["MaxPool2d"] * 2
    assert mixed.crop_offsets == plain.crop_offsets
    x = mf.Tensor(np.random.default_rng(2).standard_normal((2, 3, 64, 80)).astype(np.float32))
    plain.eval(), mixed.eval()
    assert np.array_equal(mixed(x).data, plain(x).data)
    mixed.train()
    assert all(getattr(mixed, f"pool{k}").second.training for k in range(1, 4))


def test_the_row_channel_counts_rows_from_top_to_bottom_and_the_net_reads_it(search, nets):
    from minifcn.preprocessing import TORCHVISION

    image = np.random.default_rng(0).integers(0, 256, (7, 5, 3)).astype(np.uint8)
    x = nets.with_row(TORCHVISION)(image)
    assert x.shape == (4, 7, 5) and x.dtype == np.float32
    assert np.array_equal(x[:3], TORCHVISION(image))
    for i in range(7):
        assert np.allclose(x[3, i], -1 + 2 * i / 6, atol=1e-7)  # -1 at the top row, 1 at the bottom, the same across
    plain, rows = finalist_and(search, rows=True)
    assert rows.conv1_1.weight.shape == (4, 4, 3, 3) and rows.conv1_1.padding == plain.conv1_1.padding
    assert rows.crop_offsets == plain.crop_offsets and plain.conv1_1.weight.shape == (4, 3, 3, 3)
    rows.eval()
    big = nets.with_row(TORCHVISION)(np.random.default_rng(1).integers(0, 256, (64, 80, 3)).astype(np.uint8))
    upside_down = big.copy()
    upside_down[3] = -upside_down[3]
    rows.score_fr.weight.data[:] = 0.01  # scores that carry what the trunk saw (the score layers start at zero)
    a, b = rows(mf.Tensor(big[None])).data, rows(mf.Tensor(upside_down[None])).data
    assert a.shape == (1, 11, 64, 80) and not np.allclose(a, b)  # the row channel reaches the scores


def centre(layers: list[tuple[str, int, int, int]]) -> tuple[float, float]:
    """(input position of unit 0's centre, spacing of the units) after ``layers``: ("conv", k, s, pad) or
    ("up", k, s, 0) for a transposed convolution, whose output j sits at input unit (j - (k - 1) / 2) / s."""
    offset, jump = 0.0, 1.0
    for kind, k, s, pad in layers:
        if kind == "conv":
            offset, jump = offset + jump * ((k - 1) / 2 - pad), jump * s
        else:
            offset, jump = offset - jump * (k - 1) / 2 / s, jump / s
    return offset, jump


def test_the_pool2_skips_crops_put_each_unit_over_the_same_pixel(search):
    pad = 22
    conv, pool = ("conv", 3, 1, 1), ("conv", 2, 2, 0)
    pool2 = [("conv", 3, 1, pad), conv, pool, conv, conv, pool]
    top = pool2 + [conv] * 3 + [pool] + [conv] * 3 + [pool] + [conv] * 3 + [pool] + [("conv", 4, 1, 0)]
    upscore_pool3 = top + [("up", 4, 2, 0)] * 3
    a, b = centre(pool2), centre(upscore_pool3)
    final = centre(upscore_pool3 + [("up", 8, 4, 0)])
    assert a[1] == b[1] == 4 and final[1] == 1
    net = search.FCN4s(3, "tiny-bn", False, pad=pad, fc6_kernel=4)
    assert net.crop_offsets["score_pool2c"] == (b[0] - a[0]) / 4
    assert net.crop_offsets["score"] == -final[0]


def test_the_pool2_skip_aligns_at_camvids_sizes_and_adds_pool2s_scores(search):
    mf.manual_seed(0)
    net = search.FCN4s(3, "tiny-bn", False, pad=22, fc6_kernel=4)
    eight = FCN8s(3, "tiny-bn", False, pad=22, fc6_kernel=4)
    assert {k: net.crop_offsets[k] for k in ("score_pool4c", "score_pool3c")} == {
        k: eight.crop_offsets[k] for k in ("score_pool4c", "score_pool3c")
    }
    net.eval()
    for H, W in [(180, 240), (360, 480)]:
        assert net(mf.Tensor(np.zeros((1, 3, H, W), np.float32))).shape == (1, 3, H, W)
    # only pool2's scores: one class reads one pool2 channel; the output is that map upsampled 4x (bilinear)
    x = mf.Tensor(np.random.default_rng(3).standard_normal((1, 3, 180, 240)).astype(np.float32))
    net.score_pool2.weight.data[1, 0] = 1.0
    pool2 = net.features(x)["pool2"].data[0, 0]
    out = net(x).data[0]
    assert np.all(out[0] == 0) and np.all(out[2] == 0)
    top = net.features(x)["top"]
    h3, w3 = net.upscore_pool3(net.upscore_pool4(net.upscore2(net.score_fr(top)))).shape[2:]  # the 1/4 grid
    o = net.crop_offsets["score_pool2c"]
    cropped = pool2[o : o + h3, o : o + w3]
    up = np.zeros(((h3 - 1) * 4 + 8, (w3 - 1) * 4 + 8))
    kernel = np.array([1, 3, 5, 7, 7, 5, 3, 1]) / 8  # bilinear, kernel 8, stride 4 (Sec. 3.3)
    for i in range(h3):  # the transposed convolution, as a loop over the map's units
        for j in range(w3):
            up[4 * i : 4 * i + 8, 4 * j : 4 * j + 8] += cropped[i, j] * np.outer(kernel, kernel)
    c = net.crop_offsets["score"]
    assert np.allclose(out[1], up[c : c + 180, c : c + 240], atol=1e-5)


def bilinear_up8(cells: np.ndarray) -> np.ndarray:
    """8x bilinear upsampling (kernel 16, stride 8, Sec. 3.3) of an (h, w) map, as a loop over its units."""
    h, w = cells.shape
    kernel = np.arange(1, 17) / 8.0
    kernel = np.minimum(kernel, kernel[::-1]) - 1 / 16  # 1/16, 3/16, ..., 15/16, 15/16, ..., 1/16
    up = np.zeros(((h - 1) * 8 + 16, (w - 1) * 8 + 16))
    for i in range(h):
        for j in range(w):
            up[8 * i : 8 * i + 16, 8 * j : 8 * j + 16] += cells[i, j] * np.outer(kernel, kernel)
    return up


def test_the_dilated_net_stays_at_one_eighth_and_puts_each_cell_over_its_pixels(search):
    mf.manual_seed(0)
    net = search.Dilated8s(3, (4, 8, 32, 16, 16), 24, skip=True)
    net.eval()
    layers = dict(net.high.named_children())
    assert [layers[f"conv4_{k}"].dilation for k in (1, 2, 3)] == [(2, 2)] * 3
    assert [layers[f"conv5_{k}"].dilation for k in (1, 2, 3)] == [(4, 4)] * 3
    assert layers["fc6"].dilation == (8, 8) and layers["fc7"].kernel_size == (1, 1)
    convs = [layer for layer in layers.values() if isinstance(layer, mf.nn.Conv2d)]
    assert all(c.bias.lr_mult == 2.0 and not c.bias.data.any() for c in convs)  # the FCNs' convolutions
    assert abs(layers["conv5_1"].weight.data.std() - np.sqrt(2 / (16 * 9))) < 0.02  # He-normal, fan-in 16 x 3 x 3
    for H, W in [(180, 240), (181, 243)]:
        x = mf.Tensor(np.random.default_rng(4).standard_normal((1, 3, H, W)).astype(np.float32))
        pool3 = net.low(x)
        assert pool3.shape[2:] == (-(-H // 8), -(-W // 8)) == net.high(pool3).shape[2:]  # ceil pooling, then 1/8
        # only pool3's scores: one class reads pool3's channel 0. Cell i covers pixels 8i..8i+7, centre 8i + 3.5;
        # the kernel's centre is 7.5 past 8i, so the crop that lays one on the other starts at 4.
        net.score_pool3.weight.data[...] = 0.0
        net.score_pool3.weight.data[1, 0] = 1.0
        out = net(x).data[0]
        assert out.shape == (3, H, W) and np.all(out[0] == 0) and np.all(out[2] == 0)
        assert np.allclose(out[1], bilinear_up8(pool3.data[0, 0])[4 : 4 + H, 4 : 4 + W], atol=1e-5)


def test_global_context_adds_the_scored_image_mean_of_fc7_at_every_cell(search):
    mf.manual_seed(0)
    net = search.GlobalContext8s(3, "tiny-bn", False, pad=21, fc6_kernel=4)
    net.eval()
    rng = np.random.default_rng(5)
    net.score_fr.weight.data[...] = rng.standard_normal(net.score_fr.weight.shape) * 0.1
    net.score_global.weight.data[...] = rng.standard_normal(net.score_global.weight.shape) * 0.1
    net.score_global.bias.data[...] = rng.standard_normal(3)
    x = mf.Tensor(rng.standard_normal((1, 3, 180, 240)).astype(np.float32))
    taps = net.features(x)
    with_context = net.decode(taps, (180, 240)).data
    fc7 = taps["top"].data[0].astype(np.float64)  # (fc, h, w)
    context = net.score_global.weight.data[:, :, 0, 0] @ fc7.mean(axis=(1, 2)) + net.score_global.bias.data
    net.score_fr.bias.data += context.astype(np.float32)  # the same term, as a bias of the 1/32 scores
    plain = FCN8s.decode(net, taps, (180, 240)).data
    assert np.abs(context).max() > 0.1 and np.allclose(with_context, plain, atol=1e-5)


def test_each_image_standardised_has_zero_mean_unit_deviation_and_ignores_its_light(search):
    image = np.random.default_rng(6).integers(0, 100, (20, 30, 3)).astype(np.uint8)
    x = search.standardised(image)
    assert x.shape == (3, 20, 30) and x.dtype == np.float32
    assert np.allclose(x.mean(axis=(1, 2)), 0, atol=1e-6) and np.allclose(x.std(axis=(1, 2)), 1, atol=1e-6)
    brighter = (image.astype(np.int64) * 2 + 30).astype(np.uint8)  # a brighter, higher-contrast day
    assert np.allclose(search.standardised(brighter), x, atol=1e-5)
    by_hand = image.transpose(2, 0, 1).astype(np.float64)
    by_hand = (by_hand - by_hand.mean(axis=(1, 2), keepdims=True)) / by_hand.std(axis=(1, 2), keepdims=True)
    assert np.allclose(x, by_hand, atol=1e-5)


def split_of(search, items: list, drives: list, name: str):
    """A Resized split by hand: its items (any objects) and each one's drive."""
    split = object.__new__(search.Resized)
    split.items, split.drives, split.split, split.n_class = items, drives, name, 11
    return split


def test_joined_splits_keep_both_item_lists_in_order(search):
    a = split_of(search, [1, 2], ["0016E5", "0001TP"], "train-without-0006R0")
    b = split_of(search, [3], ["0016E5"], "val")
    both = search.joined(a, b)
    assert both.items == [1, 2, 3] and len(both) == 3 and both[2] == 3 and both.n_class == 11
    assert both.drives == ["0016E5", "0001TP", "0016E5"]
    assert both.split == "train-without-0006R0+val" and a.items == [1, 2] and a.split == "train-without-0006R0"


def test_kept_takes_one_drives_items_or_an_even_spread_of_all(search):
    drives = ["0016E5", "0001TP", "0016E5", "0016E5", "0001TP", "0016E5", "0016E5"]
    split = split_of(search, list(range(7)), drives, "train-without-0006R0")
    one = search.kept(split, ("0016E5",), None)
    assert one.items == [0, 2, 3, 5, 6] and one.drives == ["0016E5"] * 5
    spread = search.kept(split, None, 4)  # rounded positions of 0, 2, 4 and 6 among 7
    assert spread.items == [0, 2, 4, 6] and spread.drives == ["0016E5", "0016E5", "0001TP", "0016E5"]
    assert search.kept(split, None, None).items == list(range(7)) and split.items == list(range(7))
    both = search.kept(split, ("0016E5",), 3)  # spread over the five of 0016E5: its first, third and fifth
    assert both.items == [0, 3, 6] and both.drives == ["0016E5"] * 3
    for drives, subset in ((("0006R0",), None), (None, 8), (("0001TP",), 3), (None, 0)):
        with pytest.raises(ValueError, match="train-without-0006R0 holds"):
            search.kept(split, drives, subset)


def test_a_camvid_root_that_is_not_there_is_one_error_line_naming_it(search, monkeypatch, capsys, tmp_path):
    missing = str(tmp_path / "no-camvid")
    monkeypatch.setattr("sys.argv", ["search_camvid.py", "--data-root", missing, "--held-out", "0001TP"])
    with pytest.raises(SystemExit) as exit:
        search.main()
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit.value.code == 2 and lines[-1].startswith("search_camvid.py: error: CamVid: folder")
    assert missing in lines[-1] and lines[-1].endswith("does not exist")


def test_blur_and_noise_match_a_gaussian_of_the_drawn_deviation_and_keep_the_batch_otherwise(search):
    x = np.random.default_rng(3).standard_normal((2, 3, 9, 11)).astype(np.float32)
    blurred = blurred_by_hand = None
    for seed in range(20):  # a seed whose batch is blurred: the same draws, made here by hand
        rng = np.random.default_rng(seed)
        if rng.random() < 0.5:
            sigma = rng.uniform(0, 1.5)
            blurred = search.blurred_and_noisy(x, 1.5, 0.0, np.random.default_rng(seed))
            blurred_by_hand = np.empty_like(x)
            for n in range(2):  # a direct loop: a separable Gaussian per image and channel, edges repeated
                for c in range(3):
                    blurred_by_hand[n, c] = gaussian_by_hand(x[n, c], sigma)
            break
    assert blurred is not None and np.allclose(blurred, blurred_by_hand, atol=1e-5)
    kept = next(s for s in range(20) if np.random.default_rng(s).random() >= 0.5)
    assert np.array_equal(search.blurred_and_noisy(x, 1.5, 0.0, np.random.default_rng(kept)), x)
    noisy = search.blurred_and_noisy(np.zeros((4, 3, 64, 64), np.float32), 0.0, 0.1, np.random.default_rng(5))
    sigma = np.random.default_rng(5).uniform(0, 0.1)
    assert noisy.dtype == np.float32 and abs(noisy.mean()) < 3 * sigma / 220 and abs(noisy.std() / sigma - 1) < 0.03


def gaussian_by_hand(image: np.ndarray, sigma: float) -> np.ndarray:
    """scipy's Gaussian by its definition: weights exp(-k^2 / 2 sigma^2), k within 4 sigma, summed to 1; rows then
    columns, the edge pixel repeated beyond the border."""
    radius = int(4 * sigma + 0.5)
    k = np.arange(-radius, radius + 1)
    w = np.exp(-(k**2) / (2 * sigma**2))
    w /= w.sum()
    out = image.astype(np.float64)
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        n = out.shape[axis]
        out = sum(wi * np.take(padded, np.arange(n) + i, axis=axis) for i, wi in enumerate(w))
    return out


def test_local_contrast_normalisation_matches_a_direct_loop_over_each_pixels_window(search):
    inputs = importlib.import_module("camvid_inputs")
    from minifcn.preprocessing import TORCHVISION

    image = np.random.default_rng(8).integers(0, 256, (7, 9, 3)).astype(np.uint8)
    image[:, 5:] = (40, 90, 160)  # a flat part, where the image's mean contrast divides instead of its own
    sigma = 1.2
    y = inputs.locally_normalised(sigma)(image)
    x = TORCHVISION(image).astype(np.float64)
    C, H, W = x.shape
    radius = int(4 * sigma + 0.5)  # scipy's window: 4 sigma, the edge pixel repeated beyond the border
    k = np.arange(-radius, radius + 1)
    w = np.exp(-(k**2) / (2 * sigma**2))
    w /= w.sum()

    def blurred(plane):
        out = np.zeros((H, W))
        for i in range(H):
            for j in range(W):
                for a, p in enumerate(k):
                    for b, q in enumerate(k):
                        out[i, j] += w[a] * w[b] * plane[min(max(i + p, 0), H - 1), min(max(j + q, 0), W - 1)]
        return out

    v = x - blurred(sum(x[c] for c in range(C)) / C)
    s = np.sqrt(blurred(sum(v[c] ** 2 for c in range(C)) / C))
    by_hand = v / np.maximum(s, s.sum() / s.size)
    assert y.shape == (3, 7, 9) and y.dtype == np.float32
    assert (s < s.mean()).any() and (s > s.mean()).any()  # both sides of the floor are exercised
    assert np.allclose(y, by_hand, atol=1e-5)


def test_local_contrast_normalisation_of_an_input_without_contrast_is_zeros_not_nan(search, monkeypatch):
    inputs = importlib.import_module("camvid_inputs")
    monkeypatch.setattr(inputs, "TORCHVISION", lambda image: np.full((3, 5, 6), 0.7, np.float32))  # all alike
    y = inputs.locally_normalised(1.0)(np.zeros((5, 6, 3), np.uint8))
    assert y.shape == (3, 5, 6) and np.array_equal(y, np.zeros((3, 5, 6), np.float32))


def test_swa_keeps_the_plain_mean_of_the_parameters_after_each_step(search):
    model = mf.nn.Conv2d(2, 3, 1)
    rng = np.random.default_rng(7)
    seen, averaged = [], None
    for k in range(5):
        model.weight.data = rng.standard_normal(model.weight.shape).astype(np.float32)
        model.bias.data = rng.standard_normal(3).astype(np.float32)
        seen.append([model.weight.data.copy(), model.bias.data.copy()])
        averaged = search.swa_update(averaged, model, k)
        for mean, i in zip(averaged, (0, 1)):
            assert mean.dtype == np.float64
            assert np.allclose(mean, np.mean([s[i].astype(np.float64) for s in seen], axis=0), atol=1e-12)


def test_shortcuts_add_each_same_width_convolutions_input_back_before_its_relu(search, nets):
    plain, short = finalist_and(search, shortcuts=True)
    wrapped = [n for n in short.trunk_names if isinstance(getattr(short, n), nets.Shortcut)]
    assert wrapped == ["conv1_2", "conv2_2", "conv3_2", "conv3_3", "conv4_2", "conv4_3", "conv5_2", "conv5_3"]
    assert short.crop_offsets == plain.crop_offsets
    assert sorted(p.data.tobytes() for p in short.parameters()) == sorted(p.data.tobytes() for p in plain.parameters())
    for name in (n for n in plain.trunk_names if n.startswith("bn")):  # running statistics unlike a fresh net's
        bn, twin = getattr(plain, name), getattr(short, name)
        twin = getattr(short, "conv" + name[2:]).bn if isinstance(twin, nets.Identity) else twin
        bn.running_mean[...] = twin.running_mean[...] = np.linspace(-0.3, 0.3, bn.num_features)
        bn.running_var[...] = twin.running_var[...] = np.linspace(0.5, 2.0, bn.num_features)
    plain.eval(), short.eval()
    x = np.random.default_rng(3).standard_normal((2, 3, 64, 80)).astype(np.float32)
    h = mf.Tensor(x)  # a direct walk through the plain net's layers, the input put back after each wrapped bn
    with mf.no_grad():
        for name in plain.trunk_names:
            if name in wrapped:
                before = h
            h = getattr(plain, name)(h)
            if name.startswith("bn") and "conv" + name[2:] in wrapped:
                h = h + before
        top, plain_top = short.features(mf.Tensor(x))["top"], plain.features(mf.Tensor(x))["top"]
    assert np.allclose(top.data, h.data, rtol=1e-5, atol=1e-6) and not np.allclose(top.data, plain_top.data)


def test_progressive_resizing_trains_first_on_the_smaller_images_then_on_the_full_ones(search, monkeypatch):
    rng = np.random.default_rng(0)
    data = object.__new__(search.Resized)
    data.items = [(rng.integers(0, 256, (96, 128, 3), np.uint8), rng.integers(0, 11, (96, 128))) for _ in range(4)]
    data.n_class, data.classes, data.split = 11, [str(c) for c in range(11)], "made up"
    seen, loss = [], search.F.softmax_cross_entropy

    def recording(scores, y, **kw):
        seen.append(y.shape)
        return loss(scores, y, **kw)

    monkeypatch.setattr(search.F, "softmax_cross_entropy", recording)
    args = type("Args", (), dict(iters=2, device="cpu", scale=0.5))
    recipe = dict(search.BASE, **dict(search.FINALIST, iters=1.0, coarse=(0.75, 1.5), batch=2))
    search.train(recipe, data, 0, args)
    assert seen == [(2, 72, 96)] * 3 + [(2, 96, 128)] * 2


def test_deep_supervision_keeps_the_coarse_scores_as_fcn8s_would_take_them_up(search, nets):
    plain, deep = finalist_and(search, deep=0.4)
    assert isinstance(deep, nets.DeeplySupervised8s) and deep.crop_offsets == plain.crop_offsets
    for net in (plain, deep):  # the same skips, not zero, so that each stage's scores differ
        for layer in (net.score_pool4, net.score_pool3):
            layer.weight.data = np.random.default_rng(1).standard_normal(layer.weight.shape).astype(np.float32)
    x = mf.Tensor(np.random.default_rng(5).standard_normal((2, 3, 96, 128)).astype(np.float32))
    with mf.no_grad():
        plain.eval(), deep.eval()
        assert np.array_equal(deep(x).data, plain(x).data) and deep.aux == []
        plain.train(), deep.train()  # both normalise by the batch statistics of x
        out, taps = deep(x), plain.features(x)
        up = lambda s: plain._crop(plain.upscore8(plain.upscore_pool4(s)), (96, 128), "score")  # noqa: E731
        upscore2 = plain.upscore2(plain.score_fr(taps["top"]))  # the 1/32 scores, and with pool4's: the 1/16 ones
        fused16 = upscore2 + plain._crop(plain.score_pool4(taps["pool4"]), upscore2, "score_pool4c")
        want = [up(upscore2), up(fused16)]
    assert len(deep.aux) == 2
    for got, scores in zip(deep.aux, want):
        assert got.shape == (2, 11, 96, 128) and np.allclose(got.data, scores.data, atol=1e-5)
    assert not np.allclose(deep.aux[0].data, deep.aux[1].data) and not np.allclose(deep.aux[1].data, out.data)


def test_deep_supervision_adds_a_weighted_loss_for_each_coarse_score(search, monkeypatch):
    data = object.__new__(search.Resized)
    rng = np.random.default_rng(0)
    data.items = [(rng.integers(0, 256, (72, 96, 3), np.uint8), rng.integers(0, 11, (72, 96))) for _ in range(2)]
    data.n_class, data.classes, data.split = 11, [str(c) for c in range(11)], "made up"
    losses, cross_entropy = [], search.F.softmax_cross_entropy

    def recording(scores, y, **kw):
        losses.append(cross_entropy(scores, y, **kw))
        return losses[-1]

    monkeypatch.setattr(search.F, "softmax_cross_entropy", recording)
    monkeypatch.setattr(mf.Tensor, "backward", lambda loss: losses.append(float(loss.data)))
    args = type("Args", (), dict(iters=1, device="cpu", scale=1.0))
    search.train(dict(search.BASE, **dict(search.FINALIST, iters=1.0, deep=0.4, batch=2)), data, 0, args)
    main, coarse32, coarse16, total = losses
    assert np.isclose(total, float(main.data) + 0.4 * (float(coarse32.data) + float(coarse16.data)), rtol=1e-6)


def test_deep_supervision_refuses_learnt_upsampling(search):
    with pytest.raises(ValueError, match="fixed bilinear layers only"):
        search.build(dict(search.BASE, **dict(search.FINALIST, deep=0.4, learn_up=True)), 11)

"""The nets that ``search_camvid.py`` puts beside FCN-8s on CamVid: trunks with other numbers of convolutions, a
skip from pool2 (FCN4s), a net that stays at 1/8 with dilated stages (Dilated8s), FCN-8s with ParseNet's global
context (GlobalContext8s), and FCN-8s that keeps its coarser scores for deep supervision (DeeplySupervised8s). Each
takes (N, 3, H, W) images to (N, n_class, H, W) scores. Beside them, three changes to tiny-bn's layers: dropout put
back after fc6 and fc7, IBN-Net's instance normalisation in the first stages, MixStyle after them, and ResNet's
shortcuts around the convolutions that keep their width."""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import minifcn as mf  # noqa: E402
import minifcn.functional as F  # noqa: E402
from minifcn.autograd import Function  # noqa: E402
from minifcn.backend import device_of, get_array_module, to_device  # noqa: E402
from minifcn.models import FCN8s, backbones  # noqa: E402
from minifcn.models.fcn import FCN, upsampling_layer, zero_score_layer  # noqa: E402


def features_with(convs: tuple):
    """vgg16_features with ``convs`` 3x3 convolutions in the five stages; the last of stages 3-5 keeps the name
    convN_3 that the skips read. Padding 1 keeps each map's size, so the crops are VGG16's."""

    def features(widths, first_padding, ceil_mode, dtype):
        layers, c_in = {}, 3
        for stage, (width, n) in enumerate(zip(widths, convs), 1):
            for k in range(1, n + 1) if stage < 3 else range(4 - n, 4):
                padding = first_padding if c_in == 3 else 1
                layers[f"conv{stage}_{k}"] = backbones.conv(c_in, width, 3, padding=padding, dtype=dtype)
                layers[f"relu{stage}_{k}"], c_in = backbones.relu(), width
            layers[f"pool{stage}"] = mf.nn.MaxPool2d(2, stride=2, ceil_mode=ceil_mode)
        return layers

    return features


class FCN4s(FCN):
    """FCN-8s with one more skip: the scores of pool2 (1/4) added to the fused 1/8 scores upsampled 2x, then 4x.

    The paper stops at pool3 (Sec. 4.2: the gains had met diminishing returns); this asks whether the thin,
    rare CamVid classes want the finer step. (N, 3, H, W) in, (N, n_class, H, W) out.
    With the 4x4 fc6 some input sizes leave pool2's scores a unit short, so ``check_fc6`` would refuse this net;
    at pad 22 both 240x180 and 480x360 align, and the crops are checked at every forward pass."""

    CROPS = dict(list(FCN8s.CROPS.items())[:2] + [("score_pool2c", ("score_pool2", "upscore_pool3")),
                                                  ("score", ("upscore4", "input"))])  # fmt: skip
    TAPS = ("pool2", "pool3", "pool4", "top")

    def __init__(self, n_class: int, backbone: str, learnable_upsampling: bool, pad: int, fc6_kernel: int):
        super().__init__(n_class, backbone, learnable_upsampling, np.float32, pad, fc6_kernel)
        n, up, f32 = self.n_class, learnable_upsampling, np.float32
        self.upscore2, self.upscore_pool4, self.upscore_pool3 = (upsampling_layer(n, 2, up, f32) for _ in range(3))
        self.upscore4 = upsampling_layer(n, 4, up, f32)
        last2 = [name for name in self.trunk_names if name.startswith("conv2_")][-1]
        self.score_pool4 = zero_score_layer(self.conv4_3.out_channels, n, f32)
        self.score_pool3 = zero_score_layer(self.conv3_3.out_channels, n, f32)
        self.score_pool2 = zero_score_layer(getattr(self, last2).out_channels, n, f32)
        self.crop_offsets = self.derive_crops()

    def smallest_input(self) -> int:
        return 0  # no size fits every larger one; F.crop refuses a size that does not fit

    def paths(self) -> dict[str, list[str]]:
        upscore_pool4 = self.trunk_names + ["score_fr", "upscore2", "upscore_pool4"]
        return {
            "score_pool4": self.trunk_to("pool4") + ["score_pool4"],
            "upscore2": upscore_pool4[:-1],
            "score_pool3": self.trunk_to("pool3") + ["score_pool3"],
            "upscore_pool4": upscore_pool4,
            "score_pool2": self.trunk_to("pool2") + ["score_pool2"],
            "upscore_pool3": upscore_pool4 + ["upscore_pool3"],
            "upscore4": upscore_pool4 + ["upscore_pool3", "upscore4"],
        }

    def decode(self, taps: dict, size: tuple) -> mf.Tensor:
        upscore2 = self.upscore2(self.score_fr(taps["top"]))  # 1/16
        fused = upscore2 + self._crop(self.score_pool4(taps["pool4"]), upscore2, "score_pool4c")
        upscore_pool4 = self.upscore_pool4(fused)  # 1/8
        fused = upscore_pool4 + self._crop(self.score_pool3(taps["pool3"]), upscore_pool4, "score_pool3c")
        upscore_pool3 = self.upscore_pool3(fused)  # 1/4
        fused = upscore_pool3 + self._crop(self.score_pool2(taps["pool2"]), upscore_pool3, "score_pool2c")
        return self._crop(self.upscore4(fused), size, "score")  # 1/1


def dilated_conv(in_channels: int, out_channels: int, kernel_size: int, d: int) -> mf.nn.Conv2d:
    """``backbones.conv`` (the FCNs' He-normal weights, zero biases at lr_mult 2) with its taps ``d`` apart and
    padding d, which keeps a 3x3's map the size of its input."""
    layer = backbones.conv(in_channels, out_channels, kernel_size, padding=d)
    layer.dilation = (d, d)
    return layer


class Dilated8s(mf.nn.Module):
    """A net that stops pooling at 1/8 and widens its view instead, as ENet and the dilated nets of Yu and Koltun
    (2016) do; the FCN paper's shift-and-stitch (Sec. 3.2) is the same trick, with the filters spread out.

    Stages 1-3 are tiny-bn's (pool3 at 1/8); stages 4 and 5 keep pool3's grid with 3x3 convolutions dilated 2 and
    4 (Sec. 3.2's filter rarefaction), fc6 is a 3x3 dilated 8, fc7 1x1, then one 1x1 score layer and a fixed 8x
    bilinear upsampling. Batch norm after every convolution. Padding d keeps each dilated map's size, so no crop
    needs deriving: (N, 3, H, W) in, (N, n_class, H, W) out, the last crop at 4 (the 16x16 kernel's centre, 7.5,
    against a 1/8 cell's, 3.5)."""

    def __init__(self, n_class: int, widths: tuple, fc: int, skip: bool):
        super().__init__()
        layers, c_in = {}, 3
        for stage, (width, n) in enumerate(zip(widths, (2, 2, 3, 3, 3)), 1):
            d = 1 if stage <= 3 else 2 ** (stage - 3)
            for k in range(1, n + 1):
                layers[f"conv{stage}_{k}"] = dilated_conv(c_in, width, 3, d)
                layers[f"bn{stage}_{k}"] = mf.nn.BatchNorm2d(width)
                layers[f"relu{stage}_{k}"], c_in = backbones.relu(), width
            if stage <= 3:
                layers[f"pool{stage}"] = mf.nn.MaxPool2d(2, stride=2, ceil_mode=True)
        layers["fc6"] = dilated_conv(c_in, fc, 3, 8)
        layers.update(bn6=mf.nn.BatchNorm2d(fc), relu6=backbones.relu(), fc7=backbones.conv(fc, fc, 1))
        layers.update(bn7=mf.nn.BatchNorm2d(fc), relu7=backbones.relu())
        names = list(layers)
        cut = names.index("pool3") + 1
        self.low = mf.nn.Sequential({name: layers[name] for name in names[:cut]})  # stages 1-3, to 1/8
        self.high = mf.nn.Sequential({name: layers[name] for name in names[cut:]})  # stages 4, 5, fc6, fc7 at 1/8
        self.score = zero_score_layer(fc, n_class, np.float32)
        self.score_pool3 = zero_score_layer(widths[2], n_class, np.float32) if skip else None
        self.upscore = upsampling_layer(n_class, 8, False, np.float32)

    def forward(self, x: mf.Tensor) -> mf.Tensor:
        pool3 = self.low(x)
        scores = self.score(self.high(pool3))
        if self.score_pool3 is not None:  # FCN-8s's pool3 skip, on the same grid: no upsampling, no crop
            scores = scores + self.score_pool3(pool3)
        return F.crop(self.upscore(scores), x.shape[2:], 4)


class GlobalContext8s(FCN8s):
    """FCN-8s whose 1/32 scores also read the whole image: fc7 averaged over every cell, scored by its own 1x1
    layer and added at each cell, as ParseNet (Liu et al. 2015) adds global context to an FCN. (N, 3, H, W) in,
    (N, n_class, H, W) out; the crops are FCN-8s's, since the added term has fc7's grid. ``decode`` is FCN-8s's
    with that one term added."""

    def __init__(self, n_class: int, backbone: str, learnable_upsampling: bool, pad: int, fc6_kernel: int):
        super().__init__(n_class, backbone, learnable_upsampling, np.float32, pad, fc6_kernel)
        self.score_global = zero_score_layer(self.score_fr.in_channels, self.n_class, np.float32)

    def decode(self, taps: dict, size: tuple) -> mf.Tensor:
        pool3, pool4, fc7 = taps["pool3"], taps["pool4"], taps["top"]
        h, w = fc7.shape[2:]
        glob = self.score_global(F.avg_pool2d(fc7, (h, w)))  # (N, n_class, 1, 1): the image's mean, scored
        # copied to every cell: a transposed convolution whose kernel takes each class to itself, all ones over (h, w)
        tile = np.eye(self.n_class, dtype=np.float32)[:, :, None, None] * np.ones((h, w), np.float32)
        context = F.conv_transpose2d(glob, mf.Tensor(to_device(tile, device_of(glob.data))))  # (N, n_class, h, w)
        upscore2 = self.upscore2(self.score_fr(fc7) + context)  # 1/16
        score_pool4c = self._crop(self.score_pool4(pool4), upscore2, "score_pool4c")
        upscore_pool4 = self.upscore_pool4(upscore2 + score_pool4c)  # 1/8
        score_pool3c = self._crop(self.score_pool3(pool3), upscore_pool4, "score_pool3c")
        return self._crop(self.upscore8(upscore_pool4 + score_pool3c), size, "score")


def keeping_dropout(with_batch_norm, p: float):
    """``backbones.with_batch_norm`` (``with_batch_norm``, which drops fc6's and fc7's dropout) with dropout at rate
    ``p`` put back after relu6 and relu7, where VGG16's classifier and the paper's FCNs have it (0.5 there)."""

    def with_batch_norm_and_dropout(layers: dict, dtype) -> dict:
        out = {}
        for name, layer in with_batch_norm(layers, dtype).items():
            out[name] = layer
            if name in ("relu6", "relu7"):
                out["drop" + name.removeprefix("relu")] = mf.nn.Dropout(p)
        return out

    return with_batch_norm_and_dropout


class InstanceNorm(Function):
    """Instance normalisation (Ulyanov et al. 2016): each image's channel less its own mean over the pixels, over
    its own deviation, then scaled and shifted per channel. It takes the same statistics when training and when
    scoring, so a drive's light and contrast never reach the layers after it. x (N, C, H, W), gamma and beta (C,).
    Means and variances are float64 sums over the H*W pixels.

    Backward, with xhat the normalised x, g = dy * gamma and M = H*W, per image and channel:
        dx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps),  dgamma = sum dy * xhat,  dbeta = sum dy.
    """

    def __init__(self, eps: float = 1e-5):
        self.eps = eps

    def forward(self, x, gamma, beta):
        mean = x.mean(axis=(2, 3), keepdims=True, dtype=np.float64)
        var = ((x - mean) ** 2).mean(axis=(2, 3), keepdims=True, dtype=np.float64)
        self.inv = (1 / get_array_module(x).sqrt(var + self.eps)).astype(x.dtype)
        self.xhat = (x - mean.astype(x.dtype)) * self.inv
        self.gamma = gamma[None, :, None, None]
        return self.xhat * self.gamma + beta[None, :, None, None]

    def backward(self, gy):
        g = gy * self.gamma
        mean_g = g.mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(g.dtype)
        mean_gx = (g * self.xhat).mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(g.dtype)
        dx = (g - mean_g - self.xhat * mean_gx) * self.inv
        dgamma = (gy * self.xhat).sum(axis=(0, 2, 3), dtype=np.float64).astype(gy.dtype)
        return dx, dgamma, gy.sum(axis=(0, 2, 3), dtype=np.float64).astype(gy.dtype)


class HalfInstanceNorm(mf.nn.Module):
    """IBN-Net's IBN-a normalisation (Pan, Luo, Shi and Tang 2018): of C channels, the first C // 2 instance
    normalised (InstanceNorm, its own gamma and beta), the others batch normalised. Instance normalisation in the
    first layers keeps what a change of light or camera does out of the features; the batch-normalised half keeps
    what tells the classes apart. (N, C, H, W) in and out."""

    def __init__(self, channels: int):
        super().__init__()
        self.k = channels // 2
        self.weight = mf.nn.Parameter(np.ones(self.k, np.float32), decay_mult=0.0)
        self.bias = mf.nn.Parameter(np.zeros(self.k, np.float32), decay_mult=0.0)
        self.bn = mf.nn.BatchNorm2d(channels - self.k)

    def forward(self, x: mf.Tensor) -> mf.Tensor:
        C = x.shape[1]
        instance = InstanceNorm()(F.narrow(x, 1, 0, self.k), self.weight, self.bias)
        return F.concat([instance, self.bn(F.narrow(x, 1, self.k, C - self.k))], axis=1)


def with_instance_norm(model: mf.nn.Module, stages: int) -> mf.nn.Module:
    """``model`` with the batch norms of its first ``stages`` stages (bn1_1, bn1_2, ...) made HalfInstanceNorm, as
    IBN-Net puts instance normalisation in a ResNet's first stages and keeps batch norm in the last. Swapped after
    the net is built: its crops, derived from the receptive fields, are those of the batch-normalised net, whose
    geometry is the same."""
    for name in model.trunk_names:
        if name.startswith("bn") and "_" in name and int(name[2 : name.index("_")]) <= stages:
            setattr(model, name, HalfInstanceNorm(getattr(model, name).num_features))
    return model


class ScaleShift(Function):
    """y = x * a + b with a and b (N, C, 1, 1) held fixed: no gradient flows to them, so dx = dy * a."""

    def __init__(self, a, b):
        self.a, self.b = a, b

    def forward(self, x):
        return x * self.a + self.b

    def backward(self, gy):
        return gy * self.a


class MixStyle(mf.nn.Module):
    """MixStyle (Zhou, Yang, Qiao and Xiang 2021): while training, with probability ``p`` per batch, each image's
    channel statistics (its mean and deviation over the pixels) are replaced by a mix of its own and another image's
    of the batch, lam * own + (1 - lam) * other with lam ~ Beta(alpha, alpha) per image: the features keep their
    content and take on styles between those the training drives show. The statistics are held fixed (no gradient
    flows through them), as in the paper. Scoring, it is the identity. (N, C, H, W) in and out."""

    def __init__(self, rng: np.random.Generator, p: float = 0.5, alpha: float = 0.1, eps: float = 1e-6):
        super().__init__()
        self.rng, self.p, self.alpha, self.eps = rng, p, alpha, eps

    def forward(self, x: mf.Tensor) -> mf.Tensor:
        if not self.training or self.rng.random() >= self.p:
            return x
        xp, N = get_array_module(x.data), x.shape[0]
        mean = x.data.mean(axis=(2, 3), keepdims=True, dtype=np.float64)
        std = xp.sqrt(((x.data - mean) ** 2).mean(axis=(2, 3), keepdims=True, dtype=np.float64) + self.eps)
        lam = to_device(self.rng.beta(self.alpha, self.alpha, (N, 1, 1, 1)), device_of(x.data))
        other = to_device(self.rng.permutation(N), device_of(x.data))
        mixed_mean, mixed_std = lam * mean + (1 - lam) * mean[other], lam * std + (1 - lam) * std[other]
        a = mixed_std / std
        return ScaleShift(a.astype(x.dtype), (mixed_mean - mean * a).astype(x.dtype))(x)


class Then(mf.nn.Module):
    """``first`` then ``second``: a layer of the trunk with another after it, under the first's name."""

    def __init__(self, first: mf.nn.Module, second: mf.nn.Module):
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x: mf.Tensor) -> mf.Tensor:
        return self.second(self.first(x))


def with_mixstyle(model: mf.nn.Module, stages: int, seed: int) -> mf.nn.Module:
    """``model`` with MixStyle after the pooling of each of its first ``stages`` stages (pool1, pool2, ...), as Zhou
    et al. put it after a ResNet's first stages; it changes no size, so the crops stay as built."""
    rng = np.random.default_rng(seed + 2000)
    for k in range(1, stages + 1):
        setattr(model, f"pool{k}", Then(getattr(model, f"pool{k}"), MixStyle(rng)))
    return model


def with_row(preprocess):
    """``preprocess`` ((H, W, 3) image to (3, H, W)) with a fourth channel: each pixel's row, from -1 at the top to 1
    at the bottom (CoordConv, Liu et al. 2018). A street seen from a car keeps its layout from drive to drive, sky
    above and road below, where its light and buildings change. Added after any flip or crop, so it stays true."""

    def preprocess_with_row(image: np.ndarray) -> np.ndarray:
        x = preprocess(image)
        H, W = x.shape[1:]
        row = np.broadcast_to(np.linspace(-1, 1, H, dtype=x.dtype)[:, None], (H, W))
        return np.concatenate([x, row[None]])

    return preprocess_with_row


def reading_rows(model: mf.nn.Module) -> mf.nn.Module:
    """``model`` with a conv1_1 that takes four channels (with_row's), of the same width and padding: a new
    He-normal layer, so its crops are as before."""
    first = model.conv1_1
    model.conv1_1 = backbones.conv(4, first.out_channels, first.kernel_size[0], padding=first.padding[0])
    return model


class Shortcut(mf.nn.Module):
    """A convolution and its batch norm with the input added back: bn(conv(x)) + x, (N, C, H, W) in and out, for a
    3x3 convolution of padding 1 whose input and output have the same C channels. The ReLU after it then sees
    x + f(x), as in a ResNet's block (He et al. 2016), where the trunk learns only what each convolution adds."""

    def __init__(self, conv: mf.nn.Module, bn: mf.nn.Module):
        super().__init__()
        self.conv, self.bn = conv, bn

    def forward(self, x):
        return self.bn(self.conv(x)) + x


class Identity(mf.nn.Module):
    """x unchanged: what a batch norm becomes once its Shortcut holds it."""

    def forward(self, x):
        return x


def with_shortcuts(model: mf.nn.Module) -> mf.nn.Module:
    """``model`` with a Shortcut around every 3x3 convolution of its trunk whose input and output widths agree
    (the convolutions after the first of each stage): conv holds the Shortcut, bn becomes Identity. Swapped
    after the net is built, as with_instance_norm is: padding 1 keeps every size, so the crops are as before."""
    for name in model.trunk_names:
        layer = getattr(model, name)
        if name.startswith("conv") and layer.in_channels == layer.out_channels:
            bn = "bn" + name.removeprefix("conv")
            setattr(model, name, Shortcut(layer, getattr(model, bn)))
            setattr(model, bn, Identity())
    return model


class DeeplySupervised8s(FCN8s):
    """FCN-8s that also scores its coarser stages on their own while it trains (deep supervision, Lee et al. 2015):
    the 1/32 scores and the fused 1/16 scores, each taken up to the image by the same fixed bilinear layers and crop
    as the 1/8 scores, are kept in ``aux`` for a loss of their own. They are the net's scores with the finer skips
    left out, as FCN-32s and FCN-16s would give them; the paper trains FCN-8s in stages, 32s then 16s then 8s, so
    that the coarse scores learn first. Scoring uses the full FCN-8s output alone. Fixed upsampling only.
    (N, 3, H, W) in, (N, n_class, H, W) out; in training, ``aux`` holds two more (N, n_class, H, W) score maps.
    ``decode`` is FCN8s's own, keeping the 1/32 and 1/16 scores on the way."""

    def __init__(self, n_class: int, backbone: str, learnable_upsampling: bool, pad: int, fc6_kernel: int):
        if learnable_upsampling:
            raise ValueError("DeeplySupervised8s takes the coarse scores up by the fixed bilinear layers only")
        super().__init__(n_class, backbone, False, np.float32, pad, fc6_kernel)
        self.aux = []

    def decode(self, taps: dict, size: tuple) -> mf.Tensor:
        up = lambda scores: self._crop(self.upscore8(self.upscore_pool4(scores)), size, "score")  # noqa: E731
        upscore2 = self.upscore2(self.score_fr(taps["top"]))  # 1/16
        fused16 = upscore2 + self._crop(self.score_pool4(taps["pool4"]), upscore2, "score_pool4c")
        upscore_pool4 = self.upscore_pool4(fused16)  # 1/8
        fused8 = upscore_pool4 + self._crop(self.score_pool3(taps["pool3"]), upscore_pool4, "score_pool3c")
        self.aux = [up(upscore2), up(fused16)] if self.training else []
        return self._crop(self.upscore8(fused8), size, "score")  # 1/1

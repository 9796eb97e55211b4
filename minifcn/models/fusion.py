"""RGB-D fusion (Sec. 5, NYUDv2): depth as a fourth input channel, or as a second stream.

The paper's NYUDv2 experiments (Table 4) compare ways of adding depth:

- early fusion (``add_input_channels``): one net whose first convolution
  reads four channels, RGB and depth;
- late fusion (``LateFusionFCN32s``): an RGB net and a depth net, each
  trained on its own first, joined where their coarse scores meet,

    score = rgb.score_fr(rgb trunk(RGB)) + depth.score_fr(depth trunk(D))     1/32
    out   = crop(upscore(score))                                             1/1

Upsampling is linear (and fixed bilinear in both), so at the start the fused
net's scores are exactly the sum of the two nets' scores; training then
tunes both streams together. ``StreamFCN`` trains one stream alone first.
The depth stream reads the depth map repeated on three channels (a
stand-in for the paper's HHA encoding: disparity, height, angle), so it is
an ordinary FCN-32s that can start from ImageNet weights too.

Input: one (N, 4, H, W) array, RGB then depth, as for early fusion.
"""

from __future__ import annotations

import copy

from .. import functional as F
from .. import nn
from ..autograd import Tensor
from ..backend import get_array_module
from .fcn import FCN32s


def add_input_channels(model: nn.Module, extra: int = 1) -> nn.Module:
    """Early fusion (Sec. 5, NYUDv2 "RGB-D"): the first convolution grows ``extra`` input channels, in place.

    Each new channel's filters start as the mean of the RGB filters, so the
    net first reads depth as it would read a grey image; with the
    new channels zero the net computes exactly what it did. For an FCN (or
    any model whose first layer is its first convolution). Returns the model.
    """
    if isinstance(extra, bool) or not isinstance(extra, int) or extra < 1:
        raise ValueError(f"add_input_channels: extra must be a positive integer, got {extra!r}")
    first = next((m for m in model._modules.values() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise TypeError(f"add_input_channels: {type(model).__name__} has no convolution to grow")
    w = first.weight
    xp = get_array_module(w.data)
    mean = w.data.mean(axis=1, keepdims=True)  # (OC, 1, KH, KW)
    grown = xp.concatenate([w.data] + [mean] * extra, axis=1)
    first.weight = nn.Parameter(grown, w.lr_mult, w.decay_mult)
    first.in_channels += extra
    return model


class StreamFCN(nn.Module):
    """One stream of a late-fusion net, trained alone on RGB-D input: the RGB channels, or depth (x3).

    The FCN is kept under the stream's name (``rgb.conv1_1.weight`` ...), the
    names it has inside ``LateFusionFCN32s``, so that two trained streams
    initialise a late-fusion net by name (``surgery.transplant``).
    """

    def __init__(self, net: FCN32s, stream: str):
        super().__init__()
        if stream not in ("rgb", "depth"):
            raise ValueError(f"StreamFCN: stream must be 'rgb' or 'depth', got {stream!r}")
        self.stream = stream
        setattr(self, stream, net)
        self.n_class, self.backbone, self.crop_offsets = net.n_class, net.backbone, net.crop_offsets

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 4:
            raise ValueError(f"StreamFCN: input must be (N, 4, H, W), RGB then depth; got shape {x.shape}")
        if self.stream == "rgb":
            return self.rgb(F.narrow(x, 1, 0, 3))
        depth = F.narrow(x, 1, 3, 1)
        return self.depth(F.concat([depth, depth, depth], axis=1))

    def extra_repr(self) -> str:
        return f"stream={self.stream!r}"


class LateFusionFCN32s(nn.Module):
    """Two FCN-32s streams (``rgb``, ``depth``) of one geometry; their score_fr outputs are summed, then upsampled."""

    def __init__(self, rgb: FCN32s, depth: FCN32s):
        super().__init__()
        for name, net in (("rgb", rgb), ("depth", depth)):
            if not isinstance(net, FCN32s):
                raise TypeError(f"LateFusionFCN32s: the {name} stream must be an FCN32s, got {type(net).__name__}")
        if (rgb.n_class, rgb.backbone) != (depth.n_class, depth.backbone):
            raise ValueError(
                f"LateFusionFCN32s: the streams differ: rgb has {rgb.n_class} classes on {rgb.backbone!r}, "
                f"depth {depth.n_class} on {depth.backbone!r}"
            )
        self.rgb, self.depth = copy.deepcopy(rgb), copy.deepcopy(depth)
        del self.depth.upscore  # one upsampling, the rgb stream's, for the summed scores
        self.n_class, self.backbone = rgb.n_class, rgb.backbone
        self.crop_offsets = rgb.crop_offsets

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 4:
            raise ValueError(f"LateFusionFCN32s: input must be (N, 4, H, W), RGB then depth; got shape {x.shape}")
        rgb, depth = F.narrow(x, 1, 0, 3), F.narrow(x, 1, 3, 1)
        depth3 = F.concat([depth, depth, depth], axis=1)
        score = self.rgb.score_fr(self.rgb.features(rgb)["top"])
        score = score + self.depth.score_fr(self.depth.features(depth3)["top"])
        return self.rgb._crop(self.rgb.upscore(score), x.shape[2:], "score")

    def extra_repr(self) -> str:
        return f"n_class={self.n_class}, backbone={self.backbone!r}"

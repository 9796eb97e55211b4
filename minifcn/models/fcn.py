"""The fully convolutional networks of Sec. 4: FCN-32s, FCN-16s, FCN-8s and the at-once FCN-8s.

All share one trunk (a classifier whose fc6 and fc7 became convolutions,
Sec. 3.1), scored by ``score_fr``: a 1x1 convolution to one channel per
class, at 1/32 of the input's resolution. They differ in how they get back
to full resolution (Sec. 4.2, Fig. 3):

    FCN-32s   upsample score_fr 32x                                 (upscore)
    FCN-16s   upsample 2x, add the scores of pool4, upsample 16x    (upscore2, score_pool4, upscore16)
    FCN-8s    ... then upsample 2x, add the scores of pool3, 8x     (upscore_pool4, score_pool3, upscore8)

Upsampling is a transposed convolution with kernel 2f and stride f,
initialised to bilinear interpolation (Sec. 3.3) and, as in the reference,
fixed unless ``learnable_upsampling=True``. Score layers start at zero, so a
fresh net predicts class 0 everywhere until it has learnt something.

Each map that is added to another, and the final scores, are cropped so that
unit i sits over the same input pixel; the offsets are derived from the
layers by ``minifcn.receptive`` (``model.crop_offsets``), never typed in.
Conv1_1's padding of 100 (``pad``) makes the trunk's maps big enough for any input
size, so the scores always come out (N, n_class, H, W) for an (N, 3, H, W) input.
Less padding is cheaper, and works for inputs of at least
``receptive.smallest_input(model)`` pixels; below 69 (VGG16's geometry) the
scores would not cover the image.

Most of that padding pays for fc6. Its 7x7 kernel (the grid the ImageNet
classifier saw) has no padding, so its first unit sits 3 cells of 32 pixels
in, and every score after it starts 96 pixels late. A trunk trained from
scratch may take a smaller fc6 (``fc6_kernel``): at 5x5 the scores start 64
pixels in, and a padding of 37 is the least (inputs of 57 pixels or more).
At 3x3 the skip maps fall a unit short for every other input size, and at
1x1 upscore2 starts before pool4's first unit; the model refuses to build
what its crops cannot align.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from .. import nn
from ..autograd import Tensor
from ..receptive import crop_offsets, smallest_input
from .backbones import FC6_KERNEL, ONLY_FCN32S, VGG16_GEOMETRY, conv, fcn_trunk


def zero_score_layer(in_channels: int, n_class: int, dtype: Any) -> nn.Conv2d:
    """A 1x1 scoring convolution, zero-initialised (the reference's choice, Sec. 4.2)."""
    layer = conv(in_channels, n_class, 1, dtype=dtype)
    layer.weight.data = np.zeros_like(layer.weight.data)
    return layer


def upsampling_layer(
    n_class: int, factor: int, learnable: bool, dtype: Any, kernel_size: int | None = None
) -> nn.ConvTranspose2d:
    """Upsampling by ``factor``: a transposed convolution (kernel 2f, stride f, no bias) set to bilinear
    interpolation of each class by itself (Sec. 3.3). Fixed (lr_mult 0, no gradient) unless learnable."""
    k = kernel_size or 2 * factor
    layer = nn.ConvTranspose2d(n_class, n_class, k, stride=factor, bias=False, dtype=dtype)
    layer.weight = nn.Parameter(nn.bilinear_upsampling_weight(n_class, k, dtype), lr_mult=1.0 if learnable else 0.0)
    layer.weight.requires_grad = learnable  # a fixed layer's weight gradient would be computed for nothing
    return layer


def trunk_taps(owner: nn.Module, trunk_names: list[str], taps: tuple[str, ...], x: Tensor) -> dict[str, Tensor]:
    """Run ``owner``'s trunk layers (``trunk_names``, in order) on x once, keeping the outputs named in ``taps``
    ('top' for the last layer)."""
    out, last = {}, trunk_names[-1]
    for name in trunk_names:
        x = getattr(owner, name)(x)
        if name in taps:
            out[name] = x
    out["top"] = x if last not in out else out[last]
    return {k: out[k] for k in taps}


class FCN(nn.Module):
    """What the four FCNs share: the trunk (conv1_1 ... fc7, or conv1 ... fc7 for AlexNet) and score_fr.

    Subclasses add their skip and upsampling layers, define ``paths()`` and
    ``CROPS`` for ``minifcn.receptive``, and finish with
    ``self.crop_offsets = crop_offsets(self)``.
    """

    CROPS: dict[str, tuple[str, str]] = {}
    BACKBONES: tuple[str, ...] = VGG16_GEOMETRY
    #: The trunk outputs the scoring layers read ("top": the trunk's last layer, fc7 or GoogLeNet's drop5).
    TAPS: tuple[str, ...] = ("top",)

    def __init__(
        self,
        n_class: int,
        backbone: str,
        learnable_upsampling: bool,
        dtype: Any,
        pad: int = 100,
        fc6_kernel: int | None = None,
    ):
        super().__init__()
        if isinstance(n_class, bool) or not isinstance(n_class, (int, np.integer)) or n_class < 1:
            raise ValueError(f"{type(self).__name__}: n_class must be a positive integer, got {n_class!r}")
        if backbone not in self.BACKBONES:
            raise ValueError(
                f"{type(self).__name__}: backbone {backbone!r} is not available; choose one of "
                f"{', '.join(repr(b) for b in self.BACKBONES)}"
                + (" (AlexNet and GoogLeNet have only FCN32s, as in the paper)" if backbone in ONLY_FCN32S else "")
            )
        if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or pad < 0:
            raise ValueError(f"{type(self).__name__}: pad must be a whole number >= 0, got {pad!r}")
        self.n_class, self.backbone, self.pad = int(n_class), backbone, int(pad)
        self.learnable_upsampling = learnable_upsampling
        layers, fc_width = fcn_trunk(backbone, dtype, self.pad, fc6_kernel)
        # fc6's size (None for GoogLeNet, which has none); the classifier's own unless fc6_kernel chose another
        self.fc6_kernel = layers["fc6"].kernel_size[0] if "fc6" in layers else None
        for name, layer in layers.items():
            setattr(self, name, layer)
        self.trunk_names = list(layers)
        self.score_fr = zero_score_layer(fc_width, self.n_class, dtype)  # 1/32

    def check_fc6(self) -> None:
        """An fc6 other than the classifier's must leave some input size from which every larger one fits
        (at 3x3, every other size leaves a skip map a unit short, however large). Subclasses call it last."""
        if self.fc6_kernel != FC6_KERNEL.get(self.backbone) and self.smallest_input() > 512:
            raise ValueError(
                f"{type(self).__name__} on {self.backbone}{self._fc6_note()}: its skip maps fall short of the "
                "upsampled scores for inputs of many sizes, however large; an fc6_kernel from 4 to 7 takes every size"
            )

    def trunk_to(self, name: str) -> list[str]:
        """The trunk's layer names from the input up to and including ``name`` (e.g. 'pool4')."""
        return self.trunk_names[: self.trunk_names.index(name) + 1]

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """Run the trunk once; return the outputs the scores read (``TAPS``), e.g. {'pool3', 'pool4', 'top'}."""
        return trunk_taps(self, self.trunk_names, self.TAPS, x)

    def forward(self, x: Tensor) -> Tensor:
        if not self.paper_geometry() and min(x.shape[2:]) < self.smallest_input():
            raise ValueError(
                f"{type(self).__name__} with pad {self.pad}{self._fc6_note()} needs inputs of at least "
                f"{self.smallest_input()} pixels a side, got {x.shape[2]}x{x.shape[3]} (the paper's pad 100 and "
                "fc6 take any size)"
            )
        return self.decode(self.features(x), x.shape[2:])

    def paper_geometry(self) -> bool:
        """Whether conv1 is padded by the paper's 100 and fc6 is the classifier's: then any input size works."""
        return self.pad == 100 and self.fc6_kernel == FC6_KERNEL.get(self.backbone)

    def smallest_input(self) -> int:
        """The least input size, in pixels a side, from which every size gives whole scores (1 at pad 100)."""
        if getattr(self, "_smallest", None) is None:
            self._smallest = 1 if self.paper_geometry() else smallest_input(self)
        return self._smallest

    def _fc6_note(self) -> str:
        own = FC6_KERNEL.get(self.backbone)
        return "" if self.fc6_kernel == own else f" and a {self.fc6_kernel}x{self.fc6_kernel} fc6"

    def decode(self, taps: dict[str, Tensor], size: tuple[int, int]) -> Tensor:  # pragma: no cover - abstract
        """Scores (N, n_class, H, W) for an input of ``size`` (H, W) from the trunk's ``taps``."""
        raise NotImplementedError

    def _crop(self, x: Tensor, like: Any, crop: str) -> Tensor:
        """Crop ``x`` to the spatial size of ``like`` (a Tensor or an (H, W) pair) at this crop's offset."""
        size = like.shape[2:] if isinstance(like, Tensor) else like
        return F.crop(x, size, self.crop_offsets[crop])

    def derive_crops(self) -> dict[str, int]:
        """The crop offsets (``receptive.crop_offsets``), or a ValueError that names the least padding that works.

        One pixel less of padding moves every map one pixel to the right: the skips' crops stay (both maps they
        align move), and the last crop, which aligns the scores with the image, shrinks by one. The paper's 100
        leaves it at 31 for VGG16; below 100 - 31 = 69 the scores would start after the image's first pixel.
        The least padding is found the same way, from a padding ample for any fc6.
        """
        try:
            return crop_offsets(self)
        except ValueError as e:
            first, pad = getattr(self, self.trunk_names[0]), self.pad
            ample = 100 + 32 * (self.fc6_kernel or 0)  # more than any fc6 eats: the last crop then has room
            first.padding = (ample, ample)
            try:
                least = ample - crop_offsets(self)["score"]
            except ValueError:  # no padding helps: fc6's size cannot align the skips (an fc6 of 1x1, say)
                raise ValueError(f"{type(self).__name__} on {self.backbone}{self._fc6_note()}: {e}") from None
            finally:
                first.padding = (pad, pad)
            raise ValueError(
                f"{type(self).__name__} on {self.backbone}{self._fc6_note()}: pad {pad} is too small: below {least}, "
                "the upsampled scores no longer cover the image's first pixels"
            ) from None

    def extra_repr(self) -> str:
        pad = "" if self.pad == 100 else f", pad={self.pad}"
        fc6 = "" if self.fc6_kernel == FC6_KERNEL.get(self.backbone) else f", fc6_kernel={self.fc6_kernel}"
        return f"n_class={self.n_class}, backbone={self.backbone!r}{pad}{fc6}, crop_offsets={self.crop_offsets}"


class FCN32s(FCN):
    """FCN-32s (Sec. 4.1): the trunk's 1/32 scores, upsampled 32x in one step."""

    BACKBONES = VGG16_GEOMETRY + ONLY_FCN32S
    CROPS = {"score": ("upscore", "input")}

    def __init__(
        self,
        n_class: int = 21,
        backbone: str = "vgg16",
        learnable_upsampling: bool = False,
        dtype: Any = np.float32,
        pad: int = 100,
        fc6_kernel: int | None = None,
    ):
        super().__init__(n_class, backbone, learnable_upsampling, dtype, pad, fc6_kernel)
        # AlexNet's reference net upsamples with a 63x63 kernel (stride 32); VGG16's with 64x64. The odd
        # kernel keeps whole-pixel alignment for trunks of odd kernels only; GoogLeNet is one of them.
        kernel = 64 if backbone in VGG16_GEOMETRY else 63
        self.upscore = upsampling_layer(self.n_class, 32, learnable_upsampling, dtype, kernel)  # 1/1
        self.crop_offsets = self.derive_crops()
        self.check_fc6()

    def paths(self) -> dict[str, list[str]]:
        return {"upscore": self.trunk_names + ["score_fr", "upscore"]}

    def decode(self, taps: dict[str, Tensor], size: tuple[int, int]) -> Tensor:
        fc7 = taps["top"]  # fc7 (after its ReLU and dropout; GoogLeNet: drop5), 1/32
        upscore = self.upscore(self.score_fr(fc7))  # 1/1
        return self._crop(upscore, size, "score")


class FCN16s(FCN):
    """FCN-16s (Sec. 4.2): 2x-upsampled 1/32 scores plus the scores of pool4, upsampled 16x."""

    CROPS = {"score_pool4c": ("score_pool4", "upscore2"), "score": ("upscore16", "input")}
    TAPS = ("pool4", "top")

    def __init__(
        self,
        n_class: int = 21,
        backbone: str = "vgg16",
        learnable_upsampling: bool = False,
        dtype: Any = np.float32,
        pad: int = 100,
        fc6_kernel: int | None = None,
    ):
        super().__init__(n_class, backbone, learnable_upsampling, dtype, pad, fc6_kernel)
        n = self.n_class
        self.upscore2 = upsampling_layer(n, 2, learnable_upsampling, dtype)  # 1/16
        self.score_pool4 = zero_score_layer(self.conv4_3.out_channels, n, dtype)  # 1/16
        self.upscore16 = upsampling_layer(n, 16, learnable_upsampling, dtype)  # 1/1
        self.crop_offsets = self.derive_crops()
        self.check_fc6()

    def paths(self) -> dict[str, list[str]]:
        upscore2 = self.trunk_names + ["score_fr", "upscore2"]
        return {
            "score_pool4": self.trunk_to("pool4") + ["score_pool4"],
            "upscore2": upscore2,
            "upscore16": upscore2 + ["upscore16"],
        }

    def decode(self, taps: dict[str, Tensor], size: tuple[int, int]) -> Tensor:
        pool4, fc7 = taps["pool4"], taps["top"]  # 1/16; fc7 (after its ReLU and dropout), 1/32
        upscore2 = self.upscore2(self.score_fr(fc7))  # 1/16
        score_pool4c = self._crop(self.score_pool4(pool4), upscore2, "score_pool4c")
        upscore16 = self.upscore16(upscore2 + score_pool4c)  # 1/1
        return self._crop(upscore16, size, "score")


class FCN8s(FCN):
    """FCN-8s (Sec. 4.2): FCN-16s's fused 1/16 scores, upsampled 2x, plus the scores of pool3, upsampled 8x.

    The reference trains it in stages: FCN-32s, then FCN-16s initialised from
    it, then FCN-8s from FCN-16s (``minifcn.surgery.stage``).
    """

    CROPS = {
        "score_pool4c": ("score_pool4", "upscore2"),
        "score_pool3c": ("score_pool3", "upscore_pool4"),
        "score": ("upscore8", "input"),
    }
    TAPS = ("pool3", "pool4", "top")

    def __init__(
        self,
        n_class: int = 21,
        backbone: str = "vgg16",
        learnable_upsampling: bool = False,
        dtype: Any = np.float32,
        pad: int = 100,
        fc6_kernel: int | None = None,
    ):
        super().__init__(n_class, backbone, learnable_upsampling, dtype, pad, fc6_kernel)
        n = self.n_class
        self.upscore2 = upsampling_layer(n, 2, learnable_upsampling, dtype)  # 1/16
        self.score_pool4 = zero_score_layer(self.conv4_3.out_channels, n, dtype)  # 1/16
        self.upscore_pool4 = upsampling_layer(n, 2, learnable_upsampling, dtype)  # 1/8
        self.score_pool3 = zero_score_layer(self.conv3_3.out_channels, n, dtype)  # 1/8
        self.upscore8 = upsampling_layer(n, 8, learnable_upsampling, dtype)  # 1/1
        self.crop_offsets = self.derive_crops()
        self.check_fc6()

    def paths(self) -> dict[str, list[str]]:
        upscore2 = self.trunk_names + ["score_fr", "upscore2"]
        upscore_pool4 = upscore2 + ["upscore_pool4"]
        return {
            "score_pool4": self.trunk_to("pool4") + self._scaled("scale_pool4") + ["score_pool4"],
            "upscore2": upscore2,
            "score_pool3": self.trunk_to("pool3") + self._scaled("scale_pool3") + ["score_pool3"],
            "upscore_pool4": upscore_pool4,
            "upscore8": upscore_pool4 + ["upscore8"],
        }

    def _scaled(self, name: str) -> list[str]:
        return [name] if hasattr(self, name) else []

    def _score_skip(self, pool: Tensor, which: str) -> Tensor:
        """score_pool4(pool4) or score_pool3(pool3), through scale_pool4 / scale_pool3 when the net has them."""
        scale = getattr(self, f"scale_{which}", None)
        return getattr(self, f"score_{which}")(pool if scale is None else scale(pool))

    def decode(self, taps: dict[str, Tensor], size: tuple[int, int]) -> Tensor:
        pool3, pool4, fc7 = taps["pool3"], taps["pool4"], taps["top"]  # 1/8, 1/16, and fc7 at 1/32
        upscore2 = self.upscore2(self.score_fr(fc7))  # 1/16
        score_pool4c = self._crop(self._score_skip(pool4, "pool4"), upscore2, "score_pool4c")
        upscore_pool4 = self.upscore_pool4(upscore2 + score_pool4c)  # 1/8
        score_pool3c = self._crop(self._score_skip(pool3, "pool3"), upscore_pool4, "score_pool3c")
        upscore8 = self.upscore8(upscore_pool4 + score_pool3c)  # 1/1
        return self._crop(upscore8, size, "score")


class FCN8sAtOnce(FCN8s):
    """FCN-8s trained in one stage from ImageNet weights (the PAMI paper's "at-once" net).

    Its only difference: pool4 is scaled by 0.01 and pool3 by 0.0001 before
    they are scored, which stands in for the staged training's slow start of
    the finer skips (the reference's Scale layers, fixed).
    """

    def __init__(
        self,
        n_class: int = 21,
        backbone: str = "vgg16",
        learnable_upsampling: bool = False,
        dtype: Any = np.float32,
        pad: int = 100,
        fc6_kernel: int | None = None,
    ):
        super().__init__(n_class, backbone, learnable_upsampling, dtype, pad, fc6_kernel)
        self.scale_pool4 = nn.Scale(0.01)
        self.scale_pool3 = nn.Scale(0.0001)
        self.crop_offsets = self.derive_crops()  # the same: scaling moves no unit


# The FCNs by their command-line names (``build_fcn``, ``MultiHeadFCN``, the checkpoints' "model").
MODELS = {"fcn32s": FCN32s, "fcn16s": FCN16s, "fcn8s": FCN8s, "fcn8s-atonce": FCN8sAtOnce}

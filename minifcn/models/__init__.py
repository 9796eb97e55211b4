"""The paper's networks: the ImageNet classifiers and the FCNs built on them.

from minifcn.models import VGG16, AlexNet, FCN32s, FCN16s, FCN8s, FCN8sAtOnce
model = FCN8s(n_class=21, backbone="vgg16")   # or "tiny"; FCN32s also takes "alexnet"
"""

from .backbones import BACKBONES, FC6_KERNEL, FROM_SCRATCH, ONLY_FCN32S, VGG16_GEOMETRY
from .classifiers import VGG16, AlexNet, Classifier
from .fcn import FCN, MODELS, FCN8s, FCN8sAtOnce, FCN16s, FCN32s
from .fusion import LateFusionFCN32s, StreamFCN, add_input_channels
from .multihead import MultiHeadFCN

__all__ = [
    "VGG16",
    "AlexNet",
    "Classifier",
    "FCN",
    "FCN32s",
    "FCN16s",
    "FCN8s",
    "FCN8sAtOnce",
    "BACKBONES",
    "FC6_KERNEL",
    "FROM_SCRATCH",
    "VGG16_GEOMETRY",
    "LateFusionFCN32s",
    "StreamFCN",
    "MultiHeadFCN",
    "add_input_channels",
]


def check_fcn(model: str, backbone: str, fusion: str | None = None) -> None:
    """ValueError unless ``build_fcn`` can build this net; the messages spell the arguments as the command line."""
    if model not in MODELS:
        raise ValueError(f"unknown --model {model!r}; choose one of {', '.join(MODELS)}")
    if backbone in ONLY_FCN32S and model != "fcn32s":
        raise ValueError(
            f"--backbone {backbone} exists for --model fcn32s only (as in the paper's Table 1), not {model}"
        )
    if fusion not in (None, "early", "late", "rgb", "depth"):
        raise ValueError(f"unknown --fusion {fusion!r}; choose 'early', 'late', 'rgb' or 'depth'")
    if fusion == "late" and model != "fcn32s":
        raise ValueError(f"--fusion late joins two FCN-32s streams (as the paper's NYUDv2 nets), not {model}")


def build_fcn(
    model: str,
    n_class: int,
    backbone: str = "vgg16",
    learnable_upsampling: bool = False,
    fusion: str | None = None,
    pad: int = 100,
    fc6_kernel: int | None = None,
) -> FCN:
    """An FCN by its command-line name: 'fcn32s', 'fcn16s', 'fcn8s' or 'fcn8s-atonce'.

    ``fusion`` builds an RGB-D net (Sec. 5): 'early' (a fourth input channel),
    'late' (two FCN-32s streams, ``LateFusionFCN32s``), or one stream alone,
    'rgb' or 'depth' (``StreamFCN``: trained alone, then joined by late fusion). ``pad``: conv1's padding
    (the paper's 100; see ``FCN``); ``fc6_kernel``: fc6's size (None: the classifier's, 7 for VGG16).
    """
    check_fcn(model, backbone, fusion)
    if fusion == "late":
        streams = (FCN32s(n_class, backbone, learnable_upsampling, pad=pad, fc6_kernel=fc6_kernel) for _ in range(2))
        return LateFusionFCN32s(*streams)
    net = MODELS[model](n_class, backbone, learnable_upsampling, pad=pad, fc6_kernel=fc6_kernel)
    if fusion in ("rgb", "depth"):
        return StreamFCN(net, fusion)
    return add_input_channels(net, 1) if fusion == "early" else net


__all__ += ["MODELS", "build_fcn", "check_fcn"]

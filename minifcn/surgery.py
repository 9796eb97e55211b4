"""Net surgery: from an ImageNet classifier to an FCN, and from one FCN stage to the next.

Sec. 3.1: a fully connected layer is a convolution whose kernel covers its
whole input, so a classifier becomes a fully convolutional net by reshaping
its weights: VGG16's fc6 (4096, 25088) is a 7x7 convolution (4096, 512, 7, 7)
over pool5, fc7 and fc8 are 1x1 convolutions. ``convolutionalize`` does
exactly that; on a larger image the result slides the classifier with a
stride of 32 pixels and shares the overlapping computation.

Sec. 4.2: the reference trains FCN-32s from the ImageNet classifier, then
FCN-16s from FCN-32s, then FCN-8s from FCN-16s, each time copying the
layers the nets share by name (``transplant``, ``stage``); the new skip layers
start at zero, so the finer net starts out from what the coarser one predicted.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from . import nn
from .backend import device_of, to_device
from .models import FCN, Classifier
from .models.backbones import linear
from .models.fcn import upsampling_layer, zero_score_layer
from .models.fusion import add_input_channels  # early fusion (Sec. 5); lives with late fusion
from .receptive import trace


def convolutionalize(classifier: Classifier) -> nn.Sequential:
    """A fully convolutional copy of ``classifier`` (Sec. 3.1): every fully connected layer becomes a convolution.

    The first one (fc6) becomes a convolution whose kernel is the grid it
    read (7x7 for VGG16), the others 1x1; the weights are the same numbers,
    reshaped. On a 224x224 input the output is (N, n_class, 1, 1) and equals
    the classifier's logits. On a larger input it is a score map whose entry
    (i, j) is the fully connected head applied to the 7x7 pool5 window at
    (i, j), which is the classifier applied to the 224x224 image window at
    (32i, 32j), except where the classifier's zero padding would have hidden
    pixels outside that window: VGG16 pads every 3x3 convolution by 1, so a
    window's border is computed from its real neighbours here and from zeros
    by the classifier. For a classifier without padding the two are identical.

    The classifier is left untouched; names are kept (``fc6.weight`` is now 4-D).
    """
    rows_h, rows_w = trace(classifier, classifier.input_size, 0), trace(classifier, classifier.input_size, 1)
    layers: dict[str, nn.Module] = {}
    channels, grid = 3, None
    for name, layer in classifier._modules.items():
        if isinstance(layer, nn.Flatten):
            last = next(reversed(rows_h))
            grid = (rows_h[last].length, rows_w[last].length)
            continue
        if isinstance(layer, nn.Linear):
            kernel = grid if grid is not None else (1, 1)
            layers[name] = _linear_as_conv(layer, channels, kernel, name)
            channels, grid = layer.out_features, None
            continue
        layers[name] = copy.deepcopy(layer)
        channels = getattr(layer, "out_channels", channels)
    return nn.Sequential(layers)


def _linear_as_conv(layer: nn.Linear, in_channels: int, kernel: tuple[int, int], name: str) -> nn.Conv2d:
    KH, KW = kernel
    if in_channels * KH * KW != layer.in_features:
        raise ValueError(
            f"convolutionalize: {name} takes {layer.in_features} features, but the grid before it is "
            f"{in_channels} x {KH} x {KW} = {in_channels * KH * KW}"
        )
    out = nn.Conv2d(in_channels, layer.out_features, kernel, dtype=layer.weight.dtype)
    w, b = layer.weight, layer.bias
    out.weight = nn.Parameter(w.data.reshape(layer.out_features, in_channels, KH, KW).copy(), w.lr_mult, w.decay_mult)
    out.bias = None if b is None else nn.Parameter(b.data.copy(), b.lr_mult, b.decay_mult)
    return out


@dataclass
class Transplanted:
    """What ``transplant`` did: names copied, copied with a new shape, left out, and left as they were."""

    copied: list[str] = field(default_factory=list)
    reshaped: list[str] = field(default_factory=list)  # copied too, e.g. fc6 (4096, 25088) -> (4096, 512, 7, 7)
    not_in_model: list[str] = field(default_factory=list)  # in the state only (e.g. the classifier's fc8)
    not_in_state: list[str] = field(default_factory=list)  # in the model only; they keep their initial values

    def __str__(self) -> str:
        return (
            f"copied {len(self.copied)} arrays ({len(self.reshaped)} reshaped: {self.reshaped}); "
            f"not in the model: {self.not_in_model}; kept as initialised: {self.not_in_state}"
        )


def transplant(state: Mapping[str, Any], model: nn.Module) -> Transplanted:
    """Copy each array of ``state`` into ``model``'s parameter (or buffer) of the same name (the reference's
    transplant).

    An array with the parameter's number of elements but another shape is
    reshaped (a fully connected layer's weight into a convolution's). Names
    that only one side has are reported, not errors: an ImageNet state has
    fc8, an FCN has score layers. An array whose element count differs is an
    error; all of them are listed, and then nothing is copied.
    """
    own: dict[str, Any] = dict(model.named_parameters())
    own.update(model.named_buffers())  # batch norm's running statistics travel with its weights
    report = Transplanted()
    problems = []
    for name, value in state.items():
        if name not in own:
            report.not_in_model.append(name)
        elif value.size != own[name].size:
            problems.append(f"{name}: state {tuple(value.shape)}, model {own[name].shape}")
    if problems:
        raise ValueError(f"transplant into {type(model).__name__}: sizes differ: " + "; ".join(problems))
    for name, p in own.items():
        if name not in state:
            report.not_in_state.append(name)
            continue
        value = state[name]
        shape = tuple(p.shape)
        if tuple(value.shape) != shape:
            report.reshaped.append(name)
        if isinstance(p, nn.Parameter):
            p.data = to_device(value, p.device).reshape(shape).astype(p.dtype, copy=True)
        else:  # a buffer
            model._set_buffer(name, to_device(value, device_of(p)).reshape(shape).astype(p.dtype, copy=True))
        report.copied.append(name)
    return report


_STAGES = {"FCN32s": 32, "FCN16s": 16, "FCN8s": 8, "FCN8sAtOnce": 8}


def stage(earlier: FCN, model: FCN) -> Transplanted:
    """Staged initialisation (Sec. 4.2): start ``model`` from a trained coarser FCN.

    FCN-16s from FCN-32s copies the trunk and score_fr; FCN-8s from FCN-16s
    also copies upscore2 and score_pool4. The layers that are new to the finer
    net keep their initial values: zero scores and bilinear upsampling. So
    the finer net starts from the coarser one's 1/32 scores with skips that add
    nothing; its first predictions differ from the coarser net's only in that
    it upsamples them in bilinear steps (2x then 16x) rather than in one
    (32x), which bends the interpolation at other points.
    """
    for m in (earlier, model):
        if type(m).__name__ not in _STAGES:
            raise TypeError(f"stage: expected FCN32s, FCN16s or FCN8s, got {type(m).__name__}")
    a, b = type(earlier).__name__, type(model).__name__
    if _STAGES[a] <= _STAGES[b]:
        raise ValueError(f"stage: {b} is not a finer stage than {a}; the order is FCN32s -> FCN16s -> FCN8s")
    if (earlier.backbone, earlier.n_class) != (model.backbone, model.n_class):
        raise ValueError(
            f"stage: {a} has backbone {earlier.backbone!r} and {earlier.n_class} classes, {b} has "
            f"{model.backbone!r} and {model.n_class}; they must match (see set_n_class)"
        )
    return transplant(earlier.state_dict(), model)


def set_n_class(model: nn.Module, n_class: int) -> nn.Module:
    """Give ``model`` ``n_class`` outputs, in place, keeping everything before the scores (fine-tuning).

    For an FCN: every score layer (score_fr, score_pool4, score_pool3) starts
    again at zero and every upsampling layer again as bilinear. For a
    classifier: a new fc8. The new layers go to the device the model is on.
    Returns the model.
    """
    if isinstance(n_class, bool) or not isinstance(n_class, int) or n_class < 1:
        raise ValueError(f"set_n_class: n_class must be a positive integer, got {n_class!r}")
    if not isinstance(model, (FCN, Classifier)):
        raise TypeError(f"set_n_class: expected an FCN or a classifier from minifcn.models, got {type(model).__name__}")
    device = device_of(next(iter(model.parameters())).data)
    if isinstance(model, FCN):
        for name, layer in list(model._modules.items()):
            dtype = layer.weight.dtype if hasattr(layer, "weight") else None
            if isinstance(layer, nn.ConvTranspose2d):
                up = upsampling_layer(n_class, layer.stride[0], model.learnable_upsampling, dtype, layer.kernel_size[0])
                setattr(model, name, up.to(device))
            elif name.startswith("score"):
                setattr(model, name, zero_score_layer(layer.in_channels, n_class, dtype).to(device))
    else:
        model.fc8 = linear(model.fc8.in_features, n_class, model.fc8.weight.dtype).to(device)
    model.n_class = n_class
    return model


__all__ = ["convolutionalize", "transplant", "Transplanted", "stage", "set_n_class", "add_input_channels"]


def randomise_scores(model: nn.Module, seed: int) -> None:
    """Score layers drawn from N(0, 1/fan_in) instead of zero (``--score-init normal``).

    The paper starts its score layers at zero because its trunk is already
    trained (ImageNet): the first gradients teach the scores to read good
    features. On a random trunk that is a trap: the gradient reaching the
    trunk is proportional to the score weights, so both start out near zero
    and learning crawls. Random scores let the whole net learn from step one.
    """
    generator = np.random.default_rng([seed, 1])
    for dotted, layer in model.named_modules():  # 'score_fr', or 'rgb.score_fr' in a late-fusion net
        if dotted.rsplit(".", 1)[-1].startswith("score"):
            w = layer.weight
            fan_in = int(np.prod(w.shape[1:]))
            drawn = (generator.standard_normal(w.shape) / np.sqrt(fan_in)).astype(w.dtype)
            w.data = to_device(drawn, device_of(w.data))  # on the device the net is on

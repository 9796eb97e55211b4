"""Two-headed (multi-task) FCNs (Sec. 5, SIFT Flow): one trunk, one set of scoring layers per task.

SIFT Flow labels every pixel twice, with one of 33 semantic classes (car,
sky, ...) and one of 3 geometric classes (horizontal, vertical, sky). The
paper trains one FCN-16s "with two prediction heads", each with its own
score and upsampling layers and its own loss, the two losses summed: "the
learned model performs as well on both tasks as two independently trained
models, while learning and inference are essentially as fast as each
independent model by itself."

``MultiHeadFCN("fcn16s", {"semantic": 33, "geometric": 3})`` builds it: the
trunk (conv1_1 ... fc7) once, then per head the scoring layers of the chosen
FCN (``semantic.score_fr``, ``semantic.upscore2`` ...). Its forward returns
a dict, head name -> scores (N, n_class_head, H, W).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import nn
from ..autograd import Tensor
from .fcn import FCN, MODELS, trunk_taps


class MultiHeadFCN(nn.Module):
    """One FCN trunk shared by several heads; ``heads`` maps a head's name to its number of classes."""

    def __init__(
        self,
        model: str = "fcn16s",
        heads: dict[str, int] | None = None,
        backbone: str = "vgg16",
        learnable_upsampling: bool = False,
        dtype: Any = np.float32,
        pad: int = 100,
        fc6_kernel: int | None = None,
    ):
        super().__init__()
        heads = {"semantic": 33, "geometric": 3} if heads is None else dict(heads)
        if model not in MODELS:
            raise ValueError(f"MultiHeadFCN: unknown model {model!r}; choose one of {', '.join(MODELS)}")
        if len(heads) < 1:
            raise ValueError("MultiHeadFCN: needs at least one head")
        nets: dict[str, FCN] = {
            h: MODELS[model](n, backbone, learnable_upsampling, dtype, pad, fc6_kernel) for h, n in heads.items()
        }
        first = next(iter(nets.values()))
        for h in heads:
            if not h.isidentifier() or h in first.trunk_names or hasattr(nn.Module, h):
                raise ValueError(f"MultiHeadFCN: head name {h!r} must be an identifier that names no trunk layer")
        self.trunk_names, self.taps = list(first.trunk_names), first.TAPS
        for name in self.trunk_names:
            setattr(self, name, getattr(first, name))
        for h, net in nets.items():
            for name in net.trunk_names:  # each head keeps only its own scoring and upsampling layers
                delattr(net, name)
            setattr(self, h, net)
        self.heads, self.model, self.backbone = heads, model, backbone
        self.n_class = next(iter(heads.values()))  # the first head's, for code that expects one number

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        taps = trunk_taps(self, self.trunk_names, self.taps, x)  # the trunk runs once for all heads
        return {h: getattr(self, h).decode(taps, x.shape[2:]) for h in self.heads}

    def extra_repr(self) -> str:
        return f"model={self.model!r}, heads={self.heads}, backbone={self.backbone!r}"

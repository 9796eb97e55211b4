"""GoogLeNet's inception module (Szegedy et al. 2015), a trunk of the FCN paper's Table 1.

Four branches read the same input and their outputs are concatenated along
the channels:

    1x1                       -> n1x1 channels
    1x1 (reduce) -> 3x3       -> n3x3
    1x1 (reduce) -> 5x5       -> n5x5
    3x3 max pool (stride 1)   -> 1x1 (pool_proj) -> n_pool

every convolution followed by a ReLU. Every branch keeps the spatial size and
is centred on its input pixel (paddings 1 and 2 for the 3x3 and 5x5), so for
receptive fields the module acts like one 5x5 convolution with padding 2:
its widest branch sets the field, and no branch moves the grid.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from .layers import Conv2d, MaxPool2d, ReLU
from .module import Module

#: (kind, kernel, stride, padding, dilation) for minifcn.receptive: the 5x5 branch's.
FIELD_GEOMETRY = ("conv", 5, 1, 2, 1)


class Inception(Module):
    """One inception module; ``widths`` = (n1x1, n3x3_reduce, n3x3, n5x5_reduce, n5x5, pool_proj).

    Shapes: (N, C, H, W) -> (N, n1x1 + n3x3 + n5x5 + pool_proj, H, W).
    ``conv(in, out, kernel, padding=...)`` builds each convolution (nn.Conv2d by default).
    """

    def __init__(
        self,
        in_channels: int,
        widths: tuple[int, int, int, int, int, int],
        dtype: Any = np.float32,
        conv: Callable[..., Conv2d] | None = None,
    ):
        super().__init__()
        n1, n3r, n3, n5r, n5, npool = widths
        make = conv or (lambda c_in, c_out, k, padding=0: Conv2d(c_in, c_out, k, padding=padding, dtype=dtype))
        self.in_channels, self.widths = in_channels, tuple(widths)
        self.out_channels = n1 + n3 + n5 + npool
        self.conv1x1 = make(in_channels, n1, 1)
        self.conv3x3_reduce = make(in_channels, n3r, 1)
        self.conv3x3 = make(n3r, n3, 3, padding=1)
        self.conv5x5_reduce = make(in_channels, n5r, 1)
        self.conv5x5 = make(n5r, n5, 5, padding=2)
        self.pool = MaxPool2d(3, stride=1, padding=1)
        self.pool_proj = make(in_channels, npool, 1)
        self.relu = ReLU(inplace=True)  # each follows a convolution whose output nothing else reads

    def forward(self, x: Tensor) -> Tensor:
        r = self.relu
        b1 = r(self.conv1x1(x))
        b3 = r(self.conv3x3(r(self.conv3x3_reduce(x))))
        b5 = r(self.conv5x5(r(self.conv5x5_reduce(x))))
        bp = r(self.pool_proj(self.pool(x)))
        return F.concat([b1, b3, b5, bp], axis=1)

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, widths={self.widths}"

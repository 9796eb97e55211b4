"""Parameter: a Tensor that a Module learns, with Caffe's per-parameter multipliers."""

from __future__ import annotations

from typing import Any

from ..autograd import Tensor


class Parameter(Tensor):
    """A learnable tensor (requires_grad=True), registered by the Module it is assigned to.

    ``lr_mult`` and ``decay_mult`` scale the optimiser's learning rate and
    weight decay for this tensor, as Caffe's ``param { lr_mult decay_mult }``:
    the FCNs learn biases at twice the rate without decay (2, 0) and keep the
    bilinear upsampling fixed (lr_mult 0).
    """

    def __init__(self, data: Any, lr_mult: float = 1.0, decay_mult: float = 1.0, name: str | None = None):
        super().__init__(data, requires_grad=True, name=name)
        self.lr_mult = float(lr_mult)
        self.decay_mult = float(decay_mult)

    def __repr__(self) -> str:
        mults = (
            ""
            if (self.lr_mult, self.decay_mult) == (1.0, 1.0)
            else f", lr_mult={self.lr_mult:g}, decay_mult={self.decay_mult:g}"
        )
        return f"Parameter(shape={self.shape}, dtype={self.dtype}, device={self.device!r}{mults})"

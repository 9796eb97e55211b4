"""Batch norm's running statistics recomputed over a set of batches, once training is over.

During training each BatchNorm2d keeps a running mean and variance, updated
after every batch with momentum 0.1: they describe mostly the last few dozen
batches, seen by weights that were still changing. SegNet (Badrinarayanan et
al., Sec. 4) recomputes them before testing: the final weights are run over
the training images, and each layer's statistics become the plain average of
its batch statistics. With momentum 1/(k+1) at batch k the running update

    running = (1 - m) * running + m * batch statistic

keeps exactly that average (batch 0 replaces what was there), as PyTorch's
``momentum=None`` does. The batches' variances are the unbiased ones that
training already records. Nothing learns: gradients are off and the weights
are left as they were.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..autograd import no_grad
from .layers import BatchNorm2d
from .module import Module


def recompute_batch_norm(model: Module, batches: Iterable[Any]) -> int:
    """Set every BatchNorm2d's running mean and variance of ``model`` to the average of its batch statistics over
    ``batches`` (inputs the model takes, e.g. Tensors (N, C, H, W)); returns how many batches were run. The model
    is left in the mode it was in; a model without batch norm is left as it was, without a forward pass."""
    layers = [m for _, m in model.named_modules() if isinstance(m, BatchNorm2d)]
    if not layers:
        return 0
    momenta, was_training = [layer.momentum for layer in layers], model.training
    model.train()
    count = 0
    try:
        with no_grad():
            for count, x in enumerate(batches, 1):
                for layer in layers:
                    layer.momentum = 1.0 / count
                model(x)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        model.train(was_training)
    if count == 0:
        raise ValueError("recompute_batch_norm: no batches given, so no statistics to average")
    return count

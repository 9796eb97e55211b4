"""Fast CPU route of the softmax loss: one array as large as the scores, reused in place.

The reference computes log p, then exp(log p), each a new array as large as
the scores; on a large image each new one costs its page faults. Here one
array holds z = scores - max, then exp z, then the softmax, in place, and
the true class's log p is its z less the log of the sum. The same values,
to rounding. Figures: docs/performance.md, "The loss".
"""

from __future__ import annotations

from typing import Any

import numpy as np


def forward(scores: Any, target: Any) -> tuple[Any, Any]:
    """(softmax over axis 1, log p of the ``target`` class per pixel). Shapes: scores (N, C, ...), target
    (N, 1, ...) -> (N, C, ...), (N, ...)."""
    probs = scores - scores.max(axis=1, keepdims=True)
    picked = np.take_along_axis(probs, target, axis=1)[:, 0]  # z of the true class
    np.exp(probs, out=probs)
    sums = probs.sum(axis=1, keepdims=True)
    picked -= np.log(sums[:, 0])  # log p(true class)
    probs /= sums
    return probs, picked

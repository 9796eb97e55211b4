"""Small helpers shared by the model tests."""

import numpy as np


def randomise(model, rng, scale=0.5):
    """Random non-zero float64 parameters, std scale/sqrt(fan_in), every one requiring grad.

    A fresh FCN's zero score layers would make every trunk gradient zero; small
    values keep activations away from the ReLUs' kinks for gradient checks.
    """
    for p in model.parameters():
        fan_in = p.data[0].size if p.ndim > 1 else 1
        p.data = rng.standard_normal(p.shape) * (scale / np.sqrt(fan_in))
        p.requires_grad = True

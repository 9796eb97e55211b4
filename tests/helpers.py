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


def run_trunk(model, x, end):
    """The output of ``model``'s trunk layer ``end`` (an FCN's ``trunk_names``, from the input on)."""
    for name in model.trunk_names[: model.trunk_names.index(end) + 1]:
        x = getattr(model, name)(x)
    return x


def missing_tool(why):
    """Skip a test that needs a tool this machine lacks; where CI is set, fail: CI must not shrink in silence."""
    import os

    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{why}, and CI is set: in CI every test runs (install it, or unset CI)", pytrace=False)
    pytest.skip(why)

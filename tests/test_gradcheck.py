"""gradcheck must catch a wrong backward, and say where."""

import numpy as np
import pytest

import minifcn as mf
from minifcn.autograd import Function
from minifcn.gradcheck import GradcheckError, gradcheck, numerical_grad


class Square(Function):
    def __init__(self, wrong_at=None, factor=1.01):
        self.wrong_at, self.factor = wrong_at, factor

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, gy):
        g = 2 * self.x * gy
        if self.wrong_at is not None:
            g = g.copy()
            g[self.wrong_at] *= self.factor  # e.g. a 1% error in one element
        return g


def test_numerical_grad_of_a_square_is_2x(rng):
    a = rng.standard_normal((3, 2))
    r = np.ones((3, 2))
    g = numerical_grad(lambda t: Square()(t), [mf.Tensor(a)], 0, grad_output=r)
    np.testing.assert_allclose(g, 2 * a, rtol=1e-8)


def test_gradcheck_passes_a_correct_backward(rng):
    assert gradcheck(lambda t: Square()(t), [mf.Tensor(rng.standard_normal((3, 4)), requires_grad=True)])


def test_gradcheck_names_the_wrong_element(rng):
    x = mf.Tensor(rng.standard_normal((3, 4)) + 3.0, requires_grad=True)
    with pytest.raises(GradcheckError, match=r"input 0 \(shape \(3, 4\)\) at element \(1, 2\): analytic .*, numerical"):
        gradcheck(lambda t: Square(wrong_at=(1, 2))(t), [x])


def test_random_directions_catch_a_wrong_element_that_sampling_misses(rng):
    x = mf.Tensor(rng.standard_normal((20, 20)) + 3.0, requires_grad=True)
    wrong = lambda t: Square(wrong_at=(7, 7), factor=1.5)(t)  # noqa: E731
    # Sampling 5 of 400 elements misses (7, 7) here; a random direction sees every element.
    assert gradcheck(wrong, [x], max_elements=5, seed=1)
    with pytest.raises(GradcheckError, match="random direction"):
        gradcheck(wrong, [x], max_elements=5, n_directions=3, seed=1)


def test_gradcheck_insists_on_float64():
    with pytest.raises(TypeError, match="input 0 is float32; gradients are checked in float64"):
        gradcheck(lambda t: t * 2.0, [mf.Tensor(np.ones(3, np.float32), requires_grad=True)])


def test_gradcheck_reports_a_missing_gradient(rng):
    x = mf.Tensor(rng.standard_normal(3), requires_grad=True)
    y = mf.Tensor(rng.standard_normal(3), requires_grad=True)
    with pytest.raises(GradcheckError, match=r"input 1 \(shape \(3,\)\) received no gradient"):
        gradcheck(lambda a, b: a * 2.0, [x, y])

"""SGD (Caffe's update) and Adam, with lr_mult and decay_mult, and their state for checkpoints."""

import numpy as np
import pytest

import minifcn as mf
from minifcn.nn import Parameter
from minifcn.optim import SGD, Adam


def test_sgd_matches_caffes_update_by_hand(rng):
    w0, b0 = rng.standard_normal(3), rng.standard_normal(2)
    w, b = Parameter(w0.copy()), Parameter(b0.copy(), lr_mult=2, decay_mult=0)
    fixed = Parameter(np.ones(2), lr_mult=0)
    opt = SGD([w, b, fixed], lr=0.1, momentum=0.9, weight_decay=0.01)
    vw, vb, ww, bb = np.zeros(3), np.zeros(2), w0.copy(), b0.copy()
    for step in range(3):
        gw, gb = rng.standard_normal(3), rng.standard_normal(2)
        w.grad, b.grad, fixed.grad = gw, gb, np.ones(2)
        opt.step()
        vw = 0.9 * vw + 0.1 * (gw + 0.01 * ww)
        ww = ww - vw
        vb = 0.9 * vb + 0.2 * gb  # lr_mult 2, no decay
        bb = bb - vb
        np.testing.assert_allclose(w.data, ww, rtol=1e-12)
        np.testing.assert_allclose(b.data, bb, rtol=1e-12)
    np.testing.assert_array_equal(fixed.data, np.ones(2))  # lr_mult 0: never moves


def test_state_dict_resumes_exactly(rng, tmp_path):
    def run(steps, resume_from=None):
        p = Parameter(np.arange(4.0))
        opt = SGD([p], lr=0.05, momentum=0.99)
        if resume_from is not None:
            p.data = resume_from[0].copy()
            opt.load_state_dict(resume_from[1])
        grads = np.random.default_rng(7).standard_normal((6, 4))
        start = 0 if resume_from is None else 3
        for g in grads[start : start + steps]:
            p.grad = g
            opt.step()
        return p, opt

    whole, _ = run(6)
    half, opt = run(3)
    mf.save(tmp_path / "opt.npz", opt.state_dict())
    resumed, _ = run(3, resume_from=(half.data, mf.load(tmp_path / "opt.npz")))
    np.testing.assert_array_equal(resumed.data, whole.data)


def test_sgd_rejects_bad_arguments():
    with pytest.raises(TypeError, match="parameter 0 is a Tensor"):
        SGD([mf.Tensor(np.zeros(2), requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="0 <= momentum < 1"):
        SGD([Parameter(np.zeros(2))], lr=0.1, momentum=1.5)


def test_load_state_dict_errors_name_the_problem():
    opt = SGD([Parameter(np.zeros(3))], lr=0.1)
    state = opt.state_dict()
    with pytest.raises(ValueError, match=r"velocity.0 has shape \(4,\), parameter \(3,\)"):
        opt.load_state_dict({**state, "velocity.0": np.zeros(4)})
    with pytest.raises(ValueError, match="no 'velocity.0'"):
        opt.load_state_dict({k: v for k, v in state.items() if k != "velocity.0"})
    with pytest.raises(ValueError, match=r"lacks \['lr'\]"):
        opt.load_state_dict({k: v for k, v in state.items() if k != "lr"})


def test_adam_matches_its_update_by_hand(rng):
    w0, b0 = rng.standard_normal(3), rng.standard_normal(2)
    w, b = Parameter(w0.copy()), Parameter(b0.copy(), lr_mult=2, decay_mult=0)
    fixed = Parameter(np.ones(2), lr_mult=0)
    opt = Adam([w, b, fixed], lr=0.1, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.01)
    expected = {"w": [w0.copy(), np.zeros(3), np.zeros(3)], "b": [b0.copy(), np.zeros(2), np.zeros(2)]}
    for t in range(1, 4):
        gw, gb = rng.standard_normal(3), rng.standard_normal(2)
        w.grad, b.grad, fixed.grad = gw, gb, np.ones(2)
        opt.step()
        for key, g, lr, decay in (("w", gw, 0.1, 0.01), ("b", gb, 0.2, 0.0)):
            value, m, v = expected[key]
            g = g + decay * value
            m[:] = 0.8 * m + 0.2 * g
            v[:] = 0.9 * v + 0.1 * g * g
            value -= lr * (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.9**t)) + 1e-6)
        np.testing.assert_allclose(w.data, expected["w"][0], rtol=1e-12)
        np.testing.assert_allclose(b.data, expected["b"][0], rtol=1e-12)
    np.testing.assert_array_equal(fixed.data, np.ones(2))


def test_adam_state_dict_resumes_exactly(rng):
    grads = [rng.standard_normal(4) for _ in range(6)]

    def run(resume_after=None):
        p = Parameter(np.arange(4.0))
        opt = Adam([p], lr=0.05, weight_decay=0.1)
        for i, g in enumerate(grads):
            if i == resume_after:
                state = {k: v.copy() for k, v in opt.state_dict().items()}
                p = Parameter(p.data.copy())
                opt = Adam([p], lr=1.0)  # the state brings lr, betas, decay and the step count back
                opt.load_state_dict(state)
            p.grad = g
            opt.step()
        return p.data

    np.testing.assert_array_equal(run(), run(resume_after=3))
    with pytest.raises(ValueError, match=r"lacks \['betas', 'eps', 't'\]; was it written by Adam.state_dict"):
        Adam([Parameter(np.zeros(2))]).load_state_dict(SGD([Parameter(np.zeros(2))], lr=0.1).state_dict())

"""SGD (Caffe's update) and Adam, with lr_mult and decay_mult, and their state for checkpoints."""

import numpy as np
import pytest

import minifcn as mf
from minifcn import optim
from minifcn.functional.cpu import threads
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


def _adam_by_hand(w, g, m, v, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps), m, v


@pytest.mark.parametrize("split", [False, True], ids=["one thread", "buffer split over threads and chunks"])
@pytest.mark.parametrize("optimiser", ["sgd", "adam"])
def test_one_flat_update_equals_the_update_of_each_parameter(optimiser, split, rng, monkeypatch):
    """The parameters of one kind are views of one buffer, updated at once: each gets its own update, by hand.
    On the CPU a large buffer is updated a range per thread, a chunk at a time: forced here, three ranges and
    chunks of 7 elements that cut parameters."""
    if split:
        monkeypatch.setattr(threads, "MIN_BYTES", 0)
        monkeypatch.setattr(threads, "count", lambda: 3)
        monkeypatch.setattr(optim, "UPDATE_CHUNK", 7)
    shapes = [(4, 3, 3, 3), (4,), (2, 4, 1, 1), (2,), (5,)]
    mults = [(1, 1), (2, 0), (1, 1), (2, 0), (0, 1)]  # weights, biases, and one fixed
    params = [Parameter(rng.standard_normal(s), lr_mult=lm, decay_mult=dm) for s, (lm, dm) in zip(shapes, mults)]
    expected = [p.data.copy() for p in params]
    opt = SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01) if optimiser == "sgd" else Adam(params, lr=0.01)
    buffers = {id(p.data.base) for p in params[:4]}
    assert len(buffers) == 2  # weights in one buffer, biases in another
    state = [[np.zeros(s), np.zeros(s)] for s in shapes]
    for t in range(1, 4):
        grads = [rng.standard_normal(s) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        for k, ((lm, dm), g) in enumerate(zip(mults, grads)):
            if lm == 0:
                continue
            if optimiser == "sgd":
                state[k][0] = 0.9 * state[k][0] + 0.1 * lm * (g + 0.01 * dm * expected[k])
                expected[k] = expected[k] - state[k][0]
            else:
                expected[k], state[k][0], state[k][1] = _adam_by_hand(expected[k], g, *state[k], t, 0.01 * lm)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.data, e, rtol=1e-12, atol=1e-15)
    names = ("velocity",) if optimiser == "sgd" else ("m", "v")
    saved = opt.state_dict()
    for k in range(4):  # checkpoints keep one entry per parameter, as before the buffers
        np.testing.assert_allclose(saved[f"{names[0]}.{k}"], state[k][0], rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(saved[f"{names[0]}.4"], np.zeros(5))


def test_a_parameter_without_a_gradient_keeps_its_value_and_state(rng):
    a, b = Parameter(rng.standard_normal(3)), Parameter(rng.standard_normal(2))
    opt = SGD([a, b], lr=0.1, momentum=0.9)
    a.grad, b.grad = np.ones(3), np.ones(2)
    opt.step()
    b_before, velocity_before = b.data.copy(), opt.state_dict()["velocity.1"]
    a_before = a.data.copy()
    a.grad, b.grad = np.ones(3), None
    opt.step()
    np.testing.assert_array_equal(b.data, b_before)
    np.testing.assert_array_equal(opt.state_dict()["velocity.1"], velocity_before)
    np.testing.assert_allclose(a.data, a_before - (0.9 * 0.1 + 0.1), rtol=1e-12)


def test_replaced_data_is_noticed_at_the_next_step(rng):
    """load_state_dict and Module.to give a parameter a new array: the optimiser updates that one."""
    p = Parameter(np.zeros(3))
    opt = SGD([p], lr=1.0, momentum=0.0)
    p.data = np.full(3, 5.0)  # as Module.load_state_dict does
    p.grad = np.ones(3)
    opt.step()
    np.testing.assert_array_equal(p.data, np.full(3, 4.0))
    p.data = np.zeros(4)
    p.grad = np.ones(4)
    with pytest.raises(ValueError, match=r"parameter 0 changed shape from \(3,\) to \(4,\)"):
        opt.step()


def test_learning_rate_warm_up_fixed_and_poly():
    from minifcn.optim import learning_rate

    assert learning_rate(0.01, 0, 100, "fixed", warmup=10) == pytest.approx(0.001)  # (t + 1) / warmup
    assert learning_rate(0.01, 9, 100, "fixed", warmup=10) == pytest.approx(0.01)
    assert learning_rate(0.01, 50, 100, "fixed") == 0.01
    assert learning_rate(0.01, 50, 100, "poly") == pytest.approx(0.01 * 0.5**0.9)
    assert learning_rate(0.01, 4, 100, "poly", warmup=10) == pytest.approx(0.01 * 0.96**0.9 * 0.5)
    with pytest.raises(ValueError, match="unknown learning-rate policy 'step'"):
        learning_rate(0.01, 0, 100, "step")

"""NumPy / CuPy selection, and the errors when CUDA is asked for but missing."""

import builtins

import numpy as np
import pytest

import minifcn as mf
from minifcn import backend


def test_numpy_arrays_use_numpy():
    assert backend.get_array_module(np.zeros(2), None, 3.0) is np
    assert backend.device_of(np.zeros(2)) == "cpu"
    a = np.zeros(2)
    assert backend.to_device(a, "cpu") is a


def test_unknown_device():
    with pytest.raises(ValueError, match=r"unknown device 'tpu'"):
        backend.to_device(np.zeros(2), "tpu")


@pytest.fixture
def no_cupy(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "cupy" or name.startswith("cupy."):
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_cuda_available_is_false_without_cupy(no_cupy):
    assert backend.cuda_available() is False


def test_asking_for_cuda_without_cupy_says_how_to_install(no_cupy):
    with pytest.raises(RuntimeError, match=r"CuPy is not installed.*pip install -e \"\.\[cuda12\]\""):
        backend.to_device(np.zeros(2), "cuda")
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        mf.Tensor(np.zeros(2)).to("cuda")


def test_cuda_without_a_device_says_so(monkeypatch):
    class FakeRuntime:
        @staticmethod
        def getDeviceCount():
            return 0

    class FakeCupy:
        class cuda:
            runtime = FakeRuntime

    monkeypatch.setattr(backend, "_import_cupy", lambda: FakeCupy)
    assert backend.cuda_available() is False
    with pytest.raises(RuntimeError, match="CuPy is installed but sees no CUDA device"):
        backend.to_device(np.zeros(2), "cuda")


@pytest.mark.gpu
def test_cuda_round_trip():
    a = np.arange(6.0).reshape(2, 3)
    t = mf.Tensor(a).to("cuda")
    assert t.device == "cuda"
    np.testing.assert_array_equal(t.numpy(), a)


def test_tf32_needs_cupy_to_turn_on(no_cupy):
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        backend.set_tf32(True)
    backend.set_tf32(False)  # turning it off is always fine
    assert backend.tf32_enabled() is False


def _fake_gpu(capability: str):
    """A stand-in for CuPy on one GPU of the given compute capability ('90' is 9.0)."""

    class FakeCupy:
        float32 = np.float32

        class cuda:
            class runtime:
                @staticmethod
                def getDeviceCount():
                    return 1

            class Device:
                compute_capability = capability

    return FakeCupy


def test_tf32_sets_cublas_compute_type_for_float32_only(monkeypatch):
    calls = []
    FakeCupy = _fake_gpu("90")

    class FakeLinalg:
        COMPUTE_TYPE_DEFAULT, COMPUTE_TYPE_TF32 = 1, 7

        @staticmethod
        def set_compute_type(dtype, compute_type):
            calls.append((np.dtype(dtype), compute_type))

    monkeypatch.setattr(backend, "_import_cupy", lambda: FakeCupy)
    monkeypatch.setattr(backend, "_cupy_linalg", lambda: FakeLinalg)
    backend.set_tf32(True)
    assert backend.tf32_enabled() and calls == [(np.dtype(np.float32), 7)]
    backend.set_tf32(False)
    assert not backend.tf32_enabled() and calls[-1] == (np.dtype(np.float32), 1)


def test_tf32_below_compute_capability_8_is_refused_and_stays_off(monkeypatch):
    """cuBLAS would only warn and keep float32 there; minifcn refuses, and tf32_enabled() says off."""
    from minifcn import cli

    calls = []

    class FakeLinalg:
        COMPUTE_TYPE_DEFAULT, COMPUTE_TYPE_TF32 = 1, 7

        @staticmethod
        def set_compute_type(dtype, compute_type):
            calls.append(compute_type)

    monkeypatch.setattr(backend, "_import_cupy", lambda: _fake_gpu("75"))
    monkeypatch.setattr(backend, "_cupy_linalg", lambda: FakeLinalg)
    with pytest.raises(RuntimeError, match=r"compute capability 8.0 or later; this one is 7.5"):
        backend.set_tf32(True)
    assert backend.tf32_enabled() is False and calls == []
    with pytest.raises(cli.UserError, match=r"^--tf32: TF32 needs a GPU of compute capability 8.0"):
        cli.pick_device("cuda", tf32=True)
    assert backend.tf32_enabled() is False
    assert cli.pick_device("cuda") == ("cuda", "asked for")  # without --tf32 the older GPU is fine


def test_cuda_n_names_the_current_gpu_or_is_refused(monkeypatch):
    """'cuda:N' is honoured for CuPy's current device (here a stand-in whose current device is 1) and refused for
    another, with the way to switch; malformed names are refused as unknown."""

    class FakeCupy:
        class cuda:
            class runtime:
                @staticmethod
                def getDevice():
                    return 1

    monkeypatch.setattr(backend, "_import_cupy", lambda: FakeCupy)
    assert backend.check_device("cuda:1") == backend.check_device("cuda") == "cuda"
    with pytest.raises(ValueError, match=r"'cuda:0'.*current GPU, 1; make GPU 0 the current one with cupy"):
        backend.check_device("cuda:0")
    for bad in ("cpu:0", "cuda:x", "cuda:", "gpu", 3):
        with pytest.raises(ValueError, match="unknown device"):
            backend.check_device(bad)
    with pytest.raises(ValueError, match=r"'cuda:2'"):
        mf.Tensor(np.zeros(2)).to("cuda:2")  # refused before anything moves


def test_tf32_on_the_cpu_is_a_note_not_an_error():
    from minifcn import cli

    assert cli.pick_device("cpu", tf32=True) == ("cpu", "asked for; --tf32 has no effect on the CPU")
    assert cli.pick_device("cpu") == ("cpu", "asked for")
    assert backend.tf32_enabled() is False

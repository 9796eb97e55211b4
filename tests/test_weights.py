"""minifcn.weights: PyTorch checkpoints (zip and legacy) read without torch, Caffe models, preprocessing.

The test files are written here, byte by byte, as PyTorch and Caffe lay them out.
"""

import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

import minifcn as mf
from minifcn import preprocessing, weights
from minifcn.models import VGG16

# ---------------------------------------------------------------------------
# A PyTorch state dict, pickled as torch.save does it (protocol 2 opcodes)


def _str(s):  # BINUNICODE
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(i):  # BININT
    return b"J" + struct.pack("<i", i)


def _tuple(items):  # MARK ... TUPLE
    return b"(" + b"".join(items) + b"t"


def _global(module, name):  # GLOBAL
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _tensor(key, numel, offset, size, stride, storage="FloatStorage", legacy=False):
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks); the storage is a
    persistent id ('storage', torch.FloatStorage, key, 'cpu', numel[, view])."""
    pid = [_str("storage"), _global("torch", storage), _str(key), _str("cpu"), _int(numel)] + ([b"N"] if legacy else [])
    args = [
        _tuple(pid) + b"Q",
        _int(offset),
        _tuple([_int(s) for s in size]),
        _tuple([_int(s) for s in stride]),
        b"\x89",
        _global("collections", "OrderedDict") + b")R",
    ]
    return _global("torch._utils", "_rebuild_tensor_v2") + _tuple(args) + b"R"


def _state_pickle(entries, legacy=False):
    """An OrderedDict name -> tensor, with torch's _metadata attribute set by BUILD."""
    out = b"\x80\x02" + _global("collections", "OrderedDict") + b")R"
    out += b"(" + b"".join(_str(name) + _tensor(*spec, legacy=legacy) for name, spec in entries) + b"u"
    out += b"}" + _str("_metadata") + b"}" + b"s" + b"b"  # BUILD {'_metadata': {}}
    return out + b"."


def _layout(state):
    """Each array in its own storage, contiguous: (name, (key, numel, offset, size, stride)), and the storages."""
    entries, storages = [], {}
    for i, (name, a) in enumerate(state.items()):
        a = np.ascontiguousarray(a, np.float32)
        stride = [int(s // 4) for s in a.strides]
        entries.append((name, (str(i), a.size, 0, a.shape, stride)))
        storages[str(i)] = a.reshape(-1)
    return entries, storages


def write_torch_zip(path, state, byteorder="little", entries=None, storages=None, compression=zipfile.ZIP_STORED):
    if entries is None:
        entries, storages = _layout(state)
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr("archive/data.pkl", _state_pickle(entries))
        z.writestr("archive/byteorder", byteorder)
        z.writestr("archive/version", "3\n")
        for key, flat in storages.items():
            z.writestr(f"archive/data/{key}", flat.astype(">f4" if byteorder == "big" else "<f4").tobytes())


def write_torch_legacy(path, state):
    """Pre-1.6 torch.save: magic, protocol, system info, the state, the storage keys, then each storage."""
    entries, storages = _layout(state)
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(_state_pickle(entries, legacy=True))
        pickle.dump(sorted(storages), f, protocol=2)
        for key in sorted(storages):
            f.write(struct.pack("<q", storages[key].size) + storages[key].astype("<f4").tobytes())


TORCHVISION_VGG16 = [
    "features.0",
    "features.2",
    "features.5",
    "features.7",
    "features.10",
    "features.12",
    "features.14",
    "features.17",
    "features.19",
    "features.21",
    "features.24",
    "features.26",
    "features.28",
    "classifier.0",
    "classifier.3",
    "classifier.6",
]


def _as_torchvision(model):
    ours = [name for name in model._modules if name.startswith(("conv", "fc"))]
    state = {}
    for tv, name in zip(TORCHVISION_VGG16, ours):
        state[f"{tv}.weight"] = getattr(model, name).weight.data
        state[f"{tv}.bias"] = getattr(model, name).bias.data
    return state


@pytest.mark.parametrize("writer", [write_torch_zip, write_torch_legacy])
def test_torchvision_vgg16_file_loads_into_our_vgg16(tmp_path, writer, rng):
    source = VGG16(n_class=6, backbone="tiny").eval()
    writer(tmp_path / "vgg16.pth", _as_torchvision(source))
    state = weights.read_torchvision_vgg16(tmp_path / "vgg16.pth")
    assert list(state)[:3] == ["conv1_1.weight", "conv1_1.bias", "conv1_2.weight"] and "fc8.bias" in state
    assert state.preprocessing is preprocessing.TORCHVISION
    target = VGG16(n_class=6, backbone="tiny").eval()
    target.load_state_dict(state)
    x = mf.Tensor(rng.standard_normal((1, 3, 224, 224)).astype(np.float32))
    np.testing.assert_array_equal(target(x).data, source(x).data)


def test_strided_views_offsets_and_big_endian_storages(tmp_path):
    flat = np.arange(20, dtype=np.float32)
    entries = [
        ("t", ("0", 20, 0, (4, 3), (1, 4))),  # a transposed (3, 4) block: column-major
        ("s", ("0", 20, 13, (2, 2), (5, 1))),  # a window into the same storage
        ("e", ("1", 0, 0, (0, 3), (3, 1))),
    ]
    storages = {"0": flat, "1": np.zeros(0, np.float32)}
    for order in ("little", "big"):
        write_torch_zip(tmp_path / "v.pth", None, order, entries, storages)
        state = weights.read_torch_state(tmp_path / "v.pth")
        np.testing.assert_array_equal(state["t"], flat[:12].reshape(3, 4).T)
        np.testing.assert_array_equal(state["s"], [[13, 14], [18, 19]])
        assert state["e"].shape == (0, 3) and state["t"].dtype == np.float32


def test_a_tensor_reading_past_its_storage_is_refused(tmp_path):
    write_torch_zip(
        tmp_path / "bad.pth", None, "little", [("t", ("0", 4, 2, (2, 2), (2, 1)))], {"0": np.zeros(4, np.float32)}
    )
    with pytest.raises(ValueError, match=r"size \(2, 2\), stride \(2, 1\) at offset 2 reads past its storage 0"):
        weights.read_torch_state(tmp_path / "bad.pth")


def test_a_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    evil = b"\x80\x02" + _global("os", "system") + _tuple([_str(f"touch {marker}")]) + b"R."
    with zipfile.ZipFile(tmp_path / "evil.pth", "w") as z:
        z.writestr("archive/data.pkl", evil)
    with pytest.raises(pickle.UnpicklingError, match=r"refused to load 'os.system'"):
        weights.read_torch_state(tmp_path / "evil.pth")
    assert not marker.exists()
    legacy = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {}):
        pickle.dump(header, legacy, protocol=2)
    (tmp_path / "evil_legacy.pth").write_bytes(
        legacy.getvalue() + _global("builtins", "eval") + _tuple([_str("1")]) + b"R."
    )
    with pytest.raises(pickle.UnpicklingError, match=r"refused to load 'builtins.eval'"):
        weights.read_torch_state(tmp_path / "evil_legacy.pth")


def test_other_files_get_clear_errors(tmp_path):
    (tmp_path / "notes.pth").write_text("hello")
    with pytest.raises(ValueError, match="neither a zip nor a legacy PyTorch checkpoint"):
        weights.read_torch_state(tmp_path / "notes.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth: no such file"):
        weights.read_torch_state(tmp_path / "missing.pth")
    write_torch_zip(
        tmp_path / "other.pth", {"features.0.weight": np.zeros((2, 3, 3, 3)), "bn.running_mean": np.zeros(2)}
    )
    with pytest.raises(
        ValueError, match=r"not torchvision's vgg16 state dict: missing \['features.0.bias'.*batch-norm"
    ):
        weights.read_torchvision_vgg16(tmp_path / "other.pth")


# ---------------------------------------------------------------------------
# A Caffe NetParameter in protobuf's wire format


def _varint(n):
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number, payload):  # wire type 2: length-delimited
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int_field(number, value):  # wire type 0: varint
    return _varint(number << 3) + _varint(value)


def _blob(a, legacy):
    a = np.asarray(a, np.float32)
    if legacy:  # num, channels, height, width; fc weights (1, 1, OUT, IN), biases (1, 1, 1, C)
        dims = (1,) * (4 - a.ndim) + a.shape
        head = b"".join(_int_field(i + 1, d) for i, d in enumerate(dims))
    else:
        head = _field(7, _field(1, b"".join(_varint(d) for d in a.shape)))
    return head + _field(5, a.astype("<f4").tobytes())


def write_caffemodel(path, layers, v1):
    """layers: (name, [arrays]); v1 writes the old 'layers' field (name 4, type 5, blobs 6) with 4-D blobs."""
    net = _field(1, b"VGG_ILSVRC_16_layers")
    for name, blobs in layers:
        if v1:
            body = _field(4, name.encode()) + _int_field(5, 4) + b"".join(_field(6, _blob(b, True)) for b in blobs)
            net += _field(2, body)
        else:
            body = (
                _field(1, name.encode())
                + _field(2, b"Convolution")
                + b"".join(_field(7, _blob(b, False)) for b in blobs)
            )
            net += _field(100, body)
    path.write_bytes(net)


@pytest.mark.parametrize("v1", [True, False])
def test_caffemodel_loads_into_our_vgg16(tmp_path, v1, rng):
    source = VGG16(n_class=5, backbone="tiny").eval()
    layers = [("data", [])] + [
        (name, [m.weight.data, m.bias.data]) for name, m in source._modules.items() if name.startswith(("conv", "fc"))
    ]
    write_caffemodel(tmp_path / "vgg.caffemodel", layers + [("relu1_1", [])], v1)
    state = weights.read_caffemodel(tmp_path / "vgg.caffemodel")
    assert state.preprocessing is preprocessing.CAFFE and len(state) == 32
    assert state["fc6.weight"].shape == (256, 128 * 49) and state["conv1_1.bias"].shape == (4,)
    target = VGG16(n_class=5, backbone="tiny").eval()
    target.load_state_dict(state)
    x = mf.Tensor(rng.standard_normal((1, 3, 224, 224)).astype(np.float32))
    np.testing.assert_array_equal(target(x).data, source(x).data)
    assert weights.read(tmp_path / "vgg.caffemodel").keys() == state.keys()


def test_broken_caffemodels_are_named(tmp_path):
    (tmp_path / "cut.caffemodel").write_bytes(_field(100, _field(1, b"conv1_1") + _field(7, b"\x2a\x08abc"))[:-2])
    with pytest.raises(ValueError, match=r"cut.caffemodel: not a valid .caffemodel: field \d+ runs past the end"):
        weights.read_caffemodel(tmp_path / "cut.caffemodel")
    (tmp_path / "empty.caffemodel").write_bytes(_field(1, b"net"))
    with pytest.raises(ValueError, match="no layer with weights found"):
        weights.read_caffemodel(tmp_path / "empty.caffemodel")
    (tmp_path / "odd.caffemodel").write_bytes(
        _field(100, _field(1, b"c") + _field(7, _field(7, _field(1, b"\x02\x02")) + _field(5, b"\0" * 12)))
    )
    with pytest.raises(ValueError, match=r"a blob of shape \(2, 2\) holds 3 values"):
        weights.read_caffemodel(tmp_path / "odd.caffemodel")


# ---------------------------------------------------------------------------
# Preprocessing


def test_preprocessing_caffe_and_torchvision(rng):
    image = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    x = preprocessing.CAFFE(image)
    assert x.shape == (3, 5, 7) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], image[:, :, 2] - 104.00699, atol=1e-4)  # blue first
    np.testing.assert_allclose(x[2], image[:, :, 0] - 122.67892, atol=1e-4)
    y = preprocessing.TORCHVISION(image)
    np.testing.assert_allclose(y[1], (image[:, :, 1] / 255.0 - 0.456) / 0.224, rtol=1e-5)
    for p in (preprocessing.CAFFE, preprocessing.TORCHVISION):
        np.testing.assert_array_equal(p.invert(p(image)), image)
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) RGB image, got shape \(5, 7\)"):
        preprocessing.CAFFE(image[:, :, 0])


# ---------------------------------------------------------------------------
# Files the tools themselves wrote (tests/data/make_reader_fixtures.py says how): read without torch or protobuf

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.mark.parametrize("filename", ["torch_zip.pth", "torch_legacy.pth"])
def test_files_torch_saved_read_without_torch(filename):
    """torch.save's own bytes, zip and legacy: views at an offset, a transposed view, float64, a 0-d int64."""
    expected = np.load(os.path.join(DATA, "reader_fixtures.npz"))
    state = weights.read_torch_state(os.path.join(DATA, filename))
    wanted = {k.split("/", 1)[1]: expected[k] for k in expected.files if k.startswith("torch/")}
    assert list(state) == list(wanted)
    for name, array in wanted.items():
        assert state[name].dtype == array.dtype and state[name].shape == array.shape, name
        np.testing.assert_array_equal(state[name], array, err_msg=name)


@pytest.mark.parametrize("filename", ["caffe_v2.caffemodel", "caffe_v1.caffemodel"])
def test_caffemodels_protobuf_encoded_read_without_protobuf(filename):
    """NetParameters encoded by Google's protobuf from Caffe's caffe.proto: today's layer layout and V1's."""
    expected = np.load(os.path.join(DATA, "reader_fixtures.npz"))
    state = weights.read_caffemodel(os.path.join(DATA, filename))
    wanted = {k.split("/", 1)[1]: expected[k] for k in expected.files if k.startswith("caffe/")}
    assert sorted(state) == sorted(wanted)  # relu1_1 has no blobs: no entry
    for name, array in wanted.items():
        assert state[name].shape == array.shape, (name, state[name].shape)
        np.testing.assert_array_equal(state[name], array, err_msg=name)


def test_damaged_torch_files_name_what_is_wrong(tmp_path):
    entries = [("t", ("0", 4, 0, (4,), (1,)))]
    with zipfile.ZipFile(tmp_path / "nostorage.pth", "w") as z:
        z.writestr("archive/data.pkl", _state_pickle(entries))
    with pytest.raises(ValueError, match=r"storage 0 is missing \(archive/data/0\)"):
        weights.read_torch_state(tmp_path / "nostorage.pth")
    write_torch_zip(tmp_path / "short.pth", None, "little", entries, {"0": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="storage 0 holds 3 elements, the pickle says 4"):
        weights.read_torch_state(tmp_path / "short.pth")
    with zipfile.ZipFile(tmp_path / "two.pth", "w") as z:
        z.writestr("a/data.pkl", b"")
        z.writestr("b/data.pkl", b"")
    with pytest.raises(ValueError, match="holds one data.pkl, found 2"):
        weights.read_torch_state(tmp_path / "two.pth")
    with zipfile.ZipFile(tmp_path / "list.pth", "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps([1, 2], protocol=2))
    with pytest.raises(ValueError, match="expected a state dict"):
        weights.read_torch_state(tmp_path / "list.pth")
    with zipfile.ZipFile(tmp_path / "pid.pth", "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02" + _tuple([_str("module"), _str("x")]) + b"Q.")
    with pytest.raises(pickle.UnpicklingError, match="unexpected persistent id"):
        weights.read_torch_state(tmp_path / "pid.pth")
    write_torch_legacy(tmp_path / "legacy.pth", {"w": np.arange(6, dtype=np.float32)})
    data = (tmp_path / "legacy.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[:-8])
    with pytest.raises(ValueError, match="the file ends inside storage 0"):
        weights.read_torch_state(tmp_path / "cut.pth")


def test_caffe_wire_format_errors():
    with pytest.raises(ValueError, match="varint runs past the end"):
        list(weights._fields(memoryview(b"\x80")))
    with pytest.raises(ValueError, match="unsupported protobuf wire type 3"):
        list(weights._fields(memoryview(_varint(1 << 3 | 3))))

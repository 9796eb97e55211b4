"""ImageNet weights for the classifiers, read without PyTorch or Caffe (Sec. 4: the FCNs start from them).

Two sources, each with the preprocessing its weights expect (``minifcn.preprocessing``):

- torchvision's ``vgg16-397923af.pth`` (and ``alexnet-owt-7be5be79.pth``):
  a PyTorch checkpoint. Current PyTorch writes a zip holding ``data.pkl``
  (a pickle of the state dict, whose tensors point at storages by key) and
  one raw little-endian file per storage under ``data/``; older PyTorch
  wrote the same pickle and the storages one after another in a single
  stream. Both are read. A pickle can run any code it names, so the
  unpickler here accepts only the few names that rebuild tensors and
  dicts, and refuses anything else before it runs.
- Caffe's ``VGG_ILSVRC_16_layers.caffemodel``, which the paper started
  from: a NetParameter protobuf message, decoded by the small wire-format
  reader below (no protobuf package needed).

Each reader returns an :class:`ImportedState`, a dict name -> float32 array
with the names of ``models.VGG16`` (``conv1_1.weight`` ... ``fc8.bias``), ready
for ``VGG16.load_state_dict`` or ``surgery.transplant`` into an FCN.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

from .preprocessing import CAFFE, TORCHVISION, Preprocessing

PathLike = str | os.PathLike


class ImportedState(dict):
    """Name -> array, plus where the weights came from and the preprocessing they expect."""

    def __init__(self, arrays: dict, source: str, preprocessing: Preprocessing):
        super().__init__(arrays)
        self.source = source
        self.preprocessing = preprocessing


# ---------------------------------------------------------------------------
# PyTorch checkpoints, read by a restricted unpickler

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a pre-zip PyTorch file


class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends: only its element type matters."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize

    def from_bytes(self, raw: bytes, byteorder: str) -> np.ndarray:
        if self.dtype == "bfloat16":  # the high half of a float32
            bits = np.frombuffer(raw, dtype=byteorder + "u2").astype(np.uint32) << 16
            return bits.view(np.float32)
        dtype = (
            np.dtype(self.dtype).newbyteorder(byteorder) if np.dtype(self.dtype).itemsize > 1 else np.dtype(self.dtype)
        )
        return np.frombuffer(raw, dtype=dtype)


class _Storage:
    """One storage (a flat array) of the checkpoint, read when a tensor first needs it."""

    def __init__(self, kind: _StorageType, key: str, numel: int, load: Callable[["_Storage"], np.ndarray]):
        self.kind, self.key, self.numel, self._load = kind, key, numel, load
        self._array: np.ndarray | None = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = self._load(self)
            if self._array.size < self.numel:
                raise ValueError(f"storage {self.key} holds {self._array.size} elements, the pickle says {self.numel}")
        return self._array


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple, stride: tuple, *_ignored: Any) -> np.ndarray:
    """torch._utils._rebuild_tensor(_v2): a strided view of a storage, copied into a NumPy array."""
    flat = storage.array
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if any(s == 0 for s in size):
        return np.zeros(size, dtype=flat.dtype)
    last = offset + sum((n - 1) * st for n, st in zip(size, stride))
    if offset < 0 or min(stride, default=0) < 0 or last >= flat.size:
        raise ValueError(
            f"a tensor of size {size}, stride {stride} at offset {offset} reads past its storage "
            f"{storage.key} of {flat.size} elements"
        )
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size, strides=[st * flat.itemsize for st in stride])
    return np.array(view, dtype=flat.dtype.newbyteorder("="))


def _rebuild_parameter(data: np.ndarray, *_ignored: Any) -> np.ndarray:
    return data


_REBUILD_TENSOR = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")}


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds a PyTorch state dict and refuses every other global a pickle names.

    ``deferred``: keep tensors as :class:`_Deferred` until their storages are
    read (the legacy format stores them after the pickle).
    """

    def __init__(self, file: Any, path: str, storages: dict, load_storage: Callable, deferred: bool = False):
        super().__init__(file)
        self.path, self.storages, self.load_storage = path, storages, load_storage
        self.rebuild = _Deferred if deferred else _rebuild_tensor

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _REBUILD_TENSOR:
            return self.rebuild
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"{self.path}: refused to load '{module}.{name}': a PyTorch file can carry code, and this reader "
            "only rebuilds tensors and dicts (is it a plain state_dict, saved with torch.save(model.state_dict())?)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"{self.path}: unexpected persistent id {pid!r}")
        kind, key, numel = pid[1], str(pid[2]), int(pid[4])
        if key not in self.storages:
            self.storages[key] = _Storage(kind, key, numel, self.load_storage)
        root = self.storages[key]
        view = pid[5] if len(pid) > 5 else None  # legacy files: (view key, offset, size) inside the root storage
        if view is None:
            return root
        _, offset, size = view
        return _Storage(
            kind, f"{key}[{offset}:]", int(size), lambda _: root.array[int(offset) : int(offset) + int(size)]
        )


class _Deferred:
    """A tensor whose storage has not been read yet (legacy format)."""

    def __init__(self, *args: Any):
        self.args = args


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _Deferred):
        return _rebuild_tensor(*obj.args)
    if isinstance(obj, dict):
        return OrderedDict((k, _materialise(v)) for k, v in obj.items())
    return obj


def read_torch_state(path: PathLike) -> dict[str, np.ndarray]:
    """The state dict in a PyTorch checkpoint (zip or pre-zip format) as name -> NumPy array, without torch."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    state = _read_torch_zip(path) if zipfile.is_zipfile(path) else _read_torch_legacy(path)
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), found {type(state).__name__}")
    return dict(state)


def _read_torch_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise ValueError(f"{path}: a PyTorch zip checkpoint holds one data.pkl, found {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "<"
        if prefix + "byteorder" in names and archive.read(prefix + "byteorder").strip() == b"big":
            byteorder = ">"

        def load(storage: _Storage) -> np.ndarray:
            member = f"{prefix}data/{storage.key}"
            if member not in names:
                raise ValueError(f"{path}: storage {storage.key} is missing ({member})")
            return storage.kind.from_bytes(archive.read(member), byteorder)

        storages: dict[str, _Storage] = {}
        return _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), path, storages, load).load()


def _read_torch_legacy(path: str) -> Any:
    """Pre-1.6 format: pickles of the magic number, the protocol version, system info and the object,
    then a pickle of the storage keys, then each storage as an int64 element count and its raw bytes."""
    storages: dict[str, _Storage] = {}

    def missing(storage: _Storage) -> np.ndarray:
        raise ValueError(f"{path}: storage {storage.key} is missing")

    with open(path, "rb") as f:

        def next_pickle() -> Any:
            return _RestrictedUnpickler(f, path, storages, missing, deferred=True).load()

        try:
            magic = next_pickle()
        except (pickle.UnpicklingError, EOFError, ValueError, IndexError, TypeError) as e:
            raise ValueError(f"{path}: neither a zip nor a legacy PyTorch checkpoint ({e})") from None
        if magic != _LEGACY_MAGIC:
            raise ValueError(f"{path}: not a PyTorch checkpoint (not a zip, and no legacy magic number)")
        next_pickle()  # the format's protocol version (1001); nothing depends on it
        sys_info = next_pickle()
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise ValueError(f"{path}: a big-endian legacy checkpoint; re-save it with a current PyTorch")
        state, keys = next_pickle(), next_pickle()
        for key in keys:
            header = f.read(8)
            storage = storages.get(str(key))
            if len(header) < 8 or storage is None:
                raise ValueError(f"{path}: the file ends before storage {key}, or names a storage no tensor uses")
            (numel,) = struct.unpack("<q", header)
            raw = f.read(numel * storage.kind.itemsize)
            if len(raw) < numel * storage.kind.itemsize:
                raise ValueError(f"{path}: the file ends inside storage {key}")
            storage._array = storage.kind.from_bytes(raw, "<")
    return _materialise(state)


# torchvision's layer indices -> the reference names
_TORCHVISION_NAMES = {
    "vgg16": {
        "features.0": "conv1_1",
        "features.2": "conv1_2",
        "features.5": "conv2_1",
        "features.7": "conv2_2",
        "features.10": "conv3_1",
        "features.12": "conv3_2",
        "features.14": "conv3_3",
        "features.17": "conv4_1",
        "features.19": "conv4_2",
        "features.21": "conv4_3",
        "features.24": "conv5_1",
        "features.26": "conv5_2",
        "features.28": "conv5_3",
        "classifier.0": "fc6",
        "classifier.3": "fc7",
        "classifier.6": "fc8",
    },
    "alexnet": {
        "features.0": "conv1",
        "features.3": "conv2",
        "features.6": "conv3",
        "features.8": "conv4",
        "features.10": "conv5",
        "classifier.1": "fc6",
        "classifier.4": "fc7",
        "classifier.6": "fc8",
    },
}


def _from_torchvision(state: dict, path: PathLike, arch: str) -> ImportedState:
    names = _TORCHVISION_NAMES[arch]
    expected = {f"{tv}.{kind}": f"{ours}.{kind}" for tv, ours in names.items() for kind in ("weight", "bias")}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(
            f"{os.fspath(path)}: not torchvision's {arch} state dict: missing {missing}, unexpected {unexpected[:8]}"
            + (
                " (batch-norm weights: the _bn variants are not the paper's nets)"
                if any("running" in k for k in unexpected)
                else ""
            )
        )
    arrays = {ours: np.ascontiguousarray(state[tv], dtype=np.float32) for tv, ours in expected.items()}
    return ImportedState(arrays, f"torchvision {arch} ({os.fspath(path)})", TORCHVISION)


def read_torchvision_vgg16(path: PathLike, state: dict | None = None) -> ImportedState:
    """A state dict for ``models.VGG16`` from torchvision's ``vgg16-397923af.pth``; expects TORCHVISION preprocessing.

    ``state``: the file's arrays when already read (``read_torch_state``).
    """
    return _from_torchvision(read_torch_state(path) if state is None else state, path, "vgg16")


def read_torchvision_alexnet(path: PathLike, state: dict | None = None) -> ImportedState:
    """A state dict for ``models.AlexNet`` (FCN-AlexNet's trunk, Table 1) from torchvision's
    ``alexnet-owt-7be5be79.pth``; ``state`` as for ``read_torchvision_vgg16``."""
    return _from_torchvision(read_torch_state(path) if state is None else state, path, "alexnet")


# ---------------------------------------------------------------------------
# Caffe: the protobuf wire format, just enough of it
#
# A message is a sequence of fields, each a key varint (field number << 3 |
# wire type) and a value: 0 a varint, 1 eight bytes, 2 a length varint and
# that many bytes (strings, sub-messages, packed arrays), 5 four bytes.
# The caffe.proto fields read here:
#   NetParameter       layer = 100 (LayerParameter), layers = 2 (V1LayerParameter, older files)
#   LayerParameter     name = 1, blobs = 7          V1LayerParameter   name = 4, blobs = 6
#   BlobProto          num, channels, height, width = 1..4 (old 4-D shape), data = 5 (float),
#                      shape = 7 (BlobShape: dim = 1, int64), double_data = 8


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("a varint runs past the end of the message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview):
    """Yield (field number, wire type, value) for each field of a message; value is an int or a memoryview."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} (field {number})")
        if pos > len(buf):
            raise ValueError(f"field {number} runs past the end of the message")
        yield number, wire, value


def _blob(buf: memoryview) -> np.ndarray:
    legacy = {1: 1, 2: 1, 3: 1, 4: 1}  # num, channels, height, width (default 0 in Caffe, 1 here when absent)
    dims: list[int] = []
    chunks: list[np.ndarray] = []
    for number, wire, value in _fields(buf):
        if number in legacy and wire == 0:
            legacy[number] = value
        elif number == 7 and wire == 2:
            for n, w, v in _fields(value):
                if n == 1 and w == 2:  # packed
                    p = 0
                    while p < len(v):
                        d, p = _varint(v, p)
                        dims.append(d)
                elif n == 1 and w == 0:
                    dims.append(v)
        elif number == 5:
            chunks.append(np.frombuffer(value, dtype="<f4"))  # packed (wire 2) or one float (wire 5)
        elif number == 8:
            chunks.append(np.frombuffer(value, dtype="<f8").astype(np.float32))
    data = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if not dims:
        dims = [legacy[1], legacy[2], legacy[3], legacy[4]]
        while len(dims) > 1 and dims[0] == 1 and (legacy[1], legacy[2]) == (1, 1):
            dims.pop(0)  # old-style fc weights (1, 1, OUT, IN) and biases (1, 1, 1, C)
    if int(np.prod(dims)) != data.size:
        raise ValueError(f"a blob of shape {tuple(dims)} holds {data.size} values")
    return data.astype(np.float32).reshape(dims)


def read_caffemodel(path: PathLike) -> ImportedState:
    """Every learnt blob of a ``.caffemodel``: ``<layer>.weight`` (blob 0) and ``<layer>.bias`` (blob 1).

    For Caffe's VGG_ILSVRC_16_layers.caffemodel the names are those of
    ``models.VGG16``. Its conv1_1 reads BGR, so the state expects CAFFE
    preprocessing (BGR minus the mean pixel). bvlc_googlenet's names are
    translated to the googlenet backbone's (``caffe_googlenet_name``).
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        buf = memoryview(f.read())
    arrays: dict[str, np.ndarray] = {}
    try:
        for number, wire, layer in _fields(buf):
            if wire != 2 or number not in (100, 2):
                continue
            name_field, blob_field = (1, 7) if number == 100 else (4, 6)
            name, blobs = None, []
            for n, w, v in _fields(layer):
                if n == name_field and w == 2:
                    name = bytes(v).decode("utf-8")
                elif n == blob_field and w == 2:
                    blobs.append(_blob(v))
            if blobs and name is not None:
                for kind, blob in zip(("weight", "bias"), blobs):
                    arrays[f"{caffe_googlenet_name(name)}.{kind}"] = blob
    except ValueError as e:
        raise ValueError(f"{path}: not a valid .caffemodel: {e}") from None
    if not arrays:
        raise ValueError(f"{path}: no layer with weights found; is it a .caffemodel (binary NetParameter)?")
    return ImportedState(arrays, f"caffe ({path})", CAFFE)


_GOOGLENET_STEM = {"conv1/7x7_s2": "conv1", "conv2/3x3_reduce": "conv2_reduce", "conv2/3x3": "conv2"}
_INCEPTION_BRANCHES = {
    "1x1": "conv1x1",
    "3x3_reduce": "conv3x3_reduce",
    "3x3": "conv3x3",
    "5x5_reduce": "conv5x5_reduce",
    "5x5": "conv5x5",
    "pool_proj": "pool_proj",
}


def caffe_googlenet_name(name: str) -> str:
    """A layer name of Caffe's bvlc_googlenet in minifcn's spelling; other names are returned as they are.

    'conv1/7x7_s2' -> 'conv1', 'conv2/3x3' -> 'conv2', 'inception_4a/5x5_reduce' ->
    'inception_4a.conv5x5_reduce'. The classifiers (loss1/..., loss3/classifier)
    keep their names, which no FCN has: as with VGG16's fc8, they are left out.
    """
    if name in _GOOGLENET_STEM:
        return _GOOGLENET_STEM[name]
    module, _, branch = name.partition("/")
    if module.startswith("inception_") and branch in _INCEPTION_BRANCHES:
        return f"{module}.{_INCEPTION_BRANCHES[branch]}"
    return name


def read(path: PathLike) -> ImportedState:
    """ImageNet weights by file type: a ``.caffemodel``, or a torchvision VGG16 / AlexNet ``.pth``."""
    path = os.fspath(path)
    if path.endswith(".caffemodel"):
        return read_caffemodel(path)
    state = read_torch_state(path)
    alexnet = "features.3.weight" in state and "features.2.weight" not in state  # its second conv is features.3
    return (read_torchvision_alexnet if alexnet else read_torchvision_vgg16)(path, state)

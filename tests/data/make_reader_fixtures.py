"""Write the weight-reader fixtures of tests/test_weights.py with the tools that define the formats.

    pip install torch protobuf grpcio-tools
    python tests/data/make_reader_fixtures.py path/to/caffe.proto

caffe.proto is Caffe's own (src/caffe/proto/caffe.proto of github.com/BVLC/caffe). Writes, next to this
script:

- ``torch_zip.pth`` and ``torch_legacy.pth``: ``torch.save`` of one small state dict, in the zip format and
  in the legacy one. Two of its tensors are views of one storage (one at an offset, one transposed), so a
  reader must honour offsets and strides; dtypes float32, float64 and int64 (a 0-d counter).
- ``caffe_v2.caffemodel`` and ``caffe_v1.caffemodel``: a ``NetParameter`` encoded by Google's protobuf
  from caffe.proto, its layers in today's layout (``layer``, blobs with a ``shape``) and in the V1 one
  (``layers``, blobs with the old num/channels/height/width, fully connected weights as (1, 1, OUT, IN)).
- ``reader_fixtures.npz``: what each file must read as, written by NumPy; and PyTorch's local response
  normalisation of one input (``lrn/x``, ``lrn/y``), which GoogLeNet's LRN layers are checked against.

The files committed were made with torch 2.13.0, protobuf 7.36.2 (protoc from grpcio-tools) and caffe.proto
of BVLC/caffe at commit 9b89154.
"""

import importlib
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def torch_files(expected):
    import torch

    storage = torch.arange(30, dtype=torch.float32).reshape(5, 6)
    state = {
        "dense.weight": torch.linspace(-1, 1, 12, dtype=torch.float32).reshape(2, 3, 1, 2),
        "offset_view": storage[1:4, 2:5],  # starts 8 values into the shared storage
        "transposed_view": storage.t(),  # the same storage, strides (1, 6)
        "double": torch.tensor([[0.1, -2.5], [3.0, 1e-300]], dtype=torch.float64),
        "num_batches_tracked": torch.tensor(7),  # int64, no dimensions
    }
    torch.save(state, os.path.join(HERE, "torch_zip.pth"))
    torch.save(state, os.path.join(HERE, "torch_legacy.pth"), _use_new_zipfile_serialization=False)
    for name, tensor in state.items():
        expected[f"torch/{name}"] = tensor.numpy().copy()
    x = np.random.default_rng(0).standard_normal((2, 9, 4, 5)) * 4
    expected["lrn/x"] = x
    expected["lrn/y"] = torch.nn.functional.local_response_norm(torch.from_numpy(x), 5, 0.3, 0.75, 2.0).numpy()


def caffe_files(caffe_proto, expected):
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{os.path.dirname(caffe_proto)}", f"--python_out={out}"]
            + [os.path.abspath(caffe_proto)],
            check=True,
        )
        sys.path.insert(0, out)
        caffe_pb2 = importlib.import_module("caffe_pb2")

    rng = np.random.default_rng(0)
    conv_w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    conv_b = rng.standard_normal(4).astype(np.float32)
    fc_w = rng.standard_normal((5, 6)).astype(np.float32)
    fc_b = rng.standard_normal(5).astype(np.float32)

    net = caffe_pb2.NetParameter(name="fixture")
    for name, kind, blobs in (("conv1_1", "Convolution", (conv_w, conv_b)), ("relu1_1", "ReLU", ()),
                              ("fc6", "InnerProduct", (fc_w, fc_b))):  # fmt: skip
        layer = net.layer.add(name=name, type=kind)
        for array in blobs:
            blob = layer.blobs.add()
            blob.shape.dim.extend(array.shape)
            blob.data.extend(array.ravel().tolist())
    with open(os.path.join(HERE, "caffe_v2.caffemodel"), "wb") as f:
        f.write(net.SerializeToString())

    old = caffe_pb2.NetParameter(name="fixture")
    V1 = caffe_pb2.V1LayerParameter
    for name, kind, blobs in (("conv1_1", V1.CONVOLUTION, ((conv_w, conv_w.shape), (conv_b, (1, 1, 1, 4)))),
                              ("relu1_1", V1.RELU, ()),
                              ("fc6", V1.INNER_PRODUCT, ((fc_w, (1, 1, 5, 6)), (fc_b, (1, 1, 1, 5))))):  # fmt: skip
        layer = old.layers.add(name=name, type=kind)
        for array, (num, channels, height, width) in blobs:
            layer.blobs.add(num=num, channels=channels, height=height, width=width, data=array.ravel().tolist())
    with open(os.path.join(HERE, "caffe_v1.caffemodel"), "wb") as f:
        f.write(old.SerializeToString())

    for name, array in (("conv1_1.weight", conv_w), ("conv1_1.bias", conv_b), ("fc6.weight", fc_w),
                        ("fc6.bias", fc_b)):  # fmt: skip
        expected[f"caffe/{name}"] = array


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    expected = {}
    torch_files(expected)
    caffe_files(sys.argv[1], expected)
    np.savez(os.path.join(HERE, "reader_fixtures.npz"), **expected)
    print("wrote", ", ".join(sorted(f for f in os.listdir(HERE) if f.endswith((".pth", ".caffemodel", ".npz")))))

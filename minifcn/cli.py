"""What the three command lines share: error reporting, device choice, datasets by name.

User mistakes (a missing folder, a bad flag value, a checkpoint of another
network) end the command with one line on stderr,

    minifcn: error: <what was wrong, naming the file, flag or value>

and a non-zero exit status, without a traceback; ``--debug`` shows the
traceback instead. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from . import __version__
from .backend import cuda_available, set_tf32
from .checkpoint import heads_of, load_checkpoint, model_from_checkpoint, model_from_weights, preprocessing_of
from .data import (
    CamVid,
    DataError,
    FolderSegmentation,
    RGBDFolder,
    RGBDShapes,
    SBDSegmentation,
    Shapes,
    SIFTFlow,
    TwoLabelShapes,
    VOCSegmentation,
)
from .fetch import CATALOGUE, MIRROR_VARIABLE, download
from .heads import Heads
from .models import BACKBONES, FC6_KERNEL, MODELS, VGG16_GEOMETRY
from .preprocessing import Preprocessing

DATASETS = ("shapes", "voc", "sbd", "camvid", "folder", "rgbd-shapes", "rgbd-folder", "two-label-shapes", "siftflow")
GENERATED_DATASETS = ("shapes", "rgbd-shapes", "two-label-shapes")  # drawn by minifcn at --image-size
GENERATED_SIZE = 64  # their size when neither the preset nor --image-size sets one
RGBD_DATASETS = ("rgbd-shapes", "rgbd-folder")  # images with a depth channel (Sec. 5, NYUDv2)
MULTITASK_DATASETS = ("two-label-shapes", "siftflow")  # two labels per pixel (Sec. 5, SIFT Flow)


class UserError(Exception):
    """A mistake in how a command was called; its message is shown as ``minifcn: error: ...``."""


# Errors that the package raises for bad input; shown as one line.
USER_ERRORS = (UserError, DataError, ValueError, FileNotFoundError, PermissionError, IsADirectoryError)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its usage errors in the ``minifcn: error: ...`` form, and ``--version`` on every command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--version", action="version", version=f"minifcn {__version__}")

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"minifcn: error: {message} (see python -m {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def one_line(message: str) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a command's ``main(argv)``, turning user errors into one line and an exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        return main(args) or 0
    except SystemExit as e:  # argparse: --help, or a usage error already printed
        return e.code if isinstance(e.code, int) else 1
    except USER_ERRORS as e:
        if "--debug" in args:
            raise
        print(f"minifcn: error: {one_line(str(e))}", file=sys.stderr)
        return 1


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    """--device and --tf32, the same in train, evaluate and predict."""
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: the GPU when CuPy sees one")
    p.add_argument(
        "--tf32",
        action="store_true",
        default=None,
        help="let the GPU's float32 matrix products use TF32 tensor cores: faster, ~1e-3 less exact "
        "(off by default; no effect on the CPU)",
    )


def pick_device(name: str, tf32: bool = False) -> tuple[str, str]:
    """(device, why): 'auto' is 'cuda' when CuPy sees a GPU, else 'cpu'. Sets TF32 for the GPU as asked."""
    device, why = _device(name)
    if device == "cuda":
        try:
            set_tf32(bool(tf32))
        except RuntimeError as e:  # a GPU older than compute capability 8.0 has no TF32
            raise UserError(f"--tf32: {e}") from None
        return device, why + (", TF32 matrix products" if tf32 else "")
    return device, why + ("; --tf32 has no effect on the CPU" if tf32 else "")


def _device(name: str) -> tuple[str, str]:
    if name == "cpu":
        return "cpu", "asked for"
    if name == "cuda":
        if not cuda_available():
            raise UserError(
                "--device cuda: no CUDA device is usable (CuPy is not installed or sees no GPU); "
                "install minifcn with the cuda12 or cuda13 extra, or use --device cpu"
            )
        return "cuda", "asked for"
    if name == "auto":
        return ("cuda", "a GPU was found") if cuda_available() else ("cpu", "no GPU found")
    raise UserError(f"--device must be auto, cpu or cuda, not {name!r}")


def add_data_arguments(p: argparse.ArgumentParser, dataset_default: Any = "shapes") -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        choices=DATASETS,
        default=dataset_default,
        help="shapes (built in, the default), voc, sbd, camvid, folder; RGB-D: rgbd-shapes (built in), rgbd-folder; "
        "two labels per pixel: two-label-shapes (built in), siftflow",
    )
    g.add_argument(
        "--data-root",
        help="voc: the devkit (holding VOC2012/); sbd: the folder holding dataset/; "
        "camvid: the folder holding train.txt, val.txt (and test.txt) as the SegNet tutorial has it; "
        "folder: a folder holding <split>/images and <split>/labels; rgbd-folder: also <split>/depth "
        "(16-bit PNGs in millimetres)",
    )
    g.add_argument("--voc-root", help="sbd's seg11valid split: the VOC2011 devkit")
    g.add_argument("--n-class", type=int, help="number of classes (folder datasets; checked against the others)")
    g.add_argument(
        "--image-size",
        type=int,
        default=None,
        help=f"shapes and the other generated datasets: the image size (the quick preset's 128; {GENERATED_SIZE} "
        "where a preset sets none)",
    )


def add_geometry_arguments(p: argparse.ArgumentParser) -> None:
    """--pad and --fc6-kernel: how much the trunk pads its input, and the size of fc6 that the padding pays for."""
    p.add_argument(
        "--pad",
        type=int,
        help="conv1's padding: the paper's 100 lets an input of any size through; less is cheaper and needs larger "
        "inputs (VGG16's geometry: at least 69, for inputs of 57 pixels or more). quick 21, for its FCN-8s and fc6; "
        "with another --model or --backbone, 100",
    )
    p.add_argument(
        "--fc6-kernel",
        type=int,
        help="fc6's size: the classifier's 7x7 (6x6 AlexNet) by default; a trunk trained from scratch may take less, "
        "and less padding with it (FCN-8s: 5 from pad 37, 4 from pad 21). quick 4, for its own net",
    )


def check_input_size(
    dataset: str,
    image_size: int | None,
    model: str,
    backbone: str,
    pad: int,
    crop_size: int | None = None,
    fc6_kernel: int | None = None,
) -> None:
    """--image-size, --crop-size, --pad and --fc6-kernel: a generated dataset's images at least Shapes.MIN_SIZE, a
    padding that keeps the scores over the image, and images and crops at least as large as that padding needs
    (``receptive.smallest_input``)."""
    generated = dataset in GENERATED_DATASETS and image_size is not None
    if generated and image_size < Shapes.MIN_SIZE:
        raise UserError(
            f"--image-size must be at least {Shapes.MIN_SIZE} (the smallest image the {dataset} dataset draws), "
            f"got {image_size}"
        )
    if pad < 0:
        raise UserError(f"--pad must be >= 0, got {pad}")
    twin = "tiny" if backbone in VGG16_GEOMETRY else backbone  # the same geometry, cheap to build
    fc6 = "" if fc6_kernel in (None, FC6_KERNEL.get(backbone)) else f" --fc6-kernel {fc6_kernel}"
    if pad == 100 and not fc6:
        return  # the paper's padding and fc6 take inputs of any size
    try:
        smallest = MODELS[model](2, twin, pad=pad, fc6_kernel=fc6_kernel).smallest_input()
    except ValueError as e:
        raise UserError(f"--pad {pad}{fc6}: {e}") from None
    for flag, size in (("--image-size", image_size if generated else None), ("--crop-size", crop_size)):
        if size is not None and size < smallest:
            raise UserError(
                f"{flag} {size} is too small for --pad {pad}{fc6}: {model} then needs at least {smallest} "
                "pixels (or --pad 100 with fc6's own size, which takes any size)"
            )


def build_dataset(
    kind: str,
    split: str,
    root: str | None = None,
    n_class: int | None = None,
    voc_root: str | None = None,
    image_size: int | None = None,
) -> Any:
    """A dataset by its command-line name and split; errors name the flag or the file."""
    if kind in GENERATED_DATASETS:
        if root is not None:
            raise UserError(f"--data-root is for datasets read from files; the {kind} dataset is generated, not read")
        generated = {"shapes": Shapes, "rgbd-shapes": RGBDShapes, "two-label-shapes": TwoLabelShapes}[kind]
        data = generated(split, size=image_size or GENERATED_SIZE)
    elif root is None:
        raise UserError(f"--dataset {kind} needs --data-root (the folder that holds it)")
    elif kind == "voc":
        data = VOCSegmentation(root, split)
    elif kind == "sbd":
        data = SBDSegmentation(root, split, voc_root=voc_root)
    elif kind == "camvid":
        data = CamVid(root, split)
    elif kind == "folder":
        if n_class is None:
            raise UserError("--dataset folder needs --n-class (how many classes its labels use)")
        data = FolderSegmentation(os.path.join(root, split, "images"), os.path.join(root, split, "labels"), n_class)
    elif kind == "siftflow":  # its splits are trainval and test; train and val stand for them
        data = SIFTFlow(root, {"train": "trainval", "val": "test"}.get(split, split))
    elif kind == "rgbd-folder":
        if n_class is None:
            raise UserError("--dataset rgbd-folder needs --n-class (how many classes its labels use)")
        folder = lambda what: os.path.join(root, split, what)  # noqa: E731
        data = RGBDFolder(folder("images"), folder("depth"), folder("labels"), n_class)
    else:
        raise UserError(f"unknown dataset {kind!r}; choose one of {', '.join(DATASETS)}")
    if n_class is not None and n_class != data.n_class:
        raise UserError(f"--n-class {n_class} does not match the {kind} dataset, which has {data.n_class} classes")
    return data


def say(line: str) -> None:
    """One line of progress on stdout, shown at once."""
    print(line, flush=True)


@dataclass
class Net:
    """A trained net for evaluate and predict: the model, its preprocessing and heads, what its file says."""

    model: Any
    preprocessing: Preprocessing
    heads: Heads
    meta: dict[str, Any]  # model, backbone; a checkpoint's also dataset, image_size, palette, fusion, ...
    source: str  # the file it came from


def add_net_arguments(p: argparse.ArgumentParser) -> None:
    """--checkpoint (minifcn's), or --weights with --model and --backbone (a complete FCN in another format)."""
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", help="a checkpoint written by python -m minifcn.train")
    g.add_argument(
        "--weights",
        help="a complete trained FCN in another format, e.g. the reference's fcn8s-heavy-pascal.caffemodel "
        "(with --model; Caffe's preprocessing)",
    )
    p.add_argument("--model", choices=MODELS, help="--weights: the network the file holds")
    p.add_argument("--backbone", choices=BACKBONES, default="vgg16", help="--weights: its trunk (default vgg16)")


def load_net(args: argparse.Namespace) -> Net:
    """The net that ``--checkpoint`` or ``--weights`` names (not yet on a device)."""
    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        return Net(model_from_checkpoint(ckpt), preprocessing_of(ckpt), heads_of(ckpt), ckpt.meta, args.checkpoint)
    if args.model is None:
        raise UserError(f"--weights {args.weights!r} needs --model ({', '.join(MODELS)}): which FCN the file holds")
    model, preprocessing = model_from_weights(args.weights, args.model, args.backbone)
    heads = Heads.single([str(c) for c in range(model.n_class)])  # class names: the dataset's, when scored
    return Net(model, preprocessing, heads, {"model": args.model, "backbone": args.backbone}, args.weights)


# What --download fetches for a dataset (the catalogue's names, minifcn.download), and where its loader then reads.
DATASET_DOWNLOADS = {
    "voc": ("voc2012", "VOCdevkit"),
    "sbd": ("sbd", "benchmark_RELEASE"),
    "camvid": ("camvid", "CamVid"),
}


def add_download_argument(p: argparse.ArgumentParser, init: bool = True) -> None:
    """--download DIR; ``init``: the command also takes --init, which may then name a catalogue entry."""
    weights = " and --init need" if init else " needs"
    p.add_argument(
        "--download",
        metavar="DIR",
        help=f"fetch what --dataset voc, sbd (and seg11valid) or camvid{weights} into DIR "
        "(python -m minifcn.download), then read them there"
        + ("; --init may name a catalogue entry, e.g. vgg16-caffe" if init else ""),
    )


def fetch_needed(
    root: str, dataset: str, splits: Sequence[str], data_root: str | None, voc_root: str | None, init: str | None
) -> tuple[str | None, str | None, str | None]:
    """--download ROOT: fetch the dataset's files and ``init`` (a catalogue name) into ROOT, each verified; returns
    (data_root, voc_root, init) pointing at what landed, where not given already."""
    mirror = os.environ.get(MIRROR_VARIABLE)
    if dataset in DATASET_DOWNLOADS:
        name, folder = DATASET_DOWNLOADS[dataset]
        download(name, root, mirror)
        data_root = data_root or os.path.join(root, folder)
        if dataset == "sbd" and "seg11valid" in splits:
            download("voc2011", root, mirror)
            voc_root = voc_root or os.path.join(root, "TrainVal", "VOCdevkit")
    elif dataset not in ("shapes", "rgbd-shapes", "two-label-shapes"):
        raise UserError(f"--download has no files for --dataset {dataset}; place them by hand and give --data-root")
    if init in CATALOGUE:
        init = download(init, root, mirror)
    return data_root, voc_root, init

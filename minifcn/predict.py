"""python -m minifcn.predict: segment images of any size with a trained FCN.

    python -m minifcn.predict --checkpoint runs/quick/best.npz --out predictions/ photo.jpg other.png

For each image ``<stem>.<ext>`` it writes ``<stem>.png``, the class map as
a palette PNG (pixel value = class index, shown in the colours of the
dataset the net was trained on), and ``<stem>_overlay.png``, the colours
blended over the image; a multi-task net writes ``<stem>_<head>.png`` for
each head. The network is fully convolutional (Sec. 3), so no resizing is
needed: the scores come out at the image's own size.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from . import cli
from .data.files import read_image
from .inference import predict
from .viz import colorize, overlay


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog="minifcn.predict", description="Segment images with a trained FCN.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any size)")
    cli.add_net_arguments(p)
    p.add_argument("--out", default=".", help="folder for <stem>.png and <stem>_overlay.png (default: here)")
    p.add_argument("--alpha", type=float, default=0.5, help="opacity of the colours in the overlay")
    cli.add_device_arguments(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0.0 <= args.alpha <= 1.0:
        raise cli.UserError(f"--alpha must lie in [0, 1], got {args.alpha}")

    # 1. The net, and every image read before any output is written.
    net = cli.load_net(args)
    if net.meta.get("fusion"):
        raise cli.UserError(
            f"{net.source!r} is an RGB-D net ({net.meta['fusion']} fusion); predict reads "
            "RGB image files. Score RGB-D data with python -m minifcn.evaluate --dataset rgbd-..."
        )
    model = net.model
    device, _ = cli.pick_device(args.device, args.tf32)
    model.to(device)
    stems = [os.path.splitext(os.path.basename(path))[0] for path in args.images]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise cli.UserError(f"several images share the stem {repeated[0]!r}; their outputs would overwrite each other")
    images = [read_image(path) for path in args.images]
    os.makedirs(args.out, exist_ok=True)

    # 2. Each image's class map (one per head), in the colours of the dataset it was trained on.
    palette = net.meta.get("palette", "voc")
    for path, stem, image in zip(args.images, stems, images):
        for head in net.heads:
            name = stem if head.name is None else f"{stem}_{head.name}"
            label = predict(model, image, net.preprocessing, device, head.name)
            colorize(label, palette).save(os.path.join(args.out, name + ".png"))
            overlay(image, label, args.alpha, palette).save(os.path.join(args.out, name + "_overlay.png"))
            present = ", ".join(head.classes[c] for c in np.unique(label) if c < head.n_class)
            print(f"{path}: {image.shape[1]}x{image.shape[0]} -> {os.path.join(args.out, name + '.png')} ({present})")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))

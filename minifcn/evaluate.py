"""python -m minifcn.evaluate: score a trained FCN on a dataset split (Sec. 5's four metrics).

    python -m minifcn.evaluate --checkpoint runs/quick/best.npz --dataset shapes --split val
    python -m minifcn.evaluate --checkpoint fcn8s.npz --dataset voc --data-root VOCdevkit --split val --out eval/

Prints pixel accuracy, mean accuracy, mean IU and frequency-weighted IU,
then the IU of each class (of each head, for a multi-task net). With
``--out``: ``metrics.json`` and each prediction as a palette PNG
(``predictions/<name>.png``). The confusion matrix is accumulated over the
whole split (``minifcn.inference.evaluate``); pixels labelled 255 are left out.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Sequence

import numpy as np

from . import cli
from .inference import evaluate
from .metrics import format_scores, scores_json, segmentation_scores
from .viz import colorize


def load(args: argparse.Namespace) -> tuple[cli.Net, Any, str]:
    """The net (on the device, its heads as the dataset labels them), the dataset split, and the device."""
    net = cli.load_net(args)
    kind = args.dataset or net.meta.get("dataset", "shapes")
    if args.download:
        fetched = cli.fetch_needed(args.download, kind, (args.split,), args.data_root, args.voc_root, None)
        args.data_root, args.voc_root = fetched[:2]
    image_size = args.image_size or net.meta.get("image_size")
    dataset = cli.build_dataset(kind, args.split, args.data_root, args.n_class, args.voc_root, image_size)
    try:
        net.heads = net.heads.on(dataset)
    except ValueError as e:
        raise cli.UserError(f"{net.source!r}: {e} ({kind})") from None
    device, why = cli.pick_device(args.device, args.tf32)
    net.model.to(device)
    print(
        f"minifcn: evaluating {net.source} ({net.meta['model']}, {net.meta['backbone']}) on {kind} "
        f"{args.split} ({len(dataset)} images), device {device} ({why})",
        flush=True,
    )
    return net, dataset, device


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog="minifcn.evaluate", description="Score a trained FCN on a dataset split.")
    cli.add_net_arguments(p)
    cli.add_data_arguments(p, dataset_default=None)
    p.add_argument("--split", default="val", help="the split to score (default val; camvid also a drive, e.g. 0006R0)")
    cli.add_device_arguments(p)
    cli.add_download_argument(p, init=False)
    p.add_argument("--batch-size", type=int, default=8, help="images of one size scored together")
    p.add_argument("--limit", type=int, help="score only the first N images")
    p.add_argument("--out", help="folder for metrics.json and predictions/<name>.png")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    # 1. The net, and the data it is scored on.
    net, dataset, device = load(args)
    model, heads = net.model, net.heads

    # 2. Each head scored on its task; the predictions drawn in the dataset's colours.
    folder = os.path.join(args.out, "predictions") if args.out else None
    if folder:
        os.makedirs(folder, exist_ok=True)
    preprocessing, palette = net.preprocessing, getattr(dataset, "palette", "voc")
    results = {}
    for head in heads:
        suffix = f"_{head.name}" if head.name else ""

        def save(i: int, image: np.ndarray, label: np.ndarray, prediction: np.ndarray) -> None:
            name = dataset.name(i) if hasattr(dataset, "name") else f"{i:05d}"
            colorize(prediction, palette).save(os.path.join(folder, name + suffix + ".png"))

        hook = save if folder else None
        scores = segmentation_scores(
            evaluate(model, dataset, preprocessing, device, args.batch_size, args.limit, hook, head.name)
        )
        print(f"\nhead {head.name}:\n" if heads.several else "", end="")
        print(format_scores(scores, head.classes))
        results[head.name] = scores_json(scores, head.classes)

    # 3. metrics.json: the first head's scores at the top level, every head's under "heads".
    if args.out:
        images = int(min(len(dataset), args.limit or len(dataset)))
        kind = args.dataset or net.meta.get("dataset", "shapes")
        source = {"checkpoint": args.checkpoint} if args.checkpoint else {"weights": args.weights}
        result = dict(results[heads.first.name], **source, dataset=kind, split=args.split)
        result.update(images=images, **({"heads": results} if heads.several else {}))
        with open(os.path.join(args.out, "metrics.json"), "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))

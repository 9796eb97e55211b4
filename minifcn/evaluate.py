"""python -m minifcn.evaluate: score a trained FCN on a dataset split (Sec. 5's four metrics).

    python -m minifcn.evaluate --checkpoint runs/quick/best.npz --dataset shapes --split val
    python -m minifcn.evaluate --checkpoint fcn8s.npz --dataset voc --data-root VOCdevkit --split val --out eval/

Prints pixel accuracy, mean accuracy, mean IU and frequency-weighted IU,
then the IU of each class. With ``--out``: ``metrics.json`` and each
prediction as a palette PNG (``predictions/<name>.png``).

The confusion matrix is accumulated over the whole split before the scores
are computed, as the reference's score.py does (so mean IU is not a mean of
per-image IUs). Pixels labelled 255 are left out.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Sequence

import numpy as np

from . import cli
from .autograd import Tensor, no_grad
from .backend import to_device
from .checkpoint import load_checkpoint, model_from_checkpoint
from .metrics import confusion_matrix, segmentation_scores
from .nn import Module
from .preprocessing import BY_NAME, Preprocessing


def predict_batch(model: Module, inputs: np.ndarray, device: str = "cpu", head: str | None = None) -> np.ndarray:
    """Class maps (N, H, W) int64 for preprocessed inputs (N, C, H, W): the argmax of the scores.

    For a multi-head net (``MultiHeadFCN``), ``head`` picks the task (default: the first).
    """
    with no_grad():
        out = model(Tensor(to_device(inputs, device)))
    scores = out[head or next(iter(out))].data if isinstance(out, dict) else out.data
    return to_device(scores.argmax(axis=1), "cpu").astype(np.int64)


def head_classes(model: Module, head: str | None) -> tuple[int, int | None]:
    """(n_class, index of the head's labels in the label's last axis, or None for a single-task net)."""
    heads = getattr(model, "heads", None)
    if heads is None:
        return model.n_class, None
    head = head or next(iter(heads))
    if head not in heads:
        raise ValueError(f"the net has heads {', '.join(heads)}, not {head!r}")
    return heads[head], list(heads).index(head)


def _same_size_runs(dataset: Any, limit: int, batch_size: int):
    """Consecutive indices grouped into batches of images of one size (each image read once)."""
    run: list[tuple[int, np.ndarray, np.ndarray]] = []
    for i in range(limit):
        image, label = dataset[i]
        if run and (len(run) == batch_size or run[0][1].shape != image.shape):
            yield run
            run = []
        run.append((i, image, label))
    if run:
        yield run


def evaluate(model: Module, dataset: Any, preprocessing: Preprocessing, device: str = "cpu",
             batch_size: int = 8, limit: int | None = None,
             on_prediction: Callable[[int, np.ndarray, np.ndarray, np.ndarray], None] | None = None,
             head: str | None = None) -> np.ndarray:  # fmt: skip
    """The confusion matrix (n_class, n_class) of ``model`` over ``dataset`` (its first ``limit`` items).

    The model is put in eval mode (no dropout) and restored afterwards.
    Images of one size are scored in batches of up to ``batch_size``; any
    size works. ``on_prediction(i, image, label, prediction)`` is called for
    each item (to save pictures). A multi-head net is scored on one ``head``
    (default: its first) against that task's labels.
    """
    n_class, index = head_classes(model, head)
    limit = len(dataset) if limit is None else min(limit, len(dataset))
    hist = np.zeros((n_class, n_class), np.int64)
    was_training = model.training
    model.eval()
    try:
        for run in _same_size_runs(dataset, limit, batch_size):
            inputs = np.stack([preprocessing(image) for _, image, _ in run])
            predictions = predict_batch(model, inputs, device, head)
            for (i, image, label), prediction in zip(run, predictions):
                label = label if index is None else label[..., index]
                hist += confusion_matrix(label, prediction, n_class)
                if on_prediction is not None:
                    on_prediction(i, image, label, prediction)
    finally:
        model.train(was_training)
    return hist


def format_scores(scores: dict[str, Any], classes: Sequence[str]) -> str:
    """The four metrics on one line, then a table of per-class IU."""
    lines = [f"pixel acc {scores['pixel_acc']:.4f}   mean acc {scores['mean_acc']:.4f}   "
             f"mean IU {scores['mean_iu']:.4f}   fw IU {scores['fw_iu']:.4f}", "", f"{'class':<16} IU"]  # fmt: skip
    for name, iu in zip(classes, scores["iu"]):
        lines.append(f"{name:<16} {'   -' if np.isnan(iu) else f'{iu:.4f}'}")
    return "\n".join(lines)


def scores_json(scores: dict[str, Any], classes: Sequence[str], **extra: Any) -> dict[str, Any]:
    """The metrics as plain JSON values (NaN, for a class absent from truth and prediction, becomes null)."""
    def num(v: float) -> float | None:
        return None if np.isnan(v) else float(v)

    out = {k: num(scores[k]) for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")}
    out["iu"] = {name: num(v) for name, v in zip(classes, scores["iu"])}
    out.update(extra)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="minifcn.evaluate", description="Score a trained FCN on a dataset split.")
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by python -m minifcn.train")
    cli.add_data_arguments(p, dataset_default=None)
    p.add_argument("--split", default="val", help="the split to score (default val)")
    cli.add_device_arguments(p)
    p.add_argument("--batch-size", type=int, default=8, help="images of one size scored together")
    p.add_argument("--limit", type=int, help="score only the first N images")
    p.add_argument("--out", help="folder for metrics.json and predictions/<name>.png")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)

    checkpoint = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(checkpoint)
    meta = checkpoint.meta
    dataset_kind = args.dataset or meta.get("dataset", "shapes")
    image_size = args.image_size or meta.get("image_size")
    dataset = cli.build_dataset(dataset_kind, args.split, args.data_root, args.n_class, args.voc_root, image_size)
    heads = getattr(model, "heads", None) or {None: model.n_class}
    names = getattr(dataset, "head_classes", None) or {None: dataset.classes}
    if [len(v) for v in names.values()] != list(heads.values()):
        raise cli.UserError(f"{args.checkpoint!r} predicts {dict(heads)} classes but the {dataset_kind} "
                            f"dataset has {({k: len(v) for k, v in names.items()})}")  # fmt: skip
    device, why = cli.pick_device(args.device, args.tf32)
    model.to(device)
    preprocessing = BY_NAME[meta.get("preprocessing", "caffe")]
    print(f"minifcn: evaluating {args.checkpoint} ({meta['model']}, {meta['backbone']}) on {dataset_kind} "
          f"{args.split} ({len(dataset)} images), device {device} ({why})", flush=True)  # fmt: skip

    from .viz import colorize

    folder = os.path.join(args.out, "predictions") if args.out else None
    if folder:
        os.makedirs(folder, exist_ok=True)
    results = {}
    for head, classes in zip(heads, names.values()):

        def save_prediction(i: int, image: np.ndarray, label: np.ndarray, prediction: np.ndarray) -> None:
            name = dataset.name(i) if hasattr(dataset, "name") else f"{i:05d}"
            colorize(prediction, getattr(dataset, "palette", "voc")).save(os.path.join(folder, name + ("" if head is None else f"_{head}") + ".png"))

        hist = evaluate(model, dataset, preprocessing, device, args.batch_size, args.limit,
                        save_prediction if folder else None, head)  # fmt: skip
        scores = segmentation_scores(hist)
        if head is not None:
            print(f"\nhead {head}:")
        print(format_scores(scores, classes))
        results[head] = scores_json(scores, classes)
    if args.out:
        first = next(iter(results.values()))
        result = dict(first, checkpoint=args.checkpoint, dataset=dataset_kind, split=args.split,
                      images=int(min(len(dataset), args.limit or len(dataset))))  # fmt: skip
        if None not in results:
            result["heads"] = results  # the top level repeats the first head's scores
        with open(os.path.join(args.out, "metrics.json"), "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))

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


def predict_batch(model: Module, inputs: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Class maps (N, H, W) int64 for preprocessed inputs (N, 3, H, W): the argmax of the scores."""
    with no_grad():
        scores = model(Tensor(to_device(inputs, device))).data
    return to_device(scores.argmax(axis=1), "cpu").astype(np.int64)


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
             on_prediction: Callable[[int, np.ndarray, np.ndarray, np.ndarray], None] | None = None) -> np.ndarray:  # fmt: skip
    """The confusion matrix (n_class, n_class) of ``model`` over ``dataset`` (its first ``limit`` items).

    The model is put in eval mode (no dropout) and restored afterwards.
    Images of one size are scored in batches of up to ``batch_size``; any
    size works. ``on_prediction(i, image, label, prediction)`` is called for
    each item (to save pictures).
    """
    n_class = model.n_class
    limit = len(dataset) if limit is None else min(limit, len(dataset))
    hist = np.zeros((n_class, n_class), np.int64)
    was_training = model.training
    model.eval()
    try:
        for run in _same_size_runs(dataset, limit, batch_size):
            inputs = np.stack([preprocessing(image) for _, image, _ in run])
            predictions = predict_batch(model, inputs, device)
            for (i, image, label), prediction in zip(run, predictions):
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
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
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
    if dataset.n_class != model.n_class:
        raise cli.UserError(f"{args.checkpoint!r} predicts {model.n_class} classes but the {dataset_kind} "
                            f"dataset has {dataset.n_class}")  # fmt: skip
    device, why = cli.pick_device(args.device)
    model.to(device)
    preprocessing = BY_NAME[meta.get("preprocessing", "caffe")]
    print(f"minifcn: evaluating {args.checkpoint} ({meta['model']}, {meta['backbone']}) on {dataset_kind} "
          f"{args.split} ({len(dataset)} images), device {device} ({why})", flush=True)  # fmt: skip

    from .viz import colorize

    folder = os.path.join(args.out, "predictions") if args.out else None
    if folder:
        os.makedirs(folder, exist_ok=True)

    def save_prediction(i: int, image: np.ndarray, label: np.ndarray, prediction: np.ndarray) -> None:
        name = dataset.name(i) if hasattr(dataset, "name") else f"{i:05d}"
        colorize(prediction).save(os.path.join(folder, name + ".png"))

    hist = evaluate(model, dataset, preprocessing, device, args.batch_size, args.limit,
                    save_prediction if folder else None)  # fmt: skip
    scores = segmentation_scores(hist)
    print(format_scores(scores, dataset.classes))
    if args.out:
        result = scores_json(scores, dataset.classes, checkpoint=args.checkpoint, dataset=dataset_kind,
                             split=args.split, images=int(min(len(dataset), args.limit or len(dataset))))  # fmt: skip
        with open(os.path.join(args.out, "metrics.json"), "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run(main))

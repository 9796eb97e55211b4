"""Running a trained FCN: class maps for images, and its confusion matrix over a dataset (Sec. 5).

What the train, evaluate and predict commands share. The confusion matrix
is accumulated over the whole split before any score is computed, as the
reference's score.py does (so mean IU is not a mean of per-image IUs);
pixels labelled 255 are left out. The scores themselves are
``minifcn.metrics``'s.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .autograd import Tensor, no_grad
from .backend import to_device
from .heads import Head, Heads
from .metrics import confusion_matrix, segmentation_scores
from .nn import Module
from .preprocessing import Preprocessing


def model_heads(model: Module) -> Heads:
    """A net's heads (class names as numbers: the names belong to the data or the checkpoint)."""
    sizes = getattr(model, "heads", None) or {None: model.n_class}
    return Heads(Head(h, tuple(str(c) for c in range(n))) for h, n in sizes.items())


def pick_head(model: Module, dataset: Any, head: str | None) -> Head:
    """The head called ``head`` (default: the first), with the index of its labels in ``dataset``."""
    heads = model_heads(model)
    if head is not None and head not in {h.name for h in heads}:
        raise ValueError(f"the net has heads {', '.join(str(h.name) for h in heads)}, not {head!r}")
    if heads.several and getattr(dataset, "head_classes", None) is None:
        # Single-label data scored by a multi-head net: the labels are the chosen head's.
        return next(h for h in heads if h.name == head or head is None)
    chosen = heads.on(dataset) if heads.several else heads
    return next(h for h in chosen if head is None or h.name == head)


def predict_batch(model: Module, inputs: np.ndarray, device: str = "cpu", head: str | None = None) -> np.ndarray:
    """Class maps (N, H, W) int64 for preprocessed inputs (N, C, H, W): the argmax of the scores.

    For a multi-head net (``MultiHeadFCN``), ``head`` picks the task (default: the first).
    """
    with no_grad():
        out = model(Tensor(to_device(inputs, device)))
    scores = out[head or next(iter(out))].data if isinstance(out, dict) else out.data
    return to_device(scores.argmax(axis=1), "cpu").astype(np.int64)


def predict(
    model: Module, image: np.ndarray, preprocessing: Preprocessing, device: str = "cpu", head: str | None = None
) -> np.ndarray:
    """The class map (H, W) int64 of one uint8 image (H, W, 3), in eval mode (a multi-head net: ``head``'s)."""
    was_training = model.training
    model.eval()
    try:
        return predict_batch(model, preprocessing(image)[None], device, head)[0]
    finally:
        model.train(was_training)


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


def evaluate(
    model: Module,
    dataset: Any,
    preprocessing: Preprocessing,
    device: str = "cpu",
    batch_size: int = 8,
    limit: int | None = None,
    on_prediction: Callable[[int, np.ndarray, np.ndarray, np.ndarray], None] | None = None,
    head: str | None = None,
) -> np.ndarray:
    """The confusion matrix (n_class, n_class) of ``model`` over ``dataset`` (its first ``limit`` items).

    The model is put in eval mode (no dropout) and restored afterwards.
    Images of one size are scored in batches of up to ``batch_size``; any
    size works. ``on_prediction(i, image, label, prediction)`` is called for
    each item (to save pictures). A multi-head net is scored on one ``head``
    (default: its first) against that task's labels in the dataset.
    """
    chosen = pick_head(model, dataset, head)
    limit = len(dataset) if limit is None else min(limit, len(dataset))
    hist = np.zeros((chosen.n_class, chosen.n_class), np.int64)
    was_training = model.training
    model.eval()
    try:
        for run in _same_size_runs(dataset, limit, batch_size):
            inputs = np.stack([preprocessing(image) for _, image, _ in run])
            predictions = predict_batch(model, inputs, device, chosen.name)
            for (i, image, label), prediction in zip(run, predictions):
                label = chosen.labels(label)
                hist += confusion_matrix(label, prediction, chosen.n_class)
                if on_prediction is not None:
                    on_prediction(i, image, label, prediction)
    finally:
        model.train(was_training)
    return hist


def evaluate_heads(
    model: Module,
    dataset: Any,
    heads: Heads,
    preprocessing: Preprocessing,
    device: str = "cpu",
    batch_size: int = 8,
    limit: int | None = None,
    on_prediction: Callable[[int, np.ndarray, np.ndarray, np.ndarray], None] | None = None,
) -> dict[str, Any]:
    """The scores (``metrics.segmentation_scores``) of each head, the first head's leading.

    One head: its scores. Several: the first head's at the top level and
    every head's under ``"heads"``. ``on_prediction`` sees the first head's
    predictions.
    """
    per_head = {}
    for k, h in enumerate(heads):
        hook = on_prediction if k == 0 else None
        hist = evaluate(model, dataset, preprocessing, device, batch_size, limit, hook, h.name)
        per_head[h.name] = segmentation_scores(hist)
    first = per_head[heads.first.name]
    return dict(first, heads=per_head) if heads.several else first

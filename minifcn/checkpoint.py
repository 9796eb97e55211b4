"""Training checkpoints: one .npz holding the model, the optimiser, the RNG state and metadata.

    model.<name>     the model's state_dict (conv1_1.weight, ...)
    optim.<name>     the optimiser's state_dict (momentum buffers, lr, ...)
    meta             a JSON string: model, backbone, n_class, classes,
                     preprocessing, iteration, the run's config, the RNG state

Written atomically by :func:`minifcn.save` (a temporary file, then a
rename), from host arrays, so a checkpoint never depends on the device it
was saved from, and a crash while saving leaves the previous one intact.
``numpy.load`` reads it without minifcn.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import nn, rng
from .config import Config
from .heads import Heads
from .models import FCN, MODELS, MultiHeadFCN, build_fcn
from .preprocessing import BY_NAME, Preprocessing
from .serialization import load, save
from .surgery import transplant
from .weights import read as read_weights


@dataclass
class Checkpoint:
    """A checkpoint as read back: ``model`` and ``optim`` state dicts and the ``meta`` dict."""

    path: str
    model: dict[str, np.ndarray]
    optim: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str, model: nn.Module, optimizer: Any = None, meta: dict[str, Any] | None = None) -> None:
    """Write ``model`` (and ``optimizer``, and ``meta``) to ``path`` atomically."""
    state: dict[str, Any] = {f"model.{k}": v for k, v in model.state_dict().items()}
    if optimizer is not None:
        state.update({f"optim.{k}": v for k, v in optimizer.state_dict().items()})
    state["meta"] = json.dumps(meta or {})
    save(path, state)


def load_checkpoint(path: str) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; anything else is an error naming the file."""
    path = os.fspath(path)
    arrays = load(path)
    if "meta" not in arrays:
        raise ValueError(
            f"{path!r} is not a minifcn checkpoint (it has no 'meta' entry; "
            f"it holds {', '.join(sorted(arrays)[:5])}{', ...' if len(arrays) > 5 else ''})"
        )
    try:
        meta = json.loads(str(arrays["meta"]))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path!r}: its metadata is not valid JSON ({e})") from None
    model = {k[len("model.") :]: v for k, v in arrays.items() if k.startswith("model.")}
    optim = {k[len("optim.") :]: v for k, v in arrays.items() if k.startswith("optim.")}
    return Checkpoint(path, model, optim, meta)


def model_from_checkpoint(checkpoint: Checkpoint) -> FCN:
    """The FCN that ``checkpoint`` describes (its meta's model, backbone, n_class), with its weights."""
    meta = checkpoint.meta
    missing = [k for k in ("model", "backbone", "n_class") if k not in meta]
    if missing or meta["model"] not in MODELS:
        raise ValueError(
            f"{checkpoint.path!r}: its metadata does not describe an FCN (missing {missing}, "
            f"model {meta.get('model')!r}); was it written by python -m minifcn.train?"
        )
    heads = heads_of(checkpoint)
    pad = int(meta.get("pad", 100))  # checkpoints written before conv1's padding was a setting: the paper's
    fc6 = meta.get("fc6_kernel")  # None: the classifier's own (also in checkpoints older than the setting)
    if heads.several:  # a multi-task net (Sec. 5, SIFT Flow)
        model = MultiHeadFCN(
            meta["model"],
            heads.sizes(),
            meta["backbone"],
            bool(meta.get("learnable_upsampling")),
            pad=pad,
            fc6_kernel=fc6,
        )
    else:
        model = build_fcn(
            meta["model"],
            int(meta["n_class"]),
            meta["backbone"],
            bool(meta.get("learnable_upsampling")),
            meta.get("fusion"),
            pad,
            fc6,
        )
    try:
        model.load_state_dict(checkpoint.model)
    except ValueError as e:
        raise ValueError(f"{checkpoint.path!r}: {e}") from None
    return model


def preprocessing_of(checkpoint: Checkpoint) -> Preprocessing:
    """The preprocessing the checkpoint's net was trained with (checkpoints before it was recorded: Caffe's)."""
    name = checkpoint.meta.get("preprocessing", "caffe")
    if name not in BY_NAME:
        raise ValueError(f"{checkpoint.path!r}: unknown preprocessing {name!r}; known: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def heads_of(checkpoint: Checkpoint) -> Heads:
    """The heads (tasks and their class names) of the checkpoint's net."""
    return Heads.from_meta(checkpoint.meta)


def training_meta(
    c: Config,
    heads: Heads,
    preprocessing: Preprocessing,
    palette: str,
    class_weights: np.ndarray | None,
    iteration: int,
    best: float,
) -> dict[str, Any]:
    """What a training checkpoint says of itself: the net (evaluate and predict rebuild it from this), how it
    was trained (``config``), where it stands (iteration, best val mean IU) and the RNG state to resume with."""
    return dict(
        heads.meta(),
        model=c.model,
        backbone=c.backbone,
        dataset=c.dataset,
        image_size=c.image_size,
        preprocessing=preprocessing.name,
        palette=palette,
        learnable_upsampling=c.learnable_upsampling,
        pad=c.pad,
        fc6_kernel=c.fc6_kernel,
        fusion=c.fusion,
        iteration=iteration,
        best_mean_iu=best,
        rng=rng.get_state(),
        config=dataclasses.asdict(c),
        class_weights=None if class_weights is None else class_weights.tolist(),
    )


def model_from_weights(path: str, model: str, backbone: str = "vgg16") -> tuple[FCN, Preprocessing]:
    """A complete trained FCN from a weight file that holds every layer of it, score layers and upsampling
    included (the reference's ``fcn8s-heavy-pascal.caffemodel`` and its kin), and the preprocessing the file
    expects (Caffe's, for a .caffemodel). The number of classes is read from its score_fr layer.

    The file and the net must hold the same layers, both ways: a file without score_fr (ImageNet weights:
    train from them with ``--init``), one missing a layer of ``model``, or one holding layers ``model`` lacks
    (the at-once net's scale_pool4 and scale_pool3, read as plain ``fcn8s``) is an error that names them. The
    at-once net's scale layers have no parameter (``nn.Scale``): the file's values are checked against the
    net's fixed factors (0.01, 0.0001) instead of copied.
    """
    state = read_weights(path)
    if "score_fr.weight" not in state:
        raise ValueError(
            f"{path!r} holds no score_fr layer, so it is not a trained FCN (ImageNet weights start training: --init)"
        )
    net = build_fcn(model, int(state["score_fr.weight"].shape[0]), backbone)
    arrays = dict(state)
    for name in ("scale_pool4", "scale_pool3"):
        scale, value = getattr(net, name, None), arrays.get(f"{name}.weight")
        if scale is not None and value is not None:
            if value.size != 1 or not np.isclose(float(value.ravel()[0]), scale.factor, rtol=1e-6, atol=0):
                raise ValueError(
                    f"{path!r}: {name} holds {value.ravel()[:4]}, where {model} scales by {scale.factor:g}"
                )
            del arrays[f"{name}.weight"]  # checked: the net's own fixed factor
    report = transplant(arrays, net)
    if report.not_in_state:
        raise ValueError(f"{path!r} lacks {report.not_in_state} of {model} ({backbone}); is it that network?")
    if report.not_in_model:
        layers = sorted({key.rsplit(".", 1)[0] for key in report.not_in_model})
        owner = _model_with(layers)
        whose = f": they are {owner}'s (--model {owner})" if owner and owner != model else "; is it that network?"
        raise ValueError(f"{path!r} holds {', '.join(layers)}, which {model} ({backbone}) lacks{whose}")
    return net, state.preprocessing


def _model_with(layers: list[str]) -> str | None:
    """The FCN whose skips a weight file's extra layers are: the finest stage they name."""
    for model, marks in (("fcn8s-atonce", "scale_pool"), ("fcn8s", "score_pool3"), ("fcn16s", "score_pool4")):
        if any(layer.startswith(marks) for layer in layers):
            return model
    return None

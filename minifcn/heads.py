"""Heads: the tasks a net predicts, each with its classes (Sec. 5, SIFT Flow's "two prediction heads").

An ordinary FCN has one head: its classes, scored against labels (H, W).
A multi-task net (``models.MultiHeadFCN``) has several on one trunk; its
output is a dict head name -> scores, and a pixel's label is a vector, one
entry per task of the dataset (labels (H, W, tasks)). One :class:`Heads`
describes either case, and every layer uses it the same way:

    the datasets     ``Heads.of_dataset(data)``: from their ``head_classes``, or their ``classes``
    the model        ``heads.sizes()``: name -> n_class, for ``MultiHeadFCN``
    the loss         ``heads.loss(out, labels)``: one cross-entropy per head, summed (Sec. 5)
    the checkpoint   ``heads.meta()`` and ``Heads.from_meta(meta)``
    evaluate         ``head.scores(out)`` and ``head.labels(label)``: a head's scores, its labels

A head's ``index`` is where its labels lie in the dataset's label vector; it
belongs to the data, so a head read from a checkpoint gets it from the
dataset it is scored on (``heads.on(data)``), by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from . import functional as F
from .autograd import Tensor


@dataclass(frozen=True)
class Head:
    """One task: its ``name`` (None for an ordinary net's one task), ``classes``, and ``index`` in the labels."""

    name: str | None
    classes: tuple[str, ...]
    index: int | None = None  # None: the labels are (H, W), this task's alone

    @property
    def n_class(self) -> int:
        return len(self.classes)

    def scores(self, out: Tensor | dict[str, Tensor]) -> Tensor:
        """This head's scores in a net's output (a dict for a multi-head net)."""
        return out[self.name] if isinstance(out, dict) else out

    def labels(self, label: Any) -> Any:
        """This head's labels (..., H, W) of a dataset's (..., H, W) or (..., H, W, tasks) labels."""
        return label if self.index is None else label[..., self.index]


class Heads(tuple):
    """The heads of a net, in order; the first leads (its scores are the log's and best.npz's)."""

    @classmethod
    def single(cls, classes: Sequence[str]) -> "Heads":
        return cls((Head(None, tuple(classes)),))

    @classmethod
    def of_dataset(cls, dataset: Any, wanted: Sequence[str] | None = None) -> "Heads":
        """A dataset's tasks (``head_classes``: name -> classes, in label order), or its one task.

        ``wanted`` picks some of them, in the order given (``--heads``).
        """
        available = getattr(dataset, "head_classes", None)
        if available is None:
            return cls.single(dataset.classes)
        names = list(available) if wanted is None else list(wanted)
        unknown = [h for h in names if h not in available]
        if unknown or not names or len(set(names)) != len(names):
            raise ValueError(f"choose distinct names among {', '.join(available)}")
        return cls(Head(h, tuple(available[h]), list(available).index(h)) for h in names)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "Heads":
        """The heads a checkpoint's metadata describes (without indices: those come from the data)."""
        if meta.get("heads"):
            named = meta.get("head_classes") or {}
            return cls(
                Head(h, tuple(named.get(h) or (str(c) for c in range(int(n))))) for h, n in meta["heads"].items()
            )
        classes = meta.get("classes") or [str(c) for c in range(int(meta["n_class"]))]
        return cls.single(classes)

    @property
    def several(self) -> bool:
        """True for a multi-head net (named heads, a dict of scores), even with one head chosen."""
        return self[0].name is not None

    @property
    def first(self) -> Head:
        return self[0]

    def sizes(self) -> dict[str, int]:
        """Name -> number of classes, as ``MultiHeadFCN`` is built."""
        return {h.name: h.n_class for h in self}

    def meta(self) -> dict[str, Any]:
        """The checkpoint's description: n_class and classes of the first head; heads, head_classes when several."""
        return {
            "n_class": self.first.n_class,
            "classes": list(self.first.classes),
            "heads": self.sizes() if self.several else None,
            "head_classes": {h.name: list(h.classes) for h in self} if self.several else None,
        }

    def on(self, dataset: Any) -> "Heads":
        """These heads as ``dataset`` labels them: matched by name and number of classes, with the
        dataset's class names and the index of each head's labels."""
        theirs = Heads.of_dataset(dataset)
        by_name = {h.name: h for h in theirs}
        if any(h.name not in by_name or by_name[h.name].n_class != h.n_class for h in self):
            raise ValueError(f"the net predicts {self.counts()} classes but the dataset has {theirs.counts()}")
        return Heads(by_name[h.name] for h in self)

    def counts(self) -> Any:
        """The number of classes, or name -> number for several heads (for messages)."""
        return self.sizes() if self.several else self.first.n_class

    def loss(self, out: Tensor | dict[str, Tensor], labels: Any, reduction: str = "mean", weight: Any = None) -> Tensor:
        """The training loss: each head's cross-entropy against its labels, summed (Sec. 5: "the two losses")."""
        total = None
        for h in self:
            loss = F.softmax_cross_entropy(h.scores(out), h.labels(labels), reduction=reduction, weight=weight)
            total = loss if total is None else total + loss
        return total

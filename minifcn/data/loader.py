"""Batches for training: a shuffled, seeded, resumable stream of (inputs, labels).

The stream is a pure function of (seed, iteration): iteration t holds
samples t*B ... t*B + B - 1 of an endless sequence that visits the dataset
once per epoch in a fresh random order (epoch e's order is drawn from the
seed and e), and item k of the batch is augmented with a generator seeded by
(seed, t, k). So a run resumed at iteration t draws exactly the batches an
uninterrupted run would have drawn, without storing any loader state.

Batch size 1 takes each image at its own size (the paper's whole-image
training, Sec. 3.4 and 4.3). Larger batches need images of one size: the
dataset's own (Shapes) or a crop (``Augment(crop_size=...)``).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from .files import DataError


class BatchLoader:
    """``loader.batch(t)`` -> (float32 inputs (B, 3, H, W), int64 labels (B, H, W)) of iteration t."""

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        preprocessing: Callable[[np.ndarray], np.ndarray],
        augment: Callable[..., Any] | None = None,
        seed: int = 0,
        shuffle: bool = True,
    ):
        if batch_size < 1:
            raise ValueError(f"BatchLoader: batch_size must be at least 1, got {batch_size}")
        if len(dataset) == 0:
            raise DataError(f"BatchLoader: dataset {dataset!r} is empty")
        self.dataset, self.batch_size, self.preprocessing = dataset, batch_size, preprocessing
        self.augment, self.seed, self.shuffle = augment, seed, shuffle
        self._order: tuple[int, np.ndarray] | None = None

    def index(self, j: int) -> int:
        """The dataset index of sample j of the endless stream."""
        n = len(self.dataset)
        epoch, position = divmod(j, n)
        if not self.shuffle:
            return position
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(n))
        return int(self._order[1][position])

    def items(self, t: int) -> list[int]:
        """The dataset indices of iteration t's batch."""
        return [self.index(t * self.batch_size + k) for k in range(self.batch_size)]

    def batch(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        images, labels, sources = [], [], []
        for k, i in enumerate(self.items(t)):
            image, label = self.dataset[i]
            if self.augment is not None:
                image, label = self.augment(image, label, np.random.default_rng([self.seed, t, k]))
            images.append(self.preprocessing(image))
            labels.append(np.asarray(label, np.int64))
            sources.append(i)
        first = labels[0].shape
        for i, label in zip(sources, labels):
            if label.shape != first:
                raise DataError(
                    f"a batch of {self.batch_size} needs images of one size, but item {sources[0]} "
                    f"({_name(self.dataset, sources[0])}) is {first[1]}x{first[0]} and item {i} "
                    f"({_name(self.dataset, i)}) is {label.shape[1]}x{label.shape[0]}; "
                    f"crop them to one size (--crop-size) or use batch size 1"
                )
        return np.stack(images), np.stack(labels)


class Prefetch:
    """``fetch(t)`` is ``batch(t)``, and meanwhile batch t + 1 is made on a background thread.

    Like a PyTorch ``DataLoader`` with one worker: while the network trains
    on batch t, the next one is read, augmented and preprocessed. NumPy,
    SciPy and Pillow release the GIL in their loops, so on a CPU part of that
    work overlaps the step's (little on two cores, whose BLAS threads are
    busy; benchmarks/RESULTS.md), and on a GPU the host has the next batch
    ready when the device is done. The batch of an
    iteration does not depend on when it is made (``BatchLoader``'s stream
    is a function of t alone), so results are the same with or without it.
    An error in the background is raised by the ``fetch`` that asks for
    that batch. Batches at or past ``stop`` are not made in advance.
    """

    def __init__(self, batch: Callable[[int], Any], stop: int):
        self.batch, self.stop = batch, stop
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minifcn-batches")
        self._next: tuple[int, Future] | None = None

    def __call__(self, t: int) -> Any:
        if self._next is not None and self._next[0] == t:
            result = self._next[1].result()
        else:
            if self._next is not None and not self._next[1].cancel():
                self._next[1].exception()  # another batch is in the making: let it finish (its error is not ours)
            result = self.batch(t)
        self._next = (t + 1, self._pool.submit(self.batch, t + 1)) if t + 1 < self.stop else None
        return result

    def close(self) -> None:
        """Wait for the batch in the making and stop the thread."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._next = None

    def __enter__(self) -> "Prefetch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _name(dataset: Any, i: int) -> str:
    return dataset.name(i) if hasattr(dataset, "name") else f"#{i}"

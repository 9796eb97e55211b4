"""The training loop (Sec. 4): step, evaluate, log, checkpoint; Ctrl-C and a diverging loss handled.

It is handed everything it works with (the model, optimiser, batches, the
loss, the learning-rate schedule, an evaluation and the checkpoint's
metadata) and knows nothing of datasets or weight files. Into ``out`` it
writes:

    log.csv      iteration, loss, lr, seconds; and the eval metrics when computed
    curves.png   training loss, val mean IU and pixel accuracy, learning rate, against iteration
    last.npz     every ``checkpoint_every`` iterations, at the end and on Ctrl-C
    best.npz     at each evaluation that beats the best mean IU so far

Ctrl-C finishes the current iteration, saves last.npz and stops (a second
Ctrl-C stops at once). A NaN or infinite loss stops the run before the
update, so last.npz keeps the last good weights. A resumed loop (``start``
> 0) keeps log.csv's rows up to ``start`` and drops any a crash left after.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
from tqdm import tqdm

from .autograd import Tensor
from .backend import to_device
from .checkpoint import save_checkpoint
from .data.loader import Prefetch
from .nn import Module
from .plots import curves

LOG_FIELDS = ["iteration", "loss", "lr", "seconds", "pixel_acc", "mean_acc", "mean_iu", "fw_iu"]
SCORES = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")


class Diverged(ValueError):
    """The loss became NaN or infinite (shown to the user as one line: a ValueError)."""


class Logbook:
    """log.csv, one row an iteration, and the curves drawn from it."""

    def __init__(self, folder: str, start: int):
        self.path, self.folder = os.path.join(folder, "log.csv"), folder
        self.rows: list[dict[str, str]] = []
        if start > 0 and os.path.exists(self.path):
            with open(self.path, newline="", encoding="utf-8") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= start]
        self.file = open(self.path, "w", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.file, LOG_FIELDS)
        self.writer.writeheader()
        self.writer.writerows(self.rows)
        self.file.flush()

    @property
    def seconds(self) -> float:
        """The seconds logged by the last kept row (a resumed run's clock goes on from there)."""
        return float(self.rows[-1]["seconds"]) if self.rows else 0.0

    def write(self, row: dict[str, Any]) -> None:
        row = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        self.writer.writerow(row)
        self.file.flush()
        self.rows.append({k: str(v) for k, v in row.items()})

    def draw(self) -> None:
        curves(self.rows).save(os.path.join(self.folder, "curves.png"))

    def close(self) -> None:
        self.file.close()


@contextlib.contextmanager
def ctrl_c_finishes_the_iteration() -> Iterator[threading.Event]:
    """While inside, Ctrl-C sets the event (the loop stops after its iteration); a second one stops at once."""
    pressed = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if pressed.is_set():
            raise KeyboardInterrupt
        pressed.set()

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: Ctrl-C keeps its default meaning
        previous = None
    try:
        yield pressed
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


@dataclass
class Loop:
    """Train ``model`` for iterations ``start + 1 .. iters``, writing into ``out``."""

    model: Module
    optimizer: Any  # minifcn.optim.SGD or Adam
    batch: Callable[[int], tuple[np.ndarray, np.ndarray]]  # batch t: inputs (N, C, H, W), labels
    loss: Callable[[Any, Any], Tensor]  # (the model's output, labels on the device) -> a scalar
    lr: Callable[[int], float]  # the learning rate of iteration t (from 0)
    iters: int
    out: str
    evaluate: Callable[[int], dict[str, Any]]  # the scores at an iteration (minifcn.metrics), "heads" optional
    meta: Callable[[int, float], dict[str, Any]]  # a checkpoint's metadata at (iteration, best mean IU)
    device: str = "cpu"
    eval_every: int = 200
    checkpoint_every: int = 200
    start: int = 0
    best: float = -1.0
    say: Callable[[str], None] = field(default=lambda line: print(line, flush=True))

    def step(self, t: int, batch: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None) -> float:
        """One iteration (forward, backward, update) on batch t (from ``batch``, by default ``self.batch``);
        returns the loss."""
        x, labels = (batch or self.batch)(t)
        self.optimizer.lr = self.lr(t)
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is reported below, once
            loss = self.loss(self.model(Tensor(to_device(x, self.device))), to_device(labels, self.device))
            self.optimizer.zero_grad()
            loss.backward()
            # Read back after the backward pass is queued, so that on a GPU the host never waits between the two;
            # still before the update, so a NaN never reaches the weights.
            value = float(loss.item())
            if not math.isfinite(value):
                raise Diverged(
                    f"the loss became {value} at iteration {t + 1} (lr {self.optimizer.lr:g}); nothing of that "
                    f"iteration was saved: {os.path.join(self.out, 'last.npz')} holds the last good checkpoint. "
                    "Try a lower --lr, or --loss-reduction mean"
                )
            self.optimizer.step()
        return value

    def checkpoint(self, name: str, iteration: int) -> None:
        """Write ``name`` (atomically), unless a parameter is no longer finite."""
        for pname, p in self.model.named_parameters():
            if not bool(np.isfinite(to_device(p.data, "cpu")).all()):
                raise ValueError(
                    f"parameter {pname} is no longer finite after iteration {iteration}; {name} was not "
                    "overwritten. Try a lower --lr, or --loss-reduction mean"
                )
        save_checkpoint(os.path.join(self.out, name), self.model, self.optimizer, self.meta(iteration, self.best))

    def run(self) -> dict[str, Any]:
        """The loop; returns the final evaluation's scores (KeyboardInterrupt after saving, on Ctrl-C)."""
        os.makedirs(self.out, exist_ok=True)
        log = Logbook(self.out, self.start)
        self.t0 = time.perf_counter() - log.seconds
        bar = tqdm(
            total=self.iters,
            initial=self.start,
            desc="train",
            unit="it",
            dynamic_ncols=True,
            mininterval=1.0,
            file=sys.stderr,
        )
        scores: dict[str, Any] = {}
        try:
            # The next batch is made on a background thread while this one trains (data/loader.py).
            with ctrl_c_finishes_the_iteration() as interrupted, Prefetch(self.batch, self.iters) as batches:
                for t in range(self.start, self.iters):
                    done, loss = t + 1, self.step(t, batches)
                    row: dict[str, Any] = {
                        "iteration": done,
                        "loss": loss,
                        "lr": self.optimizer.lr,
                        "seconds": round(time.perf_counter() - self.t0, 3),
                    }
                    if done % self.eval_every == 0 or done == self.iters:
                        scores = self.evaluate(done)
                        row.update({k: float(scores[k]) for k in SCORES})
                        self.report(done, loss, scores, bar)
                    log.write(row)
                    if done % self.checkpoint_every == 0 or done == self.iters or interrupted.is_set():
                        self.checkpoint("last.npz", done)
                    if done % self.eval_every == 0:
                        log.draw()
                    bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                    bar.update(1)
                    if interrupted.is_set():
                        bar.close()
                        last = os.path.join(self.out, "last.npz")
                        self.say(
                            f"minifcn: interrupted; saved {last} at iteration {done}; continue with --resume {last}"
                        )
                        raise KeyboardInterrupt
        finally:
            bar.close()
            log.close()
        log.draw()
        return scores

    def report(self, done: int, loss: float, scores: dict[str, Any], bar: Any) -> None:
        """best.npz when the mean IU is the best so far, and one line of scores."""
        if scores["mean_iu"] > self.best:
            self.best = float(scores["mean_iu"])
            self.checkpoint("best.npz", done)
        per_head = "".join(f"  {h} {s['mean_iu']:.4f}" for h, s in scores.get("heads", {}).items())
        bar.write(
            f"iteration {done}: loss {loss:.4f}  pixel acc {scores['pixel_acc']:.4f}  "
            f"mean IU {scores['mean_iu']:.4f}  (best {self.best:.4f}){per_head}"
        )

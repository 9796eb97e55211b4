"""Segmentation metrics of Sec. 5 from a confusion histogram, as the reference's score.py computes them.

With n_ij the number of pixels of class i predicted as class j, t_i = sum_j n_ij
the pixels of class i, and the sums over a whole split (not averaged per image):

    pixel accuracy        sum_i n_ii / sum_i t_i
    mean accuracy         (1 / n_cl) sum_i n_ii / t_i
    mean IU               (1 / n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)
    frequency weighted IU (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)

Classes that appear neither in the truth nor in the predictions have no IU
(NaN) and are left out of the means, as in the reference (numpy.nanmean).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .backend import to_device


def confusion_matrix(label_true: Any, label_pred: Any, n_class: int) -> np.ndarray:
    """(n_class, n_class) int64 histogram: entry [i, j] counts pixels of true class i predicted as j.

    Pixels whose true label is outside [0, n_class) (255, the ignore label)
    are left out. Predictions must lie in [0, n_class).
    """
    t = np.asarray(to_device(label_true, "cpu")).astype(np.int64, copy=False).reshape(-1)
    p = np.asarray(to_device(label_pred, "cpu")).astype(np.int64, copy=False).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"confusion_matrix: {t.size} true labels but {p.size} predictions")
    keep = (t >= 0) & (t < n_class)
    t, p = t[keep], p[keep]
    if p.size and (p.min() < 0 or p.max() >= n_class):
        bad = np.unique(p[(p < 0) | (p >= n_class)])[:5].tolist()
        raise ValueError(f"confusion_matrix: predictions {bad} are outside [0, {n_class})")
    return np.bincount(n_class * t + p, minlength=n_class**2).reshape(n_class, n_class)


def segmentation_scores(hist: np.ndarray) -> dict[str, Any]:
    """pixel_acc, mean_acc, mean_iu, fw_iu (floats) and iu (per class; NaN where a class never occurs)."""
    hist = np.asarray(hist, dtype=np.float64)
    if hist.ndim != 2 or hist.shape[0] != hist.shape[1]:
        raise ValueError(f"segmentation_scores: expected a square histogram, got shape {hist.shape}")
    diag, truth, predicted = np.diag(hist), hist.sum(axis=1), hist.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = diag / truth
        iu = diag / (truth + predicted - diag)
        freq = truth / hist.sum()
    present = truth > 0
    return {
        "pixel_acc": float(diag.sum() / hist.sum()) if hist.sum() else float("nan"),
        "mean_acc": float(np.nanmean(acc)) if present.any() else float("nan"),
        "mean_iu": float(np.nanmean(iu)) if np.isfinite(iu).any() else float("nan"),
        "fw_iu": float((freq[present] * iu[present]).sum()) if present.any() else float("nan"),
        "iu": iu,
    }


def format_scores(scores: dict[str, Any], classes: Sequence[str]) -> str:
    """The four metrics on one line, then a table of per-class IU."""
    lines = [
        f"pixel acc {scores['pixel_acc']:.4f}   mean acc {scores['mean_acc']:.4f}   "
        f"mean IU {scores['mean_iu']:.4f}   fw IU {scores['fw_iu']:.4f}",
        "",
        f"{'class':<16} IU",
    ]
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

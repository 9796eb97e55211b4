"""The losses that ``search_camvid.py`` tries beside the class-weighted cross-entropy of the presets: label
smoothing's uniform part, a soft Jaccard loss (mean IU with each pixel's call replaced by its probabilities), and
bootstrapped cross-entropy (the loss of the hardest pixels only). Scores (N, C, H, W), labels (N, H, W)."""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import minifcn as mf  # noqa: E402
import minifcn.functional as F  # noqa: E402
from minifcn.autograd import Function  # noqa: E402
from minifcn.backend import get_array_module, to_device  # noqa: E402
from minifcn.data import IGNORE  # noqa: E402
from minifcn.functional.reduce import channel_sums  # noqa: E402


def smoothing_loss(scores, y: np.ndarray, share: float, device: str):
    """``share`` times the mean over labelled pixels of -(1/C) sum_c log p_c: label smoothing's uniform part,
    added to (1 - share) times the class-weighted loss. ``scores`` (N, C, H, W), ``y`` (N, H, W). Unweighted: the
    uniform target gives every class the same share whatever the weights."""
    C = scores.shape[1]
    valid = np.broadcast_to((y != IGNORE)[:, None], scores.shape).astype(scores.dtype)
    log_p = F.log_softmax(scores, axis=1)
    return F.sum(log_p * mf.Tensor(to_device(valid, device))) * (-share / (C * max(valid[:, 0].sum(), 1)))


class SoftJaccard(Function):
    """1 minus the soft IU averaged over the K classes present in the batch's labels. With p the softmax of the
    scores, y_ic = 1 where labelled pixel i is of class c, and sums over the batch's labelled pixels:

        I_c = sum_i p_ic y_ic,   U_c = sum_i p_ic + sum_i y_ic - I_c,   loss = 1 - (1/K) sum_c I_c / U_c

    Where p is one-hot this is one minus the batch's mean IU; a false alarm of class c raises U_c as a miss does,
    which a weighted cross-entropy does not ask (the soft IoU of Rahman and Wang 2016; Lovász-softmax, Berman et al.
    2018, bounds IU more tightly but sorts every class's errors). The sums are float64.

    Backward, for a present class c (0 for an absent one, and for ignored pixels):
        dL/dp_ic = -(1/K) (y_ic / U_c - (1 - y_ic) I_c / U_c^2),  then  ds_ic = p_ic (g_ic - sum_k p_ik g_ik).
    """

    def __init__(self, labels: Any):
        self.labels = labels

    def forward(self, scores: Any) -> Any:
        xp = get_array_module(scores)
        C = scores.shape[1]
        valid = (self.labels != IGNORE)[:, None]  # (N, 1, H, W)
        z = scores - scores.max(axis=1, keepdims=True)
        p = xp.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        self.p = p
        self.y = (xp.arange(C)[None, :, None, None] == self.labels[:, None]) & valid  # (N, C, H, W)
        sums, inter = channel_sums(p * valid, self.y.astype(scores.dtype))  # sum_i p_ic and I_c, float64
        G = self.y.sum(axis=(0, 2, 3))
        U = sums + G - inter
        present = G > 0
        K = max(int(present.sum()), 1)
        self.valid, self.K, self.present, self.I, self.U = valid, K, present, inter, xp.where(present, U, 1)
        return xp.asarray(1 - (inter / self.U)[present].sum() / K, dtype=scores.dtype)

    def backward(self, gy: Any) -> Any:
        a = -1.0 * self.present / (self.K * self.U)  # the coefficient of y_ic, per class
        b = self.present * self.I / (self.K * self.U**2)  # the coefficient of 1 - y_ic
        dtype = self.p.dtype
        a, b = (v.astype(dtype)[None, :, None, None] for v in (a, b))
        g = (self.y * (a - b) + b) * self.valid  # a where y_ic, b elsewhere; 0 on ignored pixels
        ds = self.p * (g - (self.p * g).sum(axis=1, keepdims=True))
        return ds * gy.astype(dtype)


def soft_jaccard(scores: mf.Tensor, labels: Any) -> mf.Tensor:
    """The soft Jaccard loss of ``scores`` (N, C, H, W) against integer ``labels`` (N, H, W) (SoftJaccard)."""
    return SoftJaccard(labels)(scores)


def hardest_only(scores: Any, labels: np.ndarray, share: float) -> np.ndarray:
    """Bootstrapped cross-entropy's labels (Wu, Shen and van den Hengel 2016): of the labelled pixels, the ``share``
    whose true class has the lowest softmax probability keep their labels, the rest become IGNORE (ties at the
    cut kept). ``scores`` (N, C, H, W) an array on any device, ``labels`` (N, H, W) on the host."""
    log_p = to_device(F.log_softmax(mf.Tensor(scores), axis=1).data, "cpu")  # no graph: scores is an array
    valid = labels != IGNORE
    picked = np.take_along_axis(log_p, np.where(valid, labels, 0)[:, None], axis=1)[:, 0]
    if not valid.any():
        return labels
    kept = max(1, int(round(share * valid.sum())))
    cut = np.partition(picked[valid], kept - 1)[kept - 1]  # the kept-th lowest log p of the true class
    return np.where(valid & (picked <= cut), labels, IGNORE)

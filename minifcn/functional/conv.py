"""Convolution and transposed convolution ("deconvolution"): im2col and one matrix product.

A convolution computes, for every output pixel, a dot product between the
filter and the input window under it (Sec. 3 of the paper: y_ij = f_ks(...)).
im2col copies every window into one column of a matrix, so that all of those
dot products become one matrix product:

    cols = im2col(x)                  # (C*KH*KW, N*OH*OW): one column per output pixel
    y    = w.reshape(OC, -1) @ cols   # (OC, N*OH*OW), then viewed as (N, OC, OH, OW)

The backward pass uses the same two pieces the other way round:

    dL/dcols = w^T @ dL/dy  and  dL/dx = col2im(dL/dcols)   -- a transposed convolution
    dL/dw    = dL/dy @ cols^T                                -- im2col of x again

So the input gradient of a convolution IS a transposed convolution with the
same weights (the paper's "deconvolution", Sec. 3.3), and the input gradient
of a transposed convolution is a convolution.

This file reads top to bottom: first the plain reference of these three
passes, just as written above; then one dispatcher per pass, whose
docstring is the table of its routes (the GPU's: the CUDA kernels of
cuda/im2col.cu and cuBLAS, ``conv_gpu.py``; the reference; the fast CPU
routes of ``functional/cpu/``, each tested against the reference); then the
two ops, which hand each pass to its dispatcher. ``minifcn.reference()``
makes every CPU pass take the reference.
"""

from __future__ import annotations

from typing import Any

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..cuda import kernels
from . import conv_gpu, routes
from .cpu import blocks, flat, flipped, padding_skip, split_product, tiles
from .geometry import conv_output_size, conv_transpose_output_size, kernel_span, pad2d, pair
from .reduce import channel_sum

Pair = tuple[int, int]

# ---------------------------------------------------------------------------
# The reference: im2col, one matrix product, col2im


def im2col(x: Any, kernel: Pair, stride: Pair = (1, 1), padding: Pair = (0, 0), dilation: Pair = (1, 1)) -> Any:
    """Every window of the (zero-padded) input as one column.

    Shapes: x (N, C, H, W) -> cols (C*KH*KW, N*OH*OW); the entry at row
    (c, kh, kw) and column (n, i, j) is ``xpad[n, c, i*sh + kh*dh, j*sw + kw*dw]``.

    The loop runs over the kernel's taps, never over pixels: what tap
    (kh, kw) reads for every output pixel is one strided view of the padded
    input, copied at once.
    """
    xp = get_array_module(x)
    N, C, H, W = x.shape
    (KH, KW), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    OH, OW = conv_output_size(H, KH, sh, ph, dh), conv_output_size(W, KW, sw, pw, dw)
    xpad = pad2d(x, ph, pw, H + 2 * ph, W + 2 * pw)  # (N, C, Hp, Wp)
    cols = xp.empty((C, KH, KW, N, OH, OW), dtype=x.dtype)
    for kh in range(KH):
        for kw in range(KW):
            h0, w0 = kh * dh, kw * dw
            tap = xpad[:, :, h0 : h0 + (OH - 1) * sh + 1 : sh, w0 : w0 + (OW - 1) * sw + 1 : sw]  # (N, C, OH, OW)
            cols[:, kh, kw] = tap.transpose(1, 0, 2, 3)
    return cols.reshape(C * KH * KW, N * OH * OW)


def col2im(
    cols: Any, x_shape: tuple, kernel: Pair, stride: Pair = (1, 1), padding: Pair = (0, 0), dilation: Pair = (1, 1)
) -> Any:
    """The adjoint of :func:`im2col`: add every column entry back onto the input pixel it came from.

    Shapes: cols (C*KH*KW, N*OH*OW) -> dx (N, C, H, W) = x_shape. Within
    one tap the windows read distinct pixels, so each step is one ``+=`` into
    a strided view; windows that overlap add up across the taps.
    """
    xp = get_array_module(cols)
    N, C, H, W = x_shape
    (KH, KW), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    OH, OW = conv_output_size(H, KH, sh, ph, dh), conv_output_size(W, KW, sw, pw, dw)
    cols = cols.reshape(C, KH, KW, N, OH, OW)
    gxpad = xp.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)
    for kh in range(KH):
        for kw in range(KW):
            h0, w0 = kh * dh, kw * dw
            gxpad[:, :, h0 : h0 + (OH - 1) * sh + 1 : sh, w0 : w0 + (OW - 1) * sw + 1 : sw] += cols[
                :, kh, kw
            ].transpose(1, 0, 2, 3)
    return xp.ascontiguousarray(gxpad[:, :, ph : ph + H, pw : pw + W])


def conv2d_reference(x: Any, w: Any, b: Any, stride: Pair, padding: Pair, dilation: Pair) -> Any:
    """y = conv(x, w) + b. Shapes: x (N, C, H, W), w (OC, C, KH, KW), b (OC,) or None -> y (N, OC, OH, OW)."""
    xp = get_array_module(x, w)
    N, _, H, W = x.shape
    OC, C, KH, KW = w.shape
    OH = conv_output_size(H, KH, stride[0], padding[0], dilation[0])
    OW = conv_output_size(W, KW, stride[1], padding[1], dilation[1])
    cols = im2col(x, (KH, KW), stride, padding, dilation)  # (C*KH*KW, N*OH*OW)
    y = w.reshape(OC, C * KH * KW) @ cols  # (OC, N*OH*OW): every output pixel's dot product at once
    if b is not None:
        y += b.reshape(OC, 1)
    return xp.ascontiguousarray(y.reshape(OC, N, OH, OW).transpose(1, 0, 2, 3))


def conv2d_input_grad_reference(gy: Any, w: Any, input_hw: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Any:
    """dL/dx of y = conv(x, w): col2im(w^T @ dL/dy), the transposed convolution of dL/dy with w.

    Shapes: gy (N, OC, OH, OW), w (OC, C, KH, KW) -> dx (N, C, H, W), (H, W) = input_hw.
    """
    N, OC = gy.shape[:2]
    _, C, KH, KW = w.shape
    gcols = w.reshape(OC, C * KH * KW).T @ gy.transpose(1, 0, 2, 3).reshape(OC, -1)  # (C*KH*KW, N*OH*OW)
    return col2im(gcols, (N, C) + tuple(input_hw), (KH, KW), stride, padding, dilation)


def conv2d_weight_grad_reference(x: Any, gy: Any, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Any:
    """dL/dw of y = conv(x, w): dL/dy @ im2col(x)^T. Shapes: x (N, C, H, W), gy (N, OC, OH, OW) -> (OC, C, KH, KW)."""
    OC, C = gy.shape[1], x.shape[1]
    cols = im2col(x, kernel, stride, padding, dilation)  # (C*KH*KW, N*OH*OW)
    gw = gy.transpose(1, 0, 2, 3).reshape(OC, -1) @ cols.T  # (OC, C*KH*KW): summed over every output pixel
    return gw.reshape(OC, C, *kernel)


# ---------------------------------------------------------------------------
# The dispatchers: which route computes each pass

FORWARD = routes.declare(
    "conv2d", "gpu", "reference", "padding skip", "blocks", "tiles", "flat columns", "split product"
)
INPUT_GRAD = routes.declare("conv2d input gradient", "gpu", "reference", "flipped kernel", "blocks", "split product")
WEIGHT_GRAD = routes.declare(
    "conv2d weight gradient", "gpu", "reference", "padding skip", "blocks", "tiles", "flat columns", "split product"
)


def _forward(x: Any, w: Any, b: Any, stride: Pair, padding: Pair, dilation: Pair) -> Any:
    """y = conv(x, w) + b by the first route whose condition holds.

    | route         | when                                                  | what it does                          |
    |---------------|-------------------------------------------------------|---------------------------------------|
    | gpu           | CuPy arrays                                           | im2col kernel, cuBLAS, bands          |
    | reference     | ``minifcn.reference()``                               | ``conv2d_reference``                  |
    | padding skip  | stride 1, windows wholly in the padding (pad 100)     | the windows that see the image        |
    | blocks        | stride > 1, kernel ~ m strides, no dilation (upscore) | stride 1 on s x s blocks              |
    | tiles         | flat columns, <= 128 outputs, >= 8 MiB of columns     | cache-sized tiles over the cores      |
    | flat columns  | stride 1, wrap-around adds <= 1/8 to the columns      | runs of the flat input, in bands      |
    | split product | more than 2^18 multiply-adds                          | the reference, product on our threads |
    | reference     | anything else                                         | ``conv2d_reference``                  |

    The first three hand a smaller or stride-1 convolution back to this table.
    """
    geometry = (stride, padding, dilation)
    if kernels.on_gpu(x):
        routes.took(FORWARD, "gpu")
        return conv_gpu.forward(x, w, b, *geometry)
    if not routes.use_reference():
        if padding_skip.applies(w.shape, *geometry):
            routes.took(FORWARD, "padding skip")
            return padding_skip.forward(_forward, x, w, b, *geometry)
        if blocks.applies(w.shape, stride, dilation):
            routes.took(FORWARD, "blocks")
            return blocks.forward(_forward, x, w, b, stride, padding)
        if tiles.applies(x.shape, w.shape, *geometry, x.itemsize):
            routes.took(FORWARD, "tiles")
            return tiles.forward(x, w, b, padding, dilation)
        if flat.applies(x.shape, w.shape, *geometry):
            routes.took(FORWARD, "flat columns")
            return flat.forward(x, w, b, padding, dilation)
        if split_product.applies(x.shape, w.shape, *geometry):
            routes.took(FORWARD, "split product")
            return split_product.forward(im2col, x, w, b, *geometry)
    routes.took(FORWARD, "reference")
    return conv2d_reference(x, w, b, *geometry)


def _input_grad(gy: Any, w: Any, input_hw: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Any:
    """dL/dx of y = conv(x, w), the transposed convolution of dL/dy with w, by the first route that holds.

    | route          | when                                        | what it does                                   |
    |----------------|---------------------------------------------|------------------------------------------------|
    | gpu            | CuPy arrays                                 | cuBLAS, then the col2im kernel (a gather)      |
    | reference      | ``minifcn.reference()``                     | ``conv2d_input_grad_reference``                |
    | flipped kernel | stride 1, dx at most 1.25x dy's pixels      | a convolution with the kernel flipped          |
    | blocks         | stride > 1, kernel ~ m strides, no dilation | flipped kernel on s x s blocks, back to pixels |
    | split product  | more than 2^18 multiply-adds (fc6's 7x7)    | the reference, product on our threads          |
    | reference      | anything else                               | ``conv2d_input_grad_reference``                |

    The flipped-kernel routes hand a stride-1 convolution to ``_forward``'s table.
    """
    geometry = (stride, padding, dilation)
    if kernels.on_gpu(gy):
        routes.took(INPUT_GRAD, "gpu")
        return conv_gpu.input_grad(gy, w, input_hw, *geometry)
    if not routes.use_reference():
        if flipped.applies(gy.shape[2:], input_hw, stride):
            routes.took(INPUT_GRAD, "flipped kernel")
            return flipped.input_grad(_forward, gy, w, padding, dilation)
        if blocks.applies(w.shape, stride, dilation):
            routes.took(INPUT_GRAD, "blocks")
            return blocks.input_grad(_forward, gy, w, input_hw, stride, padding)
        if split_product.applies((gy.shape[0], w.shape[1]) + tuple(input_hw), w.shape, *geometry):
            routes.took(INPUT_GRAD, "split product")
            return split_product.input_grad(col2im, gy, w, input_hw, *geometry)
    routes.took(INPUT_GRAD, "reference")
    return conv2d_input_grad_reference(gy, w, input_hw, *geometry)


def _weight_grad(x: Any, gy: Any, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Any:
    """dL/dw of y = conv(x, w) by the first route that holds: the routes and conditions of ``_forward``.

    | route         | when                                              | what it does                               |
    |---------------|---------------------------------------------------|--------------------------------------------|
    | gpu           | CuPy arrays                                       | im2col kernel and cuBLAS, in bands of rows |
    | reference     | ``minifcn.reference()``                           | ``conv2d_weight_grad_reference``           |
    | padding skip  | stride 1, windows wholly in the padding           | those windows add nothing: left out        |
    | blocks        | stride > 1, kernel ~ m strides, no dilation       | the blocked convolution's, back to pixels  |
    | tiles         | flat columns, <= 128 outputs, >= 8 MiB of columns | tile by tile, summed in float64            |
    | flat columns  | stride 1, wrap-around costs <= 1/8 more columns   | flat columns, dL/dy widened with zeros     |
    | split product | more than 2^18 multiply-adds                      | the reference, product on our threads      |
    | reference     | anything else                                     | ``conv2d_weight_grad_reference``           |
    """
    geometry = (stride, padding, dilation)
    w_shape = (gy.shape[1], x.shape[1]) + tuple(kernel)
    if kernels.on_gpu(x):
        routes.took(WEIGHT_GRAD, "gpu")
        return conv_gpu.weight_grad(x, gy, kernel, *geometry)
    if not routes.use_reference():
        if padding_skip.applies(w_shape, *geometry):
            routes.took(WEIGHT_GRAD, "padding skip")
            return padding_skip.weight_grad(_weight_grad, x, gy, kernel, *geometry)
        if blocks.applies(w_shape, stride, dilation):
            routes.took(WEIGHT_GRAD, "blocks")
            return blocks.weight_grad(_weight_grad, x, gy, kernel, stride, padding)
        if tiles.applies(x.shape, w_shape, *geometry, x.itemsize):
            routes.took(WEIGHT_GRAD, "tiles")
            return tiles.weight_grad(x, gy, kernel, padding, dilation)
        if flat.applies(x.shape, w_shape, *geometry):
            routes.took(WEIGHT_GRAD, "flat columns")
            return flat.weight_grad(x, gy, kernel, padding, dilation)
        if split_product.applies(x.shape, w_shape, *geometry):
            routes.took(WEIGHT_GRAD, "split product")
            return split_product.weight_grad(im2col, x, gy, kernel, *geometry)
    routes.took(WEIGHT_GRAD, "reference")
    return conv2d_weight_grad_reference(x, gy, kernel, *geometry)


# ---------------------------------------------------------------------------
# The two ops


def _check_inputs(op: str, x: Any, w: Any, b: Any, x_channels_axis: int, out_channels_axis: int, w_layout: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"{op}: weight must be 4-D {w_layout}, got shape {w.shape}")
    if x.dtype.kind != "f" or x.dtype != w.dtype:
        raise TypeError(f"{op}: input and weight must share one floating dtype, got {x.dtype} and {w.dtype}")
    if x.shape[1] != w.shape[x_channels_axis]:
        raise ValueError(
            f"{op}: input has {x.shape[1]} channels (shape {x.shape}) but weight of shape {w.shape} "
            f"{w_layout} expects {w.shape[x_channels_axis]}"
        )
    if b is not None:
        OC = w.shape[out_channels_axis]
        if b.shape != (OC,):
            raise ValueError(f"{op}: bias must have shape ({OC},) for weight {w.shape}, got {b.shape}")
        if b.dtype != x.dtype:
            raise TypeError(f"{op}: bias dtype {b.dtype} differs from input dtype {x.dtype}")


class _Convolution(Function):
    """What both convolutions share: stride, padding and dilation, and the bias gradient."""

    op = "convolution"

    def __init__(self, stride: Any = 1, padding: Any = 0, dilation: Any = 1):
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        self.dilation = pair(dilation, "dilation")
        if min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"{self.op}: need stride >= 1, dilation >= 1 and padding >= 0, got stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}"
            )

    def _with_bias_grad(self, gx: Any, gw: Any, gy: Any) -> tuple:
        """(dx, dw) and, when there is a bias, db: dy summed over N, OH and OW (in float64, see reduce.py)."""
        return (gx, gw, channel_sum(gy).astype(gy.dtype)) if self.has_bias else (gx, gw)


class Conv2d(_Convolution):
    """2-D convolution (cross-correlation, as in every framework).

    Shapes:
        x: (N, C, H, W); w: (OC, C, KH, KW); b: (OC,)
        y: (N, OC, OH, OW), OH = conv_output_size(H, KH, sh, ph, dh)

    Backward: dx is the transposed convolution of dy with w; dw is
    dy @ im2col(x)^T; db sums dy over N, OH and OW.
    """

    op = "conv2d"

    def forward(self, x: Any, w: Any, b: Any = None) -> Any:
        _check_inputs("conv2d", x, w, b, 1, 0, "(OC, C, KH, KW)")
        _, _, H, W = x.shape
        for size, k, p, d, axis in (
            (H, w.shape[2], self.padding[0], self.dilation[0], "height"),
            (W, w.shape[3], self.padding[1], self.dilation[1], "width"),
        ):
            if kernel_span(k, d) > size + 2 * p:
                raise ValueError(
                    f"conv2d: kernel {w.shape[2]}x{w.shape[3]} (dilation {self.dilation}) spans "
                    f"{kernel_span(k, d)} pixels in {axis}, more than the padded input: "
                    f"input {H}x{W} with padding {self.padding}"
                )
        self.x, self.w, self.has_bias = x, w, b is not None
        return _forward(x, w, b, self.stride, self.padding, self.dilation)

    def backward(self, gy: Any) -> tuple:
        geometry = (self.stride, self.padding, self.dilation)
        gx = gw = None
        if self.needs_input_grad[0]:
            gx = _input_grad(gy, self.w, self.x.shape[2:], *geometry)
        if self.needs_input_grad[1]:
            gw = _weight_grad(self.x, gy, self.w.shape[2:], *geometry)
        return self._with_bias_grad(gx, gw, gy)


def conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1
) -> Tensor:
    """2-D convolution. ``weight`` (OC, C, KH, KW); stride, padding, dilation: an int or an (H, W) pair."""
    f = Conv2d(stride, padding, dilation)
    return f(x, weight) if bias is None else f(x, weight, bias)


class ConvTranspose2d(_Convolution):
    """2-D transposed convolution, the paper's "deconvolution" (Sec. 3.3).

    Each input pixel scatters a copy of the filter, scaled by its value,
    into the output at stride ``s``; overlaps add up. It is exactly the input
    gradient of ``conv2d`` with the same weight, stride, padding and dilation,
    and that is how it is computed (by ``_input_grad``'s routes).

    Shapes:
        x: (N, C, H, W); w: (C, OC, KH, KW); b: (OC,)
        y: (N, OC, OH, OW), OH = (H - 1) * s - 2 * p + dilation * (KH - 1) + 1

    Backward: dx is conv2d(dy, w); dw is the weight gradient of that
    convolution with dy as its input and x as its output gradient.
    """

    op = "conv_transpose2d"

    def forward(self, x: Any, w: Any, b: Any = None) -> Any:
        _check_inputs("conv_transpose2d", x, w, b, 0, 1, "(C, OC, KH, KW)")
        _, _, H, W = x.shape
        out_hw = (
            conv_transpose_output_size(H, w.shape[2], self.stride[0], self.padding[0], self.dilation[0]),
            conv_transpose_output_size(W, w.shape[3], self.stride[1], self.padding[1], self.dilation[1]),
        )
        if min(out_hw) < 1:
            raise ValueError(
                f"conv_transpose2d: output would be {out_hw[0]}x{out_hw[1]} for input {H}x{W}, "
                f"kernel {w.shape[2]}x{w.shape[3]}, stride {self.stride}, padding {self.padding}"
            )
        y = _input_grad(x, w, out_hw, self.stride, self.padding, self.dilation)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        self.x, self.w, self.has_bias = x, w, b is not None
        return y

    def backward(self, gy: Any) -> tuple:
        geometry = (self.stride, self.padding, self.dilation)
        gx = gw = None
        if self.needs_input_grad[0]:
            gx = _forward(gy, self.w, None, *geometry)
        if self.needs_input_grad[1]:
            gw = _weight_grad(gy, self.x, self.w.shape[2:], *geometry)
        return self._with_bias_grad(gx, gw, gy)


def conv_transpose2d(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1
) -> Tensor:
    """Transposed convolution. ``weight`` (C, OC, KH, KW); out = (H - 1) * stride - 2 * padding + KH."""
    f = ConvTranspose2d(stride, padding, dilation)
    return f(x, weight) if bias is None else f(x, weight, bias)

"""Differentiable ops, forward and backward written by hand; one file per family.

Each op's file opens with its plain reference, then its dispatcher (a table
of its routes in the docstring), then the op itself.

conv.py      conv2d, conv_transpose2d: im2col, one matrix product, col2im
conv_gpu.py  the convolution's GPU route (CUDA im2col / col2im and cuBLAS)
pool.py      max_pool2d, avg_pool2d
loss.py      log_softmax, softmax_cross_entropy
basic.py     add, mul, sum, relu, dropout, crop, concat, narrow
linear.py    linear, flatten (the classifiers' fully connected head)
norm.py      batch_norm (not in the paper; the tiny-bn backbone)
lrn.py       local_response_norm (GoogLeNet's and AlexNet's LRN)
reduce.py    sums over many pixels that keep their digits
geometry.py  output sizes, padding, window taps and bands, shared by all of the above
routes.py    reference(): the switch to the references; which route each op took
cpu/         the fast CPU routes, each a named condition and a function, and the threads they share
"""

from .basic import add, concat, crop, dropout, mul, narrow, relu, sum
from .conv import col2im, conv2d, conv_transpose2d, im2col
from .geometry import conv_output_size, conv_transpose_output_size, kernel_span, pool_output_size
from .linear import flatten, linear
from .loss import log_softmax, softmax_cross_entropy
from .lrn import local_response_norm
from .norm import batch_norm
from .pool import avg_pool2d, max_pool2d
from .routes import reference

__all__ = [
    "add",
    "mul",
    "sum",
    "relu",
    "dropout",
    "crop",
    "concat",
    "narrow",
    "conv2d",
    "conv_transpose2d",
    "im2col",
    "col2im",
    "max_pool2d",
    "avg_pool2d",
    "linear",
    "flatten",
    "batch_norm",
    "local_response_norm",
    "log_softmax",
    "softmax_cross_entropy",
    "conv_output_size",
    "conv_transpose_output_size",
    "pool_output_size",
    "kernel_span",
    "reference",
]

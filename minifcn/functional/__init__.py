"""Differentiable ops, forward and backward written by hand; one file per family.

conv.py      conv2d, conv_transpose2d (im2col / col2im and one matrix product)
pool.py      max_pool2d, avg_pool2d
loss.py      log_softmax, softmax_cross_entropy
basic.py     add, mul, sum, relu, dropout, crop, concat, narrow
linear.py    linear, flatten (the classifiers' fully connected head)
norm.py      batch_norm (not in the paper; the tiny-bn backbone)
lrn.py       local_response_norm (GoogLeNet's and AlexNet's LRN)
geometry.py  output-size helpers shared by all of the above
threads.py   memory-bound passes split by channels over the cores (max pooling)
"""

from .basic import add, concat, crop, dropout, mul, narrow, relu, sum
from .conv import col2im, conv2d, conv_transpose2d, im2col, im2col_flat
from .geometry import conv_output_size, conv_transpose_output_size, kernel_span, pool_output_size
from .linear import flatten, linear
from .loss import log_softmax, softmax_cross_entropy
from .lrn import local_response_norm
from .norm import batch_norm
from .pool import avg_pool2d, max_pool2d

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
    "im2col_flat",
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
]

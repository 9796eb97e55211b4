"""minifcn's own CUDA kernels: readable ``.cu`` sources, compiled and launched through CuPy.

    common.cuh        the grid-stride loop every kernel shares
    im2col.cu         im2col and col2im (convolution and transposed convolution)
    pool.cu           max and average pooling, forward and backward
    softmax_loss.cu   per-pixel softmax cross-entropy with an ignore label
    launch.py         compiles each file once per device (cupy.RawModule), checks and launches
    kernels.py        one Python function per kernel: allocates the output, launches

Every kernel has one thread per output element and gathers what it needs, so
none needs atomics, and each computes exactly what the NumPy form of its op
computes (tests/test_cuda_sources.py runs them on the host too).
Importing this package does not import CuPy; the first launch does.
"""

from . import kernels, launch

__all__ = ["kernels", "launch"]

"""Geometries on which the CUDA kernels are compared with the NumPy ops (on the host and on a GPU)."""

CONV_CASES = [  # N, C, H, W, KH, KW, stride, padding, dilation
    (2, 3, 7, 6, 3, 3, (1, 1), (1, 1), (1, 1)),
    (1, 2, 9, 8, 3, 2, (2, 3), (1, 0), (1, 1)),
    (2, 2, 10, 9, 3, 3, (1, 2), (2, 2), (2, 3)),
    (1, 1, 5, 5, 1, 1, (1, 1), (3, 3), (1, 1)),  # a padding wider than the kernel, as conv1_1's 100
    (2, 4, 6, 6, 1, 1, (1, 1), (0, 0), (1, 1)),  # the score layers
]

POOL_CASES = [  # N, C, H, W, kernel, stride, padding, dilation, ceil_mode
    (2, 3, 7, 9, (2, 2), (2, 2), (0, 0), (1, 1), True),  # the FCNs' pooling, odd sizes: ceil windows overhang
    (1, 2, 8, 8, (3, 3), (2, 2), (1, 1), (1, 1), False),
    (1, 2, 9, 10, (3, 2), (2, 3), (1, 1), (2, 1), True),
    (2, 1, 6, 6, (3, 3), (1, 1), (1, 0), (1, 1), False),
]

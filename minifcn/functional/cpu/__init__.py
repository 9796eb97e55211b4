"""The fast CPU routes: each one named condition (``applies``) and one function, beside the plain references.

Every op of ``minifcn.functional`` is written first as a plain reference,
the way the paper and a textbook put it. The files here make some of them
faster on the CPU, in NumPy alone. Each op's dispatcher (in the op's own
file: ``conv.py``, ``pool.py``, ...) lists its routes in a table in its
docstring and takes the first whose condition holds; ``minifcn.reference()``
turns them all off.

conv routes   padding_skip.py  windows wholly in the zero padding left out (conv1_1's pad 100)
              blocks.py        strided convolutions as stride-1 ones on blocks of pixels (the upsampling)
              flipped.py       a stride-1 transposed convolution as a convolution with the kernel flipped
              flat.py          stride-1 columns as runs of the flattened input, in bands
              tiles.py         few-channel convolutions in cache-sized tiles, over the cores
              split_product.py the rest: the reference with its products on our threads
other routes  pool.py          max pooling in cache-sized blocks over the cores
              relu.py          ReLU against a plane of zeros
              norm.py          batch norm by channels over the cores
              loss.py          the softmax loss in one array
shared        threads.py       work split over the cores; BLAS on one thread in each
              workspace.py     reused scratch buffers, bounded

A new route comes with: its condition and function here, one row in its
dispatcher's table, a test that compares it with the reference (float64,
forward and backward) on shapes that reach it and on shapes at the edge of
its condition where it must not be taken (tests/test_routes.py), and its
measured gain on docs/performance.md and benchmarks/RESULTS.md.
"""

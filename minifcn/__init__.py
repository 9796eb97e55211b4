"""minifcn: "Fully Convolutional Networks for Semantic Segmentation" (Long, Shelhamer,
Darrell) rebuilt from scratch with NumPy on the CPU and CuPy on NVIDIA GPUs.

    import minifcn as mf
    import minifcn.functional as F

    x = mf.Tensor(array, requires_grad=True)
    loss = F.softmax_cross_entropy(F.conv2d(x, w, b, padding=1), labels)
    loss.backward()          # x.grad, w.grad, b.grad

    with mf.reference():     # every op by its plain reference (the fast CPU routes off)
        ...
"""

from . import functional  # noqa: F401  (importing it attaches Tensor's operators: functional/basic.py)
from .autograd import Function, Tensor, is_grad_enabled, no_grad
from .functional.routes import reference
from .receptive import summary
from .rng import manual_seed
from .serialization import load, save

__version__ = "0.1.0"

__all__ = [
    "Tensor",
    "Function",
    "no_grad",
    "is_grad_enabled",
    "save",
    "load",
    "manual_seed",
    "summary",
    "reference",
    "__version__",
]

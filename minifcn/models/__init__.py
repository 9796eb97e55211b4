"""The paper's networks: the ImageNet classifiers and the FCNs built on them.

    from minifcn.models import VGG16, AlexNet, FCN32s, FCN16s, FCN8s, FCN8sAtOnce
    model = FCN8s(n_class=21, backbone="vgg16")   # or "tiny"; FCN32s also takes "alexnet"
"""

from .backbones import BACKBONES
from .classifiers import AlexNet, Classifier, VGG16
from .fcn import FCN, FCN8s, FCN8sAtOnce, FCN16s, FCN32s

__all__ = ["VGG16", "AlexNet", "Classifier", "FCN", "FCN32s", "FCN16s", "FCN8s", "FCN8sAtOnce", "BACKBONES"]

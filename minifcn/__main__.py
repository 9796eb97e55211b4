"""python -m minifcn: the commands, one line each."""

from __future__ import annotations

from . import __version__

COMMANDS = {
    "train": "train an FCN (the quick preset on built-in Shapes by default; --preset, --dataset, --download)",
    "evaluate": "score a checkpoint or a reference .caffemodel on a dataset split (pixel acc, mean IU, ...)",
    "predict": "write class maps (and coloured pictures) for image files",
    "download": "fetch datasets and weights, checked (VOC, SBD, CamVid, ImageNet weights, the reference's FCNs)",
}


def main() -> None:
    print(f"minifcn {__version__}: fully convolutional networks from scratch. Commands:")
    for name, what in COMMANDS.items():
        print(f"  python -m minifcn.{name:<9} {what}")
    print("Each takes --help.")


if __name__ == "__main__":
    main()

"""Receptive fields: which input pixels each unit of each layer sees (Sec. 3 and 4.2).

Along one axis, the units of a layer form a regular grid over the input,
described by three numbers:

    size    the extent of one unit's receptive field, in input pixels
    jump    the distance in input pixels between two neighbouring units (the cumulative stride)
    offset  the input coordinate of the centre of unit 0's field (negative when it lies in padding)

so unit u of the layer is centred on input pixel ``offset + jump * u`` and
sees the pixels within ``(size - 1) / 2`` of that centre. A convolution or
pooling layer with kernel k (dilated span K), stride s and padding p turns
(size, jump, offset) into

    size + (K - 1) * jump,    jump * s,    offset + ((K - 1) / 2 - p) * jump

and a transposed convolution (an upsampling by s) inverts the last two:
jump / s and offset - ((k - 1) / 2 - p) * jump / s. Its output units do not
all see the same input units; its size here is the largest field (each
output gathers at most ceil(k / s) input units).

This is the same coordinate map that Caffe's crop layer uses to align two
maps. The FCNs crop each upsampled score map so that its unit i sits over
input pixel i (or over the skip map's unit i); ``crop_offsets`` derives those
crops from the layers, so the numbers in the models are never typed in. For
the VGG16 networks they come out as the reference's 19 (FCN-32s); 5, 27
(FCN-16s); 5, 9, 31 (FCN-8s).

Models with skips describe their maps with two attributes:

    model.paths()   map name -> the chain of layer names from the input to it
    model.CROPS     crop name -> (map that is cropped, map it is aligned with; 'input' is the image)

A fused map (upsampled + cropped skip) has the geometry of its upsampled
branch, which is what the crop makes true, so each chain follows that branch.
Models without ``paths`` (the classifiers, ``nn.Sequential``) are traced
child by child, up to their first fully connected layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterable

from .functional.geometry import (
    conv_output_size,
    conv_transpose_output_size,
    kernel_span,
    pool_output_size,
)
from .nn import POINTWISE, AvgPool2d, Conv2d, ConvTranspose2d, Flatten, Inception, Linear, MaxPool2d, Module
from .nn.inception import FIELD_GEOMETRY as INCEPTION_FIELD_GEOMETRY


@dataclass(frozen=True)
class Field:
    """Receptive-field geometry of one layer's units along one axis, in input pixels (exact fractions)."""

    size: Fraction
    jump: Fraction
    offset: Fraction

    def centre(self, u: int) -> Fraction:
        """Input coordinate of the centre of unit ``u``'s field."""
        return self.offset + self.jump * u

    def extent(self, u: int) -> tuple[Fraction, Fraction]:
        """First and last input pixel of unit ``u``'s field (they may lie in the padding)."""
        half = (self.size - 1) / 2
        return self.centre(u) - half, self.centre(u) + half


INPUT = Field(Fraction(1), Fraction(1), Fraction(0))  # the image itself: each pixel sees itself


def _geometry(layer: Module, axis: int) -> tuple[str, int, int, int, int] | None:
    """(kind, kernel, stride, padding, dilation) of ``layer`` along ``axis``; None for a pointwise layer."""
    if isinstance(layer, POINTWISE):
        return None
    if isinstance(layer, (Conv2d, ConvTranspose2d)):
        dilation = getattr(layer, "dilation", (1, 1))
        kind = "deconv" if isinstance(layer, ConvTranspose2d) else "conv"
        return kind, layer.kernel_size[axis], layer.stride[axis], layer.padding[axis], dilation[axis]
    if isinstance(layer, Inception):
        return INCEPTION_FIELD_GEOMETRY
    if isinstance(layer, (MaxPool2d, AvgPool2d)):
        return "pool", layer.kernel_size[axis], layer.stride[axis], layer.padding[axis], layer.dilation[axis]
    raise TypeError(
        f"receptive: cannot trace layer {layer.label()}: only convolutions, transposed convolutions, "
        "pooling, inception modules and pointwise layers (ReLU, Dropout, Scale, BatchNorm2d, LocalResponseNorm) "
        "have a receptive-field geometry"
    )


def step(field: Field, layer: Module, axis: int = 0) -> Field:
    """The field of ``layer``'s output units, given the field of its input units (see the module docstring)."""
    geometry = _geometry(layer, axis)
    if geometry is None:
        return field
    kind, k, s, p, d = geometry
    if kind == "deconv":
        jump = field.jump / s
        return Field(
            field.size + (math.ceil(k / s) - 1) * field.jump, jump, field.offset - (Fraction(k - 1, 2) - p) * jump
        )
    span = kernel_span(k, d)
    return Field(
        field.size + (span - 1) * field.jump, field.jump * s, field.offset + (Fraction(span - 1, 2) - p) * field.jump
    )


def _output_length(layer: Module, length: int, axis: int) -> int:
    geometry = _geometry(layer, axis)
    if geometry is None:
        return length
    kind, k, s, p, d = geometry
    if kind == "deconv":
        return conv_transpose_output_size(length, k, s, p, d)
    if kind == "pool":
        return pool_output_size(length, k, s, p, d, layer.ceil_mode)
    return conv_output_size(length, k, s, p, d)


@dataclass(frozen=True)
class Row:
    """One layer of a trace: its name, kind, kernel, stride, the field of its output units, and its output length."""

    name: str
    kind: str
    kernel: int | None
    stride: int | None
    field: Field
    length: int | None  # output length along the axis, when an input size was given


class Trace(dict):
    """Layer name -> :class:`Row`, in order along the network; ``print`` shows it as a table."""

    def __str__(self) -> str:
        header = f"{'layer':<16}{'kind':<8}{'kernel':>7}{'stride':>7}{'size':>8}{'jump':>8}{'offset':>9}"
        with_length = any(row.length is not None for row in self.values())
        lines = [header + (f"{'out':>7}" if with_length else "")]
        for row in self.values():
            f = row.field
            line = (
                f"{row.name:<16}{row.kind:<8}{_fmt(row.kernel):>7}{_fmt(row.stride):>7}"
                f"{_fmt(f.size):>8}{_fmt(f.jump):>8}{_fmt(f.offset):>9}"
            )
            lines.append(line + (f"{_fmt(row.length):>7}" if with_length else ""))
        return "\n".join(lines)

    __repr__ = __str__


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, Fraction) and v.denominator != 1:
        return f"{float(v):g}"
    return str(int(v))


def _chains(model: Module) -> list[list[str]]:
    """The chains of layer names to trace: the model's ``paths()``, or its children in order."""
    if hasattr(model, "paths"):
        return list(model.paths().values())
    names = []
    for name, layer in model._modules.items():
        try:
            _geometry(layer, 0)
        except TypeError:
            break  # a fully connected layer: its field is the whole input, the grid ends here
        names.append(name)
    return [names]


def trace(model: Module, input_size: int | None = None, axis: int = 0) -> Trace:
    """Trace ``model`` layer by layer into receptive-field size, jump and offset along ``axis`` (0 = height).

    With ``input_size`` (the input's length along the axis), each row also
    gives the layer's output length. Every layer appears once, in the order
    the model's chains reach it.
    """
    rows = Trace()
    for chain in _chains(model):
        field, length = INPUT, input_size
        for name in chain:
            layer = getattr(model, name)
            field = step(field, layer, axis)
            length = None if length is None else _output_length(layer, length, axis)
            if name not in rows:
                geometry = _geometry(layer, axis)
                kind = type(layer).__name__ if geometry is None else geometry[0]
                kernel, stride = (None, None) if geometry is None else geometry[1:3]
                rows[name] = Row(name, kind, kernel, stride, field, length)
    return rows


def field_of(model: Module, chain: Iterable[str], axis: int = 0) -> Field:
    """The field of the last layer of ``chain`` (layer names of ``model``, from the input on)."""
    field = INPUT
    for name in chain:
        field = step(field, getattr(model, name), axis)
    return field


def crop_offsets(model: Module) -> dict[str, int]:
    """The offset of each crop in ``model.CROPS``, derived from the layers (Caffe's crop rule).

    Cropping map A at offset o aligns it with map B when A's unit o + i is
    centred where B's unit i is: offset_A + jump * (o + i) = offset_B + jump * i,
    so o = (offset_B - offset_A) / jump. Both maps must have the same jump, and
    o must be a whole number of units, along both axes.
    """
    paths = model.paths()
    offsets = {}
    for crop, (cropped, reference) in model.CROPS.items():
        for name in (cropped, reference):
            if name != "input" and name not in paths:
                raise ValueError(
                    f"receptive: crop {crop} needs the map {name!r}, "
                    f"but {type(model).__name__}.paths() has no chain for it"
                )
        per_axis = []
        for axis in (0, 1):
            a = field_of(model, paths[cropped], axis)
            b = INPUT if reference == "input" else field_of(model, paths[reference], axis)
            if a.jump != b.jump:
                raise ValueError(
                    f"receptive: crop {crop}: {cropped} (jump {_fmt(a.jump)}) and {reference} "
                    f"(jump {_fmt(b.jump)}) are on different grids; upsample first"
                )
            o = (b.offset - a.offset) / a.jump
            if o.denominator != 1 or o < 0:
                raise ValueError(
                    f"receptive: crop {crop}: {cropped} would need offset {_fmt(o)} to align with {reference}; "
                    "a crop needs a whole, non-negative number of units (check the padding and kernel sizes)"
                )
            per_axis.append(int(o))
        if per_axis[0] != per_axis[1]:
            raise ValueError(f"receptive: crop {crop}: offsets differ along height and width: {per_axis}")
        offsets[crop] = per_axis[0]
    return offsets


def fits(model: Module, size: int) -> bool:
    """Whether an input ``size`` pixels long (along every axis) gives ``model`` a whole output: every map at
    least one unit long, and each cropped map long enough to cover what it is aligned with at its crop."""
    rows = trace(model, input_size=size)
    if any(row.length is not None and row.length < 1 for row in rows.values()):
        return False
    paths, ends = model.paths(), {name: chain[-1] for name, chain in model.paths().items()}
    for crop, (cropped, reference) in model.CROPS.items():
        covered = size if reference == "input" else rows[ends[reference]].length
        if cropped in paths and rows[ends[cropped]].length < model.crop_offsets[crop] + covered:
            return False
    return True


def smallest_input(model: Module, largest: int = 512) -> int:
    """The least input size from which every size up to ``largest`` fits the model (``fits``): 1 for the paper's
    pad 100, more for less padding (57 for an FCN-8s on VGG16's geometry with pad 69)."""
    failing = [size for size in range(1, largest + 1) if not fits(model, size)]
    return failing[-1] + 1 if failing else 1


# ---------------------------------------------------------------------------
# summary: the trace with shapes and parameter counts, for lessons and users


class Summary(list):
    """Rows of (name, kind, output shape, parameters, field size, jump); ``print`` shows a table."""

    crops: dict[str, int]

    @property
    def total_params(self) -> int:
        return sum(row[3] for row in self)

    def __str__(self) -> str:
        lines = [f"{'layer':<16}{'kind':<18}{'output shape':<24}{'params':>12}{'field':>8}{'jump':>7}"]
        for name, kind, shape, n_params, size, jump in self:
            lines.append(f"{name:<16}{kind:<18}{str(shape):<24}{n_params:>12,}{_fmt(size):>8}{_fmt(jump):>7}")
        lines.append(f"total parameters: {self.total_params:,}")
        if self.crops:
            lines.append("crops: " + ", ".join(f"{name} at offset {o}" for name, o in self.crops.items()))
        return "\n".join(lines)

    __repr__ = __str__


def summary(model: Module, input_shape: tuple[int, int, int, int]) -> Summary:
    """One row per layer: output shape (N, C, H, W) for an input of ``input_shape``, parameter count,
    receptive-field size and jump (along the height), and the model's crop offsets."""
    if len(input_shape) != 4:
        raise ValueError(f"summary: input_shape must be (N, C, H, W), got {input_shape}")
    N, C, H, W = input_shape
    rows_h, rows_w = trace(model, H, axis=0), trace(model, W, axis=1)
    channels = {}
    for chain in _chains(model):
        c = C
        for name in chain:
            c = getattr(getattr(model, name), "out_channels", c)
            channels[name] = c
    out = Summary()
    shape: tuple = (N, C, H, W)
    for name, row in rows_h.items():
        layer = getattr(model, name)
        shape = (N, channels[name], row.length, rows_w[name].length)
        out.append((name, type(layer).__name__, shape, _n_params(layer), row.field.size, row.field.jump))
    if not hasattr(model, "paths"):
        # A classifier's head after the grid: flatten, then fully connected layers; each sees the whole image.
        for name, layer in list(model._modules.items())[len(rows_h) :]:
            if isinstance(layer, Linear):
                shape = (N, layer.out_features)
            elif isinstance(layer, Flatten) and len(shape) == 4:
                shape = (N, shape[1] * shape[2] * shape[3])
            out.append((name, type(layer).__name__, shape, _n_params(layer), None, None))
    out.crops = crop_offsets(model) if hasattr(model, "CROPS") else {}
    return out


def _n_params(layer: Module) -> int:
    return sum(p.size for p in layer.parameters())

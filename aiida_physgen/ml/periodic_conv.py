"""Convolutions with periodic (circular) padding: on a square grid, and on the zig-zag (triangular) grid.

RUGAN (Mills, Casert, Tamblyn 2020) generates periodic graphene sheets with a fully convolutional
network: every convolution wraps around the sheet's periodic boundary, so the network has no edge,
and a noise block twice as large on each side gives a sheet of four times the area that still
tiles periodically.

* :class:`PeriodicConv2d` is a square-lattice convolution (``torch.nn.Conv2d`` with circular padding
  of ``kernel_size // 2``; odd kernels only, so the output has the input's shape).
* :class:`HexConv2d` is the hexagonal convolution of HexagDly (Steppa, Holch 2019) on the zig-zag grid
  of :mod:`~aiida_physgen.ml.graphene`: every site sees itself and its 6 nearest neighbours on the
  triangular lattice the honeycomb lives on (3 carbon neighbours and 3 hexagon centres).

Why not HexagDly itself: it pads with zeros only (``nn.ZeroPad2d`` throughout its ``HexBase``), so a
periodic sheet would get edges, and it is not maintained (the last release on PyPI, hexagdly 2.0.2, is
from April 2019: ``pip download hexagdly`` fetches that 7 kB wheel and nothing newer). The 7-weight
kernel of size 1 is all RUGAN needs, and written here it is a single strided ``conv2d`` per column
parity on the circularly padded input.

Grid geometry (see :mod:`~aiida_physgen.ml.graphene`): zig-zag column ``i`` sits at ``x = i·a/2``, its
site ``r`` at ``y = (2r + i mod 2)·cc/2``. The six neighbours of site ``(r, i)`` are ``(r ± 1, i)`` in
its own column and, in the columns ``i ± 1``, rows ``r − 1`` (below) and ``r`` (above) for an even
column, rows ``r`` (below) and ``r + 1`` (above) for an odd one. The grid must have an even number of
columns, so that the column parity survives the periodic wrap (every honeycomb grid does: ``2·nx``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["PeriodicConv2d", "HexConv2d", "HEX_DIRECTIONS", "hex_kernels", "circular_pad"]

#: the 7 taps of a hexagonal kernel, in the order of the weight's last axis
HEX_DIRECTIONS = ("centre", "up", "down", "upper_left", "lower_left", "upper_right", "lower_right")

# (row offset, column offset) of each direction, for even and for odd columns; "up" is +y (row + 1)
_EVEN_OFFSETS = ((0, 0), (1, 0), (-1, 0), (0, -1), (-1, -1), (0, 1), (-1, 1))
_ODD_OFFSETS = ((0, 0), (1, 0), (-1, 0), (1, -1), (0, -1), (1, 1), (0, 1))


class _CircularPad(torch.autograd.Function):
    """Periodic padding whose backward is :class:`_Fold` (its adjoint), and the fold's backward this pad.

    ``F.pad(mode='circular')`` computes the same values, but its backward builds a zero-filled
    gradient for every border slice it copied; with the gradient penalty's double backward through
    every critic convolution that was a quarter of a critic update. The fold adds the gradient of
    the padded borders back onto the edges they copy, with one allocation (measured: two 16-channel
    3 × 3 layers on 128 × 14 × 16 grids, forward + penalty: 14 ms against 19 ms with ``F.pad``,
    10.5 ms with zero padding). Both are linear, so second derivatives are exact.
    """

    @staticmethod
    def forward(ctx, x, rows, columns):
        ctx.pads = (rows, columns)
        return F.pad(x, (columns, columns, rows, rows), mode="circular")

    @staticmethod
    def backward(ctx, grad):
        return _Fold.apply(grad, *ctx.pads), None, None


class _Fold(torch.autograd.Function):
    """The adjoint of :class:`_CircularPad`: the padded borders summed back onto the edges."""

    @staticmethod
    def forward(ctx, grad, rows, columns):
        ctx.pads = (rows, columns)
        out = grad
        if rows:
            out = grad[..., rows:-rows, :].clone()
            out[..., :rows, :] += grad[..., -rows:, :]
            out[..., -rows:, :] += grad[..., :rows, :]
        if columns:
            folded = out[..., columns:-columns].clone()
            folded[..., :columns] += out[..., -columns:]
            folded[..., -columns:] += out[..., :columns]
            out = folded
        return out

    @staticmethod
    def backward(ctx, grad):
        return _CircularPad.apply(grad, *ctx.pads), None, None


def circular_pad(x: torch.Tensor, rows: int = 1, columns: int = 1) -> torch.Tensor:
    """``x`` (``..., R, C``) wrapped around by ``rows`` and ``columns`` on each side (periodic padding;
    at most the grid's size on each axis)."""
    if rows > x.shape[-2] or columns > x.shape[-1]:
        raise ValueError(f"circular_pad: cannot wrap a {tuple(x.shape[-2:])} grid by {(rows, columns)}")
    if not rows and not columns:
        return x
    return _CircularPad.apply(x, int(rows), int(columns))


class PeriodicConv2d(nn.Conv2d):
    """A square-lattice convolution with circular padding: same output shape as input, no edges.

    Takes ``torch.nn.Conv2d``'s arguments except ``padding`` and ``padding_mode`` (odd kernel sizes
    only; the padding is ``kernel_size // 2`` on every side, wrapped around by :func:`circular_pad`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True, **kwargs):
        if "padding" in kwargs or "padding_mode" in kwargs:
            raise TypeError("PeriodicConv2d: the padding is always circular, kernel_size // 2 on every side")
        sizes = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if any(k % 2 == 0 or k < 1 for k in sizes):
            raise ValueError(
                f"kernel_size: got {kernel_size!r}, expected odd sizes (the output keeps the input's shape)"
            )
        super().__init__(in_channels, out_channels, sizes, padding=0, bias=bias, **kwargs)
        self.wrap = (sizes[0] // 2, sizes[1] // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(circular_pad(x, *self.wrap))

    def extra_repr(self) -> str:
        return super().extra_repr() + ", periodic"


def hex_kernels(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 3 × 3 kernels ``(out, in, 3, 3)`` of even and odd columns from the 7 taps ``(out, in, 7)``.

    Kernel element ``[1 + dr, 1 + dc]`` multiplies the input at row ``r + dr``, column ``i + dc``
    (``conv2d`` is a cross-correlation); the two unused corners of each kernel stay zero.
    """
    out_channels, in_channels, taps = weight.shape
    if taps != 7:
        raise ValueError(f"weight: expected 7 taps (centre and 6 neighbours), got {taps}")
    kernels = []
    for offsets in (_EVEN_OFFSETS, _ODD_OFFSETS):
        index = torch.tensor([3 * (1 + dr) + (1 + dc) for dr, dc in offsets], device=weight.device)
        flat = weight.new_zeros(out_channels, in_channels, 9)
        flat = flat.index_copy(2, index, weight)
        kernels.append(flat.reshape(out_channels, in_channels, 3, 3))
    return kernels[0], kernels[1]


class HexConv2d(nn.Module):
    """Hexagonal convolution (centre + 6 nearest neighbours) on the zig-zag grid, periodic in both axes.

    Input ``(B, in_channels, R, C)`` with ``C`` even → output ``(B, out_channels, R, C)``. Weights
    ``(out, in, 7)`` in the order :data:`HEX_DIRECTIONS`, shared by even and odd columns: the same
    physical direction has the same weight in both. Equivariant to every lattice translation that
    keeps column parity (any row shift, even column shifts).

    Implementation: the input is wrapped around by one site on each side; even output columns are one
    ``conv2d`` with the even-column kernel at column stride 2, odd ones the same with the odd-column
    kernel from the next column on, and the two are interleaved. That is the arithmetic of a single
    3 × 3 convolution (the two zero corners included), with no select over a doubled output.
    Measured (32 → 32 channels, 128 grids of 24 × 28, two layers, forward + gradient penalty, one
    thread): 275 ms, against 396 ms for one convolution with both kernels (64 outputs) and a select
    by column parity, 345 ms for even/odd column planes as channels, and 175 ms for a plain 3 × 3.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.weight = nn.Parameter(torch.empty(self.out_channels, self.in_channels, 7))
        self.bias = nn.Parameter(torch.empty(self.out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # as nn.Conv2d: Kaiming-uniform with a = √5 over the fan-in (here 7 taps per input channel)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_channels * 7)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"HexConv2d: expected input (B, C, rows, columns), got shape {tuple(x.shape)}")
        b, _, rows, cols = x.shape
        if cols % 2:
            raise ValueError(f"HexConv2d: the zig-zag grid needs an even number of columns, got {cols}")
        even, odd = hex_kernels(self.weight)
        padded = circular_pad(x)
        out_even = F.conv2d(padded, even, self.bias, stride=(1, 2))  # output columns 0, 2, ...
        out_odd = F.conv2d(padded[..., 1:], odd, self.bias, stride=(1, 2))  # output columns 1, 3, ...
        return torch.stack([out_even, out_odd], dim=-1).reshape(b, self.out_channels, rows, cols)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, taps=7, periodic, bias={self.bias is not None}"

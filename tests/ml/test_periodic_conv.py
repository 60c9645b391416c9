"""Periodic convolutions: circular padding, translation equivariance, the hexagonal kernel's neighbours."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from aiida_physgen.ml import graphene
from aiida_physgen.ml.periodic_conv import HEX_DIRECTIONS, HexConv2d, PeriodicConv2d, circular_pad

LATTICE = graphene.Lattice(4, 3)  # zig-zag grid 9 × 8


def _hex(in_channels=1, out_channels=1, seed=0, bias=True):
    torch.manual_seed(seed)
    return HexConv2d(in_channels, out_channels, bias=bias).double()


@pytest.mark.parametrize("pads", [(1, 1), (2, 1), (0, 1), (1, 0), (2, 3)])
def test_circular_pad_values_and_exact_derivatives(pads):
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.equal(circular_pad(x, *pads), F.pad(x, (pads[1], pads[1], pads[0], pads[0]), mode="circular"))
    # first and second derivatives (the gradient penalty differentiates the critic's input gradient)
    assert torch.autograd.gradcheck(lambda t: circular_pad(t, *pads), (x,))
    assert torch.autograd.gradgradcheck(lambda t: circular_pad(t, *pads), (x,))


def test_periodic_conv_is_circular_and_keeps_the_shape():
    torch.manual_seed(0)
    conv = PeriodicConv2d(2, 3, 3).double()
    x = torch.randn(4, 2, 7, 8, dtype=torch.float64)
    reference = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), conv.weight, conv.bias)
    assert torch.allclose(conv(x), reference)
    assert conv(x).shape == (4, 3, 7, 8)
    with pytest.raises(ValueError, match="kernel_size"):
        PeriodicConv2d(1, 1, 2)
    with pytest.raises(TypeError, match="circular"):
        PeriodicConv2d(1, 1, 3, padding=1)


@pytest.mark.parametrize("shift", [(3, 2), (1, 3), (-2, 5), (0, 1)])
def test_periodic_conv_is_equivariant_to_every_grid_translation(shift):
    torch.manual_seed(1)
    conv = PeriodicConv2d(2, 2, 3).double()
    x = torch.randn(3, 2, 7, 8, dtype=torch.float64)
    rolled = torch.roll(x, shift, dims=(-2, -1))
    assert torch.allclose(conv(rolled), torch.roll(conv(x), shift, dims=(-2, -1)))


@pytest.mark.parametrize("shift", [(3, 2), (1, 2), (-4, 6), (5, 0)])
def test_hex_conv_is_equivariant_to_translations_with_an_even_column_shift(shift):
    conv = _hex(2, 3, seed=2)
    x = torch.randn(3, 2, *LATTICE.zigzag_shape, dtype=torch.float64)
    rolled = torch.roll(x, shift, dims=(-2, -1))
    assert torch.allclose(conv(rolled), torch.roll(conv(x), shift, dims=(-2, -1)))


def test_hex_conv_is_not_a_square_conv_under_odd_column_shifts():
    # an odd column shift is not a lattice translation of the zig-zag grid (the parity flips)
    conv = _hex(1, 1, seed=3)
    x = torch.randn(1, 1, *LATTICE.zigzag_shape, dtype=torch.float64)
    assert not torch.allclose(conv(torch.roll(x, 1, dims=-1)), torch.roll(conv(x), 1, dims=-1))


@pytest.mark.parametrize("site", [(0, 0), (0, 1), (4, 3), (8, 7), (5, 0)])
def test_hex_conv_sees_the_six_honeycomb_grid_neighbours_across_the_wrap(site):
    conv = _hex(bias=False)
    with torch.no_grad():
        conv.weight[:] = torch.tensor([0.0, 1, 1, 1, 1, 1, 1])
    delta = np.zeros(LATTICE.zigzag_shape)
    delta[site] = 1.0
    out = conv(torch.as_tensor(delta)[None, None])[0, 0].detach().numpy()
    # exactly the sites graphene counts as neighbours (periodic), each at one C–C bond
    assert np.array_equal(out, graphene._neighbour_counts(delta.astype(bool)))
    assert out.sum() == 6
    positions = LATTICE.grid_positions()[..., :2]
    lengths = np.array(LATTICE.lengths)
    d = positions[out > 0] - positions[site]
    d -= np.round(d / lengths) * lengths
    assert np.allclose(np.linalg.norm(d, axis=1), LATTICE.cc)


def test_hex_conv_direction_weights_are_shared_by_both_column_parities():
    # tap t multiplies the input at the neighbour in direction t: the same physical direction in
    # even and odd columns, and at the angle it names
    angles = {"up": 90, "down": -90, "upper_left": 150, "lower_left": -150, "upper_right": 30, "lower_right": -30}
    positions = LATTICE.grid_positions()[..., :2]
    lengths = np.array(LATTICE.lengths)
    for t, direction in enumerate(HEX_DIRECTIONS):
        conv = _hex(bias=False)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[0, 0, t] = 1.0
        for site in [(4, 2), (4, 3), (0, 0), (8, 7)]:
            delta = np.zeros(LATTICE.zigzag_shape)
            delta[site] = 1.0
            out = conv(torch.as_tensor(delta)[None, None])[0, 0].detach().numpy()
            (reader,) = np.argwhere(out > 0)  # the site whose direction-t neighbour is `site`
            if direction == "centre":
                assert tuple(reader) == site
                continue
            d = positions[site] - positions[tuple(reader)]
            d -= np.round(d / lengths) * lengths
            assert math.isclose(np.degrees(np.arctan2(d[1], d[0])), angles[direction], abs_tol=1e-6)


def test_hex_conv_on_a_pristine_sheet_counts_three_carbon_neighbours():
    conv = _hex(bias=False)
    with torch.no_grad():
        conv.weight[:] = torch.tensor([0.0, 1, 1, 1, 1, 1, 1])
    mask = LATTICE.mask()
    out = conv(torch.as_tensor(mask, dtype=torch.float64)[None, None])[0, 0].detach().numpy()
    assert np.all(out[mask] == 3)
    assert np.array_equal(np.where(mask, out, 0), graphene.coordination(mask))


def test_hex_conv_wraps_periodically():
    # a sheet and its 2 × 2 tiling give the 2 × 2 tiling of the output: no edge anywhere
    conv = _hex(2, 2, seed=4)
    x = torch.randn(1, 2, *LATTICE.zigzag_shape, dtype=torch.float64)
    tiled = x.repeat(1, 1, 2, 2)
    assert torch.allclose(conv(tiled), conv(x).repeat(1, 1, 2, 2))
    with pytest.raises(ValueError, match="even number of columns"):
        conv(torch.randn(1, 2, 9, 7, dtype=torch.float64))


def test_hex_conv_gradients():
    conv = _hex(2, 2, seed=5)
    x = torch.randn(1, 2, 6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))
    assert torch.autograd.gradgradcheck(conv, (x,))

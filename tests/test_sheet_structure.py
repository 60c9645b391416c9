"""Structure statistics of porous graphene sheets (aiida_physgen.graphene.sheet_structure): bonds of the periodic
honeycomb, holes, coordination, edges and connectivity on hand-made sheets, and the two-sample comparison."""

import numpy as np
import pytest

from aiida_physgen.graphene import sheet_structure as ss
from aiida_physgen.ml import graphene

LATTICE = graphene.Lattice(6, 4)  # zig-zag grid 12 x 12, 96 carbon sites


def full(count=1):
    return np.repeat(LATTICE.mask()[None], count, axis=0)


def carbon_sites():
    return np.argwhere(LATTICE.mask())


def test_every_carbon_site_has_three_bonds_each_listed_once():
    i, j = ss.bond_pairs(LATTICE.zigzag_shape)
    assert len(i) == 3 * LATTICE.n_sites // 2
    counts = np.bincount(np.concatenate([i, j]), minlength=LATTICE.mask().size)
    assert (counts[LATTICE.mask().ravel()] == 3).all() and (counts[~LATTICE.mask().ravel()] == 0).all()
    assert len({tuple(sorted(p)) for p in zip(i, j)}) == len(i)
    # the same neighbours as the coordination of the ML layer: one vacancy leaves its three bonded atoms 2-fold
    occ = full()[0]
    r, c = carbon_sites()[10]
    occ[r, c] = False
    site = r * occ.shape[1] + c
    bonded = np.concatenate([j[i == site], i[j == site]])
    two_fold = np.flatnonzero((graphene.coordination(occ) == 2).ravel())
    assert sorted(bonded) == sorted(two_fold)


def test_holes_edges_and_networks_of_hand_made_sheets():
    sheets = full(5)
    i, j = ss.bond_pairs(LATTICE.zigzag_shape)
    cols = LATTICE.zigzag_shape[1]
    first = carbon_sites()[0]
    a = tuple(first)
    b_flat = j[i == a[0] * cols + a[1]][0]
    b = divmod(int(b_flat), cols)
    sheets[1][a] = False  # one vacancy
    sheets[2][a] = sheets[2][b] = False  # two bonded vacancies: one hole of two
    far = tuple(carbon_sites()[LATTICE.n_sites // 2 + 5])
    sheets[3][a] = sheets[3][far] = False  # two separate vacancies
    sheets[4][:, 0:2] = sheets[4][:, 6:8] = False  # two strips across the periodic sheet: two pieces
    stats = ss.sheet_statistics(sheets, LATTICE)
    assert stats["n_holes"].tolist()[:4] == [0, 1, 1, 2]
    assert stats["connected"].tolist() == [True, True, True, True, False]
    missing = stats["edge_per_area"] * LATTICE.area / 100
    assert np.allclose(missing[:4], [0, 3, 4, 6])
    assert stats["coordination_3"][0] == 1.0 and stats["coordination_2"][1] * 95 == pytest.approx(3)
    assert sorted(stats["hole_size"].tolist()[:4]) == [1, 1, 1, 2]
    # one strip only: the periodic sheet stays one network (it is cut open, not in two)
    one_strip = full()
    one_strip[0][:, 0:2] = False
    assert ss.sheet_statistics(one_strip, LATTICE)["connected"].tolist() == [True]


def test_tiling_keeps_the_per_area_statistics_and_comparisons_tell_sets_apart():
    # why compare_with_training needs no tiled reference at 4x: the per-sheet statistics do not change
    random = graphene.random_sheets(60, 0, LATTICE)
    other = graphene.random_sheets(60, 1, LATTICE)
    base = ss.sheet_statistics(random, LATTICE)
    tiled = ss.sheet_statistics(np.tile(random, (1, 2, 2)), LATTICE.scaled(2))  # what a 4x reference would be
    assert np.allclose(tiled["edge_per_area"], base["edge_per_area"])
    assert np.allclose(tiled["coordination_3"], base["coordination_3"], equal_nan=True)
    assert (tiled["n_holes"] >= base["n_holes"]).all()
    same = {row["quantity"]: row for row in ss.compare_sheets(base, base)}
    assert all(row["statistic"] == 0 and row["p_value"] == pytest.approx(1.0) for row in same.values())
    # two draws of the same random process agree; intact sheets against porous ones do not
    draws = {row["quantity"]: row for row in ss.compare_sheets(ss.sheet_statistics(other, LATTICE), base)}
    assert draws["edge_per_area"]["p_value"] > 0.01
    intact = {row["quantity"]: row for row in ss.compare_sheets(ss.sheet_statistics(full(60), LATTICE), base)}
    assert intact["edge_per_area"]["statistic"] > 0.95 and intact["edge_per_area"]["p_value"] < 1e-10
    table = ss.format_structure_table({"scale_1": list(draws.values()), "scale_2": list(intact.values())})
    assert table.count("\n") == 1 + 2 * len(ss.QUANTITIES) and "| scale_2 | one connected C network |" in table


def test_bad_sheets_are_named():
    with pytest.raises(ValueError, match="occupancy: expected sheets"):
        ss.sheet_statistics(full()[0], LATTICE)
    with pytest.raises(ValueError, match="lattice: its zig-zag shape"):
        ss.sheet_statistics(full(2), LATTICE.scaled(2))
    bad = full(1).astype(int)
    bad[0][~LATTICE.mask()] = 1
    with pytest.raises(ValueError, match="hexagon-centre"):
        ss.sheet_statistics(bad, LATTICE)

"""Quality measures of amorphous structures (aiida_physgen.amorphous.quality): real computations
checked against crystal facts, brute-force ASE / supercell searches and hand examples."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list

from aiida_physgen.amorphous import quality as aq
from aiida_physgen.amorphous.quality import (
    RdfSettings,
    bond_angles,
    close_contact_share,
    coordination,
    min_pair_distances,
    pair_distances,
    plot_bond_angles,
    plot_energy_histogram,
    plot_rdf,
    quality_summary,
    radial_distribution,
    rdf_error,
)
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.random_structures import random_structures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EDGE = 8.5


def diamond(repeat=1) -> Atoms:
    return bulk("Si", "diamond", a=5.431, cubic=True) * (repeat, repeat, repeat)


def uniform_gas(count: int, n_atoms: int, seed: int = 0, edge: float = EDGE) -> StructureBatch:
    """Independent uniform atoms, no minimum distance: the ideal gas."""
    rng = np.random.default_rng(seed)
    return StructureBatch.from_uniform(
        rng.random((count, n_atoms, 3)) * edge, [14] * n_atoms, np.eye(3) * edge, [True] * 3
    )


#: a strongly skewed triclinic cell: rounding the fractional coordinates (naive minimum image) misses
#: the closest images, e.g. b − a is much shorter than both a and b
SKEWED_CELL = np.array([[5.0, 0.0, 0.0], [4.6, 1.3, 0.0], [2.1, 0.9, 4.0]])


def skewed_structure(n_atoms: int = 4, seed: int = 3) -> Atoms:
    rng = np.random.default_rng(seed)
    return Atoms("Si" * n_atoms, scaled_positions=rng.random((n_atoms, 3)), cell=SKEWED_CELL, pbc=True)


def brute_force_distances(atoms: Atoms, reach: int = 5) -> np.ndarray:
    """All distances i→j+image (excluding an atom with itself unshifted) over an explicit block of images."""
    shifts = np.array(list(itertools.product(range(-reach, reach + 1), repeat=3)), dtype=float) @ atoms.cell.array
    diff = atoms.positions[None, :, None, :] - atoms.positions[:, None, None, :] + shifts[None, None]
    dist = np.linalg.norm(diff, axis=-1)
    zero = np.flatnonzero((shifts == 0).all(axis=1))[0]
    dist[np.arange(len(atoms)), np.arange(len(atoms)), zero] = np.inf
    return dist.reshape(-1)


def shell_volumes(r_max=8.0, bins=160) -> np.ndarray:
    edges = np.linspace(0.0, r_max, bins + 1)
    return 4.0 * np.pi / 3.0 * (edges[1:] ** 3 - edges[:-1] ** 3)


# ------------------------------------------------------------------------------------------- g(r)
def test_ideal_gas_rdf_is_flat():
    """N uniform atoms: g = (N − 1)/N (the N² normalisation's finite-size factor) for all r below the
    cell edge, within Poisson noise per bin; → 1 for many atoms."""
    n, count = 30, 400
    r, g = radial_distribution(uniform_gas(count, n), r_max=8.0, bins=40)
    window = (r > 2.0) & (r < 8.0)
    expected = (n - 1) / n
    # expected unordered pairs per bin (the independent counts): count · N(N−1)/2 · shell / V
    pairs = count * n * (n - 1) / 2 * shell_volumes(8.0, 40) / EDGE**3
    sigma = expected / np.sqrt(pairs)
    assert np.all(np.abs(g[window] - expected) < 5 * sigma[window])
    assert np.mean(g[window]) == pytest.approx(expected, abs=0.004)
    assert np.all(g[window] * n / (n - 1) == pytest.approx(1.0, abs=0.05))

    n = 150
    r, g = radial_distribution(uniform_gas(12, n, seed=1), r_max=8.0, bins=16)
    assert np.mean(g[(r > 2.0) & (r < 8.0)]) == pytest.approx(1.0, abs=0.012)


def test_rdf_of_random_cells_matches_ase_neighbour_list():
    """Counts agree exactly with ASE's neighbour list (which includes every image at any cut-off) for
    random cubic cells and a skewed triclinic cell, beyond half the cell edge."""
    batch = random_structures("Si30", np.eye(3) * EDGE, True, 5, seed=2, min_distance=2.0)
    skewed = skewed_structure(6)
    for structures in (batch, StructureBatch.from_atoms([skewed])):
        r, g = radial_distribution(structures, r_max=8.0, bins=160)
        expected = np.zeros(160)
        for atoms in structures:
            counts, _ = np.histogram(neighbor_list("d", atoms, 8.0), bins=160, range=(0.0, 8.0))
            expected += atoms.get_volume() / len(atoms) ** 2 * counts / shell_volumes()
        np.testing.assert_allclose(g, expected / len(structures), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("peak", "neighbours", "window"),
    [(2.352, 4, (2.2, 2.5)), (3.840, 12, (3.7, 4.0)), (4.503, 12, (4.4, 4.6))],
)
def test_diamond_peaks_and_coordination_integrals(peak, neighbours, window):
    atoms = diamond()
    r, g = radial_distribution(StructureBatch.from_atoms([atoms]))
    rho = len(atoms) / atoms.get_volume()
    inside = (r > window[0]) & (r < window[1])
    # number of neighbours: ∫ ρ g 4πr² dr with the exact shell volumes
    assert np.sum(rho * g[inside] * shell_volumes()[inside]) == pytest.approx(neighbours, abs=1e-9)
    peak_bin = np.flatnonzero(inside)[np.argmax(g[inside])]
    assert abs(r[peak_bin] - peak) <= 0.025  # the bin (0.05 Å wide) holding the peak
    # nothing between the first two shells
    assert np.all(g[(r > 2.45) & (r < 3.75)] == 0.0)


def test_diamond_rdf_same_from_unit_cell_supercell_and_primitive_cell():
    """Beyond-half-cell exactness: the 8-atom cube (edge 5.43 Å < r_max = 8 Å), its 2×2×2 supercell and
    the skewed 2-atom primitive cell describe one crystal and give one g(r)."""
    _, g_unit = radial_distribution(StructureBatch.from_atoms([diamond()]))
    _, g_super = radial_distribution(StructureBatch.from_atoms([diamond(2)]))
    _, g_primitive = radial_distribution(StructureBatch.from_atoms([bulk("Si", "diamond", a=5.431)]))
    assert g_unit.max() > 0
    np.testing.assert_allclose(g_super, g_unit, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(g_primitive, g_unit, rtol=1e-10, atol=1e-10)


def test_rdf_average_over_mixed_sizes_and_blocks(monkeypatch):
    """A batch of different sizes averages the per-structure curves; tiny work blocks (pairs of one
    structure split across blocks) give the same numbers."""
    gas = uniform_gas(3, 30, seed=5)
    atoms = [diamond(), *gas, skewed_structure(5)]
    mixed = StructureBatch.from_atoms(atoms)
    _, g = radial_distribution(mixed, r_max=7.0, bins=70)
    single = [radial_distribution(StructureBatch.from_atoms([a]), r_max=7.0, bins=70)[1] for a in atoms]
    np.testing.assert_allclose(g, np.mean(single, axis=0), rtol=1e-12, atol=1e-12)
    angles = bond_angles(mixed, cutoff=3.0)[1]
    coordination_numbers = coordination(mixed, cutoff=3.0)
    monkeypatch.setattr(aq, "_BLOCK_ELEMENTS", 300)
    np.testing.assert_allclose(radial_distribution(mixed, r_max=7.0, bins=70)[1], g, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bond_angles(mixed, cutoff=3.0)[1], angles, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(coordination(mixed, cutoff=3.0), coordination_numbers, rtol=1e-12)


def test_rdf_settings_defaults_and_validation():
    assert RdfSettings() == RdfSettings(r_max=8.0, bins=160)
    r, g = radial_distribution(StructureBatch.from_atoms([diamond()]))
    assert r.shape == g.shape == (160,)
    assert r[0] == pytest.approx(0.025) and r[-1] == pytest.approx(7.975)
    with pytest.raises(ValueError, match="bins"):
        RdfSettings(bins=0)
    with pytest.raises(ValueError, match="r_max"):
        RdfSettings(r_max=-1.0)


# ------------------------------------------------------------------------------------------- rdf_error
def test_rdf_error():
    g = np.array([1.0, 2.0, 3.0])
    assert rdf_error(g, g) == 0.0
    assert rdf_error(g, g + 0.1) > 0.0
    # Σ_k (g_k − g_true,k)² / K with K = 3 bins: (0 + 1 + 4) / 3
    assert rdf_error(g, [1.0, 1.0, 1.0]) == pytest.approx(5.0 / 3.0)
    assert rdf_error([0.0, 0.5], [0.5, 0.0]) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="g_true"):
        rdf_error(g, [1.0, 1.0])
    with pytest.raises(ValueError, match="g:"):
        rdf_error([], [])


# ------------------------------------------------------------------------------------------- closest pair
def test_min_pair_distances_cubic_matches_ase_minimum_image():
    batch = uniform_gas(20, 30, seed=7)
    expected = []
    for atoms in batch:
        distances = atoms.get_all_distances(mic=True)
        np.fill_diagonal(distances, np.inf)
        expected.append(min(distances.min(), EDGE))  # an atom and its own image: the cell edge
    np.testing.assert_allclose(min_pair_distances(batch), expected, rtol=1e-12)


def test_min_pair_distances_skewed_cell_needs_more_than_naive_minimum_image():
    atoms = skewed_structure(4, seed=4)
    exact = brute_force_distances(atoms).min()
    assert exact < np.linalg.norm(SKEWED_CELL[1] - SKEWED_CELL[0]) - 0.1  # a pair, not an atom and its image
    # naive minimum image: round the fractional differences, no further image
    frac = atoms.get_scaled_positions()
    diff = frac[None] - frac[:, None]
    diff -= np.round(diff)
    naive = np.linalg.norm(diff @ atoms.cell.array, axis=-1)
    np.fill_diagonal(naive, np.inf)
    naive_min = min(naive.min(), np.linalg.norm(atoms.cell.array, axis=1).min())
    assert naive_min > exact + 0.5  # the case really defeats the naive method
    assert min_pair_distances(StructureBatch.from_atoms([atoms]))[0] == pytest.approx(exact, rel=1e-12)
    assert neighbor_list("d", atoms, 3.0).min() == pytest.approx(exact, rel=1e-12)


def test_min_pair_distances_self_image_and_other_periodicities():
    # one atom in the skewed cell: its closest image is b − a, shorter than any cell vector
    single = Atoms("Si", positions=[[0.3, 0.2, 0.1]], cell=SKEWED_CELL, pbc=True)
    b_minus_a = np.linalg.norm(SKEWED_CELL[1] - SKEWED_CELL[0])
    assert b_minus_a < np.linalg.norm(SKEWED_CELL, axis=1).min()
    assert brute_force_distances(single).min() == pytest.approx(b_minus_a)
    # a molecule without cell, a lone atom and a slab periodic in x, y only (zero c vector)
    rng = np.random.default_rng(11)
    molecule = Atoms("Si5", positions=rng.random((5, 3)) * 4.0)
    lone = Atoms("Si", positions=[[0.0, 0.0, 0.0]])
    slab = Atoms(
        "Si2",
        positions=[[0.0, 0.0, 0.0], [0.2, 0.1, 2.9]],
        cell=[[3.0, 0, 0], [0, 3.2, 0], [0, 0, 0]],
        pbc=[True, True, False],
    )
    result = min_pair_distances(StructureBatch.from_atoms([single, molecule, lone, slab]))
    molecule_distances = molecule.get_all_distances()
    np.fill_diagonal(molecule_distances, np.inf)
    assert result[0] == pytest.approx(b_minus_a, rel=1e-12)
    assert result[1] == pytest.approx(molecule_distances.min(), rel=1e-12)
    assert result[2] == np.inf
    assert result[3] == pytest.approx(min(3.0, np.linalg.norm([0.2, 0.1, 2.9])), rel=1e-12)


def test_pair_distances_match_ase():
    atoms = skewed_structure(3)
    structure, first, second, distance = pair_distances(StructureBatch.from_atoms([atoms]), 6.0)
    i, j, d = neighbor_list("ijd", atoms, 6.0)
    assert np.all(structure == 0)
    ours = sorted(zip(first.tolist(), second.tolist(), np.round(distance, 9).tolist()))
    theirs = sorted(zip(i.tolist(), j.tolist(), np.round(d, 9).tolist()))
    assert ours == theirs


def test_close_contact_share():
    squeezed = diamond()
    squeezed.positions[1] = squeezed.positions[0] + [1.0, 1.0, 0.5]  # 1.5 Å from atom 0
    batch = StructureBatch.from_atoms([diamond(), squeezed, diamond(), squeezed])
    assert close_contact_share(batch, min_distance=2.0) == 0.5
    assert close_contact_share(batch, min_distance=1.4) == 0.0
    assert close_contact_share(batch, min_distance=2.4) == 1.0


# ------------------------------------------------------------------------------------------- neighbours
def test_coordination_and_bond_angles_of_diamond():
    batch = StructureBatch.from_atoms([diamond(), diamond(2), bulk("Si", "diamond", a=5.431)])
    np.testing.assert_allclose(coordination(batch), 4.0)
    for bins in (90, 180):
        angles, density = bond_angles(batch, bins=bins)
        width = 180.0 / bins
        assert angles.shape == density.shape == (bins,)
        assert np.sum(density) * width == pytest.approx(1.0)
        peak = np.flatnonzero(density)
        assert peak.size == 1  # every angle in one bin: the tetrahedral angle
        assert abs(angles[peak[0]] - np.degrees(np.arccos(-1.0 / 3.0))) <= width / 2


def test_coordination_and_bond_angles_match_ase_on_random_cells():
    batch = StructureBatch.from_atoms(
        [*random_structures("Si30", np.eye(3) * EDGE, True, 3, seed=4, min_distance=1.8), skewed_structure(6)]
    )
    cutoff, bins = 2.85, 36
    counts = np.zeros(bins)
    expected_coordination = []
    for atoms in batch:
        i, vectors = neighbor_list("iD", atoms, cutoff)
        expected_coordination.append(len(i) / len(atoms))
        for centre in range(len(atoms)):
            neighbours = vectors[i == centre]
            for a, b in itertools.combinations(range(len(neighbours)), 2):
                cosine = neighbours[a] @ neighbours[b] / np.linalg.norm(neighbours[a]) / np.linalg.norm(neighbours[b])
                counts[min(int(np.degrees(np.arccos(np.clip(cosine, -1, 1))) / 5.0), bins - 1)] += 1
    np.testing.assert_allclose(coordination(batch, cutoff), expected_coordination, rtol=1e-12)
    _, density = bond_angles(batch, cutoff, bins)
    np.testing.assert_allclose(density, counts / counts.sum() / 5.0, rtol=1e-12, atol=1e-15)


def test_bond_angles_without_neighbours_are_zero():
    angles, density = bond_angles(uniform_gas(2, 2, seed=1, edge=20.0), cutoff=0.1)
    assert angles[0] == pytest.approx(1.0) and np.all(density == 0.0)


# ------------------------------------------------------------------------------------------- summary
def test_quality_summary():
    reference = random_structures("Si30", np.eye(3) * EDGE, True, 30, seed=8, min_distance=2.1)
    generated = uniform_gas(30, 30, seed=9)
    same = quality_summary(reference, reference)
    assert set(same) == {"rdf_error", "close_contact_share", "mean_coordination", "count", "min_pair_distance"}
    assert same["rdf_error"] == 0.0 and same["close_contact_share"] == 0.0 and same["count"] == 30
    assert same["min_pair_distance"]["min"] >= 2.1
    assert same["mean_coordination"] == pytest.approx(np.mean(coordination(reference)))
    summary = quality_summary(generated, reference, r_max=6.0, bins=60, min_distance=2.0, cutoff=2.5)
    closest = min_pair_distances(generated)
    assert summary["rdf_error"] > 0.0
    assert summary["close_contact_share"] == pytest.approx(np.mean(closest < 2.0))
    assert summary["min_pair_distance"] == {
        "min": pytest.approx(closest.min()),
        "median": pytest.approx(np.median(closest)),
    }
    assert summary["mean_coordination"] == pytest.approx(np.mean(coordination(generated, 2.5)))


# ------------------------------------------------------------------------------------------- figures
def test_plots_write_png(tmp_path):
    diamond_batch = StructureBatch.from_atoms([diamond()])
    gas = uniform_gas(5, 30)
    rdf_curves = {"diamond": radial_distribution(diamond_batch), "random": radial_distribution(gas)}
    plot_rdf(rdf_curves, tmp_path / "rdf.png", title="test")
    plot_bond_angles({"diamond": bond_angles(diamond_batch), "random": bond_angles(gas)}, tmp_path / "angles.png")
    rng = np.random.default_rng(0)
    plot_energy_histogram(
        {
            "generated": rng.normal(-4.5, 0.1, 200),
            "md": rng.normal(-4.6, 0.05, 50),
            "random": np.array([-3.0, np.nan, -2.5]),
        },
        tmp_path / "energies.png",
    )
    for name in ("rdf.png", "angles.png", "energies.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["angles.png", "energies.png", "rdf.png"]


# ------------------------------------------------------------------------------------------- bad input
_DIAMOND = StructureBatch.from_atoms([diamond()])
_MOLECULE = StructureBatch.from_atoms([Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.3]])])
_EMPTY = _DIAMOND.subset([])


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: radial_distribution(_EMPTY), "structures"),
        (lambda: radial_distribution(_MOLECULE), "structures"),
        (lambda: radial_distribution([diamond()]), "structures"),
        (lambda: radial_distribution(_DIAMOND, r_max=0.0), "r_max"),
        (lambda: radial_distribution(_DIAMOND, r_max=-2.0), "r_max"),
        (lambda: radial_distribution(_DIAMOND, r_max=float("nan")), "r_max"),
        (lambda: radial_distribution(_DIAMOND, bins=0), "bins"),
        (lambda: radial_distribution(_DIAMOND, bins=-5), "bins"),
        (lambda: radial_distribution(_DIAMOND, bins=2.5), "bins"),
        (lambda: min_pair_distances(_EMPTY), "structures"),
        (lambda: close_contact_share(_DIAMOND, min_distance=0.0), "min_distance"),
        (lambda: coordination(_DIAMOND, cutoff=-1.0), "cutoff"),
        (lambda: bond_angles(_DIAMOND, bins=0), "bins"),
        (lambda: bond_angles(_EMPTY), "structures"),
        (lambda: pair_distances(_DIAMOND, cutoff=0.0), "cutoff"),
        (lambda: quality_summary(_EMPTY, _DIAMOND), "generated"),
        (lambda: quality_summary(_DIAMOND, _MOLECULE), "reference"),
        (lambda: quality_summary(_DIAMOND, _DIAMOND, bins=0), "bins"),
        (lambda: rdf_error([1.0, 2.0], [1.0]), "g_true"),
        (lambda: plot_rdf({}, "unused.png"), "curves"),
        (lambda: plot_bond_angles({"a": ([1.0, 2.0], [1.0])}, "unused.png"), "curves"),
        (lambda: plot_energy_histogram({}, "unused.png"), "energies"),
        (lambda: plot_energy_histogram({"a": [np.nan]}, "unused.png"), "energies"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()


def test_non_periodic_rdf_message_says_why():
    with pytest.raises(ValueError, match="periodic cells"):
        radial_distribution(_MOLECULE)

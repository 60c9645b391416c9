"""Tests of the differentiable local descriptors (``aiida_physgen.ml.descriptors``)."""

from __future__ import annotations

import json
from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest
import torch
from ase.neighborlist import neighbor_list
from scipy.spatial.transform import Rotation
from scipy.special import sph_harm_y

from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.descriptors import (
    DescriptorSettings,
    LocalDescriptor,
    atomic_descriptors,
    real_spherical_harmonics,
    species_indices,
    structure_descriptors,
)

RESOURCES = Path(__file__).resolve().parents[2] / "aiida_physgen" / "resources" / "logan"
SIO2_TARGETS = sorted((RESOURCES / "sio2").glob("*_target.extxyz"))
MOLECULES = RESOURCES / "C5H12O_training.extxyz"

CHO = (1, 6, 8)
OSI = (8, 14)


@pytest.fixture(scope="module")
def molecule() -> ase.Atoms:
    return ase.io.read(MOLECULES, index=0)


@pytest.fixture(scope="module")
def sio2() -> ase.Atoms:
    """The smallest SiO2 target (6 atoms): the most periodic images per atom."""
    structures = [ase.io.read(path) for path in SIO2_TARGETS]
    return min(structures, key=len)


def describe(atoms: ase.Atoms, settings: DescriptorSettings, dtype=torch.float64) -> np.ndarray:
    """Descriptors of one structure through :class:`LocalDescriptor` directly."""
    module = LocalDescriptor(settings)
    species = torch.as_tensor(species_indices(atoms.numbers, settings))
    positions = torch.tensor(atoms.positions, dtype=dtype)[None]
    cell = torch.tensor(atoms.cell.array, dtype=dtype) if atoms.pbc.any() else None
    with torch.no_grad():
        return module(positions, species, cell=cell, pbc=atoms.pbc.tolist())[0].numpy()


def real_ylm_reference(l: int, m: int, vectors: np.ndarray) -> np.ndarray:
    """Real spherical harmonics from scipy's complex ones, without the Condon-Shortley phase."""
    theta = np.arccos(np.clip(vectors[:, 2], -1.0, 1.0))
    phi = np.arctan2(vectors[:, 1], vectors[:, 0])
    value = sph_harm_y(l, abs(m), theta, phi)
    if m == 0:
        return value.real
    return np.sqrt(2.0) * (-1) ** m * (value.real if m > 0 else value.imag)


def reference_descriptors(atoms: ase.Atoms, settings: DescriptorSettings) -> np.ndarray:
    """Straightforward NumPy/SciPy/ASE implementation of the definition in the module docstring."""
    s = settings
    first, second, vectors = neighbor_list("ijD", atoms, s.r_cut, self_interaction=False)
    species = species_indices(atoms.numbers, s)
    n_species = len(s.species)
    if s.radial == "gaussian":
        centres = np.linspace(0.0, s.r_cut, s.n_max)
        sigma = s.r_cut / (s.n_max - 1) / 2

        def radial(r):
            return np.exp(-((r[:, None] - centres) ** 2) / (2 * sigma**2))

    else:

        def radial(r):
            k = np.arange(1, s.n_max + 1) * np.pi / s.r_cut
            return np.sqrt(2 / s.r_cut) * np.sin(r[:, None] * k) / r[:, None]

    result = []
    for i in range(len(atoms)):
        mine = np.flatnonzero(first == i)
        distances = np.linalg.norm(vectors[mine], axis=1)
        keep = mine[np.argsort(distances, kind="stable")[: s.max_neighbours]]
        d = vectors[keep]
        r = np.linalg.norm(d, axis=1)
        weight = 0.5 * (np.cos(np.pi * r / s.r_cut) + 1)
        g = radial(r) * weight[:, None]
        unit = d / r[:, None]
        coeff = np.zeros((n_species, s.n_max, (s.l_max + 1) ** 2))
        for l in range(s.l_max + 1):
            for m in range(-l, l + 1):
                y = real_ylm_reference(l, m, unit)
                for a in range(n_species):
                    mask = species[second[keep]] == a
                    coeff[a, :, l * l + l + m] = (g[mask] * y[mask, None]).sum(0)
        features = []
        for l in range(s.l_max + 1):
            block = coeff[:, :, l * l : (l + 1) ** 2]
            for a in range(n_species):
                for b in range(a, n_species):
                    for n in range(s.n_max):
                        for n2 in range(n if a == b else 0, s.n_max):
                            features.append(block[a, n] @ block[b, n2])
        result.append(features)
    return np.array(result)


def rattled(atoms: ase.Atoms, scale: float = 0.05, seed: int = 0) -> ase.Atoms:
    """A copy with positions displaced at random (no exact ties in neighbour distances)."""
    copy = atoms.copy()
    copy.positions += np.random.default_rng(seed).normal(scale=scale, size=copy.positions.shape)
    return copy


# ------------------------------------------------------------------------------------ settings
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("species", ()),
        ("species", (8, 1)),
        ("species", (1, 1)),
        ("species", (0, 1)),
        ("species", ("C", "H")),
        ("species", 6),
        ("r_cut", 0.0),
        ("r_cut", -1.0),
        ("r_cut", float("nan")),
        ("r_cut", "5"),
        ("n_max", 0),
        ("n_max", 2.5),
        ("l_max", -1),
        ("l_max", 13),
        ("max_neighbours", 0),
        ("max_neighbours", True),
        ("radial", "cosine"),
    ],
)
def test_bad_settings_raise_naming_the_field(field, value):
    kwargs = {"species": CHO, field: value}
    with pytest.raises(ValueError, match=f"^{field}:"):
        DescriptorSettings(**kwargs)


def test_settings_round_trip_and_feature_count():
    settings = DescriptorSettings(species=(1, 6, 8), r_cut=4.5, n_max=3, l_max=5, max_neighbours=12, radial="bessel")
    data = json.loads(json.dumps(settings.to_dict()))
    assert DescriptorSettings.from_dict(data) == settings
    with pytest.raises(ValueError, match="unknown"):
        DescriptorSettings.from_dict({**data, "sigma": 1.0})
    with pytest.raises(ValueError, match="^species:"):
        DescriptorSettings.from_dict({"r_cut": 5.0})
    # same size as DScribe's SOAP for C, H, O with n_max 4 and l_max 4
    assert DescriptorSettings(species=CHO).n_features == 390
    k = 3 * 3
    assert settings.n_features == k * (k + 1) // 2 * 6


def test_species_indices():
    settings = DescriptorSettings(species=CHO)
    np.testing.assert_array_equal(species_indices([8, 1, 6, 1], settings), [2, 0, 1, 0])
    with pytest.raises(ValueError, match=r"Si \(Z=14\)"):
        species_indices([6, 14, 1], settings)


def test_spherical_harmonics_match_scipy():
    vectors = np.random.default_rng(3).normal(size=(40, 3))
    vectors[:2] = [[0, 0, 1], [0, 0, -1]]  # the poles, where angle-based formulas are singular
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    l_max = 8
    values = real_spherical_harmonics(torch.tensor(vectors), l_max).numpy()
    for l in range(l_max + 1):
        for m in range(-l, l + 1):
            np.testing.assert_allclose(values[:, l * l + l + m], real_ylm_reference(l, m, vectors), atol=1e-12)


# ---------------------------------------------------------------------- agreement with definition
@pytest.mark.parametrize("radial", ["gaussian", "bessel"])
@pytest.mark.parametrize("max_neighbours", [12, 30], ids=["searched", "all-neighbours"])
def test_matches_reference_molecule(molecule, radial, max_neighbours):
    settings = DescriptorSettings(
        species=CHO, r_cut=4.0, n_max=3, l_max=3, max_neighbours=max_neighbours, radial=radial
    )
    atoms = rattled(molecule)
    np.testing.assert_allclose(describe(atoms, settings), reference_descriptors(atoms, settings), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("radial", ["gaussian", "bessel"])
@pytest.mark.parametrize("pbc", [(True, True, True), (True, False, True)])
def test_matches_reference_periodic(sio2, radial, pbc):
    settings = DescriptorSettings(species=OSI, r_cut=5.0, n_max=3, l_max=3, max_neighbours=20, radial=radial)
    atoms = rattled(sio2)
    atoms.pbc = pbc
    np.testing.assert_allclose(describe(atoms, settings), reference_descriptors(atoms, settings), rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------------- invariances
def test_molecule_invariances(molecule):
    settings = DescriptorSettings(species=CHO)
    base = describe(molecule, settings)
    moved = molecule.copy()
    rotation = Rotation.random(random_state=7).as_matrix()
    moved.positions = moved.positions @ rotation.T + np.array([3.0, -7.5, 0.25])
    np.testing.assert_allclose(describe(moved, settings), base, atol=1e-10)

    # permuting the hydrogens (and the carbons) permutes the descriptors the same way
    rng = np.random.default_rng(1)
    order = np.arange(len(molecule))
    for z in (1, 6):
        where = np.flatnonzero(molecule.numbers == z)
        order[where] = rng.permutation(where)
    assert not np.array_equal(order, np.arange(len(molecule)))
    np.testing.assert_allclose(describe(molecule[order], settings), base[order], atol=1e-10)


@pytest.mark.parametrize("path", SIO2_TARGETS, ids=lambda p: p.name.split("_")[0])
def test_crystal_invariances(path):
    """Rotation, translation, permutation and choice of lattice vectors, on a crystal whose
    neighbour shells are degenerate (max_neighbours cuts through shells)."""
    atoms = ase.io.read(path)
    settings = DescriptorSettings(species=OSI, max_neighbours=16)
    base = describe(atoms, settings)
    assert np.abs(base).max() > 0

    rotated = atoms.copy()
    rotation = Rotation.random(random_state=11).as_matrix()
    rotated.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    rotated.positions = atoms.positions @ rotation.T + np.array([1.3, -0.4, 2.2])
    np.testing.assert_allclose(describe(rotated, settings), base, atol=1e-9)

    order = np.arange(len(atoms))[::-1].copy()
    np.testing.assert_allclose(describe(atoms[order], settings), base[order], atol=1e-9)

    # another basis of the same lattice (unimodular, det = +1 and -1), positions wrapped into it
    for transform in ([[1, 1, 0], [0, 1, 0], [1, 2, 1]], [[0, 1, 0], [1, 0, 0], [-1, 0, 1]]):
        other = atoms.copy()
        other.set_cell(np.array(transform, dtype=float) @ atoms.cell.array, scale_atoms=False)
        other.wrap()
        np.testing.assert_allclose(describe(other, settings), base, atol=1e-9)


def test_supercell_gives_the_same_environments(sio2):
    settings = DescriptorSettings(species=OSI, max_neighbours=20)
    atoms = rattled(sio2, seed=4)
    base = describe(atoms, settings)
    supercell = describe(atoms.repeat((2, 1, 3)), settings)
    np.testing.assert_allclose(supercell, np.tile(base, (6, 1)), atol=1e-9)


def test_slab_ignores_the_non_periodic_cell_vector(sio2):
    settings = DescriptorSettings(species=OSI)
    atoms = rattled(sio2)
    atoms.pbc = (True, True, False)
    base = describe(atoms, settings)
    longer = atoms.copy()
    longer.cell[2] = [0.3, -0.2, 40.0]
    np.testing.assert_allclose(describe(longer, settings), base, atol=1e-10)
    flat = atoms.copy()
    flat.cell[2] = [0.0, 0.0, 0.0]
    np.testing.assert_allclose(describe(flat, settings), base, atol=1e-10)


# ------------------------------------------------------------------------------------- gradients
def _gradcheck_system(periodic: bool):
    rng = np.random.default_rng(5)
    positions = torch.tensor(rng.uniform(0.0, 3.0, size=(2, 5, 3)), dtype=torch.float64, requires_grad=True)
    species = torch.tensor([0, 1, 0, 1, 1])
    if not periodic:
        return positions, species, None
    cell = torch.tensor([[3.2, 0.1, 0.0], [0.3, 3.5, 0.0], [-0.2, 0.4, 3.0]], dtype=torch.float64)
    cells = torch.stack([cell, cell * 1.05]).requires_grad_(True)
    return positions, species, cells


@pytest.mark.parametrize("radial", ["gaussian", "bessel"])
@pytest.mark.parametrize("periodic", [False, True], ids=["molecule", "periodic"])
@pytest.mark.parametrize("max_neighbours", [3, 20])
def test_gradients_match_finite_differences(radial, periodic, max_neighbours):
    settings = DescriptorSettings(
        species=OSI, r_cut=3.5, n_max=3, l_max=3, max_neighbours=max_neighbours, radial=radial
    )
    module = LocalDescriptor(settings)
    positions, species, cells = _gradcheck_system(periodic)
    # fast mode compares random projections of the analytic and the numerical Jacobian
    if periodic:
        assert torch.autograd.gradcheck(
            lambda p, c: module(p, species, cell=c, pbc=True), (positions, cells), fast_mode=True
        )
    else:
        assert torch.autograd.gradcheck(lambda p: module(p, species), (positions,), fast_mode=True)


@pytest.mark.parametrize("radial", ["gaussian", "bessel"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("periodic", [False, True], ids=["molecule", "periodic"])
def test_coincident_atoms_give_finite_values_and_gradients(radial, dtype, periodic):
    settings = DescriptorSettings(species=OSI, radial=radial)
    module = LocalDescriptor(settings)
    positions = torch.tensor(
        [[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [1.5, 0.0, 1e-9]]], dtype=dtype, requires_grad=True
    )
    species = torch.tensor([0, 1, 1, 0])
    cell = torch.eye(3, dtype=dtype) * 4.0 if periodic else None
    values = module(positions, species, cell=cell, pbc=periodic)
    assert torch.isfinite(values).all()
    (values**2).sum().backward()
    assert torch.isfinite(positions.grad).all()


# ---------------------------------------------------------------------------- neighbour truncation
def _cluster(n_inner: int, n_outer: int, seed: int) -> np.ndarray:
    """Atom 0 at the origin, ``n_inner`` atoms at 1.0-2.9 Å from it and ``n_outer`` at 3.5-4.5 Å."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(n_inner + n_outer, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    radii = np.concatenate([np.linspace(1.0, 2.9, n_inner), rng.uniform(3.5, 4.5, n_outer)])
    return np.vstack([np.zeros(3), directions * radii[:, None]])


def test_max_neighbours_truncates():
    positions = _cluster(20, 10, seed=2)
    species = torch.zeros(len(positions), dtype=torch.long)
    few = LocalDescriptor(DescriptorSettings(species=(6,), max_neighbours=20))
    many = LocalDescriptor(DescriptorSettings(species=(6,), max_neighbours=60))
    with torch.no_grad():
        base = torch.tensor(positions)[None]
        assert not torch.allclose(few(base, species)[0, 0], many(base, species)[0, 0])

        # the outer atoms (21st neighbour and beyond) move: atom 0 is unchanged with 20 neighbours
        moved = positions.copy()
        moved[21:] = _cluster(20, 10, seed=3)[21:]
        moved_t = torch.tensor(moved)[None]
        torch.testing.assert_close(few(moved_t, species)[0, 0], few(base, species)[0, 0], rtol=1e-12, atol=1e-12)
        assert not torch.allclose(many(moved_t, species)[0, 0], many(base, species)[0, 0])


def test_neighbours_tied_with_the_last_one_are_all_kept():
    """Three neighbours at exactly 2 Å compete for the last of two places: keeping all three
    makes the result independent of atom order and orientation; keeping one would not."""
    positions = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    species = torch.zeros(5, dtype=torch.long)
    two = LocalDescriptor(DescriptorSettings(species=(6,), max_neighbours=2))
    three = LocalDescriptor(DescriptorSettings(species=(6,), max_neighbours=4))
    rotation = Rotation.random(random_state=5).as_matrix()
    with torch.no_grad():
        expected = three(torch.tensor(positions)[None], species)[0, 0]
        for order in ([0, 1, 2, 3, 4], [0, 1, 4, 3, 2], [0, 3, 1, 2, 4]):
            for matrix in (np.eye(3), rotation):
                moved = torch.tensor(positions[order] @ matrix.T)[None]
                torch.testing.assert_close(two(moved, species)[0, 0], expected, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------------- batched helpers
@pytest.mark.parametrize("max_neighbours", [12, 80])
def test_forward_keeps_dtype_and_batches_cells(sio2, max_neighbours):
    """One forward over structures with different (sheared, strained) cells equals one forward
    per structure."""
    settings = DescriptorSettings(species=OSI, max_neighbours=max_neighbours)
    module = LocalDescriptor(settings)
    species = torch.as_tensor(species_indices(sio2.numbers, settings))
    rng = np.random.default_rng(8)
    strains = [
        np.eye(3),
        [[1.15, 0.2, 0.0], [0.0, 0.9, 0.1], [0.0, 0.0, 1.0]],
        [[0.9, 0.0, 0.0], [0.3, 1.0, 0.0], [0.0, -0.2, 1.2]],
    ]
    cells = torch.tensor(np.stack([sio2.cell.array @ np.array(strain) for strain in strains]))
    fractional = sio2.get_scaled_positions()[None] + rng.normal(scale=0.02, size=(3, len(sio2), 3))
    positions = torch.tensor(fractional) @ cells
    with torch.no_grad():
        batched = module(positions, species, cell=cells, pbc=True)
        for b in range(3):
            single = module(positions[b : b + 1], species, cell=cells[b], pbc=True)
            torch.testing.assert_close(batched[b], single[0], rtol=1e-12, atol=1e-12)
        as_float32 = module(positions.float(), species, cell=cells.float(), pbc=True)
    assert not torch.allclose(batched[0], batched[1])
    assert batched.dtype == torch.float64 and as_float32.dtype == torch.float32
    torch.testing.assert_close(as_float32.double(), batched, rtol=1e-4, atol=1e-4)


def test_forward_rejects_bad_inputs(sio2):
    module = LocalDescriptor(DescriptorSettings(species=OSI))
    positions = torch.tensor(sio2.positions)[None]
    species = torch.zeros(len(sio2), dtype=torch.long)
    with pytest.raises(ValueError, match="^cell:"):
        module(positions, species, cell=None, pbc=True)
    with pytest.raises(ValueError, match="^cell:"):
        module(positions, species, cell=torch.zeros(3, 3, dtype=torch.float64), pbc=True)
    with pytest.raises(ValueError, match="^species:"):
        module(positions, species + 2)
    with pytest.raises(ValueError, match="^positions:"):
        module(positions[0], species)
    with pytest.raises(ValueError, match="^pbc:"):
        module(positions, species, cell=torch.eye(3), pbc=(True, False))


@pytest.fixture(scope="module")
def mixed_batch() -> StructureBatch:
    """Molecules of two compositions (C6H14O, C4H10O) plus two SiO2 crystals, interleaved."""
    molecules = ase.io.read(MOLECULES, index=":")
    by_formula: dict[str, list[ase.Atoms]] = {}
    for atoms in molecules:
        by_formula.setdefault(atoms.get_chemical_formula(), []).append(atoms)
    six, four = by_formula["C6H14O"][:3], by_formula["C4H10O"][:2]
    crystals = [rattled(ase.io.read(path), seed=i) for i, path in enumerate(SIO2_TARGETS[:2])]
    return StructureBatch.from_atoms([six[0], crystals[0], four[0], six[1], crystals[1], four[1], six[2]])


def test_atomic_descriptors_batched_equals_single(mixed_batch):
    settings = DescriptorSettings(species=(1, 6, 8, 14), max_neighbours=16)
    batched = atomic_descriptors(mixed_batch, settings)
    assert len(batched) == len(mixed_batch)
    for i, atoms in enumerate(mixed_batch):
        assert batched[i].shape == (len(atoms), settings.n_features)
        np.testing.assert_allclose(batched[i], describe(atoms, settings), rtol=1e-12, atol=1e-12)


def test_structure_descriptors_are_element_means(mixed_batch):
    settings = DescriptorSettings(species=(1, 6, 8, 14), max_neighbours=16)
    n_features = settings.n_features
    result = structure_descriptors(mixed_batch, settings, chunk_size=2)
    assert result.shape == (len(mixed_batch), 4 * n_features)
    assert result.dtype == np.float64
    atomic = atomic_descriptors(mixed_batch, settings)
    for i, atoms in enumerate(mixed_batch):
        for a, z in enumerate(settings.species):
            block = result[i, a * n_features : (a + 1) * n_features]
            mask = atoms.numbers == z
            if mask.any():
                np.testing.assert_allclose(block, atomic[i][mask].mean(0), rtol=1e-5, atol=1e-5)
                assert np.abs(block).max() > 0
            else:  # Si in the molecules, H and C in the crystals
                assert np.all(block == 0.0)
        # one structure alone gives the same row as inside the batch
        alone = structure_descriptors(mixed_batch.subset([i]), settings)[0]
        np.testing.assert_allclose(alone, result[i], rtol=1e-5, atol=1e-6)


def test_structure_descriptors_uniform_batch(molecule):
    """The uniform fast path (one composition and atom order) agrees with per-structure calls."""
    settings = DescriptorSettings(species=CHO)
    rng = np.random.default_rng(9)
    positions = molecule.positions[None] + rng.normal(scale=0.1, size=(5, len(molecule), 3))
    batch = StructureBatch.from_uniform(positions, molecule.numbers, np.zeros((3, 3)), [False] * 3)
    assert batch.uniform_view() is not None
    result = structure_descriptors(batch, settings, chunk_size=3)
    for i in range(len(batch)):
        atomic = describe(batch[i], settings)
        expected = np.concatenate([atomic[molecule.numbers == z].mean(0) for z in CHO])
        np.testing.assert_allclose(result[i], expected, rtol=1e-5, atol=1e-5)


def test_batch_helpers_restore_thread_count(molecule):
    before = torch.get_num_threads()
    structure_descriptors(StructureBatch.from_atoms([molecule]), DescriptorSettings(species=CHO))
    assert torch.get_num_threads() == before

"""Crystal GAN: space groups, the element table, the training filter, post-processing (symmetry + merge),
the physics losses, self-augmentation, resume, training, model files, sampling conditions."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import warnings
from collections import Counter

import numpy as np
import pytest
import torch

from aiida_physgen.ml import crystal_build, crystal_data, crystal_gan, elements, space_groups
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.crystal_data import symbols_of
from aiida_physgen.ml.family import TrainedModel, get_family
from aiida_physgen.ml.loop import TrainingInterrupted
from aiida_physgen.ml.training import train_ensemble

TARGET = {"space_groups": [216]}
#: smaller networks than the defaults; 40 generator steps of 32 crystals take a few seconds
SMALL = {
    "noise_dim": 16,
    "embedding": 16,
    "hidden": 64,
    "layers": 2,
    "critic_hidden": 64,
    "critic_layers": 2,
    "loop": {"steps": 40, "batch_size": 32, "log_every": 10},
}
#: 4 augmentations per crystal: an epoch is 396 samples, a step draws 6 × 32, so epochs end inside steps
TINY = {
    **SMALL,
    "noise_dim": 8,
    "embedding": 8,
    "hidden": 16,
    "critic_hidden": 16,
    "augmentations": 4,
    "loop": {"steps": 6, "batch_size": 32, "n_critic": 5, "log_every": 1},
}


# one ternary with three base sites in each of the paper's 12 space groups, in pymatgen's (= spglib's
# standard) setting: lattice, elements, base sites (origin choice 1 for Fd-3m and I4_1/amd)
def _cases():
    from pymatgen.core import Lattice as L

    return {
        216: (L.cubic(5.9), ["Li", "Zn", "As"], [[0, 0, 0], [0.25, 0.25, 0.25], [0.5, 0.5, 0.5]]),
        225: (L.cubic(6.0), ["Li", "Zn", "As"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]),
        221: (L.cubic(4.0), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0, 0.5, 0.5]]),
        227: (L.cubic(8.08), ["Mg", "Al", "O"], [[0, 0, 0], [5 / 8] * 3, [0.3866] * 3]),  # spinel
        139: (L.tetragonal(4.0, 10.0), ["Th", "Cr", "Si"], [[0, 0, 0], [0, 0.5, 0.25], [0, 0, 0.38]]),
        71: (L.orthorhombic(3.0, 4.0, 5.0), ["Li", "Zn", "As"], [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0.5, 0]]),
        62: (
            L.orthorhombic(6.0, 4.0, 7.0),
            ["Li", "Zn", "As"],
            [[0.1, 0.25, 0.2], [0.3, 0.25, 0.7], [0.8, 0.25, 0.45]],
        ),
        166: (L.hexagonal(3.0, 17.0), ["Cu", "Fe", "O"], [[0, 0, 0], [0, 0, 0.5], [0, 0, 0.107]]),  # delafossite
        194: (L.hexagonal(3.7, 7.2), ["Zr", "Be", "Si"], [[0, 0, 0], [1 / 3, 2 / 3, 0.25], [1 / 3, 2 / 3, 0.75]]),
        123: (L.tetragonal(4.0, 5.0), ["Li", "Zn", "As"], [[0, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0.5]]),
        164: (L.hexagonal(4.0, 6.0), ["Li", "Zn", "As"], [[0, 0, 0], [0, 0, 0.5], [1 / 3, 2 / 3, 0.3]]),
        141: (L.tetragonal(4.0, 9.0), ["Li", "Zn", "As"], [[0, 0, 0], [0, 0, 0.5], [0, 0, 0.25]]),
    }


def _structure(number):
    from pymatgen.core import Structure

    return Structure.from_spacegroup(number, *_cases()[number])


def _batch(structures):
    from pymatgen.io.ase import AseAtomsAdaptor

    return StructureBatch.from_atoms(
        [s if hasattr(s, "get_chemical_symbols") else AseAtomsAdaptor.get_atoms(s) for s in structures]
    )


def _pymatgen(atoms):
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_structure(atoms)


@pytest.fixture(scope="module")
def examples():
    return crystal_data.example_structures()  # ~2-4 s


@pytest.fixture(scope="module")
def crystals(examples):
    return crystal_data.training_crystals(examples)  # ~3 s


@pytest.fixture(scope="module")
def model(examples):
    (trained,) = train_ensemble("crystal_gan", examples, TARGET, SMALL, seeds=[0])
    return trained


def _generator():
    return crystal_gan.CrystalGenerator(
        [0], noise_dim=8, embedding=8, hidden=16, layers=1, length_low=2.0, length_high=12.0
    )


def _samples(coords, lengths, generator):
    """Samples ``(B, 12)`` (coordinates, normalised lengths) as the generator emits them."""
    low, high = generator.settings["length_low"], generator.settings["length_high"]
    coords = torch.as_tensor(np.asarray(coords), dtype=torch.float32).reshape(-1, 9)
    lengths = torch.as_tensor(np.asarray(lengths), dtype=torch.float32).reshape(-1, 3)
    return torch.cat([coords, (lengths - low) / (high - low)], dim=1)


def _conditions(groups, numbers):
    return torch.as_tensor(np.concatenate([np.asarray(groups)[:, None], np.asarray(numbers)], axis=1))


# ---------------------------------------------------------------------- space groups
@pytest.mark.parametrize(
    "number, symbol, operations, system",
    [
        (216, "F-43m", 96, "cubic"),
        (227, "Fd-3m", 192, "cubic"),
        (225, "Fm-3m", 192, "cubic"),
        (221, "Pm-3m", 48, "cubic"),
        (62, "Pnma", 8, "orthorhombic"),
        (71, "Immm", 16, "orthorhombic"),
        (139, "I4/mmm", 32, "tetragonal"),
        (141, "I4_1/amd", 32, "tetragonal"),
        (166, "R-3m", 36, "trigonal"),
        (194, "P6_3/mmc", 24, "hexagonal"),
    ],
)
def test_number_and_symbol_give_the_same_group(number, symbol, operations, system):
    for value in (number, symbol, f" {symbol} ", str(number), np.int64(number)):
        group = space_groups.space_group(value)
        assert (group.number, group.symbol, group.crystal_system) == (number, symbol, system)
        assert group.operations.shape == (operations, 4, 4)
    assert group.hexagonal_axes == (system in ("trigonal", "hexagonal"))
    assert group.to_dict() == {"number": number, "symbol": symbol, "crystal_system": system}
    # the operations are a group: closed under composition (translations modulo the lattice), with the identity
    ops = group.operations

    def codes(rotations, translations):  # one integer per operation; translations are multiples of 1/24
        digits = np.concatenate(
            [np.rint(rotations).reshape(-1, 9) + 1, np.rint(translations * 24).reshape(-1, 3) % 24], axis=1
        ).astype(np.int64)
        return digits @ (24 ** np.arange(12, dtype=np.int64))

    assert np.allclose(ops[:, :3, 3] * 24, np.rint(ops[:, :3, 3] * 24))
    known = codes(ops[:, :3, :3], ops[:, :3, 3])
    assert len(np.unique(known)) == operations and codes(np.eye(3), np.zeros(3))[0] in known
    rotations = np.einsum("aij,bjk->abik", ops[:, :3, :3], ops[:, :3, :3])
    translations = np.einsum("aij,bj->abi", ops[:, :3, :3], ops[:, :3, 3]) + ops[:, None, :3, 3]
    assert np.isin(codes(rotations, translations), known).all()


@pytest.mark.parametrize(
    "value, message",
    [
        ("Xyz", r"my\.field: 'Xyz' is not a space-group symbol"),
        (0, r"my\.field: got 0, expected a space-group number from 1 to 230"),
        (231, r"my\.field: got 231, expected a space-group number from 1 to 230"),
        (14, r"my\.field: P12_1/c1 \(14\) is monoclinic"),
        ("P2_1/c", r"my\.field: .*\(14\) is monoclinic"),
        (2, r"my\.field: .*\(2\) is triclinic"),
        (15, r"my\.field: .*monoclinic"),
        (True, r"my\.field: got True, expected a space-group number"),
        (216.0, r"my\.field: got 216\.0"),
        (None, r"my\.field: got None"),
    ],
)
def test_bad_space_groups_name_the_field(value, message):
    with pytest.raises(ValueError, match=message):
        space_groups.space_group(value, "my.field")


def test_orthorhombic_is_the_lowest_supported_system():
    assert space_groups.space_group(16).crystal_system == "orthorhombic"
    assert space_groups.space_group(230).number == 230
    with pytest.raises(ValueError, match=r"space_group: .*monoclinic"):
        space_groups.space_group(15)
    assert all(space_groups.space_group(n).number == n for n in space_groups.PAPER_SPACE_GROUPS)


@pytest.mark.parametrize(
    "number, point, size",
    [
        (216, (0, 0, 0), 4),
        (216, (0.5, 0.5, 0.5), 4),
        (216, (0.25, 0.25, 0.25), 4),
        (216, (0.75, 0.75, 0.75), 4),
        (216, (0.1, 0.1, 0.1), 16),
        (216, (0.1, 0, 0), 24),
        (216, (0.1, 0.1, 0.3), 48),
        (216, (0.11, 0.23, 0.37), 96),
        (225, (0, 0, 0), 4),
        (225, (0.25, 0.25, 0.25), 8),
        (225, (0.11, 0.23, 0.37), 192),
        # Fd-3m in pymatgen's and spglib's standard setting, origin choice 1: 8a at (0, 0, 0), 16c at (1/8, 1/8, 1/8)
        (227, (0, 0, 0), 8),
        (227, (0.5, 0.5, 0.5), 8),
        (227, (1 / 8, 1 / 8, 1 / 8), 16),
        (227, (5 / 8, 5 / 8, 5 / 8), 16),
        (227, (0.26, 0.26, 0.26), 32),
        (227, (0.11, 0.23, 0.37), 192),
        (62, (0, 0, 0), 4),
        (62, (0.1, 0.25, 0.3), 4),
        (62, (0.11, 0.23, 0.37), 8),
        (194, (0, 0, 0), 2),
        (194, (1 / 3, 2 / 3, 0.25), 2),
        (194, (0.11, 0.23, 0.37), 24),
    ],
)
def test_orbit_sizes_are_the_wyckoff_multiplicities(number, point, size):
    group = space_groups.space_group(number)
    orbit = group.orbit(np.array(point, dtype=float))
    assert len(orbit) == size
    assert np.all((orbit >= 0) & (orbit < 1))
    # every image of every operation is one of the orbit's points
    images = group.apply(np.array(point, dtype=float))
    gap = np.abs((images[:, None, :] - orbit[None, :, :] + 0.5) % 1.0 - 0.5).max(-1)
    assert gap.min(axis=1).max() < 1e-6


def test_constrain_lengths_follows_the_crystal_system():
    lengths = torch.tensor([[3.0, 4.0, 5.0]] * 6, requires_grad=True)
    groups = [216, 139, 194, 166, 62, 71]
    out = space_groups.constrain_lengths(lengths, groups)
    expected = [[4, 4, 4], [3.5, 3.5, 5], [3.5, 3.5, 5], [3.5, 3.5, 5], [3, 4, 5], [3, 4, 5]]
    assert torch.allclose(out, torch.tensor(expected, dtype=torch.float32))
    out[:, 0].sum().backward()  # differentiable: a in a cubic cell is the mean of all three
    assert torch.allclose(lengths.grad[0], torch.full((3,), 1 / 3)) and torch.allclose(
        lengths.grad[1], torch.tensor([0.5, 0.5, 0.0])
    )
    assert torch.equal(lengths.grad[4], torch.tensor([1.0, 0.0, 0.0]))


def test_lattice_matrices_hexagonal_and_orthogonal():
    lengths = torch.tensor([[3.0, 3.0, 5.0], [3.0, 3.0, 5.0], [3.0, 4.0, 5.0], [4.0, 4.0, 4.0]], dtype=torch.float64)
    cells = space_groups.lattice_matrices(lengths, [194, 166, 62, 216]).numpy()
    for cell, (a, b, c), gamma in zip(cells, lengths.numpy(), (120, 120, 90, 90)):
        assert np.allclose(np.linalg.norm(cell, axis=1), [a, b, c])
        cos = cell[0] @ cell[1] / (a * b)
        assert np.degrees(np.arccos(cos)) == pytest.approx(gamma)
        assert cell[2] @ cell[0] == pytest.approx(0) and cell[2] @ cell[1] == pytest.approx(0)
        sin = np.sin(np.radians(gamma))
        assert abs(np.linalg.det(cell)) == pytest.approx(a * b * c * sin)
    assert abs(np.linalg.det(cells[0])) == pytest.approx(9 * 5 * np.sqrt(3) / 2)
    # the same cell the post-processing builds
    assert np.allclose(cells[0], crystal_build._cell([3, 3, 5], True))


def test_padded_operations_and_features():
    ops, mask = space_groups.padded_operations([216, 62, 216])
    assert ops.shape == (3, space_groups.MAX_OPERATIONS, 3, 4) and mask.sum(1).tolist() == [96, 8, 96]
    assert torch.all(ops[1, 8:] == 0) and torch.equal(ops[0], ops[2])
    assert torch.allclose(ops[1, :8].double(), torch.as_tensor(space_groups.space_group(62).operations[:, :3]))
    features = space_groups.operation_features([216, 62])
    assert features.shape == (2, space_groups.MAX_OPERATIONS * 12)
    assert not torch.equal(features[0], features[1])


@pytest.mark.slow  # over 2 s: the fast lane stays under 2 minutes
def test_an_unsupported_group_does_not_break_later_lookups():
    # in a fresh process, as the cache is module state
    code = (
        "from aiida_physgen.ml import space_groups as sg\n"
        "sg.padded_operations([216])\n"
        "try:\n    sg.padded_operations([14])\nexcept ValueError:\n    pass\n"
        "assert sg.padded_operations([225])[1].sum() == 192\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True
    )


# ---------------------------------------------------------------------- elements
def test_element_table_and_vectors():
    from pymatgen.core import Element

    table = elements.table()
    assert len(table) == 86  # H–Pu with complete pymatgen data (the module docstring's count)
    assert {"H", "Li", "Pt", "Pu", "U"} <= set(table)
    assert not {"He", "Ne", "Ar", "Kr", "Xe", "Rn", "At", "Fr", "Am"} & set(table)
    vectors = elements.features(sorted(table))
    assert vectors.shape == (86, elements.feature_size()) == (86, len(elements.PROPERTIES) + 4)
    n = len(elements.PROPERTIES)
    assert np.allclose(vectors[:, :n].mean(0), 0, atol=1e-9) and np.allclose(vectors[:, :n].std(0), 1)
    assert np.all(vectors[:, n:].sum(1) == 1)  # one block each
    assert elements.features(["Pt"])[0, n + elements.BLOCKS.index("d")] == 1
    assert np.allclose(elements.radii(["H", "Pt", "As"]), [Element(s).atomic_radius for s in ("H", "Pt", "As")])


def test_check_elements_names_the_field_and_the_bad_symbols():
    assert elements.check_elements(("Li", "Zn", "As")) == ["Li", "Zn", "As"]
    with pytest.raises(ValueError, match=r"condition\.elements\[2\]: \['Xx', 'He'\] not in the element table"):
        elements.check_elements(["Li", "Xx", "He"], "condition.elements[2]")
    with pytest.raises(ValueError, match=r"^elements: \[3\]"):
        elements.check_elements(["Li", 3])


def test_canonical_order_does_not_depend_on_the_input_order():
    from pymatgen.core import Element

    orders = {tuple(elements.canonical_order(list(p))) for p in itertools.permutations(["As", "Li", "Zn"])}
    assert orders == {("Li", "Zn", "As")}
    triple = ["Pt", "Sc", "Sb"]
    assert elements.canonical_order(triple) == sorted(triple, key=lambda s: Element(s).mendeleev_no)


# ---------------------------------------------------------------------- training data
def test_every_shipped_example_is_a_half_heusler_with_three_four_fold_sites(examples, crystals):
    assert len(examples) == 99 and len(crystals) == 99 and crystals.dropped == []
    assert crystals.labels == examples.labels and crystals.dropped_summary() == {}
    assert np.all(crystals.space_groups == 216)
    assert crystals.coords.shape == (99, 3, 3) and crystals.numbers.shape == (99, 3)
    group = space_groups.space_group(216)
    special = group.orbit(np.zeros(3)).tolist() + group.orbit(np.full(3, 0.5)).tolist()
    quarter = group.orbit(np.full(3, 0.25)).tolist() + group.orbit(np.full(3, 0.75)).tolist()
    sites = {tuple(np.round(p, 6)) for p in special + quarter}  # 4a, 4b, 4c, 4d
    for m in range(99):
        atoms = examples[m]
        cif_lengths = atoms.cell.cellpar()[:3]
        assert np.allclose(crystals.lengths[m], cif_lengths, atol=1e-3)
        symbols = symbols_of(crystals.numbers[m])
        assert sorted(symbols) == sorted(set(atoms.get_chemical_symbols()))
        assert symbols == elements.canonical_order(symbols)
        orbits = crystals.orbits[m]
        assert [len(o) for o in orbits] == [4, 4, 4]
        for s in range(3):
            assert tuple(np.round(crystals.coords[m, s], 6)) in sites
            assert np.abs((orbits[s] - crystals.coords[m, s] + 0.5) % 1 - 0.5).sum(1).min() < 1e-8
        # three different Wyckoff positions: no two orbits share a point
        points = np.concatenate(orbits)
        assert len(np.unique(np.round(points % 1.0, 5), axis=0)) == 12


def test_every_half_heusler_has_its_middle_element_at_the_origin(examples, crystals):
    # spglib's refined cells put Pt, the element tetrahedrally surrounded by the other two, on 4a (59) or 4c (40); the
    # canonical origin puts it on 4a, the first of the other two (canonical element order) on 4c and the last on 4d
    raw = crystal_data.training_crystals(examples, canonical=False)
    group = space_groups.space_group(216)
    letters = {"4a": (0, 0, 0), "4b": (0.5, 0.5, 0.5), "4c": (0.25, 0.25, 0.25), "4d": (0.75, 0.75, 0.75)}
    orbits = {name: group.orbit(np.array(point, dtype=float)) for name, point in letters.items()}

    def letter(point):
        return next(n for n, orbit in orbits.items() if np.abs((orbit - point + 0.5) % 1 - 0.5).max(1).min() < 1e-6)

    pt_before = [letter(raw.coords[m, symbols_of(raw.numbers[m]).index("Pt")]) for m in range(99)]
    assert sorted(Counter(pt_before).items()) == [("4a", 59), ("4c", 40)]  # two origins in the refined cells
    for m in range(99):
        symbols = symbols_of(crystals.numbers[m])
        middle = symbols.index("Pt")
        assert crystal_data.coordination_numbers(crystals.orbits[m], np.diag(crystals.lengths[m]))[middle] == 8
        assert letter(crystals.coords[m, middle]) == "4a" and np.allclose(crystals.coords[m, middle], 0)
        ends = [s for s in range(3) if s != middle]
        assert [letter(crystals.coords[m, s]) for s in ends] == ["4c", "4d"]
        assert symbols_of(raw.numbers[m]) == symbols  # the same crystal, only moved


@pytest.mark.slow  # over 2 s: the fast lane stays under 2 minutes
def test_the_training_frame_is_the_generation_frame_in_all_twelve_paper_groups():
    # a ternary in each of the paper's groups, given as its primitive cell: the filter refines it to the
    # conventional cell, and its base sites rebuild (through the group's operations) the same crystal
    from pymatgen.analysis.structure_matcher import StructureMatcher

    numbers = list(space_groups.PAPER_SPACE_GROUPS)
    originals = [_structure(n) for n in numbers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        primitives = [s.get_primitive_structure() for s in originals]
    assert len(primitives[numbers.index(225)]) == 4  # really primitive: 16 atoms conventional
    kept = crystal_data.training_crystals(_batch(primitives))
    assert kept.dropped == [] and kept.space_groups.tolist() == numbers
    built = crystal_build.build_crystals(
        kept.coords, kept.lengths, kept.space_groups, [symbols_of(z) for z in kept.numbers]
    )
    assert built.info["symmetric"].tolist() == [1] * 12
    matcher = StructureMatcher()
    for m, (number, original) in enumerate(zip(numbers, originals)):
        lattice = original.lattice
        assert np.allclose(kept.lengths[m], lattice.abc, atol=1e-3), number
        assert len(built[m]) == len(original), number
        assert matcher.fit(original, _pymatgen(built[m])), number
        assert sum(len(o) for o in kept.orbits[m]) == len(original), number


def _low_symmetry_structures(examples):
    import ase.build
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    half_heusler = examples[0]  # Al4B4Pt4
    quaternary = half_heusler.copy()
    quaternary.numbers[0] = 3  # one Pt -> Li
    monoclinic = AseAtomsAdaptor.get_atoms(
        Structure.from_spacegroup(
            10, Lattice.monoclinic(3.1, 4.3, 5.2, 100), ["Li", "Zn", "As"], [[0, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0.5]]
        )
    )
    rattled = half_heusler.copy()
    rattled.rattle(0.3, seed=1)
    # inverse-Heusler-like: Li on 4a and 4c, Zn on 4b, As on 4d
    two_sites = AseAtomsAdaptor.get_atoms(
        Structure.from_spacegroup(
            216, Lattice.cubic(6.0), ["Li", "Zn", "Li", "As"], [[0, 0, 0], [0.5] * 3, [0.25] * 3, [0.75] * 3]
        )
    )
    molecule = half_heusler.copy()
    molecule.pbc = False
    noble = half_heusler.copy()
    noble.numbers[noble.numbers == 78] = 54  # Pt -> Xe
    return [
        (ase.build.bulk("NaCl", "rocksalt", a=5.64), r"not a ternary: 2 element\(s\) \['Cl', 'Na'\]"),
        (quaternary, r"not a ternary: 4 element\(s\) \['Al', 'B', 'Li', 'Pt'\]"),
        (monoclinic, r"unsupported space group: 10 \(monoclinic or triclinic\)"),
        (rattled, r"unsupported space group: 1 \(monoclinic or triclinic\)"),
        (two_sites, r"not three base sites: 4 symmetry-distinct sites"),
        (molecule, r"not a crystal: the structure is not periodic"),
        (noble, r"elements outside the element table: \['Xe'\]"),
    ]


def test_the_filter_drops_what_it_cannot_use_and_says_why(examples):
    import re

    cases = _low_symmetry_structures(examples)
    batch = _batch([examples[1]] + [atoms for atoms, _ in cases] + [examples[2]])
    kept = crystal_data.training_crystals(batch)
    assert kept.labels == ["structure 0", f"structure {len(cases) + 1}"]  # a batch without CIF labels
    assert [label for label, _ in kept.dropped] == [f"structure {i + 1}" for i in range(len(cases))]
    for (_, reason), (_, expected) in zip(kept.dropped, cases):
        assert re.match(expected, reason), (reason, expected)
    assert kept.dropped_summary() == {
        "not a ternary": 2,
        "unsupported space group": 2,
        "not three base sites": 1,
        "not a crystal": 1,
        "elements outside the element table": 1,
    }
    assert np.allclose(kept.lengths[:, 0], [examples[1].cell[0, 0], examples[2].cell[0, 0]])


def test_a_space_group_not_asked_for_is_dropped(examples):
    subset = examples.subset(range(5))
    kept = crystal_data.training_crystals(subset, space_groups=["Fm-3m"])
    assert len(kept) == 0 and kept.coords.shape == (0, 3, 3)
    assert all(reason == "space group not requested: F-43m (216)" for _, reason in kept.dropped)
    assert len(crystal_data.training_crystals(subset, space_groups=[216, 225])) == 5
    with pytest.raises(ValueError, match=r"space_groups: .*\(10\) is monoclinic"):
        crystal_data.training_crystals(subset, space_groups=["P2/m"])


def test_validation_errors_name_the_field(examples):
    family = get_family("crystal_gan")
    settings = family.settings({})
    target = family.check_target({"space_groups": [225]})
    with pytest.raises(
        ValueError,
        match=r"training: nothing left after filtering the 99 structure\(s\) "
        r"\(99 space group not requested\)",
    ):
        family.validate(examples, target, settings)
    with pytest.raises(ValueError, match="training: the crystal GAN needs training crystals"):
        family.validate(None, family.check_target({}), settings)
    with pytest.raises(ValueError, match=r"training: nothing left after filtering the 5 structure"):
        train_ensemble("crystal_gan", examples.subset(range(5)), {"space_groups": ["Fm-3m"]}, TINY)
    # some dropped: a warning that counts them by reason
    import ase.build

    rock_salt = _batch([ase.build.bulk("NaCl", "rocksalt", a=5.64)])
    mixed = StructureBatch.concatenate([examples.subset(range(3)), rock_salt])
    with pytest.warns(UserWarning, match=r"training: 1 of 4 structure\(s\) dropped \(1 not a ternary\)"):
        family.validate(mixed, family.check_target({}), settings)


def test_target_and_settings_are_checked():
    family = get_family("crystal_gan")
    assert family.check_target({}) == {"space_groups": None} == family.check_target(None)
    assert family.check_target({"space_groups": ["F-43m", 225, 216]}) == {"space_groups": [216, 225]}
    assert family.check_target({"space_groups": "Pnma"}) == {"space_groups": [62]}
    with pytest.raises(ValueError, match=r"target\.space_groups: .*monoclinic"):
        family.check_target({"space_groups": [14]})
    with pytest.raises(ValueError, match=r"target\.space_groups: got \[\]"):
        family.check_target({"space_groups": []})
    with pytest.raises(ValueError, match=r"target: unknown key\(s\) \['composition'\]"):
        family.check_target({"composition": "LiZnAs"})
    s = family.settings({})
    assert (s.lambda_inter, s.lambda_intra, s.lambda_volume, s.lambda_abc, s.augmentations) == (3.5, 5.0, 12.5, 5.0, 32)
    assert (s.loop.gp_weight, s.loop.lr_critic, s.loop.lr_generator, s.loop.optimizer) == (10.0, 2e-4, 5e-4, "adam")
    for values, field in [
        ({"hidden": 0}, "hidden"),
        ({"lambda_inter": -1.0}, "lambda_inter"),
        ({"merge_distance": 0.0}, "merge_distance"),
        ({"distance_offset": float("nan")}, "distance_offset"),
        ({"loop": {"lr_critic": [1e-4, 2e-4]}}, r"loop\.lr_critic"),
    ]:
        with pytest.raises(ValueError, match=field):
            family.settings(values)


def test_read_cif_folder_errors_name_the_file_or_the_folder(tmp_path):
    good = sorted(crystal_data.EXAMPLE_FOLDER.glob("*.cif"))[:2]
    folder = tmp_path / "cifs"
    folder.mkdir()
    for path in good:
        (folder / path.name).write_bytes(path.read_bytes())
    batch = crystal_data.read_cif_folder(folder)
    assert len(batch) == 2 and batch.labels == [p.stem for p in good]
    (folder / "zz_broken.cif").write_text("data_junk\n_cell_length_a 5\nthis is not a cif\n")
    with pytest.raises(ValueError, match=r"training\.folder: pymatgen cannot read zz_broken\.cif"):
        crystal_data.read_cif_folder(folder, "training.folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no CIF here")
    with pytest.raises(ValueError, match=rf"folder: '{empty}' holds no \*\.cif file"):
        crystal_data.read_cif_folder(empty)
    with pytest.raises(ValueError, match=r"folder: .*missing.* is not a folder"):
        crystal_data.read_cif_folder(tmp_path / "missing")


# ---------------------------------------------------------------------- post-processing
def test_base_sites_rebuild_the_training_crystals(examples, crystals):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    symbols = [symbols_of(z) for z in crystals.numbers]
    built = crystal_build.build_crystals(crystals.coords, crystals.lengths, crystals.space_groups, symbols)
    assert len(built) == 99 and np.all(built.n_atoms == 12)
    info = built.info
    assert set(crystal_build.BUILD_INFO_KEYS) <= set(info)
    assert np.all(info["symmetric"] == 1) and np.all(info["space_group_found"] == 216)
    assert np.all(info["images"] == 3 * 96) and np.all(info["merged_atoms"] == 12)
    assert built.formulas() == examples.formulas()
    matcher = StructureMatcher()
    for m in range(0, 99, 11):
        assert matcher.fit(_pymatgen(examples[m]), _pymatgen(built[m])), crystals.labels[m]


def test_noise_on_special_positions_snaps_back(crystals):
    rng = np.random.default_rng(0)
    noisy = crystals.coords[:20] + rng.uniform(-0.01, 0.01, crystals.coords[:20].shape)
    symbols = [symbols_of(z) for z in crystals.numbers[:20]]
    clean = crystal_build.build_crystals(
        crystals.coords[:20], crystals.lengths[:20], crystals.space_groups[:20], symbols
    )
    assert np.all(clean.info["snapped_sites"] == 0) and np.all(clean.info["merge_needed"] == 0)

    def same_sites(built):
        for m in range(20):
            a, b = built[m], clean[m]
            gap = (a.get_scaled_positions()[:, None] - b.get_scaled_positions()[None] + 0.5) % 1 - 0.5
            same = a.numbers[:, None] == b.numbers[None]
            assert np.where(same, np.abs(gap).max(-1), np.inf).min(1).max() < 1e-6

    # each base site moves onto its special position before the group is applied: the Wyckoff orbits, no merge
    built = crystal_build.build_crystals(noisy, crystals.lengths[:20], crystals.space_groups[:20], symbols)
    assert np.all(built.n_atoms == 12) and np.all(built.info["symmetric"] == 1)
    assert np.all(built.info["snapped_sites"] == 3) and np.all(built.info["merge_needed"] == 0)
    same_sites(built)
    # without the snapping the merge (the fallback) averages each cloud of 24 images to the same points, and says so
    merged = crystal_build.build_crystals(
        noisy, crystals.lengths[:20], crystals.space_groups[:20], symbols, wyckoff_tolerance=0.0
    )
    assert np.all(merged.n_atoms == 12) and np.all(merged.info["merge_needed"] == 1)
    assert np.all(merged.info["snapped_sites"] == 0)
    same_sites(merged)
    # with neither, a noisy point on a special position is a general point: 96 images each
    apart = crystal_build.build_crystals(
        noisy[:2], crystals.lengths[:2], [216, 216], symbols[:2], merge_distance=1e-3, wyckoff_tolerance=0.0
    )
    assert apart.n_atoms.tolist() == [288, 288]


@pytest.mark.parametrize("number", space_groups.PAPER_SPACE_GROUPS)
def test_snapped_points_sit_on_special_positions_within_the_tolerance(number):
    """Random points of each of the paper's groups, snapped at 0.75 Å (images within 1.5 Å count as crowded): the
    point moved at most 0.75 Å; its orbit has a multiplicity that divides the group's order; snapping it again never
    lowers its symmetry."""
    group = space_groups.space_group(number)
    lengths = {"cubic": [6.0] * 3, "tetragonal": [5.0, 5.0, 7.0], "trigonal": [5.0, 5.0, 7.0]}
    lengths["hexagonal"] = lengths["trigonal"]
    cell = crystal_build._cell(np.array(lengths.get(group.crystal_system, [5.0, 6.0, 7.0])), group.hexagonal_axes)
    moved = 0
    for point in np.random.default_rng(number).random((60, 3)):
        snapped = crystal_build.snap_to_special_position(group, point, cell, 0.75)
        step = (snapped - point) - np.round(snapped - point)
        assert np.linalg.norm(step @ cell) <= 0.75 + 1e-9
        moved += np.linalg.norm(step @ cell) > 1e-9
        offsets = group.apply(snapped) - snapped
        offsets -= np.round(offsets)
        distances = np.linalg.norm(offsets @ cell, axis=1)
        orbit = len(group.orbit(snapped))
        assert len(group.operations) % orbit == 0
        again = crystal_build.snap_to_special_position(group, snapped, cell, 0.75)
        assert len(group.orbit(again)) <= orbit
        offsets = group.apply(again) - again
        offsets -= np.round(offsets)
        assert np.all(np.linalg.norm(offsets @ cell, axis=1)[distances < 1e-8] < 1e-8)  # the site symmetry is kept
    assert moved >= 20, moved
    # off: nothing moves
    point = np.array([0.1, 0.2, 0.3])
    assert np.array_equal(crystal_build.snap_to_special_position(group, point, cell, 0.0), point)


def test_the_closure_of_a_point_is_its_orbit_and_a_translation_has_none():
    # the rotations of Fm-3m that fix the origin (its point group, 48) close a point near it into its star
    group = space_groups.space_group(225)
    fixing = [(op[:3, :3], np.zeros(3)) for op in group.operations if np.allclose(op[:3, 3], 0)]
    assert len(fixing) == 48
    cell = 6.0 * np.eye(3)
    for point, size in (((0.1, 0, 0), 6), ((0.1, 0.1, 0), 12), ((0.1, 0.1, 0.1), 8), ((0.1, 0.2, 0.3), 48)):
        orbit = crystal_build._closure(np.array(point, dtype=float), fixing, cell)
        assert len(orbit) == size and np.allclose(orbit[0], point)
        assert np.allclose(orbit.mean(axis=0), 0)  # the mean of the orbit: the fixed point (what snapping uses)
        assert len({tuple(np.round(x, 6)) for x in orbit}) == size
    # maps without a common fixed point (a translation) generate no finite orbit: None once past the limit
    assert crystal_build._closure(np.zeros(3), [(np.eye(3), np.array([0.5, 0, 0]))], cell, limit=48) is None


def test_snapping_leaves_real_crystals_alone_and_respects_the_crowding_distance():
    """ThCr2Si2 (I4/mmm): Si on 4e (0, 0, 0.38) is 1.2 Å from 2b, its mirror image 2.4 Å away (a real Si-Si bond).
    With images crowded only below the merge distance (the default) it stays; allowed to call 2.4 Å crowded it moves
    onto 2b."""
    group = space_groups.space_group(139)
    cell = crystal_build._cell(np.array([4.0, 4.0, 10.0]), False)
    si = np.array([0.0, 0.0, 0.38])
    built = crystal_build.build_crystals(
        np.array([[[0, 0, 0], [0, 0.5, 0.25], si]]),
        np.array([[4.0, 4.0, 10.0]]),
        [139],
        [["Th", "Cr", "Si"]],
        merge_distance=1.5,
    )
    assert built.formulas() == ["Cr4Si4Th2"] and built.info["snapped_sites"].tolist() == [0]
    assert np.allclose(crystal_build.snap_to_special_position(group, si, cell, 1.5, crowding=1.5), si)
    assert np.allclose(crystal_build.snap_to_special_position(group, si, cell, 1.5, crowding=2.5), [0, 0, 0.5])


def test_the_fd3m_example_576_images_merge_to_32_atoms():
    # three base sites with 192 operations each: 576 images. In pymatgen's setting (origin choice 1)
    # (1/8, 1/8, 1/8) is 16c, (1/2, 1/2, 1/2) is 8b and O at x = 0.26 lies 0.28 Å from the 8a points
    # (x = 1/4), so its 32 images merge four by four onto the 8 points of 8a: 16 + 8 + 8 = 32 atoms
    coords = np.array([[[1 / 8] * 3, [0.5] * 3, [0.26] * 3]])
    built = crystal_build.build_crystals(coords, np.array([[8.0, 8.0, 8.0]]), [227], [["Mg", "Al", "O"]])
    assert built.info["images"].tolist() == [576] and built.info["merged_atoms"].tolist() == [32]
    assert built.info["symmetric"].tolist() == [1]
    assert built.formulas() == ["Al8Mg16O8"]
    o = built[0].get_scaled_positions()[built[0].numbers == 8]
    eight_a = space_groups.space_group(227).orbit(np.zeros(3))
    assert np.abs((o[:, None] - eight_a[None] + 0.5) % 1 - 0.5).max(-1).min(1).max() < 1e-9
    # the real spinel in that setting: Mg 8a, Al 16d, O 32e, nothing to merge
    spinel = crystal_build.build_crystals(
        np.array([[[0, 0, 0], [5 / 8] * 3, [0.3866] * 3]]), np.array([[8.08] * 3]), [227], [["Mg", "Al", "O"]]
    )
    assert spinel.formulas() == ["Al16Mg8O32"] and spinel.info["symmetric"].tolist() == [1]


def test_merge_uses_the_periodic_mean():
    cell = np.diag([10.0, 10.0, 10.0])
    merged = crystal_build.merge_sites(np.array([[0.0, 0.5, 0.5], [0.99, 0.5, 0.5], [0.5, 0.0, 0.0]]), cell, 1.0)
    assert len(merged) == 2
    first = merged[np.argmin(np.abs(merged[:, 1] - 0.5))]
    assert np.allclose(first, [0.995, 0.5, 0.5])  # across the boundary, not the naive mean 0.495
    assert len(crystal_build.merge_sites(np.array([[0.0, 0.5, 0.5], [0.99, 0.5, 0.5]]), cell, 0.05)) == 2
    assert len(crystal_build.merge_sites(np.array([[0.3, 0.3, 0.3]] * 5), cell, 1.0)) == 1


# ---------------------------------------------------------------------- physics losses
def _site_pair_minima(atoms, symbols):
    """Shortest ASE (minimum-image) distance between atoms of element i and element j, (3, 3)."""
    distances = atoms.get_all_distances(mic=True)
    np.fill_diagonal(distances, np.inf)
    chemical = np.array(atoms.get_chemical_symbols())
    out = np.full((3, 3), np.inf)
    for i, j in itertools.product(range(3), repeat=2):
        out[i, j] = distances[np.ix_(chemical == symbols[i], chemical == symbols[j])].min()
    return out


def test_pair_distances_agree_with_ase(crystals):
    # ten half-Heuslers and one crystal in each non-cubic system (γ = 120° cells included)
    coords, lengths, groups, symbols = (
        list(crystals.coords[:10]),
        list(crystals.lengths[:10]),
        [216] * 10,
        [symbols_of(z) for z in crystals.numbers[:10]],
    )
    extra = crystal_data.training_crystals(_batch([_structure(n) for n in (194, 166, 164, 62, 139, 71, 227)]))
    assert len(extra) == 7
    coords += list(extra.coords)
    lengths += list(extra.lengths)
    groups += extra.space_groups.tolist()
    symbols += [symbols_of(z) for z in extra.numbers]
    built = crystal_build.build_crystals(np.array(coords), np.array(lengths), groups, symbols)
    d, mask, cells = crystal_gan.pair_distances(
        torch.tensor(np.array(coords), dtype=torch.float32),
        torch.tensor(np.array(lengths), dtype=torch.float32),
        groups,
    )
    assert d.shape == (17, 3, 3, mask.shape[1]) and mask.shape[1] == 192
    assert np.allclose(cells.numpy(), built.cells, atol=1e-5)
    d = d.masked_fill(~mask[:, None, None, :], np.inf).masked_fill(d < 1e-3, np.inf)
    minima = d.min(dim=-1).values.numpy()
    for m in range(17):
        ase_minima = _site_pair_minima(built[m], symbols[m])
        finite = np.isfinite(minima[m])  # a site alone in its orbit has no same-element neighbour in the cell
        assert np.abs(minima[m][finite] - ase_minima[finite]).max() < 1e-4, groups[m]
        assert np.all(finite[~np.eye(3, dtype=bool)])
        assert minima[m].min() == pytest.approx(np.min(ase_minima[finite]), abs=1e-4)


def test_the_distance_loss_is_zero_for_real_crystals_and_positive_for_a_clash(crystals):
    generator = _generator()
    real = _samples(crystals.coords, crystals.lengths, generator)
    condition = _conditions(crystals.space_groups, crystals.numbers)
    terms = crystal_gan.physics_losses(real, real, condition, generator, crystal_gan.CrystalGanSettings())
    assert set(terms) == {"inter", "intra", "volume", "abc"}
    assert terms["inter"].item() == 0 and terms["intra"].item() == 0
    # without the −1 Å offset the generous Slater radii overlap in every half-Heusler (the loss sees them)
    strict = crystal_gan.CrystalGanSettings(distance_offset=0.0)
    for m in range(0, 99, 9):
        one = crystal_gan.physics_losses(real[m : m + 1], real[m : m + 1], condition[m : m + 1], generator, strict)
        assert one["inter"].item() > 0, crystals.labels[m]

    # two different elements 0.3 Å apart: a clash, and its gradient pushes them apart
    a = float(crystals.lengths[0, 0])
    coords = crystals.coords[:1].copy()
    coords[0, 1] = coords[0, 0] + [0.3 / a, 0, 0]
    fake = _samples(coords, crystals.lengths[:1], generator).requires_grad_(True)
    terms = crystal_gan.physics_losses(fake, real[:1], condition[:1], generator, crystal_gan.CrystalGanSettings())
    assert terms["inter"].item() > 0
    terms["inter"].backward()

    def closest(sample):
        coords, lengths = sample[:, :9].reshape(-1, 3, 3), generator.lengths(sample[:, 9:])
        d, mask, _ = crystal_gan.pair_distances(coords, lengths, [216])
        return d[0, 0, 1][mask[0]].min().item()

    with torch.no_grad():
        before, after = closest(fake), closest(fake - 1e-3 * fake.grad)
    assert before == pytest.approx(0.3, abs=1e-5) and after > before + 1e-4
    assert fake.grad[0, 3] < 0  # site 1 moves away from site 0 along +x


def test_the_intra_loss_skips_pairs_that_merge():
    # one Pt site at (x, 0, 0) of F-43m, a = 6 Å, x = 0.1: its images around the origin sit 0.85 Å
    # (merged into one atom) and 1.2 Å (a clash: 2 r_Pt − 1 Å = 1.7 Å) apart
    generator = _generator()
    coords = np.array([[[0.1, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]])
    sample = _samples(coords, [[6.0, 6.0, 6.0]], generator)
    condition = _conditions([216], [[78, 13, 5]])
    # the loss counts operation images (3 sites × 96), so an atom on (x, 0, 0), the image of 4 operations,
    # is counted 4 times; the 1.2 Å neighbour alone: 4 tanh(1.7 − 1.2) / 288
    settings = crystal_gan.CrystalGanSettings(merge_distance=1.0)
    one = crystal_gan.physics_losses(sample, sample, condition, generator, settings)
    assert one["intra"].item() == pytest.approx(4 * np.tanh(0.5) / 288, rel=1e-4)
    wider = crystal_gan.CrystalGanSettings(merge_distance=1.3)
    assert crystal_gan.physics_losses(sample, sample, condition, generator, wider)["intra"].item() == 0
    closer = crystal_gan.CrystalGanSettings(merge_distance=0.5)  # the four 0.85 Å neighbours too
    expected = 4 * (np.tanh(0.5) + 4 * np.tanh(1.7 - 0.6 * np.sqrt(2))) / 288
    assert crystal_gan.physics_losses(sample, sample, condition, generator, closer)["intra"].item() == pytest.approx(
        expected, rel=1e-4
    )


def test_the_box_loss_compares_the_volume_and_length_patterns(crystals):
    generator = _generator()
    condition = _conditions(crystals.space_groups[:8], crystals.numbers[:8])
    lengths = np.linspace(4.0, 8.0, 8)[:, None].repeat(3, 1)
    real = _samples(crystals.coords[:8], lengths, generator)
    s = crystal_gan.CrystalGanSettings()
    same = crystal_gan.physics_losses(real, real, condition, generator, s)
    assert abs(same["volume"].item()) < 1e-6 and abs(same["abc"].item()) < 1e-6
    reversed_ = _samples(crystals.coords[:8], lengths[::-1].copy(), generator)
    other = crystal_gan.physics_losses(reversed_, real, condition, generator, s)
    assert other["volume"].item() > 0.05 and other["abc"].item() > 0.01
    assert other["volume"].item() > other["abc"].item()  # volumes (a³) spread more than lengths
    # 1 − cosine: a common scale factor is not penalised, only the pattern over the batch
    scaled = _samples(crystals.coords[:8], 1.1 * lengths, generator)
    assert abs(crystal_gan.physics_losses(scaled, real, condition, generator, s)["volume"].item()) < 1e-5


# ---------------------------------------------------------------------- self-augmentation
def test_an_epoch_holds_every_crystal_augmentations_times(crystals):
    epochs = crystal_gan._Epochs(0, crystals, 32)
    crystal, choice, order = epochs.take(99 * 32)
    assert np.array_equal(order, np.broadcast_to([0, 1, 2], (99 * 32, 3)))  # canonical site order by default
    assert np.all(np.bincount(crystal, minlength=99) == 32)
    assert epochs.state() == [1, 0]
    assert choice.shape == (99 * 32, 3) and choice.min() == 0 and choice.max() == 3
    for site in range(3):  # every orbit member is drawn, about equally often
        counts = np.bincount(choice[:, site], minlength=4)
        assert counts.min() > 0.2 * len(choice)
    assert not np.array_equal(crystal[:99], np.arange(99))  # shuffled
    again_crystal, again_choice, _ = crystal_gan._Epochs(0, crystals, 32).take(99 * 32)
    assert np.array_equal(crystal, again_crystal) and np.array_equal(choice, again_choice)
    other_crystal, _, _ = crystal_gan._Epochs(1, crystals, 32).take(99 * 32)
    assert not np.array_equal(crystal, other_crystal)
    next_crystal, next_choice, _ = epochs.take(99 * 32)  # epoch 1: the same counts, other draws
    assert np.all(np.bincount(next_crystal, minlength=99) == 32)
    assert not np.array_equal(crystal, next_crystal) and not np.array_equal(choice, next_choice)


def test_takes_cross_epochs_and_resume_from_the_state(crystals):
    whole = crystal_gan._Epochs(3, crystals, 2, permute=True)  # 198 samples per epoch
    crystal, choice, order = whole.take(500)
    assert whole.state() == [2, 104]
    parts = crystal_gan._Epochs(3, crystals, 2, permute=True)
    pieces = [parts.take(n) for n in (150, 100, 1, 249)]
    assert np.array_equal(crystal, np.concatenate([p[0] for p in pieces]))
    assert np.array_equal(choice, np.concatenate([p[1] for p in pieces]))
    assert np.array_equal(order, np.concatenate([p[2] for p in pieces]))
    resumed = crystal_gan._Epochs(3, crystals, 2, permute=True)
    resumed.load(parts.state())
    assert np.array_equal(resumed.take(60)[0], whole.take(60)[0])


@pytest.mark.slow  # over 2 s: the fast lane stays under 2 minutes
def test_real_batches_are_orbit_members_of_the_training_crystals(examples, crystals):
    family = get_family("crystal_gan")
    settings = family.settings(SMALL)
    trainer = family.build_trainer(examples, family.check_target(TARGET), [settings, settings], [0, 5], "cpu")
    problem = trainer.problem
    expected = [crystal_gan._Epochs(seed, crystals, 32) for seed in (0, 5)]
    samples, conditions = problem.real_batch(64, trainer.rngs)
    assert samples.shape == (2, 64, 12) and conditions.shape == (2, 64, 4)
    low, high = problem.generator.settings["length_low"], problem.generator.settings["length_high"]
    assert low < crystals.lengths.min() and crystals.lengths.max() < high
    group = space_groups.space_group(216)
    for k in range(2):
        crystal, _, _ = expected[k].take(64)
        assert conditions[k, :, 0].tolist() == [216] * 64
        assert np.array_equal(conditions[k, :, 1:].numpy(), crystals.numbers[crystal])
        lengths = low + (high - low) * samples[k, :, 9:].double().numpy()
        assert np.allclose(lengths, crystals.lengths[crystal], atol=1e-5)
        coords = samples[k, :, :9].double().numpy().reshape(64, 3, 3)
        for n, c in enumerate(crystal):
            for s in range(3):
                orbit = group.orbit(crystals.coords[c, s])  # computed anew, not the stored orbit
                assert np.abs((orbit - coords[n, s] + 0.5) % 1 - 0.5).max(1).min() < 1e-6
        # not always the stored base site: self-augmentation
        assert sum(not np.allclose(coords[n], crystals.coords[c], atol=1e-6) for n, c in enumerate(crystal)) > 32
    assert not torch.equal(samples[0], samples[1])  # each member its own data stream


def test_permuted_sites_keep_each_element_with_its_own_coordinates(examples, crystals):
    family = get_family("crystal_gan")
    settings = family.settings({**SMALL, "permute_sites": True})
    plain = crystal_gan._Epochs(0, crystals, 32)
    permuted = crystal_gan._Epochs(0, crystals, 32, permute=True)
    crystal, choice, _ = plain.take(200)
    same_crystal, same_choice, order = permuted.take(200)
    # the same crystals and orbit members as without it (drawn first), listed in a drawn order
    assert np.array_equal(crystal, same_crystal) and np.array_equal(choice, same_choice)
    assert np.array_equal(np.sort(order, axis=1), np.broadcast_to([0, 1, 2], order.shape))
    assert len({tuple(o) for o in order.tolist()}) == 6  # all six orders
    trainer = family.build_trainer(examples, family.check_target(TARGET), [settings], [0], "cpu")
    samples, conditions = trainer.problem.real_batch(200, trainer.rngs)
    coords = samples[0, :, :9].double().numpy().reshape(200, 3, 3)
    group = space_groups.space_group(216)
    for n, c in enumerate(crystal):
        assert np.array_equal(conditions[0, n, 1:].numpy(), crystals.numbers[c][order[n]])
        for slot in range(3):  # the element in a slot comes with an orbit member of its own site
            orbit = group.orbit(crystals.coords[c, order[n, slot]])
            assert np.abs((orbit - coords[n, slot] + 0.5) % 1 - 0.5).max(1).min() < 1e-6
    assert sum(order[n, 0] != 0 for n in range(200)) > 100  # the canonical first element is often elsewhere
    with pytest.raises(ValueError, match="permute_sites: got 'yes', expected true or false"):
        family.settings({"permute_sites": "yes"})


class _Killed(Exception):
    """A job killed between two checkpoints (nothing is written at the kill)."""


@pytest.fixture(scope="module")
def straight(examples):
    return train_ensemble("crystal_gan", examples, TARGET, TINY, seeds=[0, 1])


@pytest.mark.parametrize("how", ["interrupted", "killed"])
def test_a_resumed_training_is_bit_identical(examples, straight, tmp_path, how):
    calls = []

    def stop():
        calls.append(1)
        if how == "killed" and len(calls) > 5:
            raise _Killed  # after step 5: the checkpoint on disk is the one of step 3
        return how == "interrupted" and len(calls) > 3  # after step 3: the stop writes a checkpoint

    with pytest.raises(_Killed if how == "killed" else TrainingInterrupted):
        train_ensemble(
            "crystal_gan",
            examples,
            TARGET,
            TINY,
            seeds=[0, 1],
            checkpoint_dir=tmp_path,
            checkpoint_every=3,
            should_stop=stop,
        )
    state = torch.load(tmp_path / "group_00.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 3
    resumed = train_ensemble("crystal_gan", examples, TARGET, TINY, seeds=[0, 1], checkpoint_dir=tmp_path)
    for a, b in zip(straight, resumed):
        assert b.config["steps"] == 6
        for (name, x), y in zip(a.module.state_dict().items(), b.module.state_dict().values()):
            assert torch.equal(x, y), name
        assert a.config["history"] == b.config["history"]


def test_a_member_trains_the_same_alone_and_in_an_ensemble(examples, straight):
    (alone,) = train_ensemble("crystal_gan", examples, TARGET, TINY, seeds=[1])
    for x, y in zip(alone.module.state_dict().values(), straight[1].module.state_dict().values()):
        assert torch.equal(x, y)
    assert not torch.equal(straight[0].module.nets[0].groups.weight, straight[1].module.nets[0].groups.weight)


# ---------------------------------------------------------------------- training and sampling
def test_short_training_records_every_loss(model, crystals):
    config = model.config
    assert config["family"] == "crystal_gan" and config["steps"] == 40
    history = config["history"]
    assert history["steps"] == [10, 20, 30, 40]
    for name in ("critic", "generator", "wasserstein", "inter", "intra", "volume", "abc"):
        assert len(history[name]) == 4 and all(np.isfinite(history[name])), name
        assert np.isfinite(config["losses"][name]), name
    assert all(v >= 0 for name in ("inter", "intra") for v in history[name])
    assert history["inter"][-1] < history["inter"][0]  # the clash loss trains down
    assert config["training_space_groups"] == {"216": 99} and config["dropped"] == 0
    low, high = config["lengths"]
    assert low < crystals.lengths.min() < crystals.lengths.max() < high
    assert len(config["training_triples"]) == len({tuple(z) for z in crystals.numbers.tolist()})
    assert config["architecture"] == {"noise_dim": 16, "embedding": 16, "hidden": 64, "layers": 2, "site_heads": False}


def test_the_site_head_is_shared_and_a_model_without_it_still_loads(examples):
    # one coordinates head serves the three sites, fed the trunk's features, the site's element and its slot
    (heads,) = train_ensemble("crystal_gan", examples, TARGET, {**TINY, "site_heads": True, "loop": {"steps": 2}})
    net = heads.module.nets[0]
    assert heads.config["architecture"]["site_heads"] is True and net.site[0].in_features == 16 + 8 + 3
    assert len(heads.sample(4, 0)) == 4
    # the paper's single output layer (the default), as in models saved before the site heads (no key)
    (plain,) = train_ensemble("crystal_gan", examples, TARGET, {**TINY, "loop": {"steps": 1}})
    assert plain.config["architecture"]["site_heads"] is False
    old = json.loads(json.dumps(plain.config))
    del old["architecture"]["site_heads"]
    rebuilt = get_family("crystal_gan").module_from_config(old)
    assert set(rebuilt.state_dict()) == set(plain.module.state_dict())
    assert len(plain.sample(4, 0)) == 4
    with pytest.raises(ValueError, match="site_heads: got 'yes', expected true or false"):
        train_ensemble("crystal_gan", examples, TARGET, {**TINY, "site_heads": "yes"})


def test_the_critic_reads_plane_waves_that_tell_the_face_centred_orbits_apart(crystals):
    # order 0 is the paper's critic input: sin and cos of 2π·x along each axis, in the coordinates' order
    assert torch.equal(crystal_gan.wave_vectors(0), torch.eye(3))
    waves = crystal_gan.wave_vectors(1)
    assert len(waves) == 13 and len(crystal_gan.wave_vectors(2)) == 62
    keys = {tuple(g.tolist()) for g in waves}
    assert (1.0, 1.0, 1.0) in keys and not any(tuple(-x for x in k) in keys for k in keys)  # one of each ± pair
    # exp(2πi (1,1,1)·x) is one number per F-43m orbit (4a 1, 4b −1, 4c −i, 4d i), whichever member is drawn
    group = space_groups.space_group(216)
    for point, value in (((0, 0, 0), 1), ((0.5, 0.5, 0.5), -1), ((0.25, 0.25, 0.25), -1j), ((0.75, 0.75, 0.75), 1j)):
        phases = np.exp(2j * np.pi * group.orbit(np.array(point)).sum(axis=1))
        assert np.allclose(phases, value)
    critic = crystal_gan.CrystalCritic(seeds=[0], embedding=8, hidden=16, layers=2, waves=1)
    assert critic.nets[0].body[0].in_features == 6 * 13 + 3 + 16
    samples, conditions = torch.rand(5, 12), torch.tensor([[216, 78, 3, 22]] * 5)
    assert critic.member_forward(0, samples, conditions).shape == (5,)
    # the critic only trains: a model file holds the generator, so earlier models are unaffected
    assert "waves" not in critic.nets[0].state_dict()
    # each site read on its own too (element beside its waves, one network for the three sites, summed)
    sited = crystal_gan.CrystalCritic(seeds=[0], embedding=8, hidden=16, layers=2, waves=1, site_critic=True)
    assert sited.nets[0].body[0].in_features == 6 * 13 + 3 + 16 + 16
    swapped = torch.cat([samples[:, [3, 4, 5, 0, 1, 2, 6, 7, 8]], samples[:, 9:]], dim=1)
    assert not torch.allclose(
        sited.member_forward(0, samples, conditions), sited.member_forward(0, swapped, conditions)
    )
    # with critic_orbits, every member of a site's orbit reads the same: the F-43m orbit members of 4a, 4c and 4d
    orbiting = crystal_gan.CrystalCritic(seeds=[0], embedding=8, hidden=16, layers=2, waves=1, orbits=True)
    members = [group.orbit(np.array(p)) for p in ((0, 0, 0), (0.25, 0.25, 0.25), (0.75, 0.75, 0.75))]
    sites = torch.tensor(np.stack([[m[i] for m in members] for i in range(4)]), dtype=torch.float32)  # (4, 3, 3)
    drawn = torch.cat([sites.reshape(4, 9), torch.full((4, 3), 0.5)], dim=1)
    scores = orbiting.member_forward(0, drawn, torch.tensor([[216, 78, 3, 22]] * 4))
    assert torch.allclose(scores, scores[0].expand(4), atol=1e-5)
    moved = drawn.clone()
    moved[:, :3] = torch.tensor([0.5, 0.5, 0.5])  # the first site from 4a to 4b: another orbit, another score
    assert not torch.allclose(orbiting.member_forward(0, moved, torch.tensor([[216, 78, 3, 22]] * 4)), scores)
    with pytest.raises(ValueError, match="critic_waves: got 3, expected 0, 1 or 2"):
        get_family("crystal_gan").settings({"critic_waves": 3})
    for name in ("site_critic", "critic_orbits"):
        with pytest.raises(ValueError, match=f"{name}: got 'yes', expected true or false"):
            get_family("crystal_gan").settings({name: "yes"})


def test_model_file_round_trip_samples_identically(model):
    data = model.to_bytes()
    assert data == model.to_bytes()
    loaded = TrainedModel.from_bytes(data)
    assert loaded.config == TrainedModel.from_bytes(data).config
    for condition in (None, {"elements": ["Li", "Zn", "As"]}):
        a, b = model.sample(12, 3, condition), loaded.sample(12, 3, condition)
        assert np.array_equal(a.positions, b.positions) and np.array_equal(a.numbers, b.numbers)
        assert np.array_equal(a.cells, b.cells)
        for key in crystal_build.BUILD_INFO_KEYS:
            assert np.array_equal(a.info[key], b.info[key]), key
    assert not np.array_equal(model.sample(12, 4).cells, model.sample(12, 3).cells)


def test_sampling_trained_and_untrained_groups(model, crystals):
    out = model.sample(24, 0)  # the default group: the model's most common training group
    info = out.info
    assert len(out) == 24 and np.all(info["space_group_requested"] == 216)
    assert set(np.unique(info["symmetric"])) <= {0, 1}
    assert np.array_equal(info["symmetric"], (info["space_group_found"] == 216).astype(int))
    assert np.array_equal(info["merged_atoms"], out.n_atoms) and np.all(info["images"] == 288)
    low, high = model.config["lengths"]
    for m in range(24):
        a, b, c, alpha, beta, gamma = out[m].cell.cellpar()
        assert a == pytest.approx(b) == pytest.approx(c) and low <= a <= high
        assert (alpha, beta, gamma) == pytest.approx((90, 90, 90))
    # the default elements are training triples of the group
    triples = {tuple(sorted(symbols_of(z))) for z in crystals.numbers}
    assert all(tuple(sorted(set(out[m].get_chemical_symbols()))) in triples for m in range(24))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a trained group: no warning
        model.sample(2, 0, {"space_group": "F-43m"})
    with pytest.warns(
        UserWarning,
        match=r"condition\.space_group: the model was trained on \[216\], not on "
        r"Fm-3m \(225\)",
    ):
        other = model.sample(24, 0, {"space_group": 225})
    assert np.all(other.info["space_group_requested"] == 225) and np.all(other.info["images"] == 576)
    share = other.info["symmetric"].mean()
    assert 0 <= share <= 1 and np.array_equal(other.info["symmetric"], other.info["space_group_found"] == 225)
    with pytest.warns(UserWarning, match=r"P6_3/mmc \(194\)"):
        hexagonal = model.sample(6, 0, {"space_group": 194})
    assert all(hexagonal[m].cell.cellpar()[5] == pytest.approx(120) for m in range(6))


def test_element_conditions(model):
    out = model.sample(10, 1, {"elements": ["Zn", "As", "Li"]})
    assert all(set(out[m].get_chemical_symbols()) == {"Li", "Zn", "As"} for m in range(10))
    cycled = model.sample(5, 1, {"elements": [["Li", "Zn", "As"], ["Na", "Mg", "Sb"]]})
    expected = [{"Li", "Zn", "As"}, {"Na", "Mg", "Sb"}] * 2 + [{"Li", "Zn", "As"}]
    assert [set(cycled[m].get_chemical_symbols()) for m in range(5)] == expected
    family = get_family("crystal_gan")
    normalised = family.check_condition({"elements": ("As", "Li", "Zn")}, model.config)
    assert (normalised["space_group"], normalised["elements"]) == (216, [["Li", "Zn", "As"]])
    default = family.check_condition(None, model.config)
    assert (default["space_group"], default["elements"]) == (216, "training")


def test_the_merge_distance_of_sampling(model):
    default = model.sample(16, 2)
    same = model.sample(16, 2, {"merge_distance": model.config["merge_distance"]})
    assert np.array_equal(default.positions, same.positions) and np.array_equal(default.n_atoms, same.n_atoms)
    # the same network outputs, cut at 0.3 Å and at 2.5 Å: the wider cut merges more (never fewer) images (the
    # merge is the fallback of the Wyckoff snapping, which places every site of this model: snapping off here)
    tight = model.sample(16, 2, {"merge_distance": 0.3, "wyckoff_tolerance": 0.0})
    wide = model.sample(16, 2, {"merge_distance": 2.5, "wyckoff_tolerance": 0.0})
    assert np.all(tight.n_atoms >= wide.n_atoms) and np.any(tight.n_atoms > wide.n_atoms)
    assert np.array_equal(tight.cells, wide.cells) and np.all(wide.info["images"] == tight.info["images"])


@pytest.mark.parametrize(
    "condition, message",
    [
        ({"temperature": 300}, r"condition: unknown key\(s\) \['temperature'\]"),
        ({"elements": ["Xx", "Zn", "As"]}, r"condition\.elements\[0\]: \['Xx'\] not in the element table"),
        ({"elements": ["Li", "Li", "As"]}, r"condition\.elements\[0\]: .*three different element symbols"),
        ({"elements": [["Li", "Zn", "As"], ["Li", "He", "As"]]}, r"condition\.elements\[1\]: \['He'\]"),
        ({"elements": "random"}, r"condition\.elements: got 'random'"),
        ({"elements": []}, r"condition\.elements: got \[\]"),
        ({"space_group": "P2/m"}, r"condition\.space_group: .*\(10\) is monoclinic"),
        ({"space_group": 231}, r"condition\.space_group: got 231"),
        ({"space_group": "Q-43m"}, r"condition\.space_group: 'Q-43m' is not a space-group symbol"),
        ([216], r"condition: expected a dictionary"),
        ({"merge_distance": 0}, r"condition\.merge_distance: got 0"),
        ({"merge_distance": "1.5"}, r"condition\.merge_distance: got '1\.5'"),
    ],
)
def test_bad_conditions_name_the_field(model, condition, message):
    with pytest.raises(ValueError, match=message):
        model.sample(2, 0, condition)


@pytest.mark.parametrize(
    "number, expected",
    # the Wyckoff positions without a free parameter (International Tables A): their points per conventional cell
    [(216, 16), (225, 40), (221, 8), (227, 48), (139, 20), (62, 8), (194, 14), (166, 24), (186, 0)],
)
def test_isolated_special_positions_are_the_fixed_wyckoff_positions(number, expected):
    group = space_groups.space_group(number)
    points = crystal_build.isolated_special_positions(number)
    assert len(points) == expected
    rotations = group.operations[:, :3, :3]
    for point in points:
        offsets = group.apply(point) - point
        fixing = np.all(np.abs(offsets - np.round(offsets)) < 1e-9, axis=1)
        # fixed by operations whose rotation parts leave no direction fixed: the point cannot slide
        assert np.linalg.matrix_rank(np.concatenate(rotations[fixing] - np.eye(3))) == 3
    if number == 216:  # 4a, 4b, 4c, 4d of F-43m: (0, 0, 0), (1/2, 1/2, 1/2), (1/4, 1/4, 1/4), (3/4, 3/4, 3/4) + F
        assert {tuple(np.round(p * 4).astype(int) % 2) for p in points} == {(0, 0, 0), (1, 1, 1)}
        assert len({tuple(np.round(p * 4).astype(int)) for p in points}) == 16


def test_two_elements_on_one_position_are_sent_apart_and_counted(crystals):
    """Two base sites near 4a: the one nearer keeps 4a, the other goes to the nearest free fixed position (from where
    it was generated); with the snapping off both stay and share the position."""
    a = 6.0
    coords = np.array([[[0.02, 0.0, 0.0], [0.0, 0.06, 0.0], [0.5, 0.5, 0.5]]])
    built = crystal_build.build_crystals(coords, np.array([[a, a, a]]), [216], [["Li", "Zn", "As"]])
    assert built.info["reassigned_sites"].tolist() == [1] and built.info["snapped_sites"].tolist() == [2]
    assert built.n_atoms.tolist() == [12] and built.info["symmetric"].tolist() == [1]
    crystal = built[0]
    positions = {s: crystal.get_scaled_positions()[crystal.symbols == s] for s in ("Li", "Zn", "As")}
    assert np.abs((positions["Li"] + 0.5) % 1 - 0.5).min(axis=0).max() < 1e-9  # Li kept 4a (moved 0.12 Å, Zn 0.36)
    zn = positions["Zn"][np.argmin(np.linalg.norm((positions["Zn"] + 0.5) % 1 - 0.5, axis=1))]
    assert np.allclose(np.abs((zn + 0.5) % 1 - 0.5), 0.25)  # on 4c or 4d, the nearest free positions (2.6 Å)
    assert crystal.get_all_distances(mic=True)[np.triu_indices(12, 1)].min() > 2.5
    # the training crystals themselves share no position: nothing to reassign
    clean = crystal_build.build_crystals(
        crystals.coords[:10],
        crystals.lengths[:10],
        crystals.space_groups[:10],
        [symbols_of(z) for z in crystals.numbers[:10]],
    )
    assert np.all(clean.info["reassigned_sites"] == 0)
    # snapping off: no reassignment either, and the two elements sit 0.36 Å apart
    off = crystal_build.build_crystals(
        coords, np.array([[a, a, a]]), [216], [["Li", "Zn", "As"]], wyckoff_tolerance=0.0, merge_distance=1e-3
    )
    assert off.info["reassigned_sites"].tolist() == [0]
    assert off[0].get_all_distances(mic=True)[np.triu_indices(len(off[0]), 1)].min() < 0.5


def test_the_random_wyckoff_baseline_goes_through_the_same_placement():
    """Uniform random base sites and lengths, placed, reassigned and symmetrised like the generator's: every F-43m
    crystal has three elements on three of 4a-4d (12 atoms), a cubic cell with a in the range, and the same seed gives
    the same crystals."""
    symbols = [["Li", "Zn", "As"], ["Pt", "Sc", "Sb"]] * 10
    # the crowding distance of a model trained on the shipped half-Heuslers (0.95 × their shortest same-element
    # distance, 3.73 Å): images that close count as crowded, so a site anywhere reaches a fixed position
    batch = crystal_build.random_wyckoff_crystals([216] * 20, symbols, (5.5, 7.0), seed=3, crowding_distance=3.7)
    assert batch.n_atoms.tolist() == [12] * 20 and np.all(batch.info["symmetric"] == 1)
    lengths = np.array([a.cell.lengths() for a in batch])
    assert np.allclose(lengths, lengths[:, :1]) and lengths.min() >= 5.5 and lengths.max() <= 7.0
    assert np.any(batch.info["reassigned_sites"] > 0)  # random sites share positions often: the reassignment acts
    again = crystal_build.random_wyckoff_crystals([216] * 20, symbols, (5.5, 7.0), seed=3, crowding_distance=3.7)
    assert np.array_equal(batch.positions, again.positions)
    with pytest.raises(ValueError, match=r"length_range: got \(7\.0, 5\.5\)"):
        crystal_build.random_wyckoff_crystals([216], symbols[:1], (7.0, 5.5), seed=0)
    with pytest.raises(ValueError, match="symbols: got 2 triples for 1 space groups"):
        crystal_build.random_wyckoff_crystals([216], symbols[:2], (5.5, 7.0), seed=0)

"""The molecules domain: the ``molecule`` validity check and the ``discovery`` assessor, on real molecules."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule

from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.molecules.assessors import Discovery
from aiida_physgen.molecules.validity import (
    NO_BOND_ORDERS,
    NOT_A_MOLECULE,
    MoleculeValidity,
    close_reason,
    fragments_reason,
)
from aiida_physgen.resources import reference_smiles, resource_path
from aiida_physgen.screening.assessors import ScreeningData, get_assessor
from aiida_physgen.screening.validity import apply_validity, get_validity_check


def boxed(atoms, box=9.0):
    atoms = atoms.copy()
    atoms.cell = [box] * 3
    atoms.center()
    atoms.pbc = False
    return atoms


def ethanol_family():
    """Ethanol, ethanol with OH torn off, ethanol with two atoms on top of each other, ethanol whose hydroxyl H
    sits on the methyl carbon (one fragment, but a five-bonded C and a bare O: no closed-shell bond orders),
    periodic ethanol."""
    ethanol = boxed(molecule("CH3CH2OH"))
    apart = ethanol.copy()
    apart.positions[[2, 3]] -= [4.0, 0.0, 0.0]
    close = ethanol.copy()
    close.positions[4] = close.positions[0] + [0.25, 0.0, 0.0]  # an H 0.25 Å from a C (0.23 × the radius sum)
    radical = ethanol.copy()
    radical.positions[3] = radical.positions[0] + [0.3, -0.4, 0.9]  # the O's H moved onto the CH3
    periodic = ethanol.copy()
    periodic.pbc = True
    return [ethanol, apart, close, radical, periodic]


def test_molecule_check_is_found_by_entry_point_and_judges_each_structure():
    check = get_validity_check("molecule")
    assert isinstance(check, MoleculeValidity) and check.kind == "molecule"
    structures = ethanol_family()
    settings = check.settings(None)
    reasons = check.reasons(StructureBatch.from_atoms(structures), settings)
    assert reasons == [None, fragments_reason(1.6), close_reason(0.5), None, NOT_A_MOLECULE]
    # in a batch of several compositions (ASE's neighbour lists, not the vectorised pass): the same verdicts
    mixed = StructureBatch.from_atoms([boxed(molecule("H2O")), *structures])
    assert mixed.uniform_view() is None
    assert check.reasons(mixed, settings) == [None, *reasons]
    # with RDKit's bond orders: [CH4]C[O] has none
    strict = check.settings({"bond_orders": True})
    assert check.reasons(StructureBatch.from_atoms(structures[:4]), strict) == [
        None,
        fragments_reason(1.6),
        close_reason(0.5),
        NO_BOND_ORDERS,
    ]
    # thresholds are settings: a looser bond factor joins the torn-off OH, no close-pair rule keeps the clash
    loose = check.settings({"bond_factor": 4.0, "min_fraction": 0.0})
    assert check.reasons(StructureBatch.from_atoms(structures[:3]), loose) == [None, None, None]


def test_the_shipped_training_molecules_all_pass():
    training = StructureBatch.read(resource_path("logan/C5H12O_training.extxyz"))
    check = get_validity_check("molecule")
    assert check.reasons(training, check.settings({"bond_orders": True})) == [None] * len(training)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"min_fraction": -0.1}, "validity_settings.min_fraction: got -0.1"),
        ({"min_fraction": 1.7}, "below bond_factor=1.6"),
        ({"bond_factor": 0}, "validity_settings.bond_factor: got 0"),
        ({"bond_orders": "yes"}, "validity_settings.bond_orders: got 'yes', expected true or false"),
        ({"charge": 0.5}, "validity_settings.charge"),
        ({"bonds": 1.2}, r"unknown key\(s\) \['validity_settings.bonds'\]"),
    ],
)
def test_bad_molecule_settings_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        get_validity_check("molecule").settings(values)


def test_molecule_check_refuses_a_periodic_target():
    check = get_validity_check("molecule")
    assert check.check_kind([False, False, False]) is None and check.check_kind(None) is None
    assert "the molecule check judges molecules" in check.check_kind([True, True, False])


def test_apply_validity_counts_reasons_per_set():
    structures = ethanol_family()[:3]
    check = get_validity_check("molecule")
    result = apply_validity(
        check,
        {"a": StructureBatch.from_atoms(structures), "b": StructureBatch.from_atoms(structures[:1])},
        check.settings(None),
    )
    assert result.counts["a"] == {
        "generated": 3,
        "valid": 1,
        "reasons": {fragments_reason(1.6): 1, close_reason(0.5): 1},
    }
    assert result.totals["valid"] == 2 and result.valid.info["condition_index"].tolist() == [0, 1]


# ------------------------------------------------------------------------------------------- the assessor
def isomers():
    """Ethanol (twice), dimethyl ether and ethanol torn in two, in one box."""
    ethanol = boxed(molecule("CH3CH2OH"))
    again = ethanol.copy()
    again.rattle(0.01, seed=2)
    apart = ethanol.copy()
    apart.positions[[2, 3]] -= [4.0, 0.0, 0.0]
    return [ethanol, again, boxed(molecule("CH3OCH3")), apart]


def screening_data(**extra) -> ScreeningData:
    structures = isomers()
    cheap = StructureBatch.from_atoms(structures)
    cheap.info["cheap_energy"] = np.array([-10.0, -10.01, -9.5, np.nan])
    cheap.info["cheap_failed"] = np.array([0, 0, 0, 1])
    relaxed = StructureBatch.from_atoms(structures[:3])  # DFT got one of the ethanols and the ether
    relaxed.info["energy"] = np.array([-100.0, -100.02, -99.0])
    relaxed.info["basin"] = np.array([0, 0, 1])
    values = {
        "generated": {"default": cheap},
        "conditions": {},
        "training": StructureBatch.from_atoms(structures[:1]),
        "cheap": cheap,
        "relaxed": relaxed,
        **extra,
    }
    return ScreeningData(**values)


def test_discovery_counts_isomers_at_both_levels_against_a_smiles_list():
    assessor = get_assessor("discovery")
    assert isinstance(assessor, Discovery)
    result = assessor.assess(screening_data(), assessor.settings({"smiles": ["OCC", "COC", "CC(C)O"]}))
    metrics = result.metrics
    assert metrics["formula"] == "C2H6O" and metrics["n_known"] == 3 and metrics["known_source"] == "settings"
    dft, cheap = metrics["dft"], metrics["cheap"]
    assert dft["n_structures"] == 3 and dft["n_isomers"] == 2 and dft["isomers"] == ["CCO", "COC"]
    assert dft["known_found"] == ["CCO", "COC"] and dft["known_missing"] == ["CC(C)O"]
    assert dft["novel"] == ["COC"]  # ethanol was in the training set
    assert dft["n_dft"] == 3 and dft["isomers_per_dft"] == pytest.approx(2 / 3)
    assert dft["dft_per_new_basin"] == pytest.approx(3.0) and dft["not_in_known"] == []
    assert cheap["n_structures"] == 4 and cheap["invalid"]["failed"] == 1 and cheap["n_isomers"] == 2
    rows = {row["smiles"]: row for row in result.rows}
    assert list(rows) == ["CCO", "COC", "CC(C)O"]  # the known list in its order
    assert rows["CCO"]["dft"] == 2 and rows["CCO"]["cheap"] == 2 and rows["CC(C)O"]["dft"] == 0
    assert rows["CCO"]["dft_relative_mev_per_atom"] == 0.0 and rows["COC"]["dft_relative_mev_per_atom"] > 0
    assert (
        "DFT relaxations: found 2 distinct valid C2H6O isomers with 3 (2 of the 3 known, from settings)" in result.text
    )
    assert "reference recovered" in result.text and "CC(C)O" in result.text
    assert result.figures["isomers"][:8] == b"\x89PNG\r\n\x1a\n"


def test_discovery_reads_the_known_reference_set_and_the_shipped_list():
    assessor = get_assessor("discovery")
    known = StructureBatch.from_atoms([boxed(molecule("CH3OCH3"))])
    result = assessor.assess(screening_data(references={"known": known}), assessor.settings({"figure": False}))
    assert result.metrics["known_source"] == "reference set 'known'" and result.metrics["n_known"] == 1
    assert result.metrics["dft"]["known_found"] == ["COC"] and result.metrics["dft"]["not_in_known"] == ["CCO"]
    assert result.figures == {}
    # C2H6O has no shipped list: no recovery is measured
    plain = assessor.assess(screening_data(), assessor.settings(None))
    assert plain.metrics["n_known"] is None and "known_found" not in plain.metrics["dft"]
    assert "known" not in plain.text.splitlines()[0]


def embedded(smiles: str, seed: int = 0):
    """A 3-D conformer of ``smiles`` (RDKit's ETKDG), in a 10 Å box."""
    from ase import Atoms
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    AllChem.MMFFOptimizeMolecule(mol)
    atoms = Atoms([a.GetSymbol() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())
    return boxed(atoms, 10.0)


def test_discovery_uses_the_shipped_list_of_the_composition():
    assessor = get_assessor("discovery")
    relaxed = StructureBatch.from_atoms([embedded("CCCCCO"), embedded("CCOC(C)C"), embedded("CCCCCO", seed=3)])
    relaxed.info["energy"] = np.array([-80.0, -79.9, -80.01])
    training = StructureBatch.read(resource_path("logan/C5H12O_training.extxyz"))
    data = ScreeningData(generated={}, conditions={}, training=training, relaxed=relaxed)
    result = assessor.assess(data, assessor.settings(None))
    metrics = result.metrics
    assert metrics["known_source"] == "the shipped C5H12O list" and metrics["n_known"] == 14
    assert sorted(metrics["dft"]["known_found"]) == ["CCCCCO", "CCOC(C)C"]
    assert len(metrics["dft"]["known_missing"]) == 12 and metrics["dft"]["novel"] == metrics["dft"]["isomers"]
    assert "cheap" not in metrics  # no cheap tier ran
    assert [row["smiles"] for row in result.rows] == reference_smiles("C5H12O")
    assert result.text.splitlines()[0] == (
        "DFT relaxations: found 2 distinct valid C5H12O isomers with 3 "
        "(2 of the 14 known, from the shipped C5H12O list)"
    )
    # the shipped list is not used when told not to
    assert assessor.assess(data, assessor.settings({"shipped_list": False})).metrics["n_known"] is None


def test_discovery_refuses_crystals_and_bad_settings():
    from ase.build import bulk

    assessor = get_assessor("discovery")
    crystal = StructureBatch.from_atoms([bulk("Si")])
    crystal.info["energy"] = np.array([-10.0])
    with pytest.raises(ValueError, match="relaxed: the discovery assessor measures molecules"):
        assessor.assess(ScreeningData(generated={}, conditions={}, relaxed=crystal), assessor.settings(None))
    with pytest.raises(ValueError, match=r"assessors.discovery.smiles\[1\]: RDKit cannot parse"):
        assessor.settings({"smiles": ["CCO", "C(("]})
    with pytest.raises(ValueError, match="assessors.discovery.smiles: got 'CCO', expected a list"):
        assessor.settings({"smiles": "CCO"})

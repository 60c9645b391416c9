"""Discovery metrics on real molecules and crystals."""

import numpy as np
import pytest
from ase.build import bulk, molecule

from aiida_physgen.resources import reference_smiles
from aiida_physgen.screening.metrics import canonical_smiles, charge_separated, discovery_metrics, format_metrics_table


def ethanol(shift=0.0, rattle_seed=None):
    atoms = molecule("CH3CH2OH")
    atoms.rotate(37, "z")
    atoms.translate([shift, 0, 0])
    if rattle_seed is not None:
        atoms.rattle(0.02, seed=rattle_seed)
    return atoms


def dimethyl_ether():
    return molecule("CH3OCH3")


def fragments():
    """Ethanol whose OH group was pulled 3 Å away: CH3CH2 + OH."""
    atoms = molecule("CH3CH2OH")
    atoms.positions[[2, 3]] += [-3.0, 0.0, 0.0]
    return atoms


def zwitterion():
    """Ethanol with a methyl hydrogen moved onto the oxygen: [CH2-]C[OH2+]."""
    atoms = molecule("CH3CH2OH")
    atoms.positions[6] = [-1.35, -1.15, 0.3]
    return atoms


def test_molecules_validity_uniqueness_novelty_recovery():
    structures = [ethanol(), ethanol(2.0, rattle_seed=1), dimethyl_ether(), fragments(), zwitterion()]
    energies = [-10.0, -10.1, -9.0, -5.0, -4.0]
    metrics = discovery_metrics(structures, energies, training=[ethanol()], reference=["OCC", "COC", "CC(C)O"], n_dft=5)
    assert metrics["kind"] == "molecule"
    assert metrics["n_structures"] == 5
    assert metrics["n_valid"] == 3  # two ethanols and the ether
    assert metrics["validity"] == pytest.approx(3 / 5)
    assert metrics["invalid"] == {"fragments": 1, "charge_separated": 1, "no_bond_orders": 0, "failed": 0}
    assert metrics["n_unique"] == 2
    assert metrics["keys"] == ["CCO", "COC"]  # lowest energy per atom first
    assert metrics["uniqueness"] == pytest.approx(2 / 3)
    assert metrics["novel_keys"] == ["COC"]  # ethanol was in the training set
    assert metrics["novelty"] == pytest.approx(1 / 2)
    assert metrics["recovered"] == ["CCO", "COC"] and metrics["missing"] == ["CC(C)O"]
    assert metrics["recovery"] == pytest.approx(2 / 3)
    assert metrics["dft_per_new_basin"] == pytest.approx(5.0)
    ethanol_basin = next(row for row in metrics["basins"] if row["key"] == "CCO")
    assert ethanol_basin["count"] == 2 and ethanol_basin["energy"] == -10.1 and not ethanol_basin["novel"]
    statuses = {row["key"]: row["status"] for row in metrics["basins"]}
    assert statuses["[CH2-]C[OH2+]"] == "charge_separated"
    assert [row["sound"] for row in metrics["basins"] if row["key"] not in ("CCO", "COC")] == [False, False]


def test_reference_molecules_as_structures_and_nothing_novel():
    metrics = discovery_metrics([ethanol()], [-1.0], training=[ethanol(1.0)], reference=[dimethyl_ether()], n_dft=3)
    assert metrics["recovered"] == [] and metrics["missing"] == ["COC"] and metrics["recovery"] == 0.0
    assert metrics["n_novel"] == 0 and metrics["novelty"] == 0.0
    assert metrics["dft_per_new_basin"] is None
    # without training every valid basin is new; without energies the first member represents
    metrics = discovery_metrics([fragments()], None)
    assert metrics["n_valid"] == 0 and metrics["uniqueness"] is None and metrics["novelty"] is None
    assert not metrics["training_given"]


def test_charge_separated_and_canonical_smiles():
    assert charge_separated("[CH2-]C[OH2+]")
    assert not charge_separated("CCO")
    assert not charge_separated("c1ccccc1-c1ccccc1")  # an explicit bond, not a charge
    assert not charge_separated("C[O-]", charge=-1)
    assert canonical_smiles("OCC") == "CCO"
    with pytest.raises(ValueError, match=r"^reference\[1\]: RDKit cannot parse"):
        discovery_metrics([ethanol()], [0.0], reference=["CCO", "C1CC"])


def test_c5h12o_reference_list_is_14_distinct_isomers():
    from rdkit import Chem
    from rdkit.Chem.rdMolDescriptors import CalcMolFormula

    smiles = reference_smiles("C5H12O")
    assert len(smiles) == len(set(smiles)) == 14
    assert all(CalcMolFormula(Chem.MolFromSmiles(s)) == "C5H12O" for s in smiles)
    assert all(canonical_smiles(s) == s for s in smiles)
    alcohols = [s for s in smiles if Chem.MolFromSmiles(s).HasSubstructMatch(Chem.MolFromSmarts("[OX2H]"))]
    assert len(alcohols) == 8
    with pytest.raises(ValueError, match=r"^name: no shipped reference list 'C9'"):
        reference_smiles("C9")


def si_diamond():
    return bulk("Si", "diamond", a=5.43)


def test_crystals_structure_matcher_training_and_reference():
    rattled = si_diamond().repeat((2, 1, 1))
    rattled.rattle(0.03, seed=4)
    simple_cubic = bulk("Si", "sc", a=2.55)
    structures = [si_diamond(), rattled, simple_cubic]
    fcc = bulk("Si", "fcc", a=3.9)
    fcc.info["label"] = "Si fcc"
    diamond_reference = si_diamond()
    diamond_reference.info["label"] = "Si diamond"
    metrics = discovery_metrics(
        structures, [-10.8, -21.5, -4.9], training=[si_diamond()], reference=[diamond_reference, fcc], n_dft=3
    )
    assert metrics["kind"] == "crystal"
    assert metrics["n_valid"] == 3 and metrics["validity"] == 1.0
    assert metrics["n_unique"] == 2  # the rattled supercell is diamond
    assert metrics["n_novel"] == 1  # diamond was in the training set
    assert metrics["novel_keys"] == ["Pm-3m"]
    assert metrics["recovered"] == ["Si diamond"] and metrics["missing"] == ["Si fcc"]
    assert metrics["dft_per_new_basin"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match=r"^reference: SMILES can only be found among molecules"):
        discovery_metrics(structures, [0.0] * 3, reference=["CCO"])


def test_crystal_matching_fits_only_same_formula_and_site_count(monkeypatch):
    """Novelty and recovery call StructureMatcher.fit only on reduced cells with the same formula and number of sites
    (without supercells nothing else can match), and find what matching every pair finds."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    training = [si_diamond(), bulk("Si", "sc", a=2.55), bulk("Si", "bcc", a=3.1), bulk("C", "diamond", a=3.57)]
    lonsdaleite = bulk("ZnO", "wurtzite", a=3.84, c=6.3)  # hexagonal Si: 4 sites in its primitive cell, diamond 2
    lonsdaleite.set_chemical_symbols(["Si"] * 4)
    rattled = si_diamond().repeat((1, 2, 1))
    rattled.rattle(0.02, seed=1)
    structures = [rattled, lonsdaleite, bulk("Si", "bcc", a=3.05)]
    fits, grouping = [], []
    real_fit, real_group = StructureMatcher.fit, StructureMatcher.group_structures

    def counting_fit(self, one, other, *args, **kwargs):
        if not grouping:  # the metrics' own calls, not pymatgen's grouping of the basins
            fits.append((one.composition.reduced_formula, len(one), other.composition.reduced_formula, len(other)))
        return real_fit(self, one, other, *args, **kwargs)

    def flagged_group(self, *args, **kwargs):
        grouping.append(True)
        try:
            return real_group(self, *args, **kwargs)
        finally:
            grouping.pop()

    monkeypatch.setattr(StructureMatcher, "group_structures", flagged_group)
    monkeypatch.setattr(StructureMatcher, "fit", counting_fit)
    metrics = discovery_metrics(structures, [-21.6, -21.0, -10.5], training=training, reference=[si_diamond()])
    assert metrics["n_unique"] == 3 and metrics["novel_keys"] == ["P6_3/mmc"]  # only lonsdaleite is new
    assert metrics["recovered"] == ["reference 0 (Si2 Fd-3m)"]
    # novelty: diamond against diamond; bcc against sc, then bcc; lonsdaleite against nothing (no 4-site Si). Recovery:
    # the reference against diamond. Fitting every Si pair: 8 fits (diamond 1, lonsdaleite 3, bcc 3, reference 1)
    assert sorted(fits) == [("Si", 1, "Si", 1)] * 2 + [("Si", 2, "Si", 2)] * 2


def test_bad_input_names_the_field():
    with pytest.raises(ValueError, match=r"^n_dft: got -1"):
        discovery_metrics([ethanol()], [0.0], n_dft=-1)
    with pytest.raises(ValueError, match=r"^structures\[1\]: got str, expected ase.Atoms"):
        discovery_metrics([ethanol(), "CCO"], [0.0, 0.0])
    with pytest.raises(ValueError, match=r"^energies: structure 0 has energy nan; expected a finite"):
        discovery_metrics([ethanol()], [np.nan])
    with pytest.raises(ValueError, match=r"^failed: got 1 flags for 2 structures"):
        discovery_metrics([ethanol(), ethanol()], [0.0, 0.0], failed=[True])
    with pytest.raises(ValueError, match=r"^structures: cannot tell molecules from crystals"):
        discovery_metrics([ethanol(), si_diamond()], [0.0, 0.0])


def test_format_metrics_table_side_by_side():
    generator = discovery_metrics([ethanol(), dimethyl_ether()], [-1.0, -0.5], reference=["CCO", "COC"], n_dft=2)
    random = discovery_metrics([fragments(), zwitterion()], [-1.0, -0.5], reference=["CCO", "COC"], n_dft=2)
    table = format_metrics_table({"generator": generator, "random": random})
    lines = table.splitlines()
    assert "generator" in lines[0] and "random" in lines[0]
    assert any(
        line.startswith("| reference recovered") and "2/2 (100%)" in line and "0/2 (0%)" in line for line in lines
    )
    assert any("per new basin" in line and "1.00" in line and "no new basin" in line for line in lines)
    with pytest.raises(ValueError, match=r"^rows: expected a non-empty mapping"):
        format_metrics_table({})


def test_failed_relaxations_count_in_the_denominator_only():
    structures = [zwitterion(), ethanol(), dimethyl_ether(), ethanol(1.0)]
    metrics = discovery_metrics(structures, [None, -3.0, np.nan, -3.5], failed=[True, False, True, False])
    assert metrics["n_structures"] == 4 and metrics["invalid"]["failed"] == 2
    assert metrics["n_valid"] == 2 and metrics["validity"] == 0.5
    assert metrics["keys"] == ["CCO"]
    (basin,) = metrics["basins"]
    assert basin["members"] == [3, 1] and basin["representative"] == 3  # indices into the full list

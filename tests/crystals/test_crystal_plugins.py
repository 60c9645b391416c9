"""The crystals domain's plug-ins of the one screening, without AiiDA: the ``crystal`` validity check, the
``formation`` assessor, and the crystal GAN's ``cell`` condition."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from aiida_physgen.crystals import assessors as formation
from aiida_physgen.crystals.validity import NOT_A_CRYSTAL, CrystalValidity
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.screening.assessors import ScreeningData, get_assessor
from aiida_physgen.screening.validity import apply_validity, get_validity_check


def _batch(*structures, **info):
    batch = StructureBatch.from_atoms(list(structures))
    batch.info.update({k: np.asarray(v) for k, v in info.items()})
    return batch


def _salt(a=5.64):
    return bulk("NaCl", "rocksalt", a=a)


def _chlorine():
    return Atoms("Cl2", positions=[[0, 0, 0], [0, 0, 2.0]], cell=np.eye(3) * 6.0, pbc=True)


# ---------------------------------------------------------------------- the validity check
#: an atom 0.2-0.3 Å from another breaks both pair rules: one reason, both limits named
CROWDED = "pair closer than 0.5 Å; pair closer than 0.7 × the covalent radii"


def test_the_crystal_check_is_registered_and_counts_each_kind_of_failure_once():
    check = get_validity_check("crystal")
    assert isinstance(check, CrystalValidity) and check.kind == "crystal"
    imbalance = Atoms(
        "Na2Cl", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]], cell=[5, 5, 5], pbc=True
    )
    crowded = bulk("Al", "fcc", a=4.05) + Atoms("Al", positions=[[0.3, 0, 0]])
    crowded_too = bulk("Al", "fcc", a=4.05) + Atoms("Al", positions=[[0.2, 0, 0]])
    airy = bulk("Al", "fcc", a=20.0)
    molecule = Atoms("N2", positions=[[0, 0, 0], [0, 0, 1.1]], cell=[8, 8, 8], pbc=False)
    sets = {
        "a": _batch(_salt(), imbalance, crowded),
        "b": _batch(crowded_too, airy, molecule, bulk("Al", "fcc", a=4.05)),
    }
    result = apply_validity(check, sets, check.settings(None))
    assert result.counts["a"] == {
        "generated": 3,
        "valid": 1,
        "reasons": {"no charge-balanced oxidation states": 1, CROWDED: 1},
    }
    # the two crowded crystals have different closest pairs but one reason; the molecule is not judged as a crystal
    assert result.totals["reasons"] == {
        "no charge-balanced oxidation states": 1,
        CROWDED: 2,
        "density outside [1, 25] g/cm³": 1,
        NOT_A_CRYSTAL: 1,
    }
    assert result.valid.info["condition_index"].tolist() == [0, 1] and result.valid.info["set_index"].tolist() == [0, 3]


def test_the_crystal_check_takes_its_settings_and_refuses_bad_ones_naming_them():
    check = get_validity_check("crystal")
    batch = _batch(_salt(), bulk("Al", "fcc", a=4.05) + Atoms("Al", positions=[[0.3, 0, 0]]))
    loose = check.settings(
        {"min_distance": 0.1, "density_range": [0.5, 30], "charge_balance": False, "radius_scale": 0.1}
    )
    assert check.reasons(batch, loose) == [None, None]
    assert check.reasons(batch, check.settings({"min_distance": 0.1, "radius_scale": 0.0})) == [None, None]
    assert check.reasons(batch, check.settings({"min_distance": 0.1})) == [None, CROWDED.split("; ")[1]]
    strict = check.settings({"min_distance": 2.9})
    assert check.reasons(batch, strict) == [
        "pair closer than 2.9 Å",
        "pair closer than 2.9 Å; " + CROWDED.split("; ")[1],
    ]
    for values, field in (
        ({"min_distance": 0}, "min_distance"),
        ({"density_range": [3, 1]}, "density_range"),
        ({"density_range": 5}, "density_range"),
        ({"charge_balance": "yes"}, "charge_balance"),
        ({"radius_scale": -0.7}, "radius_scale"),
        ({"min_distanse": 1.0}, "min_distanse"),
    ):
        with pytest.raises(ValueError, match=f"validity_settings.*{field}"):
            check.settings(values)


def test_the_crystal_check_says_when_the_target_is_not_periodic():
    check = get_validity_check("crystal")
    assert (
        check.check_kind(None) is None
        and check.check_kind([True, True, True]) is None
        and check.check_kind(True) is None
    )
    assert "pbc [True, True, False]" in check.check_kind([True, True, False])
    assert "pbc [False, False, False]" in check.check_kind(False)


# ---------------------------------------------------------------------- the assessor without the cheap method
def test_mark_crystals_gives_formation_energy_uniqueness_and_novelty():
    salt, shifted, other = _salt(), _salt(), bulk("KCl", "rocksalt", a=6.29)
    shifted.translate([0.7, 0.1, 0.2])
    shifted.wrap()
    relaxed = _batch(salt, shifted, other, _salt(), cheap_energy=[-7.0, -7.2, -6.0, np.nan], cheap_failed=[0, 0, 0, 1])
    mu = {"Na": -1.0, "Cl": -2.0, "K": -1.0}
    marks = formation.mark_crystals(relaxed, mu, _batch(_salt()))
    assert marks["formation_energy"][:3] == pytest.approx([(-7.0 + 3) / 2, (-7.2 + 3) / 2, (-6.0 + 3) / 2])
    assert math.isnan(marks["formation_energy"][3]) and marks["ok"].tolist() == [1, 1, 1, 0]
    assert marks["unique"].tolist() == [0, 1, 1, 0]  # the lower of the two salts; the failed one is not counted
    assert marks["group"].tolist() == [1, 1, 2, -1]
    assert marks["novel"].tolist() == [0, 0, 1, -1]  # NaCl is in the training set, KCl is not


def _data(**fields):
    values = {
        "generated": {"a": _batch(_salt())},
        "conditions": {},
        "cheap": _batch(_salt(), cheap_energy=[-7.0], cheap_failed=[0]),
    }
    values.update(fields)
    return ScreeningData(**values)


def test_the_formation_assessor_refuses_what_it_cannot_measure():
    assessor = get_assessor("formation")
    settings = assessor.settings(None)
    with pytest.raises(ValueError, match="funnel=True"):
        assessor.assess(_data(cheap=None), settings)
    with pytest.raises(ValueError, match="cheap_engine.*'lammps'"):
        assessor.assess(_data(cheap_engine="lammps"), settings)
    with pytest.raises(ValueError, match="cheap_settings.method"):
        assessor.assess(_data(cheap_engine="cheap", cheap_settings={"method": "gfn2-xtb"}), settings)
    for values, field in (
        ({"baseline": "maybe"}, "baseline"),
        ({"ltol": -1}, "ltol"),
        ({"bins": 0}, "bins"),
        ({"max_baseline": 1.5}, "max_baseline"),
        ({"ltoll": 0.1}, "ltoll"),
    ):
        with pytest.raises(ValueError, match=f"assessors.formation.*{field}"):
            assessor.settings(values)


def test_the_references_are_relaxed_with_the_cell_free_whatever_the_cheap_tier_did():
    assert formation.reference_settings(None).fix_cell is False
    settings = formation.reference_settings({"method": "chgnet", "fix_cell": True, "fmax": 0.02, "max_steps": 7})
    assert (settings.fix_cell, settings.fmax, settings.max_steps) == (False, 0.02, 7)


def test_dft_formation_energies_against_references_relaxed_with_the_dft_settings():
    references = _batch(bulk("Na", "bcc", a=4.2), bulk("K", "bcc", a=5.2), energy=[-1.3, -1.0])
    references.info["energy"] = np.array([-1.3, np.nan])  # K's relaxation failed
    mu = formation.dft_reference_energies(references)
    assert mu == {"Na": pytest.approx(-1.3)}  # K has no reference: no formation energy for what holds K
    assert formation.dft_reference_energies(None) == {}
    relaxed = _batch(_salt(), bulk("KCl", "rocksalt", a=6.3), energy=[-7.0, -6.0])
    assert formation.dft_formation_energies(relaxed, mu, [0, 1]) == [None, None]  # no Cl reference either
    mu["Cl"] = -2.0
    assert formation.dft_formation_energies(relaxed, mu, [1, 0]) == [None, pytest.approx((-7.0 + 1.3 + 2.0) / 2)]
    assert formation.dft_formation_energies(relaxed, {}, [0]) == [None]


# ---------------------------------------------------------------------- the assessor with CHGNet
@pytest.mark.slow
def test_the_formation_assessor_on_a_small_screening():
    from aiida_physgen.screening import cheap_relax

    # candidates: the salt strained (as generated), a shifted copy of it and KCl; the training set is NaCl itself
    salt = _salt(5.8)
    shifted = _salt(5.8)
    shifted.translate([0.3, 0.2, 0.1])
    shifted.wrap()
    potassium = bulk("KCl", "rocksalt", a=6.4)
    candidates = _batch(salt, shifted, potassium, condition_index=[0, 0, 1])
    settings = {"method": "chgnet", "fix_cell": False, "max_steps": 60}
    cheap = cheap_relax.relax_batch(candidates, settings)
    dft = cheap.subset([2])  # "DFT" took the KCl and squeezed it by 5 % in volume
    dft.cells = dft.cells * 0.95 ** (1 / 3)
    dft.positions = dft.positions * 0.95 ** (1 / 3)
    dft.info = {"energy": np.array([-6.5]), "basin": np.array([0])}
    data = ScreeningData(
        generated={"NaCl": _batch(salt, shifted, symmetric=[1, 0]), "KCl": _batch(potassium, symmetric=[1])},
        conditions={"NaCl": {}, "KCl": {}},
        training=_batch(_salt()),
        valid=candidates,
        representatives=candidates,
        cheap=cheap,
        relaxed=dft,
        basins=[
            {
                "name": "min_00",
                "representative": "basin_00",
                "members": ["basin_00"],
                "formula": "ClK",
                "energy_per_atom": -3.25,
            }
        ],
        funnel={"picked": {"basin_00": 2}, "n_picked": 1},
        cheap_engine="cheap",
        cheap_settings=settings,
        # "DFT" references: K and Cl at −1.0 and −2.0 eV/atom, so E_f DFT of the KCl is (−6.5 + 3) / 2
        dft_references=_batch(bulk("K", "bcc", a=5.2), _chlorine(), energy=[-1.0, -4.0]),
    )
    assessor = get_assessor("formation")
    result = assessor.assess(data, assessor.settings({"baseline": "relax"}))
    rows = {row["stage"]: row for row in result.rows}
    assert rows["generated"] == {"stage": "generated", "NaCl": 2, "KCl": 1, "total": 3}
    assert rows["symmetric"]["total"] == 2 and rows["cheap-relaxed"]["total"] == 3
    assert rows["unique"] == {"stage": "unique", "NaCl": 1, "KCl": 1, "total": 2}  # the two salts are one crystal
    assert rows["novel"] == {"stage": "novel", "NaCl": 0, "KCl": 1, "total": 1}  # NaCl is the training crystal
    assert rows["DFT relaxed"]["KCl"] == 1 and rows["DFT basins"]["KCl"] == 1
    metrics = result.metrics
    # both salts are bound: negative formation energies at the CHGNet level, the training salt too
    assert rows["E_f < 0"]["total"] == 1 and metrics["formation_energy_min"] < -1.0
    assert metrics["baseline"] == "relax" and metrics["baseline_count"] == 1 and metrics["baseline_median"] < -1.0
    assert set(metrics["reference_energies"]) == {"Na", "K", "Cl"}
    assert metrics["dft_mean_abs_volume_change"] == pytest.approx(5.0, abs=0.01)
    assert metrics["dft_kept_structure"] == 1 and metrics["dft_novel"] == 1
    assert metrics["dft_reference_energies"] == pytest.approx({"K": -1.0, "Cl": -2.0})
    assert metrics["dft_formation_energies"] == {"min_00": pytest.approx(-1.75)}
    assert rows["DFT E_f < 0"]["KCl"] == 1 and "E_f DFT" in result.text
    assert "Fm-3m (225)" in result.text and "KCl" in result.text
    assert result.figures["histogram"][:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- the crystal GAN's cell condition
def test_the_cell_condition_is_checked_without_a_model():
    from aiida_physgen.ml.family import get_family

    family = get_family("crystal_gan")
    assert family.check_condition({"space_group": "Fm-3m", "cell": "primitive"}, {})["space_group"] == 225
    assert family.check_condition({}, {})["cell"] == "conventional"
    with pytest.raises(ValueError, match="condition.cell: got 'prim'"):
        family.check_condition({"cell": "prim"}, {})
    with pytest.raises(ValueError, match="condition.space_group"):
        family.check_condition({"space_group": "P1"}, {})


def test_primitive_cells_are_the_same_crystals_with_fewer_atoms():
    from aiida_physgen.ml.crystal_data import example_structures
    from aiida_physgen.ml.training import generate, train_ensemble

    settings = {
        "hidden": 16,
        "critic_hidden": 16,
        "embedding": 8,
        "noise_dim": 4,
        "augmentations": 2,
        "loop": {"steps": 3, "batch_size": 8, "n_critic": 1},
    }
    models = train_ensemble("crystal_gan", example_structures().subset(range(8)), {"space_groups": [216]}, settings)
    condition = {"space_group": 216, "elements": ["Li", "Mg", "Al"], "merge_distance": 2.5}
    conventional = generate(models, 4, 0, condition)
    primitive = generate(models, 4, 0, {**condition, "cell": "primitive"})
    assert (primitive.n_atoms <= conventional.n_atoms).all() and (primitive.n_atoms < conventional.n_atoms).any()
    ratio = conventional.n_atoms / primitive.n_atoms
    volumes = np.abs(np.linalg.det(conventional.cells)) / np.abs(np.linalg.det(primitive.cells))
    assert volumes == pytest.approx(ratio)  # the same density
    assert primitive.info["space_group_requested"].tolist() == [216] * 4  # the info of the conventional cell

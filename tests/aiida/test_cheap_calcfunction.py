"""``physgen.relax_cheap`` on the temporary profile: real GFN2-xTB relaxations of tiny molecules."""

import ase
import numpy as np
from aiida import orm
from aiida.plugins import CalculationFactory
from ase.build import molecule

from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.ml.batch import StructureBatch


def _molecules():
    structures = []
    for seed, name in enumerate(("H2O", "CH4")):
        atoms = molecule(name)
        atoms.rattle(0.1, seed=seed)
        structures.append(atoms)
    structures.append(ase.Atoms("CO", positions=[[0, 0, 0], [0, 0, 0.001]]))  # fails its SCF
    batch = StructureBatch.from_atoms(structures)
    batch.info["model_index"] = np.array([0, 1, 0])
    return batch


def test_relax_cheap_outputs_keep_info_and_report():
    relax_cheap = CalculationFactory("physgen.relax_cheap")
    structures = StructureSet(_molecules())
    structures.base.attributes.set("model_labels", ["a", "b"])
    results, node = relax_cheap.run_get_node(structures=structures, settings=orm.Dict({"fmax": 0.05}))
    assert node.is_finished_ok, node.exit_message
    relaxed = results["relaxed"]
    assert isinstance(relaxed, StructureSet) and len(relaxed) == 3
    batch = relaxed.get_batch()
    np.testing.assert_array_equal(batch.info["model_index"], [0, 1, 0])
    np.testing.assert_array_equal(batch.info["cheap_failed"], [0, 0, 1])
    np.testing.assert_array_equal(batch.info["cheap_converged"], [1, 1, 0])
    assert np.isfinite(batch.info["cheap_energy"][:2]).all() and np.isnan(batch.info["cheap_energy"][2])
    assert relaxed.base.attributes.get("model_labels") == ["a", "b"]
    assert relaxed.base.attributes.get("n_converged") == 2 and relaxed.base.attributes.get("n_failed") == 1
    assert relaxed.base.attributes.get("cheap_settings")["method"] == "auto"
    logs = " | ".join(log.message for log in orm.Log.collection.get_logs_for(node))
    assert "2 converged, 0 not converged, 1 failed" in logs and "structure 2 failed" in logs
    # the CPU its body used, for the screening's cost by stage (report.cpu_seconds)
    cpu, wall = node.base.extras.get("physgen_cpu_seconds"), node.base.extras.get("physgen_wall_seconds")
    assert 0 < wall < (node.mtime - node.ctime).total_seconds() and 0 < cpu < 4 * wall


def test_relax_cheap_bad_settings_exit_300():
    relax_cheap = CalculationFactory("physgen.relax_cheap")
    structures = StructureSet(_molecules())
    _, node = relax_cheap.run_get_node(structures=structures, settings=orm.Dict({"fmax": -1}))
    assert node.exit_status == 300 and "settings.fmax" in node.exit_message
    assert not node.base.links.get_outgoing().all()
    assert node.base.extras.get("physgen_cpu_seconds") >= 0  # measured also when it ends on an exit code
    _, node = relax_cheap.run_get_node(structures=structures, settings=orm.Dict({"method": "chgnet"}))
    assert node.exit_status == 300 and "settings.method" in node.exit_message


def test_relax_cheap_all_failed_exit_330():
    relax_cheap = CalculationFactory("physgen.relax_cheap")
    structures = StructureSet(_molecules().subset([2, 2]))
    _, node = relax_cheap.run_get_node(structures=structures)
    assert node.exit_status == 330, node.exit_message
    assert "all 2 structure(s) failed" in node.exit_message and "SCF" in node.exit_message
    assert not node.base.links.get_outgoing().all()
    assert relax_cheap.process_class.exit_codes.ERROR_ALL_FAILED.status == 330

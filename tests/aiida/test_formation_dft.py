"""The DFT formation energy against elemental references relaxed the same way (issue 28): the calcfunction's
arithmetic and its refusals, and the script a user runs (slow lane, at its smoke size)."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from ase import Atoms
from study_scripts import run_study

from aiida_physgen.calculations.formation import dft_formation_energy, dft_reference_set
from aiida_physgen.workflows.formation_dft import reference_structures


def structure(symbols: str, n: int) -> orm.StructureData:
    positions = np.arange(3 * n, dtype=float).reshape(n, 3) * 0.9
    return orm.StructureData(ase=Atoms(symbols, positions=positions, cell=np.eye(3) * 6, pbc=True))


def test_formation_energy_is_the_energy_less_the_references_per_atom(aiida_profile):
    references = {
        "Fe_structure": structure("Fe", 1),
        "Fe_parameters": orm.Dict({"energy": -8.0, "magnetic_moment": 2.2}),
        "Si_structure": structure("Si2", 2),
        "Si_parameters": orm.Dict({"energy": -10.8}),
    }
    crystal = structure("FeSi", 2)
    result = dft_formation_energy(crystal, orm.Dict({"energy": -20.0, "magnetic_moment": 1.1}), **references)
    values = result["formation"].get_dict()
    # μ_Fe = −8, μ_Si = −5.4: (−20 − (−8 − 5.4)) / 2 = −3.3 eV/atom
    assert values["formation_energy_per_atom"] == pytest.approx(-3.3)
    assert values["reference_energy_per_atom"] == pytest.approx({"Fe": -8.0, "Si": -5.4})
    assert values["magnetic_moment"] == 1.1 and values["natoms"] == 2
    # the provenance: the number points back at the crystal and every reference it used
    incoming = {link.link_label for link in result["formation"].creator.base.links.get_incoming().all()}
    assert {"crystal", "crystal_parameters", "Fe_structure", "Si_parameters"} <= incoming


def refused(function, *args, **kwargs) -> str:
    """The exit message of ``function`` refusing its inputs (exit status 300), with nothing stored as output."""
    _, node = function.run_get_node(*args, **kwargs)
    assert node.exit_status == 300 and not node.base.links.get_outgoing().all(), (node.exit_status, node.exit_message)
    return node.exit_message


def test_a_missing_or_wrong_reference_is_named(aiida_profile):
    crystal, energy = structure("FeSi", 2), orm.Dict({"energy": -20.0})
    fe = {"Fe_structure": structure("Fe", 1), "Fe_parameters": orm.Dict({"energy": -8.0})}
    assert "no relaxed reference for Si" in refused(dft_formation_energy, crystal, energy, **fe)
    wrong = {"Si_structure": structure("FeSi", 2), "Si_parameters": orm.Dict({"energy": -9.0})}
    message = refused(dft_formation_energy, crystal, energy, **fe, **wrong)
    assert "references.Si_structure: expected pure Si, got FeSi" in message
    silicon = {"Si_structure": structure("Si2", 2), "Si_parameters": orm.Dict({"energy": -9.0})}
    message = refused(dft_formation_energy, crystal, orm.Dict({"forces": 0.1}), **fe, **silicon)
    assert "crystal_parameters: no 'energy'" in message


def test_the_relaxed_references_are_gathered_into_one_set(aiida_profile):
    result = dft_reference_set(
        Fe_structure=structure("Fe", 1),
        Fe_parameters=orm.Dict({"energy": -8.0, "magnetic_moment": 2.2}),
        Si_structure=structure("Si2", 2),
        Si_parameters=orm.Dict({"energy": -10.8}),
    )
    batch = result["references"].get_batch()
    assert [atoms.get_chemical_formula() for atoms in batch] == ["Fe", "Si2"]
    assert batch.info["energy"].tolist() == [-8.0, -10.8]
    assert batch.info["magnetic_moment"][0] == 2.2 and np.isnan(batch.info["magnetic_moment"][1])
    message = refused(dft_reference_set, Si_structure=structure("Si2", 2))
    assert "Si needs both Si_structure and Si_parameters" in message
    message = refused(dft_reference_set, Fe_structure=structure("Fe", 1), Fe_parameters=orm.Dict({"forces": 0.0}))
    assert "references.Fe_parameters: no 'energy'" in message


def test_one_reference_per_element_in_its_reference_state():
    references = reference_structures(["Co", "Pt", "Ge", "Co"])
    assert sorted(references) == ["ref_Co", "ref_Ge", "ref_Pt"]
    assert references["ref_Co"].get_formula() == "Co2" and references["ref_Ge"].get_formula() == "Ge2"
    assert all(all(s.pbc) and not s.is_stored for s in references.values())


@pytest.mark.slow
def test_the_formation_script_runs_at_its_smoke_size(gpaw_code, tmp_path):
    from aiida_physgen.ml.crystal_build import primitive_cells
    from aiida_physgen.ml.crystal_data import example_structures

    shipped = example_structures()
    (index,) = [i for i, a in enumerate(shipped) if set(a.get_chemical_symbols()) == {"Fe", "Pt", "Sc"}]
    (tmp_path / "fe.npz").write_bytes(primitive_cells(shipped.subset([index])).to_npz_bytes())
    node, printed = run_study(
        "crystal_formation_dft.py", "fe.npz", "0", "--smoke", "--code", str(gpaw_code.pk),
        label="RelaxSetWorkChain", cwd=tmp_path,
    )  # fmt: skip
    assert node.is_finished_ok and "DFT formation energy of FePtSc" in printed, printed
    assert sorted(node.outputs.relaxed) == ["crystal", "ref_Fe", "ref_Pt", "ref_Sc"]
    # the Fe-bearing ones ran spin-polarised (engines.spin), the others spin-paired
    spin = {label: "magnetic_moment" in node.outputs.parameters[label].get_dict() for label in node.outputs.parameters}
    assert spin == {"crystal": True, "ref_Fe": True, "ref_Pt": False, "ref_Sc": False}
    formation = (
        orm.QueryBuilder()
        .append(orm.CalcFunctionNode, filters={"attributes.function_name": "dft_formation_energy"}, tag="f")
        .append(orm.Dict, with_incoming="f")
        .all(flat=True)
    )
    assert formation and np.isfinite(formation[-1]["formation_energy_per_atom"])

"""Everything is checked at launch, also inside an outer work chain, and no failure loses work."""

from __future__ import annotations

import time

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import WorkChain, run_get_node
from ase.build import molecule
from plumpy.process_states import ProcessState
from tiny_settings import TINIEST as TINY

from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.launch import screening_builder
from aiida_physgen.workflows.generation import GenerationWorkChain
from aiida_physgen.workflows.orphans import end_orphaned_calcfunctions


def count_nodes() -> int:
    return orm.QueryBuilder().append(orm.Node).count()


class OuterWithoutSeeds(WorkChain):
    """An outer chain that exposes the generation chain but leaves ``seeds`` and ``count`` out."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(GenerationWorkChain, namespace="generation", exclude=("seeds", "count"))
        spec.outline(cls.run_generation)

    def run_generation(self):
        inputs = self.exposed_inputs(GenerationWorkChain, namespace="generation")
        self.submit(GenerationWorkChain, **inputs)


def generation_inputs(**selection) -> dict:
    return {
        "family": orm.Str("logan"),
        "training": StructureSet.from_ase([molecule("H2O"), molecule("H2O2")]),
        "target": orm.Dict({"composition": "H2O", "cell": (np.eye(3) * 5).tolist(), "pbc": False}),
        "settings": orm.Dict(TINY),
        "selection_settings": orm.Dict({"n_components": 2, **selection}),
    }


def water_screening(code, **kwargs):
    """A tiny H2O screening builder (nothing stored): one model, 4 candidates, 2 clusters."""
    return screening_builder(
        [molecule("H2O"), molecule("H2O2")],
        "H2O",
        box=5.0,
        code=code,
        seeds=[0],
        settings=TINY,
        count=4,
        n_clusters=2,
        n_components=2,
        **kwargs,
    )


def test_outer_chain_without_seeds_still_checks_n_clusters_at_launch():
    # default seeds (4) × default count (2000) = 8000 candidates: 9000 clusters cannot be made
    before = count_nodes()
    with pytest.raises(ValueError, match=r"n_clusters: got 9000, .* the 8000 candidates"):
        run_get_node(OuterWithoutSeeds, generation=generation_inputs(n_clusters=9000))
    assert count_nodes() == before


def test_absurd_count_is_refused_at_launch_with_the_estimate():
    builder = GenerationWorkChain.get_builder()
    builder.family = orm.Str("logan")
    for key, value in generation_inputs(n_clusters=2).items():
        builder[key] = value
    builder.seeds = orm.List([0])
    builder.count = orm.Int(10**9)
    before = count_nodes()
    with pytest.raises(ValueError, match="count: "):
        run_get_node(builder)
    assert count_nodes() == before


def test_relax_override_typo_fails_at_launch_naming_the_key(gpaw_code):
    builder = water_screening(gpaw_code, relax_overrides={"gpaw": {"parameters": {"ecutt": 300}}})
    before = count_nodes()
    start = time.perf_counter()
    with pytest.raises(ValueError, match="ecutt"):
        run_get_node(builder)
    assert time.perf_counter() - start < 1.0
    assert count_nodes() == before


def test_orphaned_calcfunction_is_ended():
    """A calcfunction left 'Running' by a dead worker is marked excepted when its caller runs the step again."""
    caller = orm.WorkflowNode()
    caller.set_process_state(ProcessState.RUNNING)
    caller.store()
    orphan = orm.CalcFunctionNode()
    orphan.set_process_state(ProcessState.RUNNING)
    orphan.base.links.add_incoming(caller, link_type=LinkType.CALL_CALC, link_label="train")
    orphan.store()
    finished = orm.CalcFunctionNode()
    finished.set_process_state(ProcessState.FINISHED)
    finished.set_exit_status(0)
    finished.base.links.add_incoming(caller, link_type=LinkType.CALL_CALC, link_label="normalise")
    finished.store()
    finished.seal()

    reports = []

    class Chain:  # the two things end_orphaned_calcfunctions uses of a running work chain
        node = caller
        report = staticmethod(reports.append)

    assert end_orphaned_calcfunctions(Chain) == [orphan.pk]
    orphan = orm.load_node(orphan.pk)
    assert orphan.is_excepted and orphan.is_sealed and "daemon worker" in orphan.exception
    assert finished.is_finished_ok
    assert reports and str(orphan.pk) in reports[0]
    assert end_orphaned_calcfunctions(Chain) == []  # nothing left to end


def test_builders_store_nothing(gpaw_code):
    """Building is not running: the protocol builders and the launch helpers store no node."""
    from aiida_physgen.launch import training_set

    before = count_nodes()
    builder = water_screening(gpaw_code, generation_protocol="fast")
    GenerationWorkChain.get_builder_from_protocol(
        training_set("logan/C5H12O_training.extxyz"),
        {"composition": "C5H12O", "cell": (np.eye(3) * 9.5).tolist(), "pbc": False},
        "logan",
        protocol="balanced",
    )
    assert count_nodes() == before
    assert not builder.generation.training.is_stored


def test_funnel_without_the_cheap_package_fails_at_launch(gpaw_code, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tblite" else real(name, *a))
    builder = water_screening(gpaw_code)
    with pytest.raises(ValueError, match=r"funnel: .*GFN2-xTB.*'tblite'.*funnel=False"):
        run_get_node(builder)
    builder.funnel = orm.Bool(False)  # the old path needs no cheap tier
    from aiida_physgen.workflows.screening import validate_screening_inputs

    assert validate_screening_inputs(builder._inputs(prune=True)) is None


@pytest.mark.parametrize(
    "settings, where",
    [
        ({"validity_settings": {"charge": 100}}, r"generation\.validity_settings\.charge"),
        ({"funnel": True, "cheap_settings": {"charge": -10}}, r"cheap_settings\.charge"),
        ({"relax_overrides": {"gpaw": {"parameters": {"charge": 10}}}}, r"relax_overrides\.gpaw\.parameters\.charge"),
    ],
)
def test_a_charge_beyond_the_targets_electrons_is_refused_at_launch(gpaw_code, settings, where):
    # H2O has 10 electrons: a total charge must lie in [-9, 9]
    before = count_nodes()
    validity = settings.pop("validity_settings", None)
    builder = water_screening(gpaw_code, **settings)
    if validity:
        builder.generation.validity = orm.Str("molecule")
        builder.generation.validity_settings = orm.Dict(validity)
    expected = rf"{where}: got -?10+, but H2O has 10 electrons; expected a total charge between -9 and 9"
    with pytest.raises(ValueError, match=expected):
        run_get_node(builder)
    assert count_nodes() == before


def test_a_charge_within_the_targets_electrons_passes_the_launch_check(gpaw_code):
    from aiida_physgen.workflows.screening import validate_screening_inputs

    builder = water_screening(gpaw_code, funnel=True, cheap_settings={"charge": 1})
    assert validate_screening_inputs(builder._inputs(prune=True)) is None


def test_dft_references_for_molecules_are_refused_at_launch(gpaw_code):
    # elemental references are bulk crystals: a molecular screening cannot have DFT formation energies
    before = count_nodes()
    builder = water_screening(gpaw_code)
    builder.dft_references = orm.Bool(True)
    with pytest.raises(ValueError, match="dft_references: elemental references are bulk crystals"):
        run_get_node(builder)
    assert count_nodes() == before

"""A CalcJob whose daemon worker was SIGKILLed just after the job's upload finishes [0] without ``remote_folder``
(aiida-core 2.9), and the restart chains restart it once, then stop with 440, never with a bare 11.

The kill is replayed in this process, deterministically: ``task_upload_job`` runs (upload done, the node marked
``UNSTASHING`` in the database, ``remote_folder`` registered on the process only, not yet stored), then what the
killed worker held in memory is dropped and the step runs again, as the next worker does from the checkpoint taken
before the upload. That second run finds ``UNSTASHING`` and skips the upload, so ``remote_folder`` is never
registered. See :meth:`aiida_physgen.workflows.restarts.HandlerReports.handle_missing_outputs`.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from aiida import orm
from aiida.calculations.arithmetic.add import ArithmeticAddCalculation
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, run_get_node, while_
from aiida.engine.processes.calcjobs import tasks

from aiida_physgen.workflows.gpaw_base import GpawBaseWorkChain
from aiida_physgen.workflows.restarts import HandlerReports, remote_folder_of
from aiida_physgen.workflows.training_base import TrainingBaseWorkChain


class AddBaseWorkChain(HandlerReports, BaseRestartWorkChain):
    """The smallest restart chain with the physgen handlers: ``core.arithmetic.add`` on a bash code."""

    _process_class = ArithmeticAddCalculation

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(ArithmeticAddCalculation, namespace="add")
        spec.outline(cls.setup, while_(cls.should_run_process)(cls.run_process, cls.inspect_process), cls.results)
        spec.expose_outputs(ArithmeticAddCalculation)

    def setup(self):
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(ArithmeticAddCalculation, "add"))


@pytest.fixture
def bash_code(aiida_code_installed):
    return aiida_code_installed(
        label="bash-add", default_calc_job_plugin="core.arithmetic.add", filepath_executable="/bin/bash"
    )


@pytest.fixture
def kill_after_upload(monkeypatch):
    """``kill_after_upload(times)``: the first ``times`` uploads are 'killed' just after they finished."""
    real = tasks.task_upload_job
    left = {"times": 0}

    async def upload_then_killed(process, transport_queue, cancellable):
        skip_submit = await real(process, transport_queue, cancellable)
        if left["times"] <= 0:
            return skip_submit
        left["times"] -= 1
        assert process.node.base.attributes.get("state") == "unstashing"  # stored: survives the worker
        assert not process.node.base.links.get_outgoing(link_label_filter="remote_folder").all()  # not stored yet
        process._outputs.pop("remote_folder")  # registered in the dead worker's memory only
        return await real(process, transport_queue, cancellable)  # the next worker, from the pre-upload checkpoint

    monkeypatch.setattr(tasks, "task_upload_job", upload_then_killed)

    def arm(times: int = 1):
        left["times"] = times

    return arm


def add_inputs(code) -> dict:
    return {"x": orm.Int(1), "y": orm.Int(2), "code": code, "metadata": {"options": {"resources": {"num_machines": 1}}}}


def reports(node) -> str:
    return "\n".join(entry.message for entry in orm.Log.collection.get_logs_for(node))


def test_calcjob_killed_after_its_upload_finishes_ok_without_remote_folder(bash_code, kill_after_upload):
    """The aiida-core behaviour itself (if this fails, aiida-core fixed it: the handler then never fires)."""
    kill_after_upload(1)
    warnings = logging.Handler(logging.WARNING)
    warnings.emit = lambda record: seen.append(record.getMessage())
    seen: list[str] = []
    tasks.logger.addHandler(warnings)  # aiida's loggers do not propagate to pytest's caplog
    try:
        _, node = run_get_node(ArithmeticAddCalculation, **add_inputs(bash_code))
    finally:
        tasks.logger.removeHandler(warnings)
    assert node.is_finished_ok
    assert node.outputs.sum.value == 3  # the job ran, was retrieved and parsed
    assert "remote_folder" not in node.outputs
    assert node.get_remote_workdir()  # the upload did happen, the working directory is known
    # the line of the daemon log of the load test's failure (docs/scale.md)
    assert f"CalcJob<{node.pk}> already marked as UNSTASHING, skipping task_update_job" in seen


def test_restart_chain_restarts_a_calculation_without_remote_folder_once(bash_code, kill_after_upload):
    kill_after_upload(1)
    _, node = run_get_node(AddBaseWorkChain, add=add_inputs(bash_code))
    assert node.is_finished_ok, (node.exit_status, node.exit_message, reports(node))
    first, second = sorted(node.called, key=lambda child: child.ctime)
    assert first.is_finished_ok and "remote_folder" not in first.outputs
    assert not first.base.caching.is_valid_cache
    assert node.outputs.remote_folder.uuid == second.outputs.remote_folder.uuid
    assert node.outputs.sum.value == 3
    assert f"<{first.pk}> finished OK without its required output(s) remote_folder" in reports(node)


def test_restart_chain_stops_with_440_when_it_happens_again(bash_code, kill_after_upload):
    kill_after_upload(2)
    _, node = run_get_node(AddBaseWorkChain, add=add_inputs(bash_code))
    assert node.exit_status == 440, (node.exit_status, node.exit_message)
    assert "remote_folder" in node.exit_message and "<" in node.exit_message
    assert len(node.called) == 2


def test_without_the_handler_the_chain_ends_with_a_bare_11(bash_code, kill_after_upload):
    """What the handler changes: AiiDA's BaseRestartWorkChain ends with 11 (the silent failure of the issue)."""
    kill_after_upload(1)
    overrides = orm.Dict({"handle_missing_outputs": {"enabled": False}})
    _, node = run_get_node(AddBaseWorkChain, add=add_inputs(bash_code), handler_overrides=overrides)
    assert node.exit_status == 11


@pytest.mark.parametrize("chain", [GpawBaseWorkChain, TrainingBaseWorkChain])
def test_physgen_restart_chains_have_the_handler(chain):
    assert "handle_missing_outputs" in [handler.__name__ for handler in chain.get_process_handlers()]
    assert chain.exit_codes.ERROR_CALCULATION_OUTPUT_MISSING.status == 440
    assert chain.spec().outputs["remote_folder"].required


def test_remote_folder_of_a_calcjob_that_lost_it(aiida_localhost):
    """The training chain resumes from a job's checkpoints through its working directory when the job has no
    ``remote_folder`` output (killed after its upload, then interrupted)."""
    node = orm.CalcJobNode(computer=aiida_localhost)
    node.set_remote_workdir("/scratch/aa/bb/cccc")
    node.store()
    folder = remote_folder_of(node)
    assert isinstance(folder, orm.RemoteData) and not folder.is_stored
    assert folder.get_remote_path() == "/scratch/aa/bb/cccc"
    assert folder.computer.uuid == aiida_localhost.uuid
    assert remote_folder_of(orm.CalcJobNode(computer=aiida_localhost).store()) is None


def test_vasp_relaxation_uses_the_results_of_a_calculation_without_remote_folder(
    aiida_localhost, kill_after_upload, tmp_path
):
    """The failure of the load test (docs/scale.md): aiida-vasp's VaspWorkChain ends 11 when its VaspCalculation lost
    ``remote_folder``; physgen's VASP chain takes the results, which are complete, and says why."""
    import sys
    from pathlib import Path

    from ase.build import bulk

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vasp"))
    from fixtures import fake_potcar_family, fake_vasp_code

    from aiida_physgen.workflows.vasp_relax import VaspRelaxWorkChain

    family = fake_potcar_family(tmp_path / "potcars")
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.positions[1] += [0.10, -0.05, 0.08]
    builder = VaspRelaxWorkChain.get_builder_from_protocol(
        fake_vasp_code(aiida_localhost), orm.StructureData(ase=atoms), "fast", {"potential_family": family}
    )
    kill_after_upload(1)
    _, node = run_get_node(builder)
    vasp = node.base.links.get_outgoing(link_label_filter="vasp").one().node
    assert vasp.exit_status == 11  # aiida-vasp's chain: "did not register a required output"
    [calculation] = [child for child in vasp.called if isinstance(child, orm.CalcJobNode)]
    assert calculation.is_finished_ok and "remote_folder" not in calculation.outputs
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert np.isfinite(node.outputs.output_parameters["energy"])
    assert f"{calculation.process_label}<{calculation.pk}> finished OK without remote_folder" in reports(node)

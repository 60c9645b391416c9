"""The training CalcJob (``physgen.train.job``), its restarting work chain (``physgen.train.base``) and
the generation work chain on a training code: real jobs on localhost, real (tiny) training.

The code is this very Python interpreter, which has aiida-physgen; every job runs
``python -m aiida_physgen train ...`` in its own working directory, as on a remote computer.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from aiida import orm
from aiida.engine import run_get_node, submit

from aiida_physgen.calculations.training import TrainingCalculation, max_seconds_for, threads_for
from aiida_physgen.data.generator_model import GeneratorModel
from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.workflows.training_base import TrainingBaseWorkChain

RESOURCES = Path(__file__).resolve().parents[2] / "aiida_physgen" / "resources" / "logan"
MOLECULES_FILE = RESOURCES / "C5H12O_training.extxyz"
TINY = {"loop": {"steps": 40, "batch_size": 4}, "hidden": [32], "critic_hidden": [16], "rattle_copies": 0}
TARGET = {"composition": "C5H12O", "cell": (9.5 * np.eye(3)).tolist(), "pbc": [False] * 3}
ONE_CORE = {"num_machines": 1, "num_mpiprocs_per_machine": 1}


def tiny(steps: int) -> dict:
    return {**TINY, "loop": {**TINY["loop"], "steps": steps}}


@pytest.fixture
def training_code(aiida_code_installed):
    return aiida_code_installed(
        label="physgen-python", default_calc_job_plugin="physgen.train.job", filepath_executable=sys.executable
    )


@pytest.fixture
def training_set():
    return StructureSet.from_file(MOLECULES_FILE)


def job_inputs(code, training, settings=None, seeds=(0, 1), target=None, **options) -> dict:
    return {
        "code": code,
        "training": training,
        "family": orm.Str("logan"),
        "target": orm.Dict(target or TARGET),
        "seeds": orm.List(list(seeds)),
        "settings": orm.Dict(settings or TINY),
        "metadata": {"options": {"resources": ONE_CORE, **options}},
    }


def base_builder(code, training, settings=None, seeds=(0, 1), **options):
    builder = TrainingBaseWorkChain.get_builder()
    builder.train = job_inputs(code, training, settings, seeds, **options)
    return builder


def retrieved_text(node, name: str) -> str:
    return node.outputs.retrieved.base.repository.get_object_content(name, mode="r")


def resumed_steps(node) -> list[int]:
    """Steps a job resumed at, from its own stdout."""
    return [int(s) for s in re.findall(r"resumed group \d+/\d+ at step (\d+)/", retrieved_text(node, "aiida.out"))]


def assert_models(outputs, n: int, steps: int):
    models = outputs["models"]
    assert sorted(models) == [f"model_{i:02d}" for i in range(n)]
    for i, label in enumerate(sorted(models)):
        model = models[label]
        assert isinstance(model, GeneratorModel) and model.is_stored
        assert model.steps == steps and model.family == "logan" and model.seed == i
        curves = model.get_loss_curves()
        assert curves["steps"][-1] == steps and len(curves["wasserstein"]) == len(curves["steps"])
        assert model.verify_checksum()


# ------------------------------------------------------------------------------------------ no job run
def test_threads_and_walltime_margin():
    assert threads_for({"num_machines": 1, "num_mpiprocs_per_machine": 1}) == 1
    assert threads_for({"num_machines": 1, "num_mpiprocs_per_machine": 4}) == 4
    assert threads_for({"num_machines": 1, "num_mpiprocs_per_machine": 1, "num_cores_per_mpiproc": 2}) == 2
    assert threads_for({}) == 1
    assert max_seconds_for(60) == 54 and max_seconds_for(20) == 15 and max_seconds_for(86400) == 86100


def test_submit_script_sets_threads_walltime_and_command(training_code, training_set, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inputs = job_inputs(training_code, training_set, max_wallclock_seconds=600)
    inputs["metadata"]["options"]["resources"] = {"num_machines": 1, "num_mpiprocs_per_machine": 2}
    inputs["metadata"].update(dry_run=True, store_provenance=False)
    _, node = run_get_node(TrainingCalculation, **inputs)
    folder = Path(node.dry_run_info["folder"])
    script = (folder / "_aiidasubmit.sh").read_text()
    assert "export OMP_NUM_THREADS=2" in script
    assert "'-m' 'aiida_physgen' 'train' 'training.npz' '--job' 'job.json'" in script
    assert "'--max-seconds' '540'" in script and "'--checkpoint-dir' 'checkpoints'" in script
    job = (folder / "job.json").read_text()
    assert '"C5H12O"' in job and '"steps": 40' in job
    # a user's own OMP_NUM_THREADS wins
    inputs["metadata"]["options"]["environment_variables"] = {"OMP_NUM_THREADS": "3"}
    _, node = run_get_node(TrainingCalculation, **inputs)
    script = (Path(node.dry_run_info["folder"]) / "_aiidasubmit.sh").read_text()
    assert "export OMP_NUM_THREADS='3'" in script and "OMP_NUM_THREADS=2" not in script


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"target": {**TARGET, "composition": "C5H12ON"}}, ["composition", "'N'"]),
        ({"target": {**TARGET, "cell": (3 * np.eye(3)).tolist()}}, ["cell", "box"]),
        ({"settings": {"loop": {"stepz": 3}}}, ["settings.loop.stepz"]),
        ({"seeds": [0, 0]}, ["seeds", "twice"]),
        ({"family": "nope"}, ["family", "'nope'"]),
    ],
)
def test_invalid_input_is_rejected_at_launch(training_code, change, words):
    training = StructureSet.from_file(MOLECULES_FILE, index=":4")
    inputs = job_inputs(training_code, training)
    for key, value in change.items():
        inputs[key] = {"target": orm.Dict, "settings": orm.Dict, "seeds": orm.List, "family": orm.Str}[key](value)
    before = orm.QueryBuilder().append(orm.Node).count()
    for process in (TrainingCalculation, TrainingBaseWorkChain):
        launch = inputs if process is TrainingCalculation else {"train": inputs}
        with pytest.raises(ValueError) as error:
            run_get_node(process, **launch)
        for word in words:
            assert word in str(error.value)
    assert orm.QueryBuilder().append(orm.Node).count() == before
    assert not training.is_stored


def test_device_is_checked_at_launch(training_code, training_set):
    inputs = job_inputs(training_code, training_set)
    inputs["device"] = orm.Str("gpu")
    with pytest.raises(ValueError, match="device: got 'gpu'"):
        run_get_node(TrainingCalculation, **inputs)


# ------------------------------------------------------------------------------------------ the parser
@pytest.fixture(scope="module")
def cli_output(tmp_path_factory):
    """What ``aiida-physgen train --status status.json`` leaves in a job's folder (a real, tiny run)."""
    from click.testing import CliRunner

    from aiida_physgen.cli import main

    folder = tmp_path_factory.mktemp("job")
    args = ["train", str(MOLECULES_FILE), "-c", "C5H12O", "--box", "9.5", "--seeds", "0,1", "--steps", "2",
            "--settings", json.dumps(TINY), "--threads", "1", "--status", str(folder / "status.json"),
            "--checkpoint-dir", str(folder / "checkpoints"), "-o", str(folder / "models")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def parse(aiida_localhost, tmp_path):
    """Parse files as if retrieved from a TrainingCalculation: ``{name: bytes}`` kept, models temporary."""
    from aiida.common.links import LinkType

    from aiida_physgen.parsers.training import TrainingParser

    def run(files: dict[str, bytes], models: dict[str, bytes] | None = None):
        node = orm.CalcJobNode(computer=aiida_localhost, process_type="aiida.calculations:physgen.train.job")
        node.set_option("resources", ONE_CORE)
        node.store()
        retrieved = orm.FolderData()
        for name, content in files.items():
            retrieved.base.repository.put_object_from_bytes(content, name)
        retrieved.base.links.add_incoming(node, LinkType.CREATE, "retrieved")
        retrieved.store()
        temporary = tmp_path / f"temporary-{node.pk}"
        temporary.mkdir()
        for name, content in (models or {}).items():
            (temporary / name).write_bytes(content)
        return TrainingParser.parse_from_node(node, store_provenance=False, retrieved_temporary_folder=str(temporary))

    return run


def status(state: str, **extra) -> bytes:
    return json.dumps({"status": state, "message": f"{state} message", **extra}).encode()


def test_parser_gives_every_model_or_none(parse, cli_output):
    files = {"status.json": (cli_output / "status.json").read_bytes(),
             "summary.json": (cli_output / "models" / "summary.json").read_bytes()}  # fmt: skip
    models = {name: (cli_output / "models" / name).read_bytes() for name in ("model_00.pt", "model_01.pt")}
    outputs, node = parse(files, models)
    assert node.exit_status == 0, node.exit_message
    assert sorted(outputs["models"]) == ["model_00", "model_01"]
    assert outputs["models"]["model_01"].seed == 1 and outputs["models"]["model_00"].get_loss_curves()["steps"] == [2]

    outputs, node = parse(files, {"model_00.pt": models["model_00.pt"]})  # one model lost
    assert node.exit_status == 352 and "models/model_01.pt" in node.exit_message and not outputs
    outputs, node = parse(files, {**models, "model_01.pt": models["model_01.pt"][:-100]})  # a truncated copy
    assert node.exit_status == 353 and "checksum" in node.exit_message and not outputs
    outputs, node = parse({"status.json": files["status.json"]}, models)
    assert node.exit_status == 352 and "summary.json" in node.exit_message and not outputs


@pytest.mark.parametrize(
    ("files", "exit_status", "words"),
    [
        ({}, 351, ["without reporting", "none"]),
        (
            {"progress.log": b"2025-01-01T00:00:00 step 30/400 (7.5%) group 1/1 step 30/400 critic 1\n"},
            351,
            ["last logged step 30/400"],
        ),
        (
            {"status.json": status("interrupted", reason="SIGTERM", step=30, done=30, total=400)},
            350,
            ["step 30/400", "SIGTERM", "restartable"],
        ),
        ({"status.json": status("invalid_input")}, 300, ["invalid input: invalid_input message"]),
        ({"status.json": status("diverged")}, 310, ["diverged message"]),
        ({"status.json": status("crashed")}, 354, ["crashed message"]),
        ({"status.json": b"{not json"}, 353, ["status.json"]),
    ],
)
def test_parser_exit_codes(parse, files, exit_status, words):
    outputs, node = parse(files)
    assert node.exit_status == exit_status, node.exit_message
    for word in words:
        assert word in node.exit_message
    assert not outputs


# ------------------------------------------------------------------------------------------ real jobs
@pytest.mark.slow
def test_job_returns_models_with_loss_curves(training_code, training_set):
    outputs, node = run_get_node(TrainingCalculation, **job_inputs(training_code, training_set))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert_models(outputs, 2, 40)
    names = node.outputs.retrieved.base.repository.list_object_names()
    assert {"summary.json", "progress.log", "status.json", "aiida.out", "aiida.err"} <= set(names)
    assert not any(name.endswith(".pt") for name in names), "model files must not be stored twice"
    assert "finished: 2 model(s)" in retrieved_text(node, "progress.log")
    # same models as the calcfunction would give: the job is the same training, elsewhere
    first = outputs["models"]["model_00"].load()
    assert first.config["hyperparameters"]["hidden"] == [32]
    assert first.config["target"]["composition"] == "C5H12O"


@pytest.mark.slow
def test_walltime_stops_the_job_with_a_checkpoint(training_code, training_set):
    """A walltime far too short: the command stops itself before it (--max-seconds), checkpoint written: 350."""
    inputs = job_inputs(training_code, training_set, settings=tiny(100_000), max_wallclock_seconds=12)
    outputs, node = run_get_node(TrainingCalculation, **inputs)
    assert node.exit_status == 350, (node.exit_status, node.exit_message)
    assert "--max-seconds 7 reached" in node.exit_message and "restartable" in node.exit_message
    assert "models" not in outputs and "models" not in node.outputs
    assert '"status": "interrupted"' in retrieved_text(node, "status.json")
    assert "group_00.pt" in node.outputs.remote_folder.listdir("checkpoints")
    assert "interrupted at step" in retrieved_text(node, "progress.log")


@pytest.mark.slow
def test_work_chain_gives_up_when_jobs_make_no_progress(training_code, training_set):
    """A walltime shorter than the start-up: job 1 stops before its first step and is resumed once; job 2
    makes no step either, so the work chain stops (410) instead of spending its iterations."""
    builder = base_builder(training_code, training_set, settings=tiny(100), max_wallclock_seconds=6)
    _, node = run_get_node(builder)
    assert node.exit_status == 410, (node.exit_status, node.exit_message)
    jobs = sorted(node.called, key=lambda n: n.ctime)
    assert [job.exit_status for job in jobs] == [350, 350]
    assert jobs[1].inputs.parent_folder.uuid == jobs[0].outputs.remote_folder.uuid
    assert "models" not in node.outputs


# ------------------------------------------------------------------------------------------ the daemon
@pytest.fixture
def one_worker_daemon(daemon_client):
    if not daemon_client.is_daemon_running:
        daemon_client.start_daemon(number_workers=1)
    assert int(daemon_client.get_numprocesses()["numprocesses"]) == 1
    yield daemon_client


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def this_run(progress_log: str) -> str:
    """The lines a job wrote itself: the progress log comes with those of the jobs it resumes."""
    return progress_log.rsplit(" start: ", 1)[-1]


def running_job(workchain, number: int = 0):
    """The workchain's training job ``number`` (from 0) once its command is running (a step in its progress log)."""
    jobs = sorted(workchain.called, key=lambda n: n.ctime)
    for job in jobs[number : number + 1]:
        if job.process_label == "TrainingCalculation" and not job.is_terminated:
            workdir = job.get_remote_workdir()
            log = Path(workdir, "checkpoints", "progress.log") if workdir else None
            text = log.read_text() if log is not None and log.is_file() else ""
            if text.count(" start: ") == number + 1 and " step " in this_run(text):
                return job
    return None


def training_processes(job) -> list[psutil.Process]:
    """The ``python -m aiida_physgen train`` process(es) of a job of the direct scheduler (job id = PID of its
    script)."""
    script = psutil.Process(int(job.get_job_id()))
    return [p for p in script.children(recursive=True) if "aiida_physgen" in " ".join(p.cmdline())]


def training_processes_left(job) -> bool:
    workdir = job.get_remote_workdir()
    for process in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if process.info["cwd"] == workdir and "aiida_physgen" in " ".join(process.info["cmdline"] or ()):
                return True
        except (psutil.Error, TypeError):
            continue
    return False


@pytest.mark.slow
def test_daemon_resumes_a_killed_training_job(one_worker_daemon, training_code, training_set):
    """The training process is killed hard (SIGKILL: no status, no clean stop, only its checkpoints): the
    work chain sees job 1 fail with 351, finds checkpoints in its remote folder and job 2 resumes from them.
    (A clean stop, SIGTERM or walltime, is 350: see the CLI tests and the two tests above.)"""
    builder = base_builder(training_code, training_set, settings=tiny(80), checkpoint_every=20)
    node = submit(builder)
    job = wait_for(lambda: running_job(node), 60, "the training job to start")
    log = Path(job.get_remote_workdir(), "checkpoints", "progress.log")
    # the step after the checkpoint: the checkpoint file is written between the two log lines
    wait_for(lambda: " step 21/80 (" in log.read_text(), 60, "the first checkpoint")
    (process,) = training_processes(job)
    process.send_signal(signal.SIGKILL)
    wait_for(lambda: node.is_terminated, 90, "the work chain to finish")
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    jobs = sorted(node.called, key=lambda n: n.ctime)
    assert [job.exit_status for job in jobs] == [351, 0]
    assert jobs[1].inputs.parent_folder.uuid == jobs[0].outputs.remote_folder.uuid
    assert resumed_steps(jobs[1])[0] >= 20
    # the progress log goes from job to job: the last one tells the whole story
    history = retrieved_text(jobs[1], "progress.log")
    assert history.count("start:") == 2 and history.count("resumed group 1/1 at step") == 1
    assert "finished: 2 model(s)" in history
    assert_models({"models": {k: node.outputs.models[k] for k in node.outputs.models}}, 2, 80)
    log = " ".join(report.message for report in orm.Log.collection.get_logs_for(node))
    assert "was killed" in log and "last checkpoint at step" in log and "restarting from its checkpoints" in log


@pytest.mark.slow
def test_daemon_worker_stays_free_while_a_job_trains(
    one_worker_daemon, training_code, training_set, aiida_code_installed
):
    from aiida.plugins import WorkflowFactory

    training = submit(base_builder(training_code, training_set, settings=tiny(300)))
    job = wait_for(lambda: running_job(training), 60, "the training job to start")

    add_code = aiida_code_installed(
        label="add-bash", default_calc_job_plugin="core.arithmetic.add", filepath_executable="/bin/bash"
    )
    other = submit(
        WorkflowFactory("core.arithmetic.multiply_add"), x=orm.Int(2), y=orm.Int(3), z=orm.Int(4), code=add_code
    )
    wait_for(lambda: other.is_terminated, 60, "the second process")
    assert other.is_finished_ok and other.outputs.result.value == 10
    assert not job.is_terminated, "the training job should still be running: the worker was free meanwhile"
    # the point is made; no need to wait for the rest of the training
    from aiida.engine.processes.control import kill_processes

    kill_processes([training], timeout=30)
    wait_for(lambda: training.is_terminated and job.is_terminated, 60, "the training to be killed")
    assert training.is_killed
    wait_for(lambda: not training_processes_left(job), 30, "the training process to end")


@pytest.mark.slow
def test_daemon_generation_with_a_training_code(one_worker_daemon, training_code, training_set):
    from aiida_physgen.workflows.generation import GenerationWorkChain

    builder = GenerationWorkChain.get_builder()
    builder.family = orm.Str("logan")
    builder.training = training_set
    builder.target = orm.Dict(TARGET)
    builder.seeds = orm.List([0, 1])
    builder.settings = orm.Dict(TINY)
    builder.count = orm.Int(10)
    builder.selection_settings = orm.Dict({"n_clusters": 3, "n_components": 2, "min_distance": 0.0, "plot": False})
    builder.training_code = training_code
    node = submit(builder)
    wait_for(lambda: node.is_terminated, 120, "the generation work chain")
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert sorted(node.outputs.models) == ["model_00", "model_01"]
    assert node.outputs.representatives.count == 3
    (base,) = [n for n in node.called if n.process_label == "TrainingBaseWorkChain"]
    (job,) = base.called
    assert job.process_label == "TrainingCalculation" and job.is_finished_ok
    assert {m.uuid for m in node.outputs.models.values()} == {m.uuid for m in job.outputs.models.values()}


@pytest.mark.slow
def test_daemon_graphene_chain_trains_both_models_as_jobs(one_worker_daemon, training_code, gpaw_code):
    """physgen.graphene with a training_code: the EDNN (the pre-step) and the RUGAN (the screening's generation)
    train as physgen.train.job CalcJobs, then the screening runs on with the EDNN as its cheap tier."""
    from aiida_physgen.workflows.graphene import GrapheneScreeningWorkChain

    small = {"nx": 4, "ny": 2, "holes": [0, 2], "radius": [1.0, 2.5]}
    builder = GrapheneScreeningWorkChain.get_builder_from_protocol(
        "fast",
        {
            "sheets": {"count": 30, "settings": small},
            "ednn": {"settings": {"hidden": [8], "loop": {"steps": 5, "batch_size": 8, "log_every": 1}}},
            "generation": {
                "count": 6,
                "conditions": {"scale_1": {"labels": "training", "scale": 1}},
                "settings": {
                    "channels": 4,
                    "noise_channels": 3,
                    "critic_channels": 4,
                    "critic_layers": 1,
                    "loop": {"steps": 2, "batch_size": 4, "n_critic": 2, "log_every": 1},
                },
                "validity_settings": {"min_neighbours": 0, "min_vacancies": 0},
                "selection": {"n_clusters": 2, "n_components": 2},
            },
            "assessors": {"label_consistency": {"figures": False}},
        },
        training_code=training_code,
        code=gpaw_code,
    )
    node = submit(builder)
    wait_for(lambda: node.is_terminated, 420, "the graphene work chain")
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    bases = {n.label: n for n in node.called_descendants if n.process_label == "TrainingBaseWorkChain"}
    assert set(bases) == {"training_ednn", "train"}  # the EDNN here, the RUGAN in the screening's generation
    for _label, base in bases.items():
        (job,) = base.called
        assert job.process_label == "TrainingCalculation" and job.is_finished_ok
    assert node.outputs.ednn.uuid in {m.uuid for m in bases["training_ednn"].outputs.models.values()}
    assert node.outputs.screening.assessments.label_consistency["rows"]

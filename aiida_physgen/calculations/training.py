"""``physgen.train.job``: train an ensemble of any generator family as a ``CalcJob``, on any computer.

The job runs the ``aiida-physgen train`` command (:mod:`aiida_physgen.cli.train`) with a Python
interpreter that has aiida-physgen installed (the ``code``; locally ``sys.executable``), so the
training needs no database and frees the daemon worker while it runs:

    python -m aiida_physgen train training.npz --job job.json --device cpu \\
        --checkpoint-dir checkpoints --checkpoint-every 100 --status status.json -o models \\
        [--max-seconds S]

* ``training.npz`` is the ``StructureSet``'s own archive, ``job.json`` holds family, target,
  settings, seeds and grid;
* ``OMP_NUM_THREADS`` is set from the allocation (``num_cores_per_mpiproc``, else
  ``num_mpiprocs_per_machine``, else 1) unless ``metadata.options.environment_variables`` sets it,
  so several jobs on one machine never oversubscribe its cores;
* with ``max_wallclock_seconds`` the command stops a little before the walltime
  (``--max-seconds``), writing its checkpoint;
* with ``parent_folder`` (the ``remote_folder`` of an earlier job of the same training) that job's
  ``checkpoints/`` are copied in and the training resumes where it stopped.

Outputs: ``models`` (one ``physgen.generator_model`` per member, ``model_00``..., loss curves in
the model file) or nothing at all. Exit codes:

===  =============================  =========================================================
300  ``ERROR_INVALID_INPUT``        the command refused its input
310  ``ERROR_TRAINING_DIVERGED``    a loss became NaN or infinite
350  ``ERROR_INTERRUPTED``          stopped by a signal or the walltime with a checkpoint:
                                    restartable (``physgen.train.base`` does it)
351  ``ERROR_NO_OUTPUT``            the command left no status (killed hard, out of memory?);
                                    checkpoints may still be in the remote folder
352  ``ERROR_OUTPUT_MISSING``       done, but a model file or the summary was not retrieved
353  ``ERROR_OUTPUT_UNREADABLE``    a model file or the summary could not be read
354  ``ERROR_TRAINING_CRASHED``     the command failed with an unexpected error
===  =============================  =========================================================
"""

from __future__ import annotations

import json
import os
import re

from aiida import orm
from aiida.common import datastructures
from aiida.engine import CalcJob

from ..data.generator_model import GeneratorModel
from ..data.structure_set import StructureSet
from ..ml.family import get_family
from ..ml.training import DEFAULT_SEEDS, plan_members
from ..ports import dynamic_outputs, input_with_default, optional_input
from .codes import check_python_code, set_python_job_defaults

__all__ = ["TrainingCalculation", "validate_training_inputs", "threads_for", "max_seconds_for", "TRAINING_PORTS"]

#: the inputs that say what to train, the same for the job, the ``physgen.train`` calcfunction and the chains that
#: expose them (the generation chain)
TRAINING_PORTS = ("training", "family", "target", "seeds", "settings", "grid", "device")

TRAINING_FILENAME = "training.npz"
JOB_FILENAME = "job.json"
STATUS_FILENAME = "status.json"
STDERR_FILENAME = "aiida.err"
MODELS_FOLDER = "models"
SUMMARY_FILENAME = "summary.json"
CHECKPOINT_FOLDER = "checkpoints"
PROGRESS_FILENAME = "progress.log"

_DEVICE = re.compile(r"^(cpu|auto|cuda(:\d+)?)$")


def threads_for(resources: dict) -> int:
    """CPU threads for one training process in an allocation: its cores per process, else its processes
    per machine (the job runs one process that uses them as threads), else 1."""
    for key in ("num_cores_per_mpiproc", "num_mpiprocs_per_machine", "tot_num_mpiprocs"):
        value = resources.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 1


def max_seconds_for(walltime: int | float) -> int:
    """Seconds the training may run in a job with this walltime: 10 % less, at least 5 s and at most
    5 minutes less (start-up, writing the checkpoint and the models)."""
    margin = min(300.0, max(5.0, 0.1 * float(walltime)))
    return max(1, int(float(walltime) - margin))


def validate_training_inputs(inputs, _ctx=None):
    """The family checks target, settings, seeds, grid and training data at launch, before anything is stored;
    the ``code`` must be a Python interpreter (:func:`~aiida_physgen.calculations.codes.check_python_code`)."""
    problem = check_python_code(inputs.get("code"))
    if problem:
        return problem
    if "target" not in inputs or "training" not in inputs:
        return None
    try:
        if "family" not in inputs:  # the required port says so
            return None
        family = get_family(inputs["family"].value)
        target = family.check_target(inputs["target"].get_dict())
        settings = inputs["settings"].get_dict() if "settings" in inputs else None
        grid = inputs["grid"].get_dict() if "grid" in inputs else None
        seeds = list(inputs["seeds"].get_list()) if "seeds" in inputs else list(DEFAULT_SEEDS)
        members = plan_members(family, settings, seeds, grid)
        training = inputs["training"]
        batch = training.get_batch() if len(training) else None
        checked = set()
        for member in members:
            key = repr(member.settings)
            if key not in checked:
                checked.add(key)
                family.validate(batch, target, member.settings)
    except (ValueError, TypeError) as error:
        return str(error)
    if "device" in inputs and not _DEVICE.match(inputs["device"].value):
        return f"device: got {inputs['device'].value!r}, expected 'cpu', 'cuda', 'cuda:<n>' or 'auto'"
    parent = inputs.get("parent_folder")
    code = inputs.get("code")
    if parent is not None and code is not None and code.computer is not None and parent.computer is not None:
        if parent.computer.uuid != code.computer.uuid:
            return (
                f"parent_folder: it is on computer {parent.computer.label!r} but the code runs on "
                f"{code.computer.label!r}; checkpoints can only be copied on one computer"
            )
    return None


class TrainingCalculation(CalcJob):
    """Train an ensemble of generator models with ``aiida-physgen train`` (see the module docstring)."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        set_python_job_defaults(spec, "physgen.train.job")
        spec.input(
            "metadata.options.checkpoint_every",
            valid_type=int,
            default=100,
            help="Write a training checkpoint every this many steps.",
        )

        spec.input("training", valid_type=StructureSet, help="Known structures to learn from.")
        spec.input(
            "family",
            valid_type=orm.Str,
            help="Generator family (an entry point of aiida_physgen.families): logan, rugan, crystal_gan, "
            "repap, ednn, or a plug-in's.",
        )
        spec.input(
            "target",
            valid_type=orm.Dict,
            help="What to generate, as the family defines it (LoGAN: composition, cell, pbc).",
        )
        spec.input(
            "seeds",
            valid_type=orm.List,
            default=lambda: orm.List(list(DEFAULT_SEEDS)),
            help="One ensemble member per seed (times the grid).",
        )
        optional_input(
            spec,
            "settings",
            orm.Dict,
            "Nested training settings of the family (e.g. descriptor, loop, ...); defaults otherwise.",
        )
        optional_input(spec, "grid", orm.Dict, "Nested settings with lists of values to vary across the ensemble.")
        input_with_default(
            spec,
            "device",
            orm.Str,
            "cpu",
            "Where the training runs: 'cpu', 'cuda', 'cuda:<n>' or 'auto' (CUDA when the machine has it).",
        )
        optional_input(
            spec,
            "parent_folder",
            orm.RemoteData,
            "Remote folder of an earlier job of the same training: its checkpoints are resumed.",
        )
        spec.inputs.validator = validate_training_inputs

        dynamic_outputs(spec, "models", GeneratorModel, "One trained model per member (model_00, ...).")

        spec.exit_code(300, "ERROR_INVALID_INPUT", message="invalid input: {message}")
        spec.exit_code(310, "ERROR_TRAINING_DIVERGED", message="training diverged: {message}")
        spec.exit_code(
            350,
            "ERROR_INTERRUPTED",
            message="training stopped at step {step} ({reason}) with a checkpoint in the remote folder: restartable",
        )
        spec.exit_code(
            351,
            "ERROR_NO_OUTPUT",
            message="the training ended without reporting a result (killed?); last logged step {step}",
        )
        spec.exit_code(352, "ERROR_OUTPUT_MISSING", message="the output file {filename} was not retrieved")
        spec.exit_code(353, "ERROR_OUTPUT_UNREADABLE", message="the output file {filename} could not be read: {error}")
        spec.exit_code(354, "ERROR_TRAINING_CRASHED", message="the training command failed: {message}")

    def prepare_for_submission(self, folder):
        family = get_family(self.inputs.family.value)
        job = {
            "family": family.name,
            "target": family.check_target(self.inputs.target.get_dict()),
            "seeds": [int(s) for s in self.inputs.seeds.get_list()],
        }
        if "settings" in self.inputs:
            job["settings"] = self.inputs.settings.get_dict()
        if "grid" in self.inputs:
            job["grid"] = self.inputs.grid.get_dict()
        with folder.open(JOB_FILENAME, "w", encoding="utf-8") as handle:
            json.dump(job, handle, indent=2, sort_keys=True)

        options = self.metadata.options
        params = [
            "-m",
            "aiida_physgen",
            "train",
            TRAINING_FILENAME,
            "--job",
            JOB_FILENAME,
            "--device",
            self.inputs.device.value,
            "--checkpoint-dir",
            CHECKPOINT_FOLDER,
            "--checkpoint-every",
            str(int(options.checkpoint_every)),
            "--status",
            STATUS_FILENAME,
            "--output",
            MODELS_FOLDER,
        ]
        walltime = options.get("max_wallclock_seconds")
        if walltime:
            params += ["--max-seconds", str(max_seconds_for(walltime))]

        codeinfo = datastructures.CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = params
        codeinfo.stdout_name = options.output_filename
        codeinfo.stderr_name = STDERR_FILENAME
        codeinfo.withmpi = options.withmpi

        calcinfo = datastructures.CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = [(self.inputs.training.uuid, StructureSet.FILENAME, TRAINING_FILENAME)]
        calcinfo.remote_copy_list = []
        if "parent_folder" in self.inputs:
            parent = self.inputs.parent_folder
            calcinfo.remote_copy_list.append(
                (parent.computer.uuid, os.path.join(parent.get_remote_path(), CHECKPOINT_FOLDER), CHECKPOINT_FOLDER)
            )
        environment = options.get("environment_variables") or {}
        if "OMP_NUM_THREADS" not in environment:
            threads = threads_for(dict(options.resources))
            calcinfo.prepend_text = f"export OMP_NUM_THREADS={threads}"
        calcinfo.retrieve_list = [
            options.output_filename,
            STDERR_FILENAME,
            STATUS_FILENAME,
            f"{MODELS_FOLDER}/{SUMMARY_FILENAME}",
            f"{CHECKPOINT_FOLDER}/{PROGRESS_FILENAME}",
        ]
        # the model files become GeneratorModel nodes: retrieved only for the parser, never stored twice
        calcinfo.retrieve_temporary_list = [(f"{MODELS_FOLDER}/model_*.pt", ".", 0)]
        return calcinfo

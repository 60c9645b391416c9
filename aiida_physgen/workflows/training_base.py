"""``physgen.train.base``: run a :class:`~aiida_physgen.calculations.training.TrainingCalculation` until
the training is done, resuming it from its checkpoints whenever a job stops early.

Handled (each restart counts towards ``max_iterations``, 5 by default):

* the job stopped at its walltime or on a signal, with a checkpoint (job exit code 350
  ``ERROR_INTERRUPTED``): the next job gets ``parent_folder`` = this job's ``remote_folder`` and
  resumes from its checkpoints. A job that made no progress at all ends the work chain with 410
  ``ERROR_NO_PROGRESS`` (a walltime too short for even one checkpoint).
* the job was killed hard and left no status (351 ``ERROR_NO_OUTPUT``, or the scheduler's
  out-of-walltime / node-failure codes): when its remote folder holds checkpoints, the next job
  resumes from them; when it holds none the job is started afresh once, then 411
  ``ERROR_KILLED_WITHOUT_CHECKPOINT``.
* invalid input (300) and divergence (310) are not retried: the work chain ends with the same
  exit code, so callers (the generation work chain) see the same meaning.

Every restart is reported (``verdi process report``) with the step the training stopped at and the
last checkpoint; the training job's own ``progress.log`` (retrieved) tells the whole story.
"""

from __future__ import annotations

from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_

from ..calculations.training import CHECKPOINT_FOLDER, PROGRESS_FILENAME, TrainingCalculation
from ..ml.progress import read_progress_log
from ..ports import expose_inputs_under
from .restarts import HandlerReports, remote_folder_of

__all__ = [
    "TrainingBaseWorkChain",
    "training_job_builder",
    "launch_training",
    "trained_models",
    "DEFAULT_TRAINING_OPTIONS",
]

#: job options a training job gets unless ``training_options`` says otherwise
DEFAULT_TRAINING_OPTIONS = {"resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1}}

_KILLED = [
    TrainingCalculation.exit_codes.ERROR_NO_OUTPUT,
    TrainingCalculation.exit_codes.ERROR_SCHEDULER_OUT_OF_WALLTIME,
    TrainingCalculation.exit_codes.ERROR_SCHEDULER_NODE_FAILURE,
]


def _progress(node) -> dict:
    """The facts of the job's retrieved ``progress.log`` (empty facts when there is none)."""
    try:
        text = node.outputs.retrieved.base.repository.get_object_content(PROGRESS_FILENAME, mode="r")
    except Exception:  # noqa: BLE001 - no retrieved folder, or no log in it
        text = ""
    return read_progress_log(text)


def _where(facts: dict) -> str:
    parts = []
    if facts.get("total"):
        parts.append(f"step {facts['done']}/{facts['total']}")
    checkpoint = facts.get("checkpoint")
    if checkpoint:
        parts.append(
            f"last checkpoint at step {checkpoint['step']}/{checkpoint['steps']} of group {checkpoint['group']}"
        )
    return "; ".join(parts) or "no step logged"


class TrainingBaseWorkChain(HandlerReports, BaseRestartWorkChain):
    """Train an ensemble as a ``TrainingCalculation``, resuming it from checkpoints after walltimes and kills."""

    _process_class = TrainingCalculation

    @classmethod
    def define(cls, spec):
        super().define(spec)
        expose_inputs_under(
            spec, TrainingCalculation, "train", "Inputs of the `TrainingCalculation` (physgen.train.job)."
        )
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(
                cls.run_process,
                cls.inspect_process,
            ),
            cls.results,
        )
        spec.expose_outputs(TrainingCalculation)
        spec.exit_code(300, "ERROR_INVALID_INPUT", message="invalid input: {message}")
        spec.exit_code(310, "ERROR_TRAINING_DIVERGED", message="training diverged: {message}")
        spec.exit_code(
            410,
            "ERROR_NO_PROGRESS",
            message="the training job {job} stopped without any progress since the previous one "
            "(is the walltime shorter than the start-up and one checkpoint?)",
        )
        spec.exit_code(
            411,
            "ERROR_KILLED_WITHOUT_CHECKPOINT",
            message="the training job {job} was killed again before writing any checkpoint",
        )

    def setup(self):
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(TrainingCalculation, "train"))
        self.ctx.last_done = -1
        self.ctx.fresh_restarts = 0
        if not self.node.label:  # launched alone; the generation chain labels it itself
            family = self.ctx.inputs.get("family")
            self.node.label = f"{family.value} training job" if family is not None else "training job"

    def _resume_from(self, node, why: str, facts: dict) -> ProcessHandlerReport:
        folder = remote_folder_of(node)  # a job whose worker was killed after its upload may lack remote_folder
        self.ctx.inputs.parent_folder = folder
        where = folder.get_remote_path()
        return self.handled(node, f"{why} ({_where(facts)}): restarting from its checkpoints in {where}")

    @process_handler(priority=600, exit_codes=TrainingCalculation.exit_codes.ERROR_INTERRUPTED)
    def handle_interrupted(self, node):
        """Stopped at the walltime or on a signal, after writing its checkpoint: resume."""
        facts = _progress(node)  # exact after a stop: the command logs the step it stopped at
        if facts["done"] <= self.ctx.last_done:
            what = f"stopped without a step more than the job before it ({_where(facts)}): giving up"
            return self.handled(node, what, self.exit_codes.ERROR_NO_PROGRESS.format(job=f"<{node.pk}>"))
        self.ctx.last_done = facts["done"]
        return self._resume_from(node, "was stopped", facts)

    @process_handler(priority=500, exit_codes=_KILLED)
    def handle_killed(self, node):
        """Killed without a status: resume from the checkpoints in its remote folder, if there are any."""
        facts = _progress(node)
        if self._has_checkpoints(node):
            self.ctx.last_done = facts["done"]
            return self._resume_from(node, "was killed", facts)
        if self.ctx.fresh_restarts >= 1:
            exit_code = self.exit_codes.ERROR_KILLED_WITHOUT_CHECKPOINT.format(job=f"<{node.pk}>")
            return self.handled(node, "was killed before any checkpoint, again: giving up", exit_code)
        self.ctx.fresh_restarts += 1
        return self.handled(node, f"was killed before any checkpoint ({_where(facts)}): starting it afresh once")

    @process_handler(
        priority=400,
        exit_codes=[
            TrainingCalculation.exit_codes.ERROR_INVALID_INPUT,
            TrainingCalculation.exit_codes.ERROR_TRAINING_DIVERGED,
        ],
    )
    def handle_not_retried(self, node):
        """Bad input and divergence come back the same on every try: stop with the same meaning."""
        message = (node.exit_message or "").split(": ", 1)[-1]
        label = "ERROR_INVALID_INPUT" if node.exit_status == 300 else "ERROR_TRAINING_DIVERGED"
        return self.handled(node, f"failed: {node.exit_message}", self.exit_codes[label].format(message=message))

    @staticmethod
    def _has_checkpoints(node) -> bool:
        try:
            names = remote_folder_of(node).listdir(CHECKPOINT_FOLDER)
        except Exception:  # noqa: BLE001 - no remote folder, unreachable computer, no checkpoint folder
            return False
        return any(name.startswith("group_") and name.endswith(".pt") for name in names)

    def results(self):
        node = self.ctx.children[self.ctx.iteration - 1]
        facts = _progress(node)
        resumed = facts["resumed"]
        note = f", resumed {len(resumed)} time(s)" if resumed else ""
        if "models" in node.outputs:
            self.report(f"training done after {self.ctx.iteration} job(s){note}: {len(node.outputs.models)} model(s)")
        return super().results()


def training_job_builder(
    train_inputs: dict, code, device, options=None, label: str = "training", description: str = ""
):
    """A ``physgen.train.base`` builder that trains ``train_inputs`` (training, family, target, seeds,
    settings, grid) as ``physgen.train.job`` CalcJobs with ``code`` on ``device``; ``options`` (a Dict or
    None) update :data:`DEFAULT_TRAINING_OPTIONS` (top-level keys replace). Used by every work chain
    that offers a ``training_code``."""
    builder = TrainingBaseWorkChain.get_builder()
    builder.train = AttributeDict(train_inputs)
    builder.train.code = code
    builder.train.device = device
    merged = dict(DEFAULT_TRAINING_OPTIONS)
    if options is not None:
        merged.update(options.get_dict())
    builder.train.metadata = {"options": merged}
    builder.metadata = {"call_link_label": label, "label": label, "description": description}
    return builder


def launch_training(workchain, train_inputs: dict, what: str, link: str, job_label: str, context_key: str):
    """Train ``train_inputs`` for a work chain that offers ``training_code``/``training_options``/``device``:
    as ``physgen.train.job`` CalcJobs under ``physgen.train.base`` on the code's computer when a
    ``training_code`` is given (returns the ``ToContext`` to wait for), else with the ``physgen.train``
    calcfunction as the step ``link`` (returns ``None``). Either way the node ends in
    ``workchain.ctx[context_key]``; :func:`trained_models` reads it back."""
    from aiida.engine import ToContext

    from ..calculations.functions import train
    from .orphans import run_calcfunction_step

    if "training_code" in workchain.inputs:
        computer = workchain.inputs.training_code.computer.label
        builder = training_job_builder(
            train_inputs,
            workchain.inputs.training_code,
            workchain.inputs.device,
            workchain.inputs.get("training_options"),
            label=job_label,
            description=f"train {what} as a job on {computer}",
        )
        node = workchain.submit(builder)
        workchain.report(f"submitted the training of {what} as {node.process_label}<{node.pk}> on {computer}")
        return ToContext(**{context_key: node})
    workchain.report(f"training {what}")
    _, node = run_calcfunction_step(
        workchain, train, link, f"train {what}", device=workchain.inputs.device, **train_inputs
    )
    workchain.ctx[context_key] = node
    return None


def trained_models(workchain, context_key: str, process: str, codes):
    """``(models, None)`` from the training node in ``workchain.ctx[context_key]`` (calcfunction or job), or
    ``(None, exit code)`` when it failed (:func:`~aiida_physgen.workflows.orphans.failed_step_exit_code`)."""
    from .orphans import failed_step_exit_code

    node = workchain.ctx[context_key]
    if not node.is_finished_ok:
        return None, failed_step_exit_code(workchain, node, process, codes)
    return {label: node.outputs.models[label] for label in node.outputs.models}, None

"""How every restart chain's process handler ends: it says what happened to the job, then goes on or stops.

It also holds the one handler every restart chain shares, :meth:`HandlerReports.handle_missing_outputs`: a
calculation that finished OK without a required output (``remote_folder`` after a daemon worker was killed,
see there) is restarted once, and the second time the chain stops with 440 ``ERROR_CALCULATION_OUTPUT_MISSING``
instead of AiiDA's bare 11 ("The process did not register a required output").
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import ExitCode, ProcessHandlerReport, process_handler

__all__ = ["HandlerReports", "missing_required_outputs", "remote_folder_of"]

#: restarts of a calculation that finished OK without a required output, before 440
MAX_MISSING_OUTPUT_RESTARTS = 1


def missing_required_outputs(workchain, node) -> list[str]:
    """The required outputs of ``workchain`` (a restart chain exposing its calculation's outputs) that ``node``,
    one of its calculations, does not have: what ``BaseRestartWorkChain.results`` would fail on with 11."""
    found = workchain.exposed_outputs(node, workchain.process_class)
    return sorted(name for name, port in workchain.spec().outputs.items() if port.required and name not in found)


def remote_folder_of(node) -> orm.RemoteData | None:
    """``node.outputs.remote_folder``; for a CalcJob that lost that output (see
    :meth:`HandlerReports.handle_missing_outputs`) a new, unstored ``RemoteData`` at its working directory
    (``node.get_remote_workdir()``, set during the upload); ``None`` when it has neither."""
    if "remote_folder" in node.outputs:
        return node.outputs.remote_folder
    workdir = node.get_remote_workdir() if isinstance(node, orm.CalcJobNode) else None
    if not workdir:
        return None
    return orm.RemoteData(computer=node.computer, remote_path=workdir)


class HandlerReports:
    """A mixin of ``BaseRestartWorkChain`` subclasses (the GPAW and training restart chains)."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.exit_code(
            440,
            "ERROR_CALCULATION_OUTPUT_MISSING",
            message="the calculation {job} finished OK without its required output(s) {outputs}, also after a restart",
        )

    def handled(self, node, what: str, exit_code: ExitCode | None = None) -> ProcessHandlerReport:
        """Report ``<process label><pk> <what>``; then restart with ``ctx.inputs`` (no ``exit_code``), or stop the
        chain with ``exit_code``."""
        self.report(f"{node.process_label}<{node.pk}> {what}")
        return ProcessHandlerReport(True) if exit_code is None else ProcessHandlerReport(True, exit_code)

    @process_handler(priority=1000)
    def handle_missing_outputs(self, node):
        """A calculation finished OK without a required output: restart it once, then stop with 440.

        Seen after a daemon worker was SIGKILLed (aiida-core 2.9): ``task_upload_job`` stores the CalcJob state
        ``UNSTASHING`` as soon as the upload is done, but the ``remote_folder`` it made is only registered on the
        process (``process.out``) and stored at the next state change, with the next checkpoint. A worker killed in
        between leaves a checkpoint from before the upload; the next worker re-runs the upload step, finds
        ``UNSTASHING`` ("already marked as UNSTASHING, skipping task_update_job" in the daemon log) and skips it, so
        ``remote_folder`` is never registered. The job then runs, is retrieved and parsed as usual, and the CalcJob
        finishes [0] (AiiDA keeps a parser's exit status 0 even when a required output is missing), but a chain
        exposing its outputs would end with 11. Its results are there, yet without ``remote_folder`` nothing can
        restart from it or clean it: run it again."""
        if not node.is_finished_ok:
            return None
        missing = missing_required_outputs(self, node)
        if not missing:
            return None
        outputs = ", ".join(missing)
        done = self.ctx.get("missing_output_restarts", 0)
        if done >= MAX_MISSING_OUTPUT_RESTARTS:
            exit_code = self.exit_codes.ERROR_CALCULATION_OUTPUT_MISSING.format(job=f"<{node.pk}>", outputs=outputs)
            what = f"finished OK without its required output(s) {outputs} again: giving up"
            return self.handled(node, what, exit_code)
        self.ctx.missing_output_restarts = done + 1
        node.base.caching.is_valid_cache = False  # a cached copy would lack the same output
        workdir = node.get_remote_workdir() if isinstance(node, orm.CalcJobNode) else None
        return self.handled(
            node,
            f"finished OK without its required output(s) {outputs} (working directory {workdir}; a daemon worker "
            "killed between its upload and its next checkpoint?): restarting it once with the same inputs",
        )

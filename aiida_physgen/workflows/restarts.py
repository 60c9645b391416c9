"""How every restart chain's process handler ends: it says what happened to the job, then goes on or stops."""

from __future__ import annotations

from aiida.engine import ExitCode, ProcessHandlerReport

__all__ = ["HandlerReports"]


class HandlerReports:
    """A mixin of ``BaseRestartWorkChain`` subclasses (the GPAW and training restart chains)."""

    def handled(self, node, what: str, exit_code: ExitCode | None = None) -> ProcessHandlerReport:
        """Report ``<process label><pk> <what>``; then restart with ``ctx.inputs`` (no ``exit_code``), or stop the
        chain with ``exit_code``."""
        self.report(f"{node.process_label}<{node.pk}> {what}")
        return ProcessHandlerReport(True) if exit_code is None else ProcessHandlerReport(True, exit_code)

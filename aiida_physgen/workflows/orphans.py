"""End calcfunction nodes orphaned by a dead daemon worker.

A calcfunction runs inside the step of the work chain that calls it. When the daemon worker dies
in the middle (killed, out of memory, machine rebooted), another worker continues the work chain
from its last checkpoint and runs the step again, but the first calcfunction node stays "Running"
for ever: nothing executes it any more, so ``verdi process kill`` (which asks the process to stop)
cannot end it either. A work chain step calls :func:`end_orphaned_calcfunctions` before it runs
its calcfunctions: any calcfunction this work chain called that is not terminated can only be such
an orphan, and is marked excepted with a message that says what happened.
"""

from __future__ import annotations

from aiida.orm import CalcFunctionNode
from plumpy.process_states import ProcessState

__all__ = [
    "end_orphaned_calcfunctions",
    "run_calcfunction_step",
    "how_it_ended",
    "failed_step_exit_code",
    "CalcfunctionSteps",
]

ORPHAN_MESSAGE = (
    "the daemon worker running this calcfunction died before it returned; {caller} ran the step again in a new process"
)


def end_orphaned_calcfunctions(workchain) -> list[int]:
    """Mark the non-terminated calcfunctions called by ``workchain`` as excepted; returns their PKs."""
    ended = []
    for node in workchain.node.called:
        if isinstance(node, CalcFunctionNode) and not node.is_terminated:
            node.set_process_state(ProcessState.EXCEPTED)
            node.set_exception(ORPHAN_MESSAGE.format(caller=f"{workchain.node.process_label}<{workchain.node.pk}>"))
            node.seal()
            ended.append(node.pk)
    if ended:
        workchain.report(f"calcfunction(s) {ended} were left running by a dead daemon worker: marked excepted")
    return ended


def run_calcfunction_step(workchain, function, link: str, description: str, **inputs):
    """Run ``function`` as the step ``link`` of ``workchain`` (call link label, label and description
    set), after ending any copy of an earlier attempt that a dead daemon worker left running.
    Returns ``(outputs, node)`` as ``run_get_node`` does."""
    end_orphaned_calcfunctions(workchain)
    return function.run_get_node(
        **inputs, metadata={"call_link_label": link, "label": link, "description": description}
    )


def how_it_ended(node) -> str:
    """``Process<pk> exit status N: message`` of a finished sub-process, for a parent's exit message."""
    return f"{node.process_label}<{node.pk}> exit status {node.exit_status}: {node.exit_message or ''}"


def failed_step_exit_code(workchain, node, process: str, codes):
    """The exit code of ``workchain`` for its failed step ``node``: the chain's own code of the same meaning
    when the step ended on one of ``codes`` (the calcfunctions' shared table), else
    ``ERROR_SUB_PROCESS_FAILED`` naming ``process`` and the step's exit status and message."""
    for label, code in codes.items():
        if node.exit_status == code.status and label in workchain.exit_codes:
            return workchain.exit_codes[label].format(message=(node.exit_message or "").split(": ", 1)[-1])
    return workchain.exit_codes.ERROR_SUB_PROCESS_FAILED.format(
        process=process,
        message=how_it_ended(node),
    )


class CalcfunctionSteps:
    """Work-chain mixin: run a calcfunction as a named step and map its failure onto the chain's exit codes
    (the chain declares the codes of :data:`~aiida_physgen.calculations.functions.EXIT_CODES` it can end on,
    and ``ERROR_SUB_PROCESS_FAILED`` with ``process`` and ``message``)."""

    def _failed(self, node, process: str):
        """Map a failed step onto this workchain's exit code of the same meaning."""
        from ..calculations.functions import EXIT_CODES

        return failed_step_exit_code(self, node, process, EXIT_CODES)

    def run_step(self, function, link: str, description: str, process: str, **inputs):
        """:func:`run_calcfunction_step`, then ``(outputs, None)`` when the step finished ok, else
        ``(None, exit code)`` (``process`` names the step in the message)."""
        outputs, node = run_calcfunction_step(self, function, link, description, **inputs)
        if not node.is_finished_ok:
            return None, self._failed(node, process)
        return outputs, None

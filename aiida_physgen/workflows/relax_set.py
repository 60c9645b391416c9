"""``physgen.relax_set``: relax a set of structures with any relaxation engine, throttled and reused.

    structures ──engine (GPAW | VASP | yours), one process each, at most ``max_concurrent_relaxations`` in flight──▶
        relaxed structures, output parameters (energy), DOS

Every place that relaxes more than one structure uses this chain: the screening's DFT stage, and through
it every domain's study. What it does for its caller:

* **one comparison**: the engine's set-level settings (GPAW: one box for all molecules) are computed once,
  for the whole set, and given to every relaxation, however the throttle batches them;
* **throttle**: at most ``max_concurrent_relaxations`` in flight; the chain submits up to the limit, waits
  until any one of them ends (:mod:`aiida_physgen.workflows.await_any`), tops up, and so on. The default
  follows the code's computer: its cores on a computer without a scheduler queue (localhost), 50 with one;
* **reuse**: a relaxation that finished OK before with the same content key (structure, engine, code,
  protocol, overrides, DOS; the extra ``physgen_relaxation_key``) is used instead of run again;
* **per-structure extras**: each relaxation process carries its key, and this chain's extra
  ``physgen_relaxations`` says which label went to which process, whether it was reused, and the limit.

The context holds only plain data and PKs, so the daemon can be stopped and restarted mid-run.
"""

from __future__ import annotations

import os

from aiida import orm
from aiida.engine import ToContext, WorkChain, while_

from ..engines import DEFAULT_ENGINE, get_engine
from ..ports import dynamic_inputs, dynamic_outputs, input_with_default, optional_input
from .await_any import ANY_PREFIX, AwaitAnyMixin, wait_for_any
from .relaxation_reuse import RELAXATION_KEY, finished_relaxation, relaxation_key

__all__ = [
    "RelaxSetWorkChain",
    "validate_relax_set_inputs",
    "check_relaxation_inputs",
    "default_concurrency",
    "SCHEDULED_CONCURRENCY",
    "RELAXATIONS_EXTRA",
]

#: the extra of this chain's node with the table of its relaxations
RELAXATIONS_EXTRA = "physgen_relaxations"
#: relaxations in flight by default on a computer whose scheduler queues jobs (SLURM, PBS, ...)
SCHEDULED_CONCURRENCY = 50


def default_concurrency(code: orm.AbstractCode | None) -> int:
    """How many relaxations may run at once by default.

    Each relaxation takes one core. On this machine (localhost: ``core.direct`` scheduler, local transport) as
    many as it has usable cores; on another machine without a queue (``core.direct`` over SSH) its
    ``default_mpiprocs_per_machine`` (its cores, as the user configured the computer), else 1; with a queueing
    scheduler (SLURM, PBS, ...) :data:`SCHEDULED_CONCURRENCY`: the queue, not this chain, shares the machines.
    """
    computer = getattr(code, "computer", None)
    if computer is None or (computer.scheduler_type == "core.direct" and computer.transport_type == "core.local"):
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    if computer.scheduler_type == "core.direct":
        return max(1, int(computer.get_default_mpiprocs_per_machine() or 1))
    return SCHEDULED_CONCURRENCY


def resolve_protocol(engine, inputs) -> str:
    """The protocol input, or the engine's own default (its YAML file's ``default_protocol``)."""
    return inputs["protocol"].value if "protocol" in inputs else engine.default_protocol()


def check_relaxation_inputs(inputs, periodic: bool | None, elements: list[str] | None) -> str | None:
    """Engine, code, protocol and overrides checked by the engine itself (a typo in an override fails here, at
    launch, naming the key) for structures of that periodicity and those elements, and the throttle's limit.
    The screening calls it at launch, before it has the structures, with its target's kind."""
    try:
        engine = get_engine(inputs["engine"].value if "engine" in inputs else DEFAULT_ENGINE, "structure")
        protocol = resolve_protocol(engine, inputs)
    except ValueError as error:
        return str(error)
    overrides = inputs["relax_overrides"].get_dict() if "relax_overrides" in inputs else None
    code = inputs.get("code") or engine.default_code()
    message = engine.validate(
        code, protocol, overrides, inputs["dos"].value if "dos" in inputs else True, periodic, elements
    )
    if message:
        return f"relax_{message}" if message.startswith("overrides") else message
    limit = inputs.get("max_concurrent_relaxations")
    if limit is not None and limit.value < 1:
        return f"max_concurrent_relaxations: got {limit.value}, expected a positive number of relaxations in flight"
    return None


def validate_relax_set_inputs(inputs, _ctx=None):
    """:func:`check_relaxation_inputs` for the structures given."""
    structures = dict(inputs.get("structures", {}))
    periodic = {bool(any(s.pbc)) for s in structures.values()}
    elements = sorted({kind.symbol for s in structures.values() for kind in s.kinds}) or None
    return check_relaxation_inputs(inputs, periodic.pop() if len(periodic) == 1 else None, elements)


class RelaxSetWorkChain(AwaitAnyMixin, WorkChain):
    """Relax every structure of a set with one engine: throttled, reused, one comparison."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        dynamic_inputs(spec, "structures", orm.StructureData, "The structures to relax, by label.")
        input_with_default(
            spec,
            "engine",
            orm.Str,
            DEFAULT_ENGINE,
            "Relaxation engine (an entry point of aiida_physgen.engines): gpaw, vasp or yours.",
        )
        optional_input(
            spec,
            "code",
            orm.AbstractCode,
            "Code of the engine; the engine's default code (GPAW: a Python on localhost) when absent.",
        )
        optional_input(
            spec, "protocol", orm.Str, "Protocol of the engine; its protocol file's default_protocol when absent."
        )
        optional_input(spec, "relax_overrides", orm.Dict, "Nested overrides merged into the engine's protocol inputs.")
        input_with_default(spec, "dos", orm.Bool, True, "Compute the DOS of every relaxation.")
        optional_input(
            spec,
            "max_concurrent_relaxations",
            orm.Int,
            "The most relaxations in flight at once (default: the computer's cores on localhost, "
            f"{SCHEDULED_CONCURRENCY} on a computer with a queueing scheduler).",
        )
        input_with_default(
            spec,
            "reuse_relaxations",
            orm.Bool,
            True,
            "Use a relaxation that finished OK before with the same content key instead of running it.",
        )
        spec.inputs.validator = validate_relax_set_inputs
        spec.outline(
            cls.setup,
            while_(cls.pending)(cls.submit_batch),
            cls.results,
        )
        dynamic_outputs(spec, "relaxed", orm.StructureData, "Relaxed structures.")
        dynamic_outputs(spec, "parameters", orm.Dict, "Output parameters of each relaxation (energy in eV).")
        dynamic_outputs(spec, "dos", orm.XyData, "DOS of each.", required=False)
        spec.exit_code(300, "ERROR_INVALID_INPUT", message="invalid input: {message}")
        spec.exit_code(402, "ERROR_ALL_RELAXATIONS_FAILED", message="every relaxation failed: {message}")

    def _engine(self):
        return get_engine(self.inputs.engine.value, "structure")

    def _code(self):
        return self.inputs.code if "code" in self.inputs else self._engine().default_code()

    def setup(self):
        """Fix the protocol, the set-level settings and the content keys; find what was relaxed before."""
        message = validate_relax_set_inputs(self.inputs)
        if message:
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
        if not self.inputs.structures:
            return self.exit_codes.ERROR_INVALID_INPUT.format(message="structures: expected at least one structure")
        engine, code = self._engine(), self._code()
        self.ctx.code_uuid = code.uuid
        self.ctx.protocol = resolve_protocol(engine, self.inputs)
        overrides = self.inputs.relax_overrides.get_dict() if "relax_overrides" in self.inputs else None
        structures = dict(self.inputs.structures)
        # settings the whole set shares (GPAW: one box for every molecule), fixed now for every batch that the
        # throttle submits: a batch alone would get a box of its own and energies that cannot be compared
        self.ctx.overrides = engine.shared_overrides(structures, self.ctx.protocol, overrides)
        self.ctx.limit = (
            self.inputs.max_concurrent_relaxations.value
            if "max_concurrent_relaxations" in self.inputs
            else default_concurrency(code)
        )
        self.ctx.relaxation_keys, self.ctx.pks, self.ctx.pending, self.ctx.submitted, self.ctx.running = (
            {},
            {},
            [],
            [],
            [],
        )
        self.ctx.refused = {}
        reused = []
        for label in sorted(structures):
            key = relaxation_key(
                structures[label], engine.name, code, self.ctx.protocol, self.ctx.overrides, self.inputs.dos.value
            )
            self.ctx.relaxation_keys[label] = key
            done = finished_relaxation(key) if self.inputs.reuse_relaxations.value else None
            if done is not None:
                self.ctx.pks[label] = done.pk
                reused.append(f"{label} <{done.pk}>")
            else:
                self.ctx.pending.append(label)
        if reused:
            self.report(f"reusing {len(reused)} finished relaxation(s): {', '.join(reused)}")
        self.report(
            f"{len(self.ctx.pending)} {engine.name} relaxation(s) to run, at most {self.ctx.limit} at once "
            f"(protocol {self.ctx.protocol!r})"
        )
        return None

    def pending(self):
        return bool(self.ctx.pending)

    def submit_batch(self):
        """Top up to the limit, then wait until any one in flight has ended (all of them once none waits)."""
        engine = self._engine()
        code = orm.load_code(self.ctx.code_uuid)
        running = [pk for pk in self.ctx.running if not orm.load_node(pk).is_terminated]
        for key in [key for key in self.ctx if key.startswith(ANY_PREFIX)]:  # the last wait's group
            del self.ctx[key]
        batch = self.ctx.pending[: max(self.ctx.limit - len(running), 0)]
        self.ctx.pending = self.ctx.pending[len(batch) :]
        structures = self.inputs.structures
        builders = engine.get_builders(
            code,
            {label: structures[label] for label in batch},
            self.ctx.protocol,
            self.ctx.overrides,
            self.inputs.dos.value,
        )
        for label, builder in builders.items():
            if isinstance(builder, str):  # e.g. atoms too close for the DFT code: skip, say why
                self.report(f"{label} not relaxed: {builder}")
                self.ctx.refused[label] = builder
                continue
            builder.metadata.call_link_label = f"relax_{label}"
            builder.metadata.label = f"relax {label}"
            builder.metadata.description = f"{engine.name} relaxation of {label}"
            node = self.submit(builder)
            node.base.extras.set(RELAXATION_KEY, self.ctx.relaxation_keys[label])
            self.ctx.pks[label] = node.pk
            self.ctx.submitted.append(node.pk)
            running.append(node.pk)
        self.report(
            f"{len(running)} {engine.name} relaxation(s) in flight (at most {self.ctx.limit}), "
            f"{len(self.ctx.pending)} waiting"
        )
        self.ctx.running = running
        if not running:
            return None
        if self.ctx.pending:
            return ToContext(**wait_for_any(orm.load_node(pk) for pk in running))
        return ToContext(**{f"running_{pk}": orm.load_node(pk) for pk in running})

    def results(self):
        engine = self._engine()
        table, relaxed, parameters, dos = {}, {}, {}, {}
        for label in sorted(self.ctx.relaxation_keys):
            if label in self.ctx.refused:
                table[label] = {"pk": None, "reused": False, "state": "refused", "message": self.ctx.refused[label]}
                continue
            node = orm.load_node(self.ctx.pks[label])
            reused = node.pk not in self.ctx.submitted
            if not node.is_finished_ok:
                self.report(f"{label}: {node.process_label}<{node.pk}> failed with exit status {node.exit_status}")
                table[label] = {"pk": node.pk, "reused": reused, "state": "failed", "exit_status": node.exit_status}
                continue
            result = engine.get_result(node)
            relaxed[label], parameters[label] = result.structure, result.parameters
            if result.dos is not None:
                dos[label] = result.dos
            table[label] = {"pk": node.pk, "reused": reused, "state": "finished", "energy": result.energy}
        n_reused = sum(row["reused"] for row in table.values())
        # bookkeeping of this run, not data derived from the inputs: an extra of the process node, queryable
        self.node.base.extras.set(
            RELAXATIONS_EXTRA,
            {
                "limit": self.ctx.limit,
                "protocol": self.ctx.protocol,
                "n_reused": n_reused,
                "n_run": len(self.ctx.submitted),
                "relaxations": table,
            },
        )
        if not relaxed:
            return self.exit_codes.ERROR_ALL_RELAXATIONS_FAILED.format(message=f"none of {len(table)} finished OK")
        self.out("relaxed", relaxed)
        self.out("parameters", parameters)
        if dos:
            self.out("dos", dos)
        self.report(
            f"{len(relaxed)} of {len(table)} relaxations finished ({len(self.ctx.submitted)} run here, "
            f"{n_reused} reused)"
        )
        return None

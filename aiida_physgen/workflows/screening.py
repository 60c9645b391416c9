"""``physgen.screening``: the whole pipeline, from known structures to DFT-verified unique minima.

    training set ──GenerationWorkChain──▶ representatives ──relax_cheap──▶ cheap basins ──select_for_dft──▶
    one per sound basin (≤ dft_budget) ──relax (+DOS), concurrently──▶ relaxed ──deduplicate_minima──▶
    unique minima + report

With ``funnel=False`` the cheap tier is skipped and every representative goes to DFT.

At most ``max_concurrent_relaxations`` relaxations are in flight at once (a screening of 500 structures
does not put 500 jobs in a scheduler's queue): the chain submits up to the limit, waits until any one of
them ends (:mod:`aiida_physgen.workflows.await_any`), tops up, and so on. With ``reuse_relaxations`` (the default) a relaxation that finished OK
before, in any screening, with the same structure content, engine, code and settings is used again instead
of submitted (:mod:`aiida_physgen.workflows.relaxation_reuse`), so a screening launched again does only
what is left.

Both tiers are engines chosen by name (entry-point group ``aiida_physgen.engines``): ``cheap_engine``
relaxes the whole set in one process, ``engine`` (GPAW today) one process per structure; the workflow
only asks them for processes and reads results back (see :mod:`aiida_physgen.engines`). The context
holds only nodes and plain data, so the daemon can be stopped and restarted mid-run.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, if_, while_

from ..calculations.functions import PROVENANCE_EXTRAS, deduplicate_minima
from ..data.structure_set import StructureSet
from ..engines import get_engine
from .await_any import ANY_PREFIX, AwaitAnyMixin, wait_for_any
from .generation import GenerationWorkChain, validate_generation_inputs
from .orphans import run_calcfunction_step
from .relaxation_reuse import RELAXATION_KEY, finished_relaxation, relaxation_key

__all__ = ["ScreeningWorkChain"]


def _periodic(inputs) -> bool | None:
    """Whether the generated structures will be periodic (None when the target does not say)."""
    try:
        target = inputs["generation"]["target"].get_dict()
    except (KeyError, AttributeError):
        return None
    pbc = target.get("pbc")
    if pbc is None:
        return None
    return bool(any(pbc)) if isinstance(pbc, (list, tuple)) else bool(pbc)


def _elements(inputs) -> list[str] | None:
    """The elements of the generated structures (from the target's composition), when the target says."""
    from ..ml.composition import parse_composition

    try:
        composition = inputs["generation"]["target"].get_dict().get("composition")
        return sorted(set(parse_composition(composition))) if composition else None
    except (KeyError, AttributeError, ValueError, TypeError):
        return None


def validate_screening_inputs(inputs, _ctx=None):
    """The relaxation engine builds one complete input from a dummy structure with the protocol and the
    ``relax_overrides``, and its own validation speaks: a typo like ``ecutt`` fails here, at launch,
    not after the training, generation and selection."""
    try:
        engine = get_engine(inputs["engine"].value if "engine" in inputs else "gpaw", "structure")
    except ValueError as error:
        return str(error)
    overrides = inputs["relax_overrides"].get_dict() if "relax_overrides" in inputs else None
    message = engine.validate(
        inputs.get("code"), inputs["protocol"].value if "protocol" in inputs else "fast", overrides,
        inputs["dos"].value if "dos" in inputs else True, _periodic(inputs), _elements(inputs),
    )
    if message and message.startswith("overrides"):
        message = f"relax_{message}"  # the port's name in this work chain
    if not message and "max_concurrent_relaxations" in inputs and inputs["max_concurrent_relaxations"].value < 1:
        message = (f"max_concurrent_relaxations: got {inputs['max_concurrent_relaxations'].value}, "
                   "expected a positive number of relaxations in flight")
    return message or _check_funnel(inputs)


def _check_funnel(inputs) -> str | None:
    """With the funnel: the budget, and the cheap engine's own check of its settings for the target's kind."""
    if "funnel" in inputs and not inputs["funnel"].value:
        return None
    if "dft_budget" in inputs and inputs["dft_budget"].value < 1:
        return f"dft_budget: got {inputs['dft_budget'].value}, expected a positive number of DFT relaxations"
    try:
        engine = get_engine(inputs["cheap_engine"].value if "cheap_engine" in inputs else "cheap", "batch",
                            field="cheap_engine")
    except ValueError as error:
        return str(error)
    message = engine.validate(inputs["cheap_settings"].get_dict() if "cheap_settings" in inputs else None,
                              _periodic(inputs))
    if message is None:
        return None
    if "package" in message:  # the funnel itself cannot run here
        return f"funnel: {message.split(': ', 1)[-1]}; or set funnel=False"
    message = message.replace("'settings.", "'cheap_settings.")  # the port's name in this work chain
    return f"cheap_{message}" if message.startswith("settings") else message


class ScreeningWorkChain(AwaitAnyMixin, WorkChain):
    """Train → generate → select → relax (+ DOS) → de-duplicate basins → report."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(GenerationWorkChain, namespace="generation",
                           namespace_options={"help": "Inputs of the generation chain (training → selection)."})
        spec.input("engine", valid_type=orm.Str, default=lambda: orm.Str("gpaw"), help="Relaxation engine.")
        spec.input("code", valid_type=orm.AbstractCode, help="Code of the relaxation engine.")
        spec.input("protocol", valid_type=orm.Str, default=lambda: orm.Str("fast"),
                   help="Protocol of the relaxation engine: fast, balanced or stringent.")
        spec.input("relax_overrides", valid_type=orm.Dict, required=False,
                   help="Nested overrides merged into the engine's protocol inputs.")
        spec.input("dos", valid_type=orm.Bool, default=lambda: orm.Bool(True), help="Compute the DOS of every relaxation.")
        spec.input("funnel", valid_type=orm.Bool, default=lambda: orm.Bool(True),
                   help="Relax the representatives with the cheap tier (GFN2-xTB / CHGNet) first and send DFT one "
                        "structure per distinct sound basin, up to dft_budget (on by default; False: every "
                        "representative goes straight to DFT).")
        spec.input("dft_budget", valid_type=orm.Int, default=lambda: orm.Int(5),
                   help="With the funnel: the most DFT relaxations to spend.")
        spec.input("cheap_engine", valid_type=orm.Str, default=lambda: orm.Str("cheap"),
                   help="With the funnel: the batch relaxation engine of the cheap tier.")
        spec.input("cheap_settings", valid_type=orm.Dict, required=False,
                   help="With the funnel: settings of the cheap relaxation (method, fmax, max_steps, ...).")
        spec.input("max_concurrent_relaxations", valid_type=orm.Int, default=lambda: orm.Int(50),
                   help="The most relaxations in flight at once; the rest wait and are submitted as others finish.")
        spec.input("reuse_relaxations", valid_type=orm.Bool, default=lambda: orm.Bool(True),
                   help="Use a relaxation that finished OK before (same structure content, engine, code and "
                        "settings; the extra 'physgen_relaxation_key') instead of running it again.")
        spec.input("group_label", valid_type=orm.Str, required=False,
                   help="Group that collects the unique minima and the report (default physgen/screening/<pk>).")
        spec.inputs.validator = validate_screening_inputs
        spec.outline(
            cls.check_inputs,
            cls.generate,
            cls.inspect_generation,
            if_(cls.use_funnel)(
                cls.relax_cheap,
                cls.select_for_dft,
            ),
            cls.prepare_relaxations,
            while_(cls.relaxations_pending)(
                cls.submit_relaxations,
            ),
            cls.inspect_relaxations,
            cls.deduplicate,
            cls.results,
        )
        spec.expose_outputs(GenerationWorkChain, namespace="generation",
                            namespace_options={"help": "Outputs of the generation chain: models, candidates, selection."},
                            include=("models", "representatives", "structures", "selection", "pca_plot", "candidates"))
        spec.output_namespace("minima", valid_type=orm.StructureData, dynamic=True, help="One structure per basin.")
        spec.output_namespace("dos", valid_type=orm.XyData, dynamic=True, help="DOS of each minimum.")
        spec.output("energies", valid_type=orm.Dict, help="Total energy (eV) of each minimum, by name.")
        spec.output("report", valid_type=orm.Dict, help="One row per basin: energies, key, count, flags.")
        spec.output("cheap_relaxed", valid_type=StructureSet, required=False,
                    help="With the funnel: the representatives after the cheap relaxation, with cheap energies.")
        spec.output("funnel", valid_type=orm.Dict, required=False,
                    help="With the funnel: the stage counts and the cheap basins.")
        spec.exit_code(300, "ERROR_INVALID_INPUT", message="invalid input: {message}")
        spec.exit_code(401, "ERROR_GENERATION_FAILED", message="the generation chain failed: {message}")
        spec.exit_code(402, "ERROR_ALL_RELAXATIONS_FAILED", message="every relaxation failed")
        spec.exit_code(403, "ERROR_DEDUPLICATION_FAILED", message="basin de-duplication failed: {message}")
        spec.exit_code(404, "ERROR_CHEAP_TIER_FAILED", message="the cheap relaxation failed: {message}")
        spec.exit_code(405, "ERROR_NO_SOUND_BASIN", message="the cheap tier found no sound basin: {message}")

    def check_inputs(self):
        """The launch checks again, on the inputs this chain really got (an outer chain may have left ports
        out of its launch check); a label and description for the node when it has none."""
        message = validate_screening_inputs(self.inputs) or validate_generation_inputs(self.inputs.generation)
        if message:
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
        generation = self.inputs.generation
        composition = generation.target.get_dict().get("composition", "")
        if not self.node.label:
            self.node.label = f"screening {composition}".strip()
        if not self.node.description:
            self.node.description = (
                f"{generation.family.value if 'family' in generation else 'logan'} generation on "
                f"{len(generation.training)} structures, {self.inputs.engine.value} relaxations "
                f"({self.inputs.protocol.value} protocol), unique minima"
            )
        return None

    def generate(self):
        inputs = AttributeDict(self.exposed_inputs(GenerationWorkChain, namespace="generation"))
        inputs.metadata = {"call_link_label": "generation", "label": "generation",
                           "description": "train → generate → select representatives"}
        try:
            node = self.submit(GenerationWorkChain, **inputs)
        except ValueError as error:  # the chain's own launch check; check_inputs ran the same one
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=str(error))
        return ToContext(generation=node)

    def inspect_generation(self):
        node = self.ctx.generation
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_GENERATION_FAILED.format(
                message=f"{node.process_label}<{node.pk}> exit status {node.exit_status}: {node.exit_message}"
            )
        self.out_many(self.exposed_outputs(node, GenerationWorkChain, namespace="generation"))

    def use_funnel(self):
        return self.inputs.funnel.value

    def relax_cheap(self):
        """Relax every representative with the cheap engine, in one process for the whole set."""
        engine = get_engine(self.inputs.cheap_engine.value, "batch", field="cheap_engine")
        representatives = self.ctx.generation.outputs.representatives
        process, inputs = engine.get_process(representatives, self.inputs.get("cheap_settings"))
        outputs, node = run_calcfunction_step(self, process, "relax_cheap",
                                              f"{engine.name} relaxation of {len(representatives)} representatives",
                                              **inputs)
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_CHEAP_TIER_FAILED.format(
                message=f"{node.process_label}<{node.pk}> exit status {node.exit_status}: {node.exit_message}")
        self.ctx.cheap_relaxed = engine.get_result(node)
        self.out("cheap_relaxed", self.ctx.cheap_relaxed)
        return None

    def select_for_dft(self):
        """One structure per distinct sound cheap basin, lowest cheap energy first, up to the DFT budget."""
        from ..calculations.funnel import select_for_dft

        outputs, node = run_calcfunction_step(
            self, select_for_dft, "select_for_dft", f"one structure per sound cheap basin, at most {self.inputs.dft_budget.value}",
            relaxed=self.ctx.cheap_relaxed, budget=self.inputs.dft_budget,
            candidates=self.ctx.generation.outputs.candidates,
        )
        if not node.is_finished_ok:
            if node.exit_status == 340:
                return self.exit_codes.ERROR_NO_SOUND_BASIN.format(message=(node.exit_message or "").split(": ", 1)[-1])
            return self.exit_codes.ERROR_CHEAP_TIER_FAILED.format(
                message=f"{node.process_label}<{node.pk}> exit status {node.exit_status}: {node.exit_message}")
        self.ctx.dft_structures = dict(outputs["structures"])
        self.ctx.funnel = outputs["funnel"]
        self.out("funnel", outputs["funnel"])
        return None

    def _dft_structures(self) -> dict:
        """The structures DFT relaxes: the funnel's picks, or every representative."""
        if "dft_structures" in self.ctx:
            return dict(self.ctx.dft_structures)
        structures = self.ctx.generation.outputs.structures
        return {label: structures[label] for label in structures}

    def _relaxation_settings(self) -> tuple:
        engine = get_engine(self.inputs.engine.value, "structure")
        overrides = self.inputs.relax_overrides.get_dict() if "relax_overrides" in self.inputs else None
        return engine, overrides

    def prepare_relaxations(self):
        """The structures to relax, in label order; those relaxed before (same key, finished OK) are reused."""
        engine, overrides = self._relaxation_settings()
        structures = self._dft_structures()
        # settings the whole set shares (GPAW: one box for every molecule), fixed now for every batch that the
        # throttle submits: a batch alone would get a box of its own and energies that cannot be compared
        overrides = engine.shared_overrides(structures, self.inputs.protocol.value, overrides)
        self.ctx.shared_overrides = overrides
        self.ctx.relaxation_keys = {}
        self.ctx.relaxation_pks = {}  # label -> pk of its relaxation process, submitted or reused
        self.ctx.pending = []
        self.ctx.submitted = []  # pks this chain submitted, in submission order
        reused = []
        for label in sorted(structures):
            key = relaxation_key(structures[label], engine.name, self.inputs.code, self.inputs.protocol.value,
                                 overrides, self.inputs.dos.value)
            self.ctx.relaxation_keys[label] = key
            done = finished_relaxation(key) if self.inputs.reuse_relaxations.value else None
            if done is not None:
                self.ctx.relaxation_pks[label] = done.pk
                reused.append(f"{label} <{done.pk}>")
            else:
                self.ctx.pending.append(label)
        if reused:
            self.report(f"reusing {len(reused)} finished relaxation(s): {', '.join(reused)}")

    def relaxations_pending(self):
        return bool(self.ctx.pending)

    def submit_relaxations(self):
        """Top up to ``max_concurrent_relaxations`` in flight, then wait until any one of them has ended (for
        all of them once nothing is left to submit)."""
        engine, overrides = self._relaxation_settings()
        overrides = self.ctx.get("shared_overrides", overrides)  # (absent from a chain checkpointed by an earlier version)
        limit = self.inputs.max_concurrent_relaxations.value
        # only the ones running at the last step can still be running: no reload of every submitted node
        running = [pk for pk in self.ctx.get("running", []) if not orm.load_node(pk).is_terminated]
        for key in [key for key in self.ctx if key.startswith(ANY_PREFIX)]:  # the last wait's group
            del self.ctx[key]
        batch = self.ctx.pending[:max(limit - len(running), 0)]
        self.ctx.pending = self.ctx.pending[len(batch):]
        structures = self._dft_structures()
        builders = engine.get_builders(self.inputs.code, {label: structures[label] for label in batch},
                                       self.inputs.protocol.value, overrides, self.inputs.dos.value)
        submitted = []
        for label, builder in builders.items():
            if isinstance(builder, str):  # e.g. atoms too close for the DFT code: skip, say why
                self.report(f"{label} not relaxed: {builder}")
                continue
            builder.metadata.call_link_label = f"relax_{label}"
            builder.metadata.label = f"relax {label}"
            builder.metadata.description = f"{engine.name} relaxation of representative {label}"
            node = self.submit(builder)
            node.base.extras.set(RELAXATION_KEY, self.ctx.relaxation_keys[label])
            self.ctx.relaxation_pks[label] = node.pk
            self.ctx.submitted.append(node.pk)
            running.append(node.pk)
            submitted.append(label)
        if submitted:
            self.report(f"submitted {len(submitted)} {engine.name} relaxation(s): {len(running)} in flight (at most "
                        f"{limit}), {len(self.ctx.pending)} waiting")
        self.ctx.running = running
        if not running:
            return None
        if self.ctx.pending:
            return ToContext(**wait_for_any(orm.load_node(pk) for pk in running))
        return ToContext(**{f"running_{pk}": orm.load_node(pk) for pk in running})

    def inspect_relaxations(self):
        finished = {}
        for label in sorted(self.ctx.relaxation_pks):
            node = orm.load_node(self.ctx.relaxation_pks[label])
            if node.is_finished_ok:
                finished[label] = node.pk
            else:
                self.report(f"{label}: {node.process_label}<{node.pk}> failed with exit status {node.exit_status}")
        if not finished:
            return self.exit_codes.ERROR_ALL_RELAXATIONS_FAILED
        self.ctx.finished = finished
        n_reused = len(self.ctx.relaxation_pks) - len(self.ctx.submitted)
        self.report(f"{len(finished)} of {len(self.ctx.relaxation_pks)} relaxations finished "
                    f"({len(self.ctx.submitted)} run here, {n_reused} reused)")

    def deduplicate(self):
        engine = get_engine(self.inputs.engine.value, "structure")
        inputs = {}
        for label, pk in self.ctx.finished.items():
            result = engine.get_result(orm.load_node(pk))
            inputs[f"structure_{label}"] = result.structure
            inputs[f"parameters_{label}"] = result.parameters
        if "funnel" in self.ctx:
            inputs["funnel"] = self.ctx.funnel
        outputs, node = run_calcfunction_step(
            self, deduplicate_minima, "deduplicate", "group the relaxed structures into basins, keep the lowest of each",
            **inputs,
        )
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_DEDUPLICATION_FAILED.format(message=node.exit_message or "")
        self.ctx.minima = outputs["minima"]
        self.ctx.energies = outputs["energies"]
        self.ctx.report = outputs["report"]

    def _add_provenance_extras(self, report) -> None:
        """Each minimum gets the provenance extras of the representative it was relaxed from (model UUID,
        seed, family, candidate index) and the PK of its relaxation, so one query answers "which model made it"."""
        structures = self._dft_structures()
        for row in report["rows"]:
            representative = structures[row["representative"]]
            extras = {key: representative.base.extras.get(key) for key in (*PROVENANCE_EXTRAS, "cheap_energy", "cheap_key")
                      if key in representative.base.extras.keys()}
            extras["representative_uuid"] = representative.uuid
            extras["relaxation_pk"] = self.ctx.finished[row["representative"]]
            self.ctx.minima[row["name"]].base.extras.set_many(extras)

    def results(self):
        engine = get_engine(self.inputs.engine.value, "structure")
        report = self.ctx.report
        self.out("report", report)
        self.out("energies", self.ctx.energies)
        self._add_provenance_extras(report)
        self.out("minima", dict(self.ctx.minima))
        dos = {}
        for row in report["rows"]:
            result = engine.get_result(orm.load_node(self.ctx.finished[row["representative"]]))
            if result.dos is not None:
                dos[row["name"]] = result.dos
        if dos:
            self.out("dos", dos)
        label = self.inputs.group_label.value if "group_label" in self.inputs else f"physgen/screening/{self.node.pk}"
        group, _ = orm.Group.collection.get_or_create(label)
        group.add_nodes([report, *self.ctx.minima.values()])
        self.report(
            f"{report['n_unique_minima']} unique minima among {report['n_basins']} basins from "
            f"{report['n_relaxed']} relaxations; results in group {label!r}"
        )

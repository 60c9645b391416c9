"""``physgen.screening``: the one pipeline every family's candidates go through.

    training set ──train (any family; calcfunction or job)──▶ models ──generate (named conditions)──▶ sets
        ──validity (by kind of structure)──▶ valid candidates ──select (descriptors → PCA → k-means)──▶
        representatives ──cheap tier (a batch engine: xTB/CHGNet, EDNN, LAMMPS, yours)──▶ cheap basins
        ──funnel: one per distinct sound basin, up to dft_budget──▶ relax a set (physgen.relax_set: GPAW |
        VASP | yours; throttled, reused) ──▶ basins ──assessors──▶ one report

With ``funnel=False`` the cheap tier is skipped and every representative goes to DFT.

What is specific to a domain enters as a plug-in found by entry point: the family
(``aiida_physgen.families``), the validity check (``aiida_physgen.validity``), the engines of both tiers
(``aiida_physgen.engines``) and the assessors (``aiida_physgen.assessors``). A study is a protocol
(``workflows/protocols/screening/<domain>.yaml``, :meth:`ScreeningWorkChain.get_builder_from_protocol`)
plus a script; a domain that needs a step before generation (the EDNN labeller, a melt-quench MD) wraps
this chain with ``expose_inputs``. The context holds only nodes and plain data, so the daemon can be
stopped and restarted mid-run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, if_

from ..calculations.functions import PROVENANCE_EXTRAS, deduplicate_minima
from ..data.generator_model import GeneratorModel
from ..data.structure_set import StructureSet
from ..engines import DEFAULT_CHEAP_ENGINE, get_engine
from ..ports import (
    dynamic_inputs,
    dynamic_outputs,
    expose_inputs_under,
    expose_outputs_under,
    input_with_default,
    optional_input,
    optional_output,
)
from .generation import GenerationWorkChain, named_conditions, validate_generation_inputs
from .orphans import how_it_ended, run_calcfunction_step
from .protocols import ProtocolMixin
from .relax_set import RelaxSetWorkChain, check_relaxation_inputs, validate_relax_set_inputs

__all__ = ["ScreeningWorkChain", "validate_screening_inputs"]


def _kind(inputs) -> tuple[bool | None, list[str] | None, list[str]]:
    """``(periodic, elements, notes)`` of the structures the screening will relax, as far as the launch can
    know them: from the target (its ``pbc`` and ``composition``), else from the training set and the
    conditions' ``elements``; ``notes`` say what could not be known (a check that cannot apply says so)."""
    from ..ml.composition import parse_composition

    generation = inputs.get("generation", {})
    target = generation["target"].get_dict() if "target" in generation else {}
    training = generation.get("training")
    notes = []
    pbc = target.get("pbc")
    if pbc is not None:
        periodic = bool(any(pbc)) if isinstance(pbc, (list, tuple)) else bool(pbc)
    elif training is not None and training.pbc is not None:
        periodic = bool(any(training.pbc))
    else:
        periodic = None
        notes.append(
            "the periodicity of the structures is not known at launch: the engine's settings are checked "
            "for molecules and crystals both"
        )
    elements = None
    try:
        if target.get("composition"):
            elements = sorted(set(parse_composition(target["composition"])))
        elif training is not None:
            extra, all_named = set(), True
            for condition in named_conditions(generation).values():
                named = condition.get("elements") if isinstance(condition, Mapping) else None
                if isinstance(named, (list, tuple)):  # a list of symbols, or of lists of symbols (crystal triples)
                    extra |= {str(e) for item in named for e in ([item] if isinstance(item, str) else item)}
                else:
                    all_named = False
            # when every condition names its elements, the training set's other elements are never generated
            elements = sorted(extra if all_named and extra else set(training.elements) | extra)
    except (ValueError, TypeError):
        elements = None
    if elements is None:
        notes.append(
            "the elements of the structures are not known at launch: per-element settings (POTCARs) are "
            "checked when the relaxations are built"
        )
    return periodic, elements, notes


def validate_screening_inputs(inputs, _ctx=None):
    """The relaxation engine builds one complete input from a dummy structure of the kind the screening will
    relax, with the protocol and ``relax_overrides``, and its own validation speaks: a typo like ``ecutt``
    fails here, at launch, not after the training, generation and selection. Then the cheap tier, the
    assessors and their reference sets."""
    periodic, elements, _ = _kind(inputs)
    message = check_relaxation_inputs(inputs, periodic, elements)
    if not message and periodic is False and "dft_references" in inputs and inputs["dft_references"].value:
        message = "dft_references: elemental references are bulk crystals; expected periodic structures, got molecules"
    return message or _check_funnel(inputs, periodic) or _check_assessors(inputs) or _check_charges(inputs)


def _check_charges(inputs) -> str | None:
    """Every total ``charge`` the screening passes on (validity, cheap tier, DFT overrides, assessors) leaves the
    target at least one electron and takes at most as many as it has: with a target composition only."""
    from ase.data import atomic_numbers

    from ..ml.composition import parse_composition

    generation = inputs.get("generation", {})
    composition = generation["target"].get_dict().get("composition") if "target" in generation else None
    try:
        symbols = parse_composition(composition) if composition else None
        electrons = sum(atomic_numbers[symbol] for symbol in symbols) if symbols else None
    except (KeyError, TypeError, ValueError):
        return None  # an unknown formula is the generation's to name
    if not electrons:
        return None
    places = {
        "generation.validity_settings": generation.get("validity_settings"),
        "cheap_settings": inputs.get("cheap_settings"),
        "relax_overrides": inputs.get("relax_overrides"),
    }
    if "assessors" in inputs:
        places.update({f"assessors.{name}": values for name, values in inputs["assessors"].get_dict().items()})
    found = []
    for where, node in places.items():
        _find_charges(node.get_dict() if isinstance(node, orm.Dict) else node, where, found)
    for where, charge in found:
        if not -electrons < charge < electrons:
            return (
                f"{where}: got {charge}, but {composition} has {electrons} electrons; expected a total charge "
                f"between {1 - electrons} and {electrons - 1}"
            )
    return None


def _find_charges(values, where: str, found: list) -> None:
    """Every numeric ``charge`` in nested settings, with its dotted path (``relax_overrides.gpaw.parameters.charge``)"""
    if not isinstance(values, Mapping):
        return
    for key, value in values.items():
        if key == "charge" and isinstance(value, (int, float)) and not isinstance(value, bool):
            found.append((f"{where}.{key}", value))
        else:
            _find_charges(value, f"{where}.{key}", found)


def _check_funnel(inputs, periodic) -> str | None:
    """With the funnel: the budget, and the cheap engine's own check of its settings for the target's kind."""
    if "funnel" in inputs and not inputs["funnel"].value:
        return None
    if "dft_budget" in inputs and inputs["dft_budget"].value < 1:
        return f"dft_budget: got {inputs['dft_budget'].value}, expected a positive number of DFT relaxations"
    try:
        engine = get_engine(
            inputs["cheap_engine"].value if "cheap_engine" in inputs else DEFAULT_CHEAP_ENGINE,
            "batch",
            field="cheap_engine",
        )
    except ValueError as error:
        return str(error)
    if engine.needs_model and "cheap_model" not in inputs:
        return f"cheap_model: the {engine.name} cheap engine needs a trained model (a physgen.generator_model)"
    message = engine.validate(inputs["cheap_settings"].get_dict() if "cheap_settings" in inputs else None, periodic)
    if message is None:
        return None
    if "package" in message:  # the funnel itself cannot run here
        return f"funnel: {message.split(': ', 1)[-1]}; or set funnel=False"
    message = message.replace("'settings.", "'cheap_settings.")  # the port's name in this work chain
    return f"cheap_{message}" if message.startswith("settings") else message


def _check_assessors(inputs) -> str | None:
    """Every assessor exists, its settings are right, and the reference sets it reads are given."""
    from ..screening.assessors import get_assessor

    if "assessors" not in inputs:
        return None
    references = set(inputs.get("references", {}))
    for name, settings in inputs["assessors"].get_dict().items():
        try:
            assessor = get_assessor(name, f"assessors.{name}")
            assessor.settings(settings or None)
        except ValueError as error:
            return str(error)
        message = assessor.check_references(references)
        if message:
            return message
    return None


class ScreeningWorkChain(ProtocolMixin, WorkChain):
    """Train → generate (named conditions) → validity → select → cheap tier → funnel → relax a set (+ DOS) →
    basins → assessors → report."""

    _protocol_directory = "screening"

    @classmethod
    def define(cls, spec):
        super().define(spec)
        expose_inputs_under(
            spec, GenerationWorkChain, "generation", "Inputs of the generation chain (training → selection)."
        )
        spec.expose_inputs(RelaxSetWorkChain, exclude=("structures",))
        input_with_default(
            spec,
            "funnel",
            orm.Bool,
            True,
            "Relax the representatives with the cheap tier first and send DFT one structure per "
            "distinct sound basin, up to dft_budget (False: every representative goes to DFT).",
        )
        input_with_default(spec, "dft_budget", orm.Int, 5, "With the funnel: the most DFT relaxations to spend.")
        input_with_default(
            spec,
            "dft_references",
            orm.Bool,
            False,
            "Crystals: relax one elemental reference per element of the DFT structures in the same relaxation set "
            "(same engine, protocol, overrides and spin rule; labels ref_<X>), so the assessors get DFT formation "
            "energies. The references are not minima: they are left out of the basins and the report.",
        )
        input_with_default(
            spec,
            "cheap_engine",
            orm.Str,
            DEFAULT_CHEAP_ENGINE,
            "With the funnel: the batch engine of the cheap tier (cheap = GFN2-xTB/CHGNet, ednn, "
            "lammps, or a plug-in's).",
        )
        optional_input(
            spec,
            "cheap_settings",
            orm.Dict,
            "With the funnel: settings of the cheap engine (method, fmax, max_steps, ...).",
        )
        optional_input(
            spec,
            "cheap_model",
            GeneratorModel,
            "With the funnel: the trained model a cheap engine needs (the EDNN surrogate).",
        )
        optional_input(
            spec,
            "assessors",
            orm.Dict,
            "Assessors to run on the result, by name, with their settings, e.g. "
            "{'formation': {}, 'label_consistency': {'reference': True}} (entry points of "
            "aiida_physgen.assessors).",
        )
        dynamic_inputs(
            spec,
            "references",
            StructureSet,
            "Reference sets the assessors read, by name (known, held_out, ...).",
            required=False,
        )
        optional_input(
            spec,
            "group_label",
            orm.Str,
            "Group that collects the unique minima and the report (default physgen/screening/<pk>).",
        )
        spec.inputs.validator = validate_screening_inputs
        spec.outline(
            cls.check_inputs,
            cls.generate,
            cls.inspect_generation,
            if_(cls.use_funnel)(
                cls.relax_cheap,
                cls.select_for_dft,
            ),
            cls.relax,
            cls.inspect_relaxations,
            cls.deduplicate,
            if_(cls.use_assessors)(
                cls.assess,
            ),
            cls.results,
        )
        expose_outputs_under(
            spec,
            GenerationWorkChain,
            "generation",
            "Outputs of the generation chain: models, candidates, selection.",
            include=("models", "representatives", "structures", "selection", "pca_plot", "candidates", "generated"),
        )
        dynamic_outputs(spec, "minima", orm.StructureData, "One structure per basin.")
        dynamic_outputs(spec, "dos", orm.XyData, "DOS of each minimum.")
        spec.output("energies", valid_type=orm.Dict, help="Total energy (eV) of each minimum, by name.")
        spec.output("report", valid_type=orm.Dict, help="One row per basin: energies, key, count, flags.")
        optional_output(spec, "relaxed", StructureSet, "Every DFT-relaxed structure as one set (info energy, basin).")
        optional_output(
            spec,
            "cheap_relaxed",
            StructureSet,
            "With the funnel: the representatives after the cheap tier, with cheap energies.",
        )
        optional_output(spec, "funnel", orm.Dict, "With the funnel: the stage counts and the cheap basins.")
        optional_output(
            spec,
            "dft_references",
            StructureSet,
            "With dft_references: the relaxed elemental references (info energy, magnetic_moment).",
        )
        dynamic_outputs(
            spec, "assessments", orm.Dict, "One Dict per assessor: metrics, rows and the table's text.", required=False
        )
        dynamic_outputs(
            spec, "figures", orm.SinglefileData, "The assessors' figures (PNG), <assessor>_<figure>.", required=False
        )
        spec.exit_code(300, "ERROR_INVALID_INPUT", message="invalid input: {message}")
        spec.exit_code(401, "ERROR_GENERATION_FAILED", message="the generation chain failed: {message}")
        spec.exit_code(402, "ERROR_ALL_RELAXATIONS_FAILED", message="every relaxation failed: {message}")
        spec.exit_code(403, "ERROR_DEDUPLICATION_FAILED", message="basin de-duplication failed: {message}")
        spec.exit_code(404, "ERROR_CHEAP_TIER_FAILED", message="the cheap relaxation failed: {message}")
        spec.exit_code(405, "ERROR_NO_SOUND_BASIN", message="the cheap tier found no sound basin: {message}")
        spec.exit_code(406, "ERROR_ASSESSMENT_FAILED", message="an assessor failed: {message}")

    # ------------------------------------------------------------------ protocols
    @classmethod
    def get_builder_from_protocol(
        cls,
        domain: str,
        training: StructureSet,
        protocol: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        *,
        target: Mapping[str, Any] | None = None,
        code: orm.AbstractCode | None = None,
        references: Mapping[str, StructureSet] | None = None,
        cheap_model: GeneratorModel | None = None,
        training_code: orm.AbstractCode | None = None,
    ):
        """A builder of the whole pipeline for one domain's study, from its protocol.

        The protocol file ``workflows/protocols/screening/<domain>.yaml`` holds the pipeline's inputs (the
        family, target, conditions, validity, selection, cheap tier, budget, DFT engine and overrides,
        assessors); the family's settings and seeds come from the family's generation protocol of the same
        name. ``overrides`` is merged over the protocol (nested; ``None`` deletes a key).

        :param domain: ``molecules``, ``crystals``, ``graphene``, ``amorphous``, or a plug-in's protocol file.
        :param training: the structures the family learns from.
        :param target: the family's target; the protocol's ``generation.target`` when absent.
        :param code: the DFT engine's code; the engine's default code when absent.
        :param references: reference sets for the assessors (``known``, ``held_out``, ...).
        :param cheap_model: the cheap engine's model (the EDNN).
        :param training_code: train as jobs with this code instead of a calcfunction.
        """
        from .protocols import generation_protocol

        values = cls.get_protocol_inputs(protocol, overrides, domain=domain)
        generation = dict(values.pop("generation", {}))
        family = generation.pop("family")
        target = dict(target if target is not None else generation.pop("target", {}))
        generation.pop("target", None)
        family_values = generation_protocol(
            family,
            generation.pop("family_protocol", protocol or cls.get_default_protocol(domain)),
            target,
            generation.pop("family_overrides", None),
        )
        builder = cls.get_builder()
        gen = GenerationWorkChain.get_builder_from_protocol(
            training, target, family=family, protocol=None, overrides=None, training_code=training_code
        )
        for key, value in family_values.items():  # the family's protocol values first, the study's over them
            generation.setdefault({"selection": "selection_settings"}.get(key, key), value)
        nodes = {
            "seeds": orm.List,
            "settings": orm.Dict,
            "grid": orm.Dict,
            "count": orm.Int,
            "selection_settings": orm.Dict,
            "conditions": orm.Dict,
            "condition": orm.Dict,
            "validity": orm.Str,
            "validity_settings": orm.Dict,
            "generation_seed": orm.Int,
            "selection_seed": orm.Int,
            "device": orm.Str,
            "training_options": orm.Dict,
            "baseline": orm.Bool,
        }
        for key, value in generation.items():
            if key == "selection" and isinstance(value, Mapping):
                key = "selection_settings"
            if key not in nodes:
                raise ValueError(
                    f"protocol: unknown generation key {key!r} in the {domain} protocol or the "
                    f"overrides; expected some of {sorted(nodes)}"
                )
            gen[key] = nodes[key](value)
        builder.generation = gen
        top = {
            "engine": orm.Str,
            "protocol": orm.Str,
            "relax_overrides": orm.Dict,
            "dos": orm.Bool,
            "funnel": orm.Bool,
            "dft_budget": orm.Int,
            "dft_references": orm.Bool,
            "cheap_engine": orm.Str,
            "cheap_settings": orm.Dict,
            "max_concurrent_relaxations": orm.Int,
            "reuse_relaxations": orm.Bool,
            "assessors": orm.Dict,
            "group_label": orm.Str,
        }
        for key, value in values.items():
            if key not in top:
                raise ValueError(
                    f"protocol: unknown key {key!r} in the {domain} protocol or the overrides; "
                    f"expected some of {sorted(['generation', *top])}"
                )
            if value is not None:
                builder[key] = top[key](value)
        if code is not None:
            builder.code = code
        if references:
            builder.references = dict(references)
        if cheap_model is not None:
            builder.cheap_model = cheap_model
        return builder

    # ------------------------------------------------------------------ steps
    def check_inputs(self):
        """The launch checks again, on the inputs this chain really got (an outer chain may have left ports
        out of its launch check); what the checks could not know is said in the report; a label and
        description for the node when it has none."""
        message = validate_screening_inputs(self.inputs) or validate_generation_inputs(self.inputs.generation)
        if message:
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
        for note in _kind(self.inputs)[2]:
            self.report(f"launch check: {note}")
        generation = self.inputs.generation
        family = generation.family.value
        what = generation.target.get_dict().get("composition") or family
        if not self.node.label:
            self.node.label = f"screening {what}".strip()
        if not self.node.description:
            engine = self.inputs.engine.value
            self.node.description = (
                f"{family} generation on {len(generation.training)} structures, {engine} relaxations, unique minima"
            )
        return None

    def generate(self):
        inputs = AttributeDict(self.exposed_inputs(GenerationWorkChain, namespace="generation"))
        inputs.metadata = {
            "call_link_label": "generation",
            "label": "generation",
            "description": "train → generate → validity → select representatives",
        }
        try:
            node = self.submit(GenerationWorkChain, **inputs)
        except ValueError as error:  # the chain's own launch check; check_inputs ran the same one
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=str(error))
        return ToContext(generation=node)

    def inspect_generation(self):
        node = self.ctx.generation
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_GENERATION_FAILED.format(message=how_it_ended(node))
        self.out_many(self.exposed_outputs(node, GenerationWorkChain, namespace="generation"))
        return None

    def use_funnel(self):
        return self.inputs.funnel.value

    def relax_cheap(self):
        """Relax (or score) every representative with the cheap engine, in one process for the whole set."""
        engine = get_engine(self.inputs.cheap_engine.value, "batch", field="cheap_engine")
        representatives = self.ctx.generation.outputs.representatives
        process, inputs = engine.get_process(
            representatives, self.inputs.get("cheap_settings"), self.inputs.get("cheap_model")
        )
        outputs, node = run_calcfunction_step(
            self,
            process,
            "relax_cheap",
            f"{engine.name} relaxation of {len(representatives)} representatives",
            **inputs,
        )
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_CHEAP_TIER_FAILED.format(message=how_it_ended(node))
        self.ctx.cheap_relaxed = engine.get_result(node)
        self.out("cheap_relaxed", self.ctx.cheap_relaxed)
        return None

    def select_for_dft(self):
        """One structure per distinct sound cheap basin, lowest cheap energy first, up to the DFT budget."""
        from ..calculations.funnel import select_for_dft

        outputs, node = run_calcfunction_step(
            self,
            select_for_dft,
            "select_for_dft",
            f"one structure per sound cheap basin, at most {self.inputs.dft_budget.value}",
            relaxed=self.ctx.cheap_relaxed,
            budget=self.inputs.dft_budget,
            candidates=self.ctx.generation.outputs.candidates,
        )
        if not node.is_finished_ok:
            if node.exit_status == 340:
                return self.exit_codes.ERROR_NO_SOUND_BASIN.format(message=(node.exit_message or "").split(": ", 1)[-1])
            return self.exit_codes.ERROR_CHEAP_TIER_FAILED.format(message=how_it_ended(node))
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

    def relax(self):
        """Relax the picked structures as one set (``physgen.relax_set``): throttled, reused, one comparison."""
        structures = self._dft_structures()
        if self.inputs.dft_references.value:
            from .formation_dft import REFERENCE_PREFIX, reference_structures

            clash = sorted(label for label in structures if label.startswith(REFERENCE_PREFIX))
            if clash:
                message = f"dft_references: the labels {clash} take the references' prefix {REFERENCE_PREFIX!r}"
                return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
            elements = {symbol for structure in structures.values() for symbol in structure.get_symbols_set()}
            structures.update(reference_structures(elements))
        inputs = {**self.exposed_inputs(RelaxSetWorkChain), "structures": structures}
        message = validate_relax_set_inputs(inputs)
        if message:
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
        inputs["metadata"] = {
            "call_link_label": "relax",
            "label": "relax",
            "description": f"{self.inputs.engine.value} relaxations of {len(inputs['structures'])} structures",
        }
        node = self.submit(RelaxSetWorkChain, **inputs)
        return ToContext(relax_set=node)

    def inspect_relaxations(self):
        node = self.ctx.relax_set
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_ALL_RELAXATIONS_FAILED.format(message=how_it_ended(node))
        table = node.base.extras.get("physgen_relaxations", {}).get("relaxations", {})
        self.ctx.finished = {label: row["pk"] for label, row in table.items() if row["state"] == "finished"}
        return None

    def deduplicate(self):
        from ..calculations.formation import dft_reference_set
        from .formation_dft import REFERENCE_PREFIX

        relaxed = self.ctx.relax_set.outputs
        inputs, references = {}, {}
        for label in relaxed.relaxed:
            if self.inputs.dft_references.value and label.startswith(REFERENCE_PREFIX):  # not a candidate
                symbol = label[len(REFERENCE_PREFIX) :]
                references.update({f"{symbol}_structure": relaxed.relaxed[label]})
                references.update({f"{symbol}_parameters": relaxed.parameters[label]})
                continue
            inputs[f"structure_{label}"] = relaxed.relaxed[label]
            inputs[f"parameters_{label}"] = relaxed.parameters[label]
        if "funnel" in self.ctx:
            inputs["funnel"] = self.ctx.funnel
        outputs, node = run_calcfunction_step(
            self,
            deduplicate_minima,
            "deduplicate",
            "group the relaxed structures into basins, keep the lowest of each",
            **inputs,
        )
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_DEDUPLICATION_FAILED.format(message=node.exit_message or "")
        self.ctx.minima = outputs["minima"]
        self.ctx.energies = outputs["energies"]
        self.ctx.report = outputs["report"]
        self.ctx.relaxed = outputs["relaxed"]
        if references:  # the references that finished; an element without one gets no DFT formation energy
            outputs, node = run_calcfunction_step(
                self,
                dft_reference_set,
                "dft_references",
                "the relaxed elemental references, one set",
                **references,
            )
            if not node.is_finished_ok:
                return self.exit_codes.ERROR_DEDUPLICATION_FAILED.format(message=f"references: {how_it_ended(node)}")
            self.ctx.dft_references = outputs["references"]
            self.out("dft_references", self.ctx.dft_references)
        return None

    def use_assessors(self):
        return "assessors" in self.inputs and bool(self.inputs.assessors.get_dict())

    def assess(self):
        """Each assessor in one ``physgen.assess`` step, reading the screening's sets."""
        from ..calculations.screening import GENERATED_PREFIX, REFERENCE_PREFIX, assess

        generation = self.ctx.generation.outputs
        sets = {}
        if "generated" in generation:
            sets.update({f"{GENERATED_PREFIX}{name}": generation.generated[name] for name in generation.generated})
        else:
            sets[f"{GENERATED_PREFIX}default"] = generation.candidates
        for name, reference in self.inputs.get("references", {}).items():
            sets[f"{REFERENCE_PREFIX}{name}"] = reference
        common = {
            "conditions": orm.Dict(
                named_conditions(self.inputs.generation) if "conditions" in self.inputs.generation else {}
            ),
            "training": self.inputs.generation.training,
            "valid": generation.candidates,
            "representatives": generation.representatives,
            "relaxed": self.ctx.relaxed,
            "basins": self.ctx.report,
            **sets,
        }
        if "cheap_relaxed" in self.ctx:
            common["cheap"] = self.ctx.cheap_relaxed
        if "funnel" in self.ctx:
            common["funnel"] = self.ctx.funnel
            common["cheap_engine"] = self.inputs.cheap_engine
            if "cheap_settings" in self.inputs:
                common["cheap_settings"] = self.inputs.cheap_settings
        if "cheap_model" in self.inputs:
            common["cheap_model"] = self.inputs.cheap_model
        if "dft_references" in self.ctx:
            common["dft_references"] = self.ctx.dft_references
        self.ctx.assessments, self.ctx.figures = {}, {}
        for name, settings in self.inputs.assessors.get_dict().items():
            outputs, node = run_calcfunction_step(
                self,
                assess,
                f"assess_{name}",
                f"assessment: {name}",
                assessor=orm.Str(name),
                settings=orm.Dict(settings or {}),
                **common,
            )
            if not node.is_finished_ok:
                return self.exit_codes.ERROR_ASSESSMENT_FAILED.format(message=f"{name}: {how_it_ended(node)}")
            self.ctx.assessments[name] = outputs["assessment"]
            for figure, png in outputs.get("figures", {}).items():
                self.ctx.figures[f"{name}_{figure}"] = png
        return None

    def _add_provenance_extras(self, report) -> None:
        """Each minimum gets the provenance extras of the representative it was relaxed from (model UUID,
        seed, family, candidate index) and the PK of its relaxation, so one query answers "which model made it"."""
        structures = self._dft_structures()
        for row in report["rows"]:
            representative = structures[row["representative"]]
            extras = {
                key: representative.base.extras.get(key)
                for key in (*PROVENANCE_EXTRAS, "cheap_energy", "cheap_key")
                if key in representative.base.extras.keys()
            }
            extras["representative_uuid"] = representative.uuid
            extras["relaxation_pk"] = self.ctx.finished[row["representative"]]
            self.ctx.minima[row["name"]].base.extras.set_many(extras)

    def results(self):
        report = self.ctx.report
        self.out("report", report)
        self.out("energies", self.ctx.energies)
        self.out("relaxed", self.ctx.relaxed)
        self._add_provenance_extras(report)
        self.out("minima", dict(self.ctx.minima))
        relaxed = self.ctx.relax_set.outputs
        dos = {
            row["name"]: relaxed.dos[row["representative"]]
            for row in report["rows"]
            if "dos" in relaxed and row["representative"] in relaxed.dos
        }
        if dos:
            self.out("dos", dos)
        if self.ctx.get("assessments"):
            self.out("assessments", dict(self.ctx.assessments))
        if self.ctx.get("figures"):
            self.out("figures", dict(self.ctx.figures))
        label = self.inputs.group_label.value if "group_label" in self.inputs else f"physgen/screening/{self.node.pk}"
        group, _ = orm.Group.collection.get_or_create(label)
        group.add_nodes([report, *self.ctx.minima.values()])
        self.report(
            f"{report['n_unique_minima']} unique minima among {report['n_basins']} basins from "
            f"{report['n_relaxed']} relaxations; results in group {label!r}"
        )

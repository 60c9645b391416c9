"""``physgen.generation``: train an ensemble of any family → generate candidates → select representatives.

The work chain names no family: ``family`` is an input, resolved through the
``aiida_physgen.families`` entry points, and the family checks its own ``target`` and ``settings``
at launch. Training runs as the ``physgen.train`` calcfunction by default, or, when a
``training_code`` is given, as the ``physgen.train.job`` CalcJob under a restarting work chain
(``physgen.train.base``), so a long training runs on any computer and frees the daemon worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiida import orm
from aiida.engine import WorkChain, if_

from ..calculations.functions import EXIT_CODES, generate, normalise_training_inputs, select_representatives
from ..calculations.training import TRAINING_PORTS, TrainingCalculation
from ..data.generator_model import GeneratorModel
from ..data.structure_set import StructureSet
from ..ml.family import get_generator
from ..ml.training import DEFAULT_COUNT, DEFAULT_SEEDS, check_generation_size, plan_members, resolve_device
from ..ports import dynamic_outputs, input_with_default, optional_input, optional_output
from ..screening.selection import SelectionSettings
from .orphans import CalcfunctionSteps
from .training_base import DEFAULT_TRAINING_OPTIONS, launch_training, trained_models

__all__ = ["GenerationWorkChain", "validate_generation_inputs", "check_training_job"]


def validate_generation_inputs(inputs, _ctx=None):
    """Reject inconsistent inputs at launch, before anything is trained or stored: the family checks
    its target and settings, the training data fits the target, the device exists, and the candidates
    asked for fit in memory and are at least as many as the clusters asked for.

    Ports left out (e.g. by an outer work chain that exposes this one without ``seeds`` or ``count``)
    are checked with their defaults; the same function runs again as the first step of the outline,
    on the inputs the chain really got, and ends it on ``ERROR_INVALID_INPUT`` (300).
    """
    try:
        if "family" not in inputs:  # the required port says so; nothing here can be checked without it
            return None
        family = get_generator(inputs["family"].value)
        target = family.check_target(inputs["target"].get_dict()) if "target" in inputs else None
        seeds = list(inputs["seeds"].get_list()) if "seeds" in inputs else list(DEFAULT_SEEDS)
        count = inputs["count"].value if "count" in inputs else DEFAULT_COUNT
        settings = inputs["settings"].get_dict() if "settings" in inputs else None
        grid = inputs["grid"].get_dict() if "grid" in inputs else None
        members = plan_members(family, settings, seeds, grid)
        if "training" in inputs and target is not None:
            # the training data against the target, once per grid point (members of one grid point
            # share their settings), so a mismatch fails at launch, not after a job was queued
            batch = inputs["training"].get_batch() if len(inputs["training"]) else None
            for member in {repr(m.grid_point): m for m in members}.values():
                family.validate(batch, target, member.settings)
        if "condition" in inputs and "conditions" in inputs:
            raise ValueError("conditions: give either one condition or named conditions, not both")
        for name, condition in named_conditions(inputs).items():
            if condition is None:
                continue
            if not isinstance(condition, dict):
                raise ValueError(f"conditions.{name}: expected a dictionary, got {type(condition).__name__}")
            try:
                family.check_condition(condition, {})
            except ValueError as error:
                raise ValueError(f"conditions.{name}: {error}") from None
        if "conditions" in inputs and not inputs["conditions"].get_dict():
            raise ValueError("conditions: expected at least one named condition, e.g. {'F-43m': {'space_group': 216}}")
        if "validity" in inputs:
            from ..screening.validity import get_validity_check

            check = get_validity_check(inputs["validity"].value, "validity")
            check.settings(inputs["validity_settings"].get_dict() if "validity_settings" in inputs else None)
            if target is not None:
                message = check.check_kind(target.get("pbc"))
                if message:
                    raise ValueError(f"validity: {message}")
        elif "validity_settings" in inputs:
            raise ValueError("validity_settings: given without a validity check; set validity too")
        message = check_training_job(inputs)
        if message:
            return message
        if "device" in inputs:  # availability is checked where the training runs (it may be a GPU node)
            resolve_device(inputs["device"].value, check_available="training_code" not in inputs)
        selection = SelectionSettings.from_dict(
            inputs["selection_settings"].get_dict() if "selection_settings" in inputs else None
        )
        if count <= 0:
            raise ValueError(f"count: got {count}, expected a positive number of candidates per model")
        if target is not None:
            check_generation_size(family, target, len(members), count)
    except (ValueError, TypeError) as error:
        return str(error)
    if family.role != "generator":
        return f"family: {family.name} models are {family.role}s; the generation chain needs a generator family"
    n_candidates = len(members) * count * len(named_conditions(inputs))
    if selection.n_clusters > n_candidates:
        return (
            f"selection_settings.n_clusters: got {selection.n_clusters}, expected at most the {n_candidates} "
            f"candidates that will be generated ({len(members)} models × {count} × "
            f"{len(named_conditions(inputs))} condition(s))"
        )
    return None


def link_name(name: str) -> str:
    """A condition's name as a link label (letters, digits and underscores): ``F-43m`` → ``F_43m``."""
    return "".join(c if c.isalnum() else "_" for c in name).strip("_") or "condition"


def named_conditions(inputs) -> dict:
    """The generation's conditions by name: ``conditions``, or the one ``condition`` (or none) as ``default``."""
    if "conditions" in inputs:
        return dict(inputs["conditions"].get_dict())
    return {DEFAULT_CONDITION: inputs["condition"].get_dict() if "condition" in inputs else None}


#: the name of the candidate set when no named conditions are given
DEFAULT_CONDITION = "default"


def check_training_job(inputs) -> str | None:
    """The training code must be a Python interpreter, and the job options what the CalcJob and the
    computer's scheduler accept: checked here, not when the job is submitted inside the chain."""
    from ..calculations.codes import check_python_code

    code = inputs.get("training_code")
    message = check_python_code(code, "training_code")
    if message:
        return message
    if "training_options" not in inputs:
        return None
    options = {**DEFAULT_TRAINING_OPTIONS, **inputs["training_options"].get_dict()}
    error = TrainingCalculation.spec().inputs["metadata"]["options"].validate(options)
    if error is not None:
        return f"training_options: {error.message}"
    computer = getattr(code, "computer", None)
    if computer is not None:
        try:
            computer.get_scheduler().create_job_resource(**options["resources"])
        except (TypeError, ValueError) as exception:
            return f"training_options.resources: {exception} (scheduler {computer.scheduler_type})"
    return None


class GenerationWorkChain(CalcfunctionSteps, WorkChain):
    """Train models of a generator family on known structures, generate candidates, select one per cluster."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        # what to train: the training job's own ports (one declaration for the calcfunction and the job)
        spec.expose_inputs(TrainingCalculation, include=TRAINING_PORTS)
        input_with_default(spec, "count", orm.Int, DEFAULT_COUNT, "Candidates per model.")
        optional_input(
            spec,
            "condition",
            orm.Dict,
            "Family-defined sampling condition (an energy label, a space group, a size multiple).",
        )
        optional_input(
            spec,
            "conditions",
            orm.Dict,
            "Named sampling conditions, one candidate set each, e.g. {'F-43m': {'space_group': 216}, "
            "'scale_2': {'labels': 'training', 'scale': 2}}.",
        )
        optional_input(
            spec,
            "validity",
            orm.Str,
            "Validity check by kind of structure (an entry point of aiida_physgen.validity: molecule, "
            "crystal, sheet, amorphous, none, or a plug-in's); the candidates it rejects are not selected.",
        )
        optional_input(spec, "validity_settings", orm.Dict, "Settings of the validity check.")
        input_with_default(spec, "generation_seed", orm.Int, 0, "Seed of the latent draws when generating.")
        optional_input(
            spec,
            "selection_settings",
            orm.Dict,
            "n_components, n_clusters, min_distance, plot and descriptor of the PCA + k-means selection.",
        )
        input_with_default(spec, "selection_seed", orm.Int, 0, "Seed of the k-means.")
        optional_input(
            spec,
            "training_code",
            orm.AbstractCode,
            "Train as a CalcJob with this Code (a Python with aiida-physgen) instead of a calcfunction.",
        )
        optional_input(
            spec,
            "training_options",
            orm.Dict,
            "metadata.options of the training CalcJob (resources, max_wallclock_seconds, queue, ...).",
        )
        input_with_default(
            spec,
            "baseline",
            orm.Bool,
            False,
            "The random baseline (the LoGAN paper's control): no training; count × len(seeds) structures "
            "with random coordinates in the target cell, atoms at least the selection's min_distance "
            "apart, then the same selection.",
        )
        spec.inputs.validator = validate_generation_inputs
        spec.outline(
            cls.check_inputs,
            if_(cls.use_baseline)(
                cls.generate_random,
            ).else_(
                cls.normalise,
                cls.train,
                cls.inspect_training,
                cls.generate,
            ),
            if_(cls.use_validity)(
                cls.validity,
            ),
            cls.select,
            cls.results,
        )
        dynamic_outputs(spec, "models", GeneratorModel, "One trained model per member.")
        spec.output(
            "candidates",
            valid_type=StructureSet,
            help="The candidates the selection chose from: every generated one, or the valid ones of every "
            "condition joined (info condition_index, set_index).",
        )
        dynamic_outputs(
            spec,
            "generated",
            StructureSet,
            "With named conditions or a validity check: each condition's set as generated.",
        )
        spec.output("representatives", valid_type=StructureSet, help="One candidate per k-means cluster.")
        dynamic_outputs(
            spec, "structures", orm.StructureData, "The representatives as StructureData (rep_00, ...), ready for DFT."
        )
        spec.output("selection", valid_type=orm.ArrayData, help="PCA coordinates, cluster labels and distances.")
        optional_output(spec, "pca_plot", orm.SinglefileData, "PCA scatter of the selection.")
        spec.exit_code(300, "ERROR_INVALID_INPUT", message="invalid input: {message}")
        spec.exit_code(310, "ERROR_TRAINING_DIVERGED", message="training diverged: {message}")
        spec.exit_code(320, "ERROR_SUB_PROCESS_FAILED", message="the {process} step failed: {message}")
        spec.exit_code(
            341, "ERROR_NOTHING_VALID", message="no generated structure passed the validity check: {message}"
        )

    @classmethod
    def get_builder_from_protocol(
        cls,
        training: StructureSet,
        target: Mapping[str, Any],
        family: str,
        protocol: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        training_code: orm.AbstractCode | None = None,
        **kwargs,
    ):
        """A builder filled from the family's generation protocol (``fast``, ``balanced``, ``paper``...).

        :param overrides: nested overrides of the protocol: ``settings``, ``seeds``, ``count``,
            ``selection``, ``grid`` (e.g. ``{'settings': {'loop': {'steps': 100}}, 'seeds': [0]}``).
        :param kwargs: ``training_options``, ``device``, ``generation_seed``, ``selection_seed``, ``condition``,
            ``conditions``, ``validity``, ``validity_settings``.
        """
        from .protocols import generation_protocol

        get_generator(family)  # a surrogate's protocol would load, but it cannot generate
        values = generation_protocol(family, protocol, target, overrides)
        builder = cls.get_builder()
        builder.family = orm.Str(family)
        builder.training = training
        builder.target = orm.Dict(dict(target))
        if "seeds" in values:
            builder.seeds = orm.List([int(s) for s in values["seeds"]])
        if values.get("settings"):
            builder.settings = orm.Dict(values["settings"])
        if values.get("grid"):
            builder.grid = orm.Dict(values["grid"])
        if "count" in values:
            builder.count = orm.Int(values["count"])
        if values.get("selection"):
            builder.selection_settings = orm.Dict(values["selection"])
        if training_code is not None:
            builder.training_code = training_code
        for key, node_type in (
            ("training_options", orm.Dict),
            ("device", orm.Str),
            ("generation_seed", orm.Int),
            ("selection_seed", orm.Int),
            ("condition", orm.Dict),
            ("conditions", orm.Dict),
            ("validity", orm.Str),
            ("validity_settings", orm.Dict),
        ):
            if key in kwargs:
                builder[key] = node_type(kwargs.pop(key))
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        return builder

    @classmethod
    def get_available_protocols(cls, family: str) -> dict[str, str]:
        from .protocols import family_protocols

        return family_protocols(family)

    def check_inputs(self):
        """Run the launch checks again on the inputs this chain really got (an outer chain may have left ports
        out of its own launch check), and give the node a label and description when it has none."""
        message = validate_generation_inputs(self.inputs)
        if message:
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
        n_models = len(self.inputs.seeds.get_list())
        composition = self.inputs.target.get_dict().get("composition", "")
        if not self.node.label:
            self.node.label = f"{self.inputs.family.value} generation {composition}".strip()
        if not self.node.description:
            self.node.description = (
                f"train {self.inputs.family.value} on {len(self.inputs.training)} structures ({n_models} seed(s)), "
                f"generate {self.inputs.count.value} candidates per model, select one per k-means cluster"
            )
        return None

    def normalise(self):
        """Target, seeds, settings and grid in canonical form, so equivalent launches share cached trainings."""
        inputs = {k: self.inputs[k] for k in ("family", "target", "seeds")}
        for optional in ("settings", "grid"):
            if optional in self.inputs:
                inputs[optional] = self.inputs[optional]
        outputs, failure = self.run_step(
            normalise_training_inputs, "normalise", "canonical training inputs", "normalisation", **inputs
        )
        if failure:
            return failure
        self.ctx.training_inputs = {"training": self.inputs.training, "family": self.inputs.family, **outputs}
        return None

    def _training_inputs(self) -> dict:
        return dict(self.ctx.training_inputs)

    def train(self):
        """The ensemble, trained as the ``physgen.train`` calcfunction, or as jobs on ``training_code``'s computer."""
        n_seeds = len(self.inputs.seeds.get_list())
        what = f"{n_seeds} seed(s) of {self.inputs.family.value} on {len(self.inputs.training)} structures"
        return launch_training(self, self._training_inputs(), what, "train", "train", "training")

    def inspect_training(self):
        models, failure = trained_models(self, "training", "training", EXIT_CODES)
        if failure:
            return failure
        self.ctx.models = models
        self.out("models", dict(models))
        return None

    def use_baseline(self):
        return self.inputs.baseline.value

    def generate_random(self):
        """As many random candidates as the models would have made, with the selection's min_distance."""
        from ..calculations.baseline import generate_random

        count = self.inputs.count.value * len(self.inputs.seeds.get_list())
        selection = SelectionSettings.from_dict(
            self.inputs.selection_settings.get_dict() if "selection_settings" in self.inputs else None
        )
        self.report(f"random baseline: {count} random structures, atoms at least {selection.min_distance} Å apart")
        candidates, failure = self.run_step(
            generate_random,
            "generate_random",
            f"{count} random structures (the random baseline)",
            "random generation",
            family=self.inputs.family,
            target=self.inputs.target,
            count=orm.Int(count),
            seed=self.inputs.generation_seed,
            min_distance=orm.Float(selection.min_distance),
        )
        if failure:
            return failure
        self.ctx.generated = {link_name(DEFAULT_CONDITION): candidates}
        if self.use_validity():
            self.out("generated", dict(self.ctx.generated))
        else:
            self.ctx.candidates = candidates
            self.out("candidates", candidates)
        return None

    def generate(self):
        """One candidate set per named condition (one ``physgen.generate`` each)."""
        models = dict(self.ctx.models)
        conditions = named_conditions(self.inputs)
        self.ctx.generated = {}
        for name, condition in conditions.items():
            link = "generate" if name == DEFAULT_CONDITION else f"generate_{link_name(name)}"
            self.report(
                f"generating {self.inputs.count.value} candidates from each of {len(models)} models"
                + ("" if name == DEFAULT_CONDITION else f" for {name}")
            )
            inputs = {"count": self.inputs.count, "seed": self.inputs.generation_seed, **models}
            if condition is not None:
                inputs["condition"] = orm.Dict(condition)
            candidates, failure = self.run_step(
                generate,
                link,
                f"{self.inputs.count.value} candidates from each of {len(models)} models"
                + ("" if name == DEFAULT_CONDITION else f" for {name}"),
                f"generation for {name}",
                **inputs,
            )
            if failure:
                return failure
            self.ctx.generated[link_name(name)] = candidates
        if not self.use_validity():
            self.ctx.candidates = self.ctx.generated[link_name(DEFAULT_CONDITION)]
            self.out("candidates", self.ctx.candidates)
        else:
            self.out("generated", dict(self.ctx.generated))
        return None

    def use_validity(self):
        """A validity step runs with a check, and joins the sets when there are several named conditions."""
        return "validity" in self.inputs or "conditions" in self.inputs

    def validity(self):
        from ..calculations.screening import check_validity

        inputs = dict(self.ctx.generated)
        inputs["check"] = self.inputs.validity if "validity" in self.inputs else orm.Str("none")
        if "validity_settings" in self.inputs:
            inputs["settings"] = self.inputs.validity_settings
        outputs, failure = self.run_step(
            check_validity,
            "validity",
            f"validity ({inputs['check'].value}) of {len(self.ctx.generated)} set(s)",
            "validity",
            **inputs,
        )
        if failure:
            return failure
        self.ctx.candidates = outputs["valid"]
        self.out("candidates", self.ctx.candidates)
        totals = self.ctx.candidates.base.attributes.get("validity")["totals"]
        self.report(
            f"validity: {totals['valid']} of {totals['generated']} candidates kept; "
            f"rejected: {totals['reasons'] or 'none'}"
        )
        return None

    def select(self):
        inputs = {"candidates": self.ctx.candidates, "seed": self.inputs.selection_seed}
        if "selection_settings" in self.inputs:
            inputs["settings"] = self.inputs.selection_settings
        outputs, failure = self.run_step(
            select_representatives,
            "select",
            "descriptors → PCA → k-means: one representative per cluster",
            "selection",
            **inputs,
        )
        if failure:
            return failure
        self.ctx.selected = outputs
        self.report(
            f"selected {len(outputs['representatives'])} representatives from {len(self.ctx.candidates)} candidates"
        )

    def results(self):
        for key in ("representatives", "structures", "selection", "pca_plot"):
            if key in self.ctx.selected:
                self.out(key, self.ctx.selected[key])

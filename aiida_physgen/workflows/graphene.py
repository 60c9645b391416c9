"""``physgen.graphene``: porous graphene through the one screening, with the EDNN as its cheap tier.

    sheets (physgen.porous_graphene) ──▶ reference labels (physgen.label_reference, Tersoff via LAMMPS)
        ──▶ the EDNN surrogate trained on them (physgen.train, or a training job with ``training_code``)
        ──▶ physgen.screening: RUGAN trained on the same sheets, generated at every condition (scale_1,
            scale_2: the training side and twice it) → sheet validity → selection → the EDNN scores the
            representatives (cheap_engine ednn) → DFT of the best distinct ones (GPAW: a static LCAO DOS) →
            assessors (label_consistency: requested against obtained label, the KS table)

This chain is the domain's pre-step only: it makes and labels the sheets and trains the EDNN, then hands the
screening (exposed as ``screening``) the labelled sheets as ``generation.training`` and the EDNN as
``cheap_model``. It has no DFT, no validator of candidates and no report of its own: the screening's outputs
are exposed under ``screening``, and ``aiida-physgen report`` reads them. Give ``training`` (labelled sheets)
to skip making and labelling. The whole study comes from one protocol file,
``workflows/protocols/screening/graphene.yaml`` (:meth:`GrapheneScreeningWorkChain.get_builder_from_protocol`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiida import orm
from aiida.engine import if_

from ..calculations.functions import EXIT_CODES, normalise_training_inputs
from ..calculations.graphene import label_reference, porous_graphene
from ..data.generator_model import GeneratorModel
from ..data.structure_set import StructureSet
from ..graphene.reference_energy import ReferenceSettings
from ..ml import graphene
from ..ml import settings as settings_module
from ..ml.family import get_family
from ..ml.training import DEFAULT_SEEDS, plan_members, resolve_device
from ..ports import input_with_default, optional_input, optional_output
from .generation import GenerationWorkChain, check_training_job
from .prestep import ScreeningPreStep, check_screening_at_launch
from .protocols import generation_protocol
from .training_base import launch_training, trained_models

__all__ = ["GrapheneScreeningWorkChain", "validate_graphene_inputs"]

#: what the EDNN learns: the total energy in the sheets' ``info['energy']`` (what ``physgen.label_reference`` writes)
EDNN_TARGET = {"property": "energy"}
#: keys of the protocol file that belong to this pre-step, not to the screening
PRESTEP_KEYS = ("sheets", "reference", "ednn")
#: ports of the screening this chain fills itself (the training sheets, the EDNN) or shares with its own training
SHARED_PORTS = ("training_code", "training_options", "device")
#: sheets made (at most) to check the settings at launch: the families check their settings against real sheets
SAMPLE_SHEETS = 64


class _CheapModelAtLaunch:
    """Stands for the EDNN in the screening's launch check: it is trained by this chain, so it exists only later."""


def _dict(inputs, *path) -> dict | None:
    node = inputs
    for key in path:
        if key not in node:
            return None
        node = node[key]
    return node.get_dict()


def _sample_sheets(inputs) -> StructureSet:
    """The training sheets (given), or a few sheets made as the chain will make them, with placeholder energies:
    what the families and checks read at launch (unstored)."""
    if "training" in inputs:
        training = inputs["training"]
        batch = training.get_batch()
        if "energy" not in batch.info:
            raise ValueError(
                "training: the sheets have no 'energy' info array (label them with physgen.label_reference)"
            )
        graphene.batch_to_sheets(batch, where="training")
        return training
    values = settings_module.from_dict(
        graphene.SheetSettings, _dict(inputs, "sheets", "settings"), where="sheets.settings"
    )
    if "count" not in inputs.get("sheets", {}):
        raise ValueError("sheets.count: required when no training sheets are given (the number of sheets to make)")
    count = inputs["sheets"]["count"].value
    if count < 1:
        raise ValueError(f"sheets.count: got {count}, expected a positive number of sheets")
    try:
        graphene.check_sheets_fit(count, values.lattice)
    except ValueError as error:
        raise ValueError(f"sheets.{error}") from None
    n = min(count, SAMPLE_SHEETS)
    occupancy = values.make(n, 0)
    atoms = occupancy.reshape(n, -1).sum(axis=1)
    return StructureSet(graphene.sheets_to_batch(occupancy, values.lattice, info={"energy": -7.0 * atoms}))


def validate_graphene_inputs(inputs, _ctx=None):
    """Refuse bad inputs at launch, before any sheet is made: the sheets' and the reference method's settings,
    the EDNN's settings against sheets of the requested lattice, the training job, and the whole screening
    (its own launch checks, run on those sheets and with the EDNN it will get)."""
    try:
        sample = _sample_sheets(inputs)
        ReferenceSettings.from_dict(_dict(inputs, "reference"), where="reference")
        family = get_family("ednn")
        target = family.check_target(EDNN_TARGET)
        seeds = list(inputs["ednn"]["seeds"].get_list()) if "seeds" in inputs.get("ednn", {}) else list(DEFAULT_SEEDS)
        members = plan_members(family, _dict(inputs, "ednn", "settings"), seeds, None)
        count = (
            len(sample)
            if "training" in inputs
            else inputs["sheets"]["count"].value
            if "count" in inputs.get("sheets", {})
            else None
        )
        batch = sample.get_batch()
        if count is not None and count > len(batch):  # the held-out part is checked on as many sheets as will be made
            batch = batch.subset([i % len(batch) for i in range(min(count, 4 * SAMPLE_SHEETS))])
        family.validate(batch, target, members[0].settings)
        if "device" in inputs:
            resolve_device(inputs["device"].value, check_available="training_code" not in inputs)
        message = check_training_job(inputs)
        if message:
            return message
    except ValueError as error:
        return str(error)
    return _check_screening(inputs, sample)


def _check_screening(inputs, sample: StructureSet) -> str | None:
    """The screening's own launch checks on the inputs it will get: the training sheets, the shared training
    ports and (a stand-in for) the EDNN."""
    screening = dict(inputs.get("screening", {}))
    generation = {**dict(screening.get("generation", {})), "training": sample}
    for port in SHARED_PORTS:
        if port in inputs:
            generation[port] = inputs[port]
    screening["cheap_model"] = _CheapModelAtLaunch()
    return check_screening_at_launch(screening, generation)


class GrapheneScreeningWorkChain(ScreeningPreStep):
    """Sheets → reference labels → EDNN, then the one screening (RUGAN candidates, the EDNN as cheap tier)."""

    _protocol_file = "screening/graphene"
    _validator = staticmethod(validate_graphene_inputs)
    _default_label = "porous graphene screening"

    @classmethod
    def define(cls, spec):
        super().define(spec)
        optional_input(
            spec,
            "training",
            StructureSet,
            "Labelled sheets (info 'energy', eV); when given, no sheets are made or labelled.",
        )
        spec.input_namespace("sheets", help="The random porous sheets to learn from (when no training is given).")
        optional_input(spec, "sheets.count", orm.Int, "Number of sheets (the protocol's sheets.count).")
        input_with_default(spec, "sheets.seed", orm.Int, 0, "Seed of the holes.")
        optional_input(
            spec,
            "sheets.settings",
            orm.Dict,
            "nx, ny (orthogonal cells, default 14 × 8), holes [min, max], radius [min, max] Å, prune.",
        )
        optional_input(
            spec,
            "reference",
            orm.Dict,
            "The reference method that labels the sheets: method (tersoff), relax (false), fmax, max_steps.",
        )
        spec.input_namespace("ednn", help="Training of the EDNN surrogate, the screening's cheap tier.")
        optional_input(spec, "ednn.settings", orm.Dict, "Nested EDNN settings.")
        spec.input(
            "ednn.seeds",
            valid_type=orm.List,
            default=lambda: orm.List(list(DEFAULT_SEEDS)),
            help="One EDNN per seed; the first seed's model is the cheap tier.",
        )
        # one port each for both trainings (the EDNN's here, the generator's in the screening)
        spec.expose_inputs(GenerationWorkChain, include=SHARED_PORTS)
        cls.expose_screening_inputs(
            spec,
            exclude=("generation.training", *(f"generation.{port}" for port in SHARED_PORTS), "cheap_model"),
            given="the training sheets, the EDNN (cheap_model) and the training ports",
        )
        spec.outline(
            cls.check_inputs,
            if_(cls.should_make_sheets)(cls.make_sheets, cls.label),
            cls.train_ednn,
            cls.inspect_ednn,
            cls.screen,
            cls.inspect_screening,
            cls.results,
        )
        optional_output(spec, "sheets", StructureSet, "The random sheets made.")
        spec.output(
            "training", valid_type=StructureSet, help="The labelled sheets the EDNN and the generator learnt from."
        )
        spec.output("ednn", valid_type=GeneratorModel, help="The EDNN surrogate (first seed): the cheap tier.")
        spec.exit_code(310, "ERROR_TRAINING_DIVERGED", message="training diverged: {message}")

    # ------------------------------------------------------------------ protocols
    @classmethod
    def get_builder_from_protocol(
        cls,
        protocol: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        *,
        training: StructureSet | None = None,
        code: orm.AbstractCode | None = None,
        training_code: orm.AbstractCode | None = None,
        references: Mapping[str, StructureSet] | None = None,
    ):
        """A builder of the whole study from ``workflows/protocols/screening/graphene.yaml``.

        The file's ``sheets``, ``reference`` and ``ednn`` keys are this pre-step's (the EDNN's settings and seeds
        come from the EDNN family's protocol of the same name, ``ednn`` overrides them); every other key is the
        screening's (:meth:`ScreeningWorkChain.get_builder_from_protocol`). With the ``label_consistency``
        assessor asking for the reference method, its ``reference_settings`` default to the ``reference`` the
        sheets are labelled with, so requested and obtained labels come from one method.

        :param protocol: ``fast`` or ``paper`` (:meth:`get_available_protocols`); the file's default when ``None``.
        :param overrides: nested, merged over the protocol (``None`` deletes a key), e.g.
            ``{'sheets': {'count': 512}, 'generation': {'count': 200}, 'dft_budget': 2}``.
        :param training: labelled sheets to learn from instead of making and labelling new ones.
        :param code: the DFT engine's code (GPAW: a localhost Python when absent).
        :param training_code: train the EDNN and the generator as jobs with this code.
        :param references: reference sets for the assessors.
        """
        values = cls.get_protocol_inputs(protocol, overrides)
        prestep = {key: values.pop(key, None) or {} for key in PRESTEP_KEYS}
        builder = cls.get_builder()
        if training is not None:
            builder.training = training
        else:
            sheets = prestep["sheets"]
            unknown = sorted(set(sheets) - {"count", "seed", "settings"})
            if unknown:
                raise ValueError(f"protocol: unknown key(s) {unknown} in sheets; expected count, seed, settings")
            for key, node_type in (("count", orm.Int), ("seed", orm.Int), ("settings", orm.Dict)):
                if sheets.get(key) not in (None, {}):
                    builder.sheets[key] = node_type(sheets[key])
        if prestep["reference"]:
            builder.reference = orm.Dict(prestep["reference"])
        ednn = dict(prestep["ednn"])
        family_protocol = ednn.pop("family_protocol", protocol or cls.get_default_protocol())
        ednn = generation_protocol("ednn", family_protocol, EDNN_TARGET, ednn)
        if ednn.get("settings"):
            builder.ednn.settings = orm.Dict(ednn["settings"])
        if "seeds" in ednn:
            builder.ednn.seeds = orm.List([int(s) for s in ednn["seeds"]])
        if training_code is not None:
            builder.training_code = training_code

        placeholder = training if training is not None else _sample_sheets(builder)
        inputs = cls.screening_inputs_from_protocol(
            "graphene", placeholder, protocol, overrides, PRESTEP_KEYS, code=code, references=references
        )
        generation = inputs.get("generation", {})
        for port in SHARED_PORTS:  # one port each, shared by both trainings
            if port in generation:
                builder[port] = generation.pop(port)
        assessors = inputs.get("assessors")
        if assessors is not None:
            inputs["assessors"] = _reference_for_assessor(assessors, prestep["reference"])
        builder.screening = inputs
        return builder

    # ------------------------------------------------------------------ helpers
    def _ednn(self) -> GeneratorModel:
        """The EDNN the screening uses: the first seed's model."""
        models = self.ctx.ednn_models
        return models[sorted(models)[0]]

    # ------------------------------------------------------------------ steps
    def should_make_sheets(self):
        if "training" in self.inputs:
            self.ctx.training = self.inputs.training
            return False
        return True

    def make_sheets(self):
        inputs = {"count": self.inputs.sheets.count, "seed": self.inputs.sheets.seed}
        if "settings" in self.inputs.sheets:
            inputs["settings"] = self.inputs.sheets.settings
        sheets, failure = self.run_step(
            porous_graphene, "sheets", f"{self.inputs.sheets.count.value} random porous sheets", "sheets", **inputs
        )
        if failure:
            return failure
        self.ctx.sheets = sheets
        self.out("sheets", sheets)
        return None

    def label(self):
        inputs = {"structures": self.ctx.sheets}
        if "reference" in self.inputs:
            inputs["settings"] = self.inputs.reference
        self.report(f"labelling {len(self.ctx.sheets)} sheets with the reference method")
        labelled, failure = self.run_step(
            label_reference, "label", "reference energies of the training sheets", "labelling", **inputs
        )
        if failure:
            return failure
        self.ctx.training = labelled
        return None

    def train_ednn(self):
        """The EDNN: the ``physgen.train`` calcfunction here, or a training job (``training_code``)."""
        inputs = {"family": orm.Str("ednn"), "target": orm.Dict(EDNN_TARGET), "seeds": self.inputs.ednn.seeds}
        if "settings" in self.inputs.ednn:
            inputs["settings"] = self.inputs.ednn.settings
        canonical, failure = self.run_step(
            normalise_training_inputs,
            "normalise_ednn",
            "canonical EDNN training inputs",
            "EDNN normalisation",
            **inputs,
        )
        if failure:
            return failure
        what = f"{len(self.inputs.ednn.seeds.get_list())} EDNN model(s) on {len(self.ctx.training)} sheets"
        train_inputs = {"training": self.ctx.training, "family": inputs["family"], **canonical}
        return launch_training(self, train_inputs, what, "train_ednn", "training_ednn", "ednn_training")

    def inspect_ednn(self):
        models, failure = trained_models(self, "ednn_training", "EDNN training", EXIT_CODES)
        if failure:
            return failure
        self.ctx.ednn_models = models
        held_out = self._ednn().get_config().get("held_out") or {}
        if held_out:
            self.report(
                f"EDNN held-out error ({held_out['count']} sheets): median {held_out['median_ae']:.3f} "
                f"meV/Å², mean {held_out['mae']:.3f} meV/Å²"
            )
        return None

    def screen(self):
        """The one screening, on the labelled sheets, with the EDNN as its cheap model."""
        inputs = self.screening_inputs()
        generation = dict(inputs.get("generation", {}))
        generation["training"] = self.ctx.training
        for port in SHARED_PORTS:
            if port in self.inputs:
                generation[port] = self.inputs[port]
        inputs.generation = generation
        inputs.cheap_model = self._ednn()
        return self.submit_screening(
            inputs,
            f"screening of generated sheets, learnt from {len(self.ctx.training)} labelled sheets, "
            "with the EDNN as cheap tier",
        )

    def results(self):
        self.out("training", self.ctx.training)
        self.out("ednn", self._ednn())
        self.expose_screening_outputs()


def _reference_for_assessor(assessors: orm.Dict, reference: Mapping | None) -> orm.Dict:
    """``assessors`` with ``label_consistency.reference_settings`` set to the sheets' reference settings when the
    assessor asks for the reference method without saying how."""
    values = assessors.get_dict()
    settings = dict(values.get("label_consistency") or {})
    if "label_consistency" not in values or not settings.get("reference") or "reference_settings" in settings:
        return assessors
    settings["reference_settings"] = ReferenceSettings.from_dict(reference or None, where="reference").to_dict()
    values["label_consistency"] = settings
    return orm.Dict(values)

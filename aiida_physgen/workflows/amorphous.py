"""``physgen.amorphous``: amorphous silicon through the one screening, learnt from a melt-quench MD.

    melt-quench MD with an empirical silicon potential (physgen.amorphous_md; or a given trajectory)
        ──▶ training frames and the held-out end of the run (physgen.split_trajectory)
        ──▶ physgen.screening: RePAP trained on the frames, generated at every condition (with close-contact
            redraws, without) → amorphous validity → selection → the LAMMPS cheap tier → DFT of the best distinct
            ones (GPAW) → assessors (amorphous: RDF, angles, energies against the held-out frames)

This chain is the domain's pre-step only: it runs the MD and splits it, then hands the screening (exposed as
``screening``) the training frames as ``generation.training`` and the held-out frames as
``references.held_out``. It has no DFT, no validator of candidates and no report of its own: the screening's
outputs are exposed under ``screening``, and ``aiida-physgen report`` reads them. What it fills in when the
screening's inputs leave it open: the LAMMPS cheap tier's potential and the ``amorphous`` assessor's
``potential`` are the MD's (so cheap energies, assessed energies and the training frames share one model), the
assessor's ``grid_bins`` the RePAP models' grid (its ``md_on_grid`` row). The whole study comes from one protocol
file, ``workflows/protocols/screening/amorphous.yaml`` (:meth:`AmorphousScreeningWorkChain.get_builder_from_protocol`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import if_

from ..amorphous import md
from ..calculations.amorphous import amorphous_md, split_trajectory
from ..data.structure_set import StructureSet
from ..ml import settings as settings_module
from ..ml.batch import StructureBatch
from ..ml.family import get_family
from ..ml.random_structures import random_structures
from ..ports import input_with_default, optional_input
from .prestep import ScreeningPreStep, check_screening_at_launch

__all__ = ["AmorphousScreeningWorkChain", "validate_amorphous_inputs", "HELD_OUT", "PRESTEP_KEYS"]

#: the reference set this chain gives the screening: the held-out frames
HELD_OUT = "held_out"
#: keys of the protocol file that belong to this pre-step, not to the screening
PRESTEP_KEYS = ("md", "held_out_fraction")
#: frames (at most) of the stand-in training set the launch checks read when the MD has not run yet
SAMPLE_FRAMES = 256
#: the share of the trajectory held out when none is given
DEFAULT_HELD_OUT_FRACTION = 0.2
#: the cheap engine and the assessor whose potential follows the MD's
LAMMPS_ENGINE = "lammps"
ASSESSOR = "amorphous"


def held_out_count(frames: int, fraction: float) -> int:
    """How many frames ``physgen.split_trajectory`` holds out of ``frames`` (the end of the run)."""
    return int(round(frames * fraction))


def _md_values(inputs) -> md.MeltQuenchSettings:
    values = inputs["md"]["settings"].get_dict() if "settings" in inputs.get("md", {}) else None
    try:
        return settings_module.from_dict(md.MeltQuenchSettings, values, where="md.settings")
    except ValueError as error:
        message = str(error)
        raise ValueError(message if message.startswith("md.settings") else f"md.settings.{message}") from None


def _random_frames(values: md.MeltQuenchSettings, count: int) -> StructureBatch:
    """A few random cells of the MD's atoms, cell and closest approach: what the launch checks read in place of
    the training frames (the RePAP family checks its grid against their nearest-neighbour distances)."""
    length = md.cell_length(values.atoms, values.density)
    for distance in (md.OVERLAP, 0.75 * md.OVERLAP):
        try:
            return random_structures(f"Si{values.atoms}", np.eye(3) * length, True, count, 0, min_distance=distance)
        except ValueError:
            continue
    return random_structures(f"Si{values.atoms}", np.eye(3) * length, True, count, 0, min_distance=0.0)


def _sample(inputs) -> tuple[StructureSet, str | None]:
    """The training frames (from a given trajectory), or stand-ins shaped as the MD's (unstored), and the MD's
    potential; checks the split."""
    fraction = inputs["held_out_fraction"].value if "held_out_fraction" in inputs else DEFAULT_HELD_OUT_FRACTION
    if not 0 < fraction < 1:
        raise ValueError(f"held_out_fraction: got {fraction}, expected a share in (0, 1)")
    if "trajectory" in inputs:
        trajectory = inputs["trajectory"]
        frames, potential = len(trajectory), trajectory.base.attributes.get("potential", None)
    else:
        values = _md_values(inputs)
        frames, potential = values.frames, values.potential
        try:
            md.check_frames_fit(values)
        except ValueError as error:
            raise ValueError(f"md.settings.{error}") from None
    held = held_out_count(frames, fraction)
    if held < 2 or frames - held < 2:
        raise ValueError(
            f"held_out_fraction: {fraction} of {frames} frames holds out {held} and keeps {frames - held}; "
            "expected at least 2 of each (more frames, or another fraction)"
        )
    if "trajectory" in inputs:
        batch = inputs["trajectory"].get_batch()
        return StructureSet(batch.subset(np.arange(frames - held))), potential
    return _stand_in(values, frames - held), potential


def _stand_in(values: md.MeltQuenchSettings, frames: int) -> StructureSet:
    """``frames`` (at most :data:`SAMPLE_FRAMES`) stand-ins for the training frames: a few random cells repeated."""
    cells = _random_frames(values, min(frames, 16))
    return StructureSet(cells.subset([i % len(cells) for i in range(min(frames, SAMPLE_FRAMES))]))


def _settings(namespace, key) -> dict | None:
    return namespace[key].get_dict() if key in namespace else None


def validate_amorphous_inputs(inputs, _ctx=None):
    """Refuse bad inputs at launch, before the MD runs: the MD settings and the split, the conditions against
    the MD's cell (a minimum distance no packing allows), the cheap tier's potential against the MD's element,
    and the whole screening (its own launch checks, run on stand-in frames of the MD's shape)."""
    screening = inputs.get("screening", {})
    try:
        sample, potential = _sample(inputs)
        if HELD_OUT in screening.get("references", {}):
            raise ValueError(
                f"screening.references.{HELD_OUT}: this chain gives the held-out MD frames itself; leave it out"
            )
        generation = screening.get("generation", {})
        if "family" in generation and generation["family"].value == "repap" and "conditions" in generation:
            family, batch = get_family("repap"), sample.get_batch()
            config = {"cell": batch.cells[0].tolist(), "numbers": batch.numbers[: batch.n_atoms[0]].tolist()}
            for name, condition in generation["conditions"].get_dict().items():
                try:
                    family.check_condition(condition, config)
                except ValueError as error:
                    raise ValueError(f"screening.generation.conditions.{name}: {error}") from None
        use_funnel = "funnel" not in screening or screening["funnel"].value
        if use_funnel and "cheap_engine" in screening and screening["cheap_engine"].value == LAMMPS_ENGINE:
            from ..calculations.lammps import LammpsSettings, element_of

            try:
                cheap = LammpsSettings.from_dict(_cheap_settings(screening, potential))
            except ValueError:
                cheap = None  # the screening's own check names the bad setting
            try:
                if cheap is not None:
                    element_of(sample.get_batch(), cheap.potential)
            except ValueError as error:
                raise ValueError(
                    f"screening.cheap_{error}" if str(error).startswith("settings") else f"screening.{error}"
                ) from None
    except ValueError as error:
        return str(error)
    return _check_screening(inputs, sample)


def _check_screening(inputs, sample: StructureSet) -> str | None:
    """The screening's own launch checks on the inputs it will get (the training frames and the held-out
    reference)."""
    screening = dict(inputs.get("screening", {}))
    generation = {**dict(screening.get("generation", {})), "training": sample}
    screening["references"] = {**dict(screening.get("references", {})), HELD_OUT: sample}
    return check_screening_at_launch(screening, generation)


def _cheap_settings(screening, potential: str | None) -> dict:
    """The LAMMPS cheap tier's settings, with the MD's potential unless they name one."""
    values = dict(_settings(screening, "cheap_settings") or {})
    if potential is not None:
        values.setdefault("potential", potential)
    return values


class AmorphousScreeningWorkChain(ScreeningPreStep):
    """Melt-quench MD → split, then the one screening (RePAP candidates, the held-out frames as its reference)."""

    _protocol_file = "screening/amorphous"
    _validator = staticmethod(validate_amorphous_inputs)
    _default_label = "amorphous screening"

    @classmethod
    def define(cls, spec):
        super().define(spec)
        optional_input(
            spec,
            "trajectory",
            StructureSet,
            "Frames of a fixed-cell trajectory to learn from, instead of running the melt-quench MD.",
        )
        spec.input_namespace("md", help="The melt-quench molecular dynamics (skipped with a trajectory).")
        optional_input(
            spec,
            "md.settings",
            orm.Dict,
            "Fields of aiida_physgen.amorphous.md.MeltQuenchSettings (atoms, density, potential, steps, "
            "frames, stride, seed...).",
        )
        input_with_default(
            spec,
            "held_out_fraction",
            orm.Float,
            DEFAULT_HELD_OUT_FRACTION,
            "Share of the trajectory (its end) kept out of training: the assessor's reference.",
        )
        cls.expose_screening_inputs(
            spec,
            exclude=("generation.training",),
            given="the training frames (generation.training) and the held-out frames (references.held_out)",
        )
        spec.outline(
            cls.check_inputs,
            if_(cls.should_run_md)(cls.run_md),
            cls.split,
            cls.screen,
            cls.inspect_screening,
            cls.results,
        )
        spec.output("trajectory", valid_type=StructureSet, help="The MD frames the chain learnt from.")
        spec.output("training", valid_type=StructureSet, help="The frames the models trained on.")
        spec.output("held_out", valid_type=StructureSet, help="The held-out end of the trajectory (the reference).")

    # ------------------------------------------------------------------ protocols
    @classmethod
    def get_builder_from_protocol(
        cls,
        protocol: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        *,
        trajectory: StructureSet | None = None,
        code: orm.AbstractCode | None = None,
        training_code: orm.AbstractCode | None = None,
        references: Mapping[str, StructureSet] | None = None,
    ):
        """A builder of the whole study from ``workflows/protocols/screening/amorphous.yaml``.

        The file's ``md`` and ``held_out_fraction`` keys are this pre-step's; every other key is the screening's
        (:meth:`ScreeningWorkChain.get_builder_from_protocol`; the RePAP settings and seeds come from the RePAP
        family's protocol of the same name).

        :param protocol: ``fast``, ``balanced`` or ``paper`` (:meth:`get_available_protocols`); the file's default
            when ``None``.
        :param overrides: nested, merged over the protocol (``None`` deletes a key), e.g.
            ``{'md': {'frames': 2000}, 'generation': {'count': 200}, 'dft_budget': 1}``.
        :param trajectory: frames to learn from instead of running the MD.
        :param code: the DFT engine's code (GPAW: a localhost Python when absent).
        :param training_code: train the generator as jobs with this code.
        :param references: other reference sets for the assessors (``held_out`` is this chain's).
        """
        values = cls.get_protocol_inputs(protocol, overrides)
        prestep = {key: values.pop(key, None) for key in PRESTEP_KEYS}
        builder = cls.get_builder()
        if trajectory is not None:
            builder.trajectory = trajectory
        else:
            builder.md.settings = orm.Dict(prestep["md"] or {})
        if prestep["held_out_fraction"] is not None:
            builder.held_out_fraction = orm.Float(prestep["held_out_fraction"])
        try:
            placeholder, _ = _sample(builder)
        except ValueError:  # the launch check names the bad input; the screening's builder only needs a set
            placeholder = _stand_in(md.MeltQuenchSettings(), SAMPLE_FRAMES)
        inputs = cls.screening_inputs_from_protocol(
            "amorphous",
            placeholder,
            protocol,
            overrides,
            PRESTEP_KEYS,
            code=code,
            references=references,
            training_code=training_code,
        )
        builder.screening = inputs
        return builder

    # ------------------------------------------------------------------ steps
    def should_run_md(self):
        if "trajectory" in self.inputs:
            self.ctx.trajectory = self.inputs.trajectory
            return False
        return True

    def run_md(self):
        inputs = {"settings": self.inputs.md.settings} if "settings" in self.inputs.md else {}
        self.report("running the melt-quench MD")
        outputs, failure = self.run_step(amorphous_md, "md", "melt-quench MD of amorphous silicon", "MD", **inputs)
        if failure:
            return failure
        self.ctx.trajectory = outputs["trajectory"]
        self.report(
            f"MD: {len(self.ctx.trajectory)} frames with "
            f"{self.ctx.trajectory.base.attributes.get('potential_description')}"
        )
        return None

    def split(self):
        outputs, failure = self.run_step(
            split_trajectory,
            "split",
            "training frames and the held-out end of the run",
            "split",
            trajectory=self.ctx.trajectory,
            held_out_fraction=self.inputs.held_out_fraction,
        )
        if failure:
            return failure
        self.ctx.training, self.ctx.held_out = outputs["training"], outputs["held_out"]
        return None

    def _filled(self, inputs) -> None:
        """The MD's potential for the LAMMPS cheap tier and the assessor's energies, the models' grid for the
        assessor's grid row, where the screening's inputs leave them open."""
        potential = self.ctx.trajectory.base.attributes.get("potential", None)
        if inputs.get("cheap_engine") is not None and inputs["cheap_engine"].value == LAMMPS_ENGINE:
            cheap = _cheap_settings(inputs, potential)
            if cheap != (_settings(inputs, "cheap_settings") or {}):
                inputs["cheap_settings"] = orm.Dict(cheap)
        assessors = _settings(inputs, "assessors") or {}
        if ASSESSOR not in assessors:
            return
        settings = dict(assessors[ASSESSOR] or {})
        if potential is not None:
            settings.setdefault("potential", potential)
        generation = inputs.generation
        if (
            generation.get("family") is not None
            and generation["family"].value == "repap"
            and "grid_bins" not in settings
        ):
            from ..ml.training import DEFAULT_SEEDS, plan_members

            seeds = generation["seeds"].get_list() if "seeds" in generation else list(DEFAULT_SEEDS)
            members = plan_members(
                get_family("repap"), _settings(generation, "settings"), seeds, _settings(generation, "grid")
            )
            settings["grid_bins"] = int(members[0].settings.bins)
        if settings != (assessors[ASSESSOR] or {}):
            inputs["assessors"] = orm.Dict({**assessors, ASSESSOR: settings})

    def screen(self):
        """The one screening, on the training frames, with the held-out frames as its reference."""
        inputs = self.screening_inputs()
        inputs.generation = AttributeDict({**dict(inputs.get("generation", {})), "training": self.ctx.training})
        inputs.references = {**dict(inputs.get("references", {})), HELD_OUT: self.ctx.held_out}
        self._filled(inputs)
        return self.submit_screening(
            inputs,
            f"screening of structures learnt from {len(self.ctx.training)} MD frames, "
            f"against the {len(self.ctx.held_out)} held-out ones",
        )

    def results(self):
        self.out("trajectory", self.ctx.trajectory)
        self.out("training", self.ctx.training)
        self.out("held_out", self.ctx.held_out)
        self.expose_screening_outputs()

"""``physgen.repap``: amorphous structures from RePAP, from the simulation to the quality report.

    melt-quench MD with an empirical silicon potential (physgen.amorphous_md; or a given trajectory)
        ──▶ training frames and a held-out end of the run (physgen.split_trajectory)
        ──▶ RePAP model(s) (physgen.train, family repap; or physgen.train.job on any computer)
        ──▶ structures with close-contact redraws, and the same draw without them (physgen.generate)
        ──▶ random structures at the same minimum distance (physgen.generate_random)
        ──▶ the quality report: RDF error against the hold-out (with the MD floor), close contacts,
            coordination, bond angles, energy per atom (physgen.amorphous_quality)
        ──▶ optional: representatives (physgen.select_representatives, PCA + k-means) relaxed with GPAW
            plane waves, and what the relaxation did to them (physgen.amorphous_dft_check)

Every step is one process node over a whole set. Bad inputs are refused at launch
(``ERROR_INVALID_INPUT``, 300); a minimum distance the generator cannot meet ends on 300 too, with
the generation's message.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import ToContext, WorkChain, if_

from ..amorphous import md as amorphous
from ..calculations.amorphous import (
    amorphous_dft_check,
    amorphous_md,
    amorphous_quality_report,
    quality_settings,
    split_trajectory,
)
from ..calculations.baseline import generate_random
from ..calculations.functions import EXIT_CODES, generate, normalise_training_inputs, select_representatives
from ..data.generator_model import GeneratorModel
from ..data.structure_set import StructureSet
from ..ml import settings as settings_module
from ..ml.family import get_family
from ..ml.training import plan_members
from .launch_checks import dft_problem, get_input
from .orphans import calcfunction_step
from .training_base import launch_training, trained_models

__all__ = ["RepapWorkChain", "validate_repap_inputs", "DFT_OVERRIDES"]

#: GPAW over its protocol for a 30-atom amorphous cell: the Γ point (an 8.5 Å cell of a disordered solid),
#: the cell fixed at the MD density, a loose force criterion (a demonstration that the structures relax
#: to amorphous minima, not converged physics)
DFT_OVERRIDES = {"gpaw": {"parameters": {"kpts": [1, 1, 1], "fmax": 0.1, "max_steps": 60}}}


def validate_repap_inputs(inputs, _ctx=None):
    """Refuse bad inputs at launch: MD settings, the split, family settings and seeds, the generation
    condition (against the density the MD will have), the quality settings and the DFT code/protocol."""
    try:
        family = get_family("repap")
        md = get_input(inputs, "md", "settings")
        if "trajectory" not in inputs:
            try:
                values = amorphous.MeltQuenchSettings(**(md.get_dict() if md is not None else {}))
            except TypeError as error:
                return f"md.settings: {error}; expected fields of MeltQuenchSettings"
            length = amorphous.cell_length(values.atoms, values.density)
            config = {"cell": [[length, 0, 0], [0, length, 0], [0, 0, length]], "numbers": [14] * values.atoms}
        else:
            config = None
        fraction = get_input(inputs, "held_out_fraction")
        if fraction is not None and not 0 < fraction.value < 1:
            return f"held_out_fraction: got {fraction.value}, expected a share in (0, 1)"
        settings = get_input(inputs, "train", "settings")
        seeds = get_input(inputs, "train", "seeds")
        plan_members(family, settings.get_dict() if settings is not None else None,
                     seeds.get_list() if seeds is not None else [0], None)
        condition = get_input(inputs, "generate", "condition")
        try:
            family.check_condition(condition.get_dict() if condition is not None else None, config)
        except ValueError as error:
            return f"generate.{error}"
        count = get_input(inputs, "generate", "count")
        if count is not None and count.value < 1:
            return f"generate.count: got {count.value}, expected a positive number of structures per model"
        quality = get_input(inputs, "quality")
        try:
            quality_settings(quality.get_dict() if quality is not None else None)
        except ValueError as error:
            return f"quality.{error}"
        if "training_code" in inputs:
            from .generation import _check_training_job

            message = _check_training_job(inputs)
            if message:
                return message
        problem = dft_problem(inputs, DFT_OVERRIDES, False, True, "structures")
        if problem:
            return problem
    except ValueError as error:
        return str(error)
    return None


class RepapWorkChain(WorkChain):
    """MD → RePAP training → generation (with and without close-contact redraws) and a random baseline →
    quality report against the held-out MD → optional GPAW relaxations of representatives."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("trajectory", valid_type=StructureSet, required=False,
                   help="Frames of a fixed-cell trajectory to learn from, instead of running the melt-quench MD.")
        spec.input_namespace("md", help="The melt-quench molecular dynamics (skipped with a trajectory).")
        spec.input("md.settings", valid_type=orm.Dict, required=False,
                   help="Fields of aiida_physgen.amorphous.md.MeltQuenchSettings (atoms, density, potential, steps, "
                        "frames, stride, seed...).")
        spec.input("held_out_fraction", valid_type=orm.Float, default=lambda: orm.Float(0.2),
                   help="Share of the trajectory (its end) kept out of training, for the quality report.")
        spec.input_namespace("train", help="Training of the RePAP model(s).")
        spec.input("train.settings", valid_type=orm.Dict, required=False, help="Nested repap settings.")
        spec.input("train.seeds", valid_type=orm.List, default=lambda: orm.List([0]), help="One model per seed.")
        spec.input("device", valid_type=orm.Str, default=lambda: orm.Str("cpu"), help="cpu, cuda or auto.")
        spec.input("training_code", valid_type=orm.AbstractCode, required=False,
                   help="Train as a physgen.train.job CalcJob with this code (under physgen.train.base), on any "
                        "computer, instead of the physgen.train calcfunction.")
        spec.input("training_options", valid_type=orm.Dict, required=False,
                   help="metadata.options of the training job (resources, max_wallclock_seconds, queue_name...).")
        spec.input_namespace("generate", help="Generation.")
        spec.input("generate.count", valid_type=orm.Int, default=lambda: orm.Int(1000),
                   help="Structures per model (each with and without redraws; as many random ones).")
        spec.input("generate.seed", valid_type=orm.Int, default=lambda: orm.Int(0), help="Seed of the generation.")
        spec.input("generate.condition", valid_type=orm.Dict, required=False,
                   help="min_distance (Å, 2.0), max_tries (100), max_restarts (20) of the close-contact redraws.")
        spec.input("quality", valid_type=orm.Dict, required=False,
                   help="Quality settings: r_max, bins, min_distance, cutoff, energy_structures, potential.")
        spec.input_namespace("dft", help="GPAW relaxations of representatives (skipped without a code).")
        spec.input("dft.code", valid_type=orm.AbstractCode, required=False, help="A Python with ASE and GPAW.")
        spec.input("dft.count", valid_type=orm.Int, default=lambda: orm.Int(2),
                   help="Representatives relaxed (k-means clusters of the generated structures).")
        spec.input("dft.protocol", valid_type=orm.Str, default=lambda: orm.Str("fast"), help="GPAW protocol.")
        spec.input("dft.overrides", valid_type=orm.Dict, required=False,
                   help="Overrides of the GPAW protocol, over the chain's (Γ point, fmax 0.1, 60 steps).")
        spec.inputs.validator = validate_repap_inputs
        spec.outline(
            cls.check_inputs,
            if_(cls.should_run_md)(cls.run_md),
            cls.split,
            cls.train,
            cls.inspect_training,
            cls.generate,
            cls.quality,
            if_(cls.should_run_dft)(cls.run_dft, cls.inspect_dft),
            cls.results,
        )
        spec.output("trajectory", valid_type=StructureSet, help="The MD frames the chain learnt from.")
        spec.output("training", valid_type=StructureSet, help="The frames the model(s) trained on.")
        spec.output("held_out", valid_type=StructureSet, help="The held-out end of the trajectory.")
        spec.output_namespace("models", valid_type=GeneratorModel, dynamic=True, help="The RePAP model(s).")
        spec.output("generated", valid_type=StructureSet, help="Generated structures, with close-contact redraws.")
        spec.output("generated_no_redraws", valid_type=StructureSet,
                    help="The same generation without redraws (min_distance 0).")
        spec.output("random", valid_type=StructureSet, help="Random structures at the same minimum distance.")
        spec.output("quality", valid_type=orm.Dict, help="The quality table and curves.")
        spec.output("rdf_plot", valid_type=orm.SinglefileData, help="RDF: generated, MD, random (PNG).")
        spec.output("angle_plot", valid_type=orm.SinglefileData, help="Bond-angle distributions (PNG).")
        spec.output("energy_plot", valid_type=orm.SinglefileData, required=False,
                    help="Energy per atom with the MD potential (PNG).")
        spec.output_namespace("dft_structures", valid_type=orm.StructureData, dynamic=True, required=False,
                              help="The GPAW-relaxed representatives.")
        spec.output("dft_check", valid_type=orm.Dict, required=False,
                    help="Energy, displacement and coordination before and after the GPAW relaxations.")
        spec.exit_code(300, "ERROR_INVALID_INPUT", message="invalid input: {message}")
        spec.exit_code(310, "ERROR_TRAINING_DIVERGED", message="training diverged: {message}")
        spec.exit_code(320, "ERROR_SUB_PROCESS_FAILED", message="the {process} step failed: {message}")

    @classmethod
    def get_builder_from_protocol(cls, protocol: str | None = None, overrides: dict | None = None,
                                  trajectory: StructureSet | None = None, dft_code: orm.AbstractCode | None = None):
        """A builder from the chain's protocol (``fast``, ``balanced`` or ``paper``; sizes in
        ``workflows/protocols/repap.yaml``) and the RePAP family's protocol of the same name.

        :param overrides: nested overrides by namespace: ``md`` (MD settings), ``generate`` (count, seed,
            condition), ``held_out_fraction``, ``quality``, ``train`` (``{'settings': {...}, 'seeds': [...]}``).
        :param trajectory: frames to learn from instead of running the MD.
        :param dft_code: a GPAW code: the chain ends with GPAW relaxations of representatives.
        """
        from .protocols import generation_protocol, load_protocol

        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - {"md", "generate", "held_out_fraction", "quality", "train"})
        if unknown:
            raise ValueError(f"overrides: unknown key(s) {unknown}; expected md, generate, held_out_fraction, "
                             "quality, train")
        values = load_protocol("repap", protocol, {k: v for k, v in overrides.items() if k != "train"})
        builder = cls.get_builder()
        if trajectory is not None:
            builder.trajectory = trajectory
        else:
            builder.md.settings = orm.Dict(values.get("md", {}))
        builder.held_out_fraction = orm.Float(values.get("held_out_fraction", 0.2))
        generation = values.get("generate", {})
        if "count" in generation:
            builder.generate.count = orm.Int(generation["count"])
        if "seed" in generation:
            builder.generate.seed = orm.Int(generation["seed"])
        if generation.get("condition"):
            builder.generate.condition = orm.Dict(generation["condition"])
        if values.get("quality"):
            builder.quality = orm.Dict(values["quality"])
        family = generation_protocol("repap", protocol or "fast", {}, overrides.get("train"))
        if family.get("settings"):
            builder.train.settings = orm.Dict(family["settings"])
        if "seeds" in family:
            builder.train.seeds = orm.List([int(s) for s in family["seeds"]])
        if dft_code is not None:
            builder.dft.code = dft_code
        return builder

    def _step(self, function, link: str, description: str, process: str, **inputs):
        return calcfunction_step(self, function, link, description, process, EXIT_CODES, **inputs)

    # ------------------------------------------------------------------ steps
    def check_inputs(self):
        message = validate_repap_inputs(self.inputs)
        if message:
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
        if not self.node.label:
            self.node.label = "RePAP"
        return None

    def should_run_md(self):
        return "trajectory" not in self.inputs

    def run_md(self):
        inputs = {"settings": self.inputs.md.settings} if "settings" in self.inputs.md else {}
        self.report("running the melt-quench MD")
        outputs, failure = self._step(amorphous_md, "md", "melt-quench MD of amorphous silicon", "MD", **inputs)
        if failure:
            return failure
        self.ctx.trajectory = outputs["trajectory"]
        self.report(f"MD: {len(self.ctx.trajectory)} frames with "
                    f"{self.ctx.trajectory.base.attributes.get('potential_description')}")
        return None

    def split(self):
        trajectory = self.ctx.trajectory if "trajectory" in self.ctx else self.inputs.trajectory
        self.ctx.trajectory = trajectory
        outputs, failure = self._step(split_trajectory, "split", "training frames and the held-out end of the run",
                                      "split", trajectory=trajectory, held_out_fraction=self.inputs.held_out_fraction)
        if failure:
            return failure
        self.ctx.training, self.ctx.held_out = outputs["training"], outputs["held_out"]
        return None

    def train(self):
        inputs = {"family": orm.Str("repap"), "target": orm.Dict({}), "seeds": self.inputs.train.seeds}
        if "settings" in self.inputs.train:
            inputs["settings"] = self.inputs.train.settings
        canonical, failure = self._step(normalise_training_inputs, "normalise_training", "canonical training inputs",
                                        "normalisation", **inputs)
        if failure:
            return failure
        self.ctx.bins = int(canonical["settings"]["bins"])
        what = f"{len(self.inputs.train.seeds.get_list())} RePAP model(s) on {len(self.ctx.training)} frames"
        train_inputs = {"training": self.ctx.training, "family": inputs["family"], **canonical}
        return launch_training(self, train_inputs, what, "train", "training_repap", "training_node")

    def inspect_training(self):
        models, failure = trained_models(self, "training_node", "training", EXIT_CODES)
        if failure:
            return failure
        self.ctx.models = models
        return None

    def generate(self):
        count, seed = self.inputs.generate.count, self.inputs.generate.seed
        condition = self.inputs.generate.condition.get_dict() if "condition" in self.inputs.generate else {}
        condition = get_family("repap").check_condition(condition, None)
        outputs, failure = self._step(generate, "generate", f"{count.value} structures per model with redraws",
                                      "generation", count=count, seed=seed, condition=orm.Dict(condition),
                                      **self.ctx.models)
        if failure:
            return failure
        self.ctx.generated = outputs
        raw, failure = self._step(generate, "generate_no_redraws", f"{count.value} structures per model, no redraws",
                                  "generation without redraws", count=count, seed=seed,
                                  condition=orm.Dict({**condition, "min_distance": 0.0}), **self.ctx.models)
        if failure:
            return failure
        self.ctx.generated_raw = raw
        batch = self.ctx.generated.get_batch()
        redrawn = int((batch.info["resampled_atoms"] > 0).sum())
        self.report(f"generated {len(batch)} structures; {redrawn} needed close-contact redraws "
                    f"({int(batch.info['resampled_atoms'].sum())} atom redraws, {int(batch.info['restarts'].sum())} "
                    "restarts)")
        first = batch[0]
        target = {"composition": first.get_chemical_formula(mode="hill"), "cell": first.cell.array.tolist(),
                  "pbc": True}
        random, failure = self._step(generate_random, "random", "random structures at the same minimum distance",
                                     "random baseline", target=orm.Dict(target), count=orm.Int(len(batch)), seed=seed,
                                     min_distance=orm.Float(condition["min_distance"]))
        if failure:
            return failure
        self.ctx.random = random
        return None

    def quality(self):
        inputs = {"held_out": self.ctx.held_out, "repap": self.ctx.generated,
                  "repap_no_redraws": self.ctx.generated_raw, "random": self.ctx.random}
        settings = {"grid_bins": self.ctx.bins, **(self.inputs.quality.get_dict() if "quality" in self.inputs else {})}
        inputs["settings"] = orm.Dict(settings)
        outputs, failure = self._step(amorphous_quality_report, "quality", "RDF error, close contacts, angles, "
                                      "energies", "quality report", **inputs)
        if failure:
            return failure
        self.ctx.quality = outputs
        self.report("quality against the held-out MD:\n" + outputs["quality"]["text"])
        return None

    def should_run_dft(self):
        return "code" in self.inputs.dft

    def run_dft(self):
        from ..engines import get_engine

        settings = orm.Dict({"n_clusters": self.inputs.dft.count.value, "plot": False,
                             "n_components": min(10, self.inputs.dft.count.value + 1)})
        outputs, failure = self._step(select_representatives, "select", "representatives for DFT (PCA + k-means)",
                                      "selection", candidates=self.ctx.generated, seed=self.inputs.generate.seed,
                                      settings=settings)
        if failure:
            return failure
        self.ctx.representatives = dict(outputs["structures"])
        engine = get_engine("gpaw", "structure")
        overrides = settings_module.merge(
            DFT_OVERRIDES, self.inputs.dft.overrides.get_dict() if "overrides" in self.inputs.dft else {})
        submitted = {}
        for label, structure in self.ctx.representatives.items():
            builder = engine.get_builder(self.inputs.dft.code, structure, self.inputs.dft.protocol.value, overrides,
                                         False)
            builder.metadata = {"call_link_label": f"dft_{label}", "label": label,
                                "description": f"GPAW relaxation of generated {label}"}
            submitted[f"dft_{label}"] = self.submit(builder)
        self.report(f"submitted {len(submitted)} GPAW relaxation(s): {sorted(self.ctx.representatives)}")
        return ToContext(**submitted)

    def inspect_dft(self):
        inputs = {}
        for label, structure in self.ctx.representatives.items():
            node = self.ctx[f"dft_{label}"]
            if not node.is_finished_ok:
                self.report(f"GPAW relaxation of {label} failed ({node.process_label}<{node.pk}> exit status "
                            f"{node.exit_status}); it is left out of the DFT check")
                continue
            inputs.update({f"{label}_initial": structure, f"{label}_structure": node.outputs.output_structure,
                           f"{label}_parameters": node.outputs.output_parameters})
            self.out(f"dft_structures.{label}", node.outputs.output_structure)
        if not inputs:
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED.format(process="DFT", message="every relaxation failed")
        outputs, failure = self._step(amorphous_dft_check, "dft_check", "what the GPAW relaxations did", "DFT check",
                                      **inputs)
        if failure:
            return failure
        self.out("dft_check", outputs)
        self.report("GPAW relaxations:\n" + self.outputs["dft_check"]["text"])
        return None

    def results(self):
        self.out("trajectory", self.ctx.trajectory)
        self.out("training", self.ctx.training)
        self.out("held_out", self.ctx.held_out)
        self.out("models", self.ctx.models)
        self.out("generated", self.ctx.generated)
        self.out("generated_no_redraws", self.ctx.generated_raw)
        self.out("random", self.ctx.random)
        for key in ("quality", "rdf_plot", "angle_plot", "energy_plot"):
            if key in self.ctx.quality:
                self.out(key, self.ctx.quality[key])
        return None

"""``physgen.crystal_gan``: the physics-guided crystal GAN end to end, with a validation funnel.

    known crystals ──▶ the usable ternaries (physgen.crystal_training_set: what was dropped and why)
        ──▶ crystal-GAN models (physgen.train, family crystal_gan)
        ──▶ crystals generated for every requested space group + elements (physgen.generate)
        ──▶ validity: closest pair, density, charge balance (physgen.crystal_validity, all sets at once)
        ──▶ relaxation and energy with CHGNet (physgen.relax_cheap, one batch process)
        ──▶ elemental references relaxed the same way (physgen.elemental_references, physgen.relax_cheap)
        ──▶ formation energy, uniqueness within the batch, novelty against training (physgen.assess_crystals)
        ──▶ the best N (physgen.pick_crystals) to DFT with DOS, and the elemental references to DFT
        ──▶ the report: counts per stage, formation-energy histogram, DFT against CHGNet (physgen.crystal_report)

Without ``dft.code`` the chain stops after the ML stages and still reports. Every stage is one process
node over a whole set; each candidate keeps its index through the funnel. Bad inputs are refused at
launch (``ERROR_INVALID_INPUT``, 300).
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import ToContext, WorkChain, if_

from ..calculations.cheap import relax_cheap
from ..calculations.crystals import (
    EXIT_CODES as CRYSTAL_EXIT_CODES,
    assess_crystals,
    crystal_report,
    crystal_training_set,
    crystal_validity,
    elemental_references,
    pick_crystals,
)
from ..calculations.functions import EXIT_CODES, generate, normalise_training_inputs, train
from ..data.generator_model import GeneratorModel
from ..data.structure_set import StructureSet
from ..ml import settings as settings_module
from ..ml.family import get_family
from ..ml.training import plan_members
from .launch_checks import dft_problem, get_input
from .orphans import calcfunction_step

__all__ = ["CrystalGanWorkChain", "validate_crystal_gan_inputs", "CHEAP_SETTINGS", "DFT_OVERRIDES"]

#: the ML potential's relaxation: CHGNet with the cell free (generated lattices are only approximate)
CHEAP_SETTINGS = {"method": "chgnet", "fix_cell": False, "fmax": 0.05, "max_steps": 300}
#: DFT over the GPAW protocol: relax the cell too (formation energies need the relaxed volume)
DFT_OVERRIDES = {"gpaw": {"parameters": {"relax_cell": True}}}
DEFAULT_CONDITIONS = {"F-43m": {"space_group": 216}}

_CODES = {**EXIT_CODES, **CRYSTAL_EXIT_CODES}


def validate_crystal_gan_inputs(inputs, _ctx=None):
    """Refuse bad inputs at launch: the target's space groups, the family settings, every generation
    condition, the validity and CHGNet settings, and the DFT code and protocol."""
    from ..screening import cheap_relax

    try:
        family = get_family("crystal_gan")
        groups = get_input(inputs, "space_groups")
        target = family.check_target({"space_groups": groups.get_list() if groups is not None else None})
        settings = get_input(inputs, "train", "settings")
        seeds = get_input(inputs, "train", "seeds")
        plan_members(family, settings.get_dict() if settings is not None else None,
                     seeds.get_list() if seeds is not None else [0], None)
        conditions = get_input(inputs, "generate", "conditions")
        conditions = conditions.get_dict() if conditions is not None else DEFAULT_CONDITIONS
        if not conditions:
            return "generate.conditions: expected at least one named condition, e.g. {'F-43m': {'space_group': 216}}"
        config = {"training_space_groups": {str(g): 1 for g in (target["space_groups"] or [216])},
                  "training_triples": []}
        for name, condition in conditions.items():
            if not isinstance(condition, dict):
                return f"generate.conditions.{name}: expected a dictionary with space_group and/or elements"
            try:
                family._condition(condition, config, warn=False)
            except ValueError as error:
                return f"generate.conditions.{name}: {error}"
        count = get_input(inputs, "generate", "count")
        if count is not None and count.value < 1:
            return f"generate.count: got {count.value}, expected a positive number of crystals per condition"
        validity = get_input(inputs, "validity")
        if validity is not None:
            unknown = sorted(set(validity.get_dict()) - {"min_distance", "density_range", "charge_balance"})
            if unknown:
                return f"validity: unknown key(s) {unknown}; expected min_distance, density_range, charge_balance"
        cheap = get_input(inputs, "cheap_settings")
        cheap_relax.CheapSettings.from_dict(settings_module.merge(CHEAP_SETTINGS, cheap.get_dict() if cheap else {}))
        problem = dft_problem(inputs, DFT_OVERRIDES, True, True, "crystals")
        if problem:
            return problem
    except ValueError as error:
        return str(error)
    return None


class CrystalGanWorkChain(WorkChain):
    """Known crystals → crystal GAN → generation per space group → validity → CHGNet → formation energy,
    uniqueness, novelty → best N to DFT with DOS → report."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("training", valid_type=StructureSet, help="Known crystals to learn from (filtered first).")
        spec.input("space_groups", valid_type=orm.List, required=False,
                   help="Space groups to train on (numbers or symbols); all supported ones of the data if absent.")
        spec.input_namespace("train", help="Training of the crystal GAN.")
        spec.input("train.settings", valid_type=orm.Dict, required=False, help="Nested crystal_gan settings.")
        spec.input("train.seeds", valid_type=orm.List, default=lambda: orm.List([0]), help="One model per seed.")
        spec.input("device", valid_type=orm.Str, default=lambda: orm.Str("cpu"), help="cpu, cuda or auto.")
        spec.input_namespace("generate", help="Generation: one set per named condition.")
        spec.input("generate.conditions", valid_type=orm.Dict, required=False,
                   help="Named conditions, e.g. {'F-43m': {'space_group': 216}, 'Fm-3m': {'space_group': 225}}.")
        spec.input("generate.count", valid_type=orm.Int, default=lambda: orm.Int(300), help="Crystals per condition.")
        spec.input("generate.seed", valid_type=orm.Int, default=lambda: orm.Int(0), help="Seed of the generation.")
        spec.input("validity", valid_type=orm.Dict, required=False,
                   help="min_distance (Å), density_range (g/cm³), charge_balance of the validity stage.")
        spec.input("cheap_settings", valid_type=orm.Dict, required=False,
                   help="Settings of the CHGNet relaxation over the chain's defaults (cell relaxed, fmax 0.05).")
        spec.input("matcher", valid_type=orm.Dict, required=False,
                   help="ltol, stol, angle_tol of the StructureMatcher for uniqueness and novelty.")
        spec.input_namespace("dft", help="DFT of the best candidates (skipped without a code).")
        spec.input("dft.code", valid_type=orm.AbstractCode, required=False, help="A Python with ASE and GPAW.")
        spec.input("dft.count", valid_type=orm.Int, default=lambda: orm.Int(3), help="Crystals given to DFT.")
        spec.input("dft.protocol", valid_type=orm.Str, default=lambda: orm.Str("fast"), help="GPAW protocol.")
        spec.input("dft.overrides", valid_type=orm.Dict, required=False,
                   help="Overrides of the GPAW protocol (over a cell relaxation).")
        spec.inputs.validator = validate_crystal_gan_inputs
        spec.outline(
            cls.check_inputs,
            cls.filter_training,
            cls.train,
            cls.generate,
            cls.validity,
            cls.relax,
            cls.assess,
            if_(cls.should_run_dft)(cls.run_dft, cls.inspect_dft),
            cls.results,
        )
        spec.output("training_set", valid_type=StructureSet, help="The crystals the models learnt from.")
        spec.output_namespace("models", valid_type=GeneratorModel, dynamic=True, help="The crystal-GAN model(s).")
        spec.output_namespace("generated", valid_type=StructureSet, dynamic=True, help="Generated, per condition.")
        spec.output("valid", valid_type=StructureSet, help="The crystals that passed the validity checks.")
        spec.output("relaxed", valid_type=StructureSet, help="The valid crystals relaxed with CHGNet.")
        spec.output("assessed", valid_type=StructureSet,
                    help="The relaxed crystals with formation energy, uniqueness and novelty flags.")
        spec.output_namespace("picked", valid_type=orm.StructureData, dynamic=True, required=False,
                              help="The crystals given to DFT (primitive cells).")
        spec.output_namespace("dft_structures", valid_type=orm.StructureData, dynamic=True, required=False,
                              help="The DFT-relaxed picked crystals.")
        spec.output_namespace("dos", valid_type=orm.XyData, dynamic=True, required=False, help="DOS of each.")
        spec.output("report", valid_type=orm.Dict, help="Funnel counts, DFT check and the table as text.")
        spec.output("histogram", valid_type=orm.SinglefileData, help="Formation-energy histogram (PNG).")
        spec.exit_code(300, "ERROR_INVALID_INPUT", message="invalid input: {message}")
        spec.exit_code(310, "ERROR_TRAINING_DIVERGED", message="training diverged: {message}")
        spec.exit_code(320, "ERROR_SUB_PROCESS_FAILED", message="the {process} step failed: {message}")
        spec.exit_code(340, "ERROR_NOTHING_LEFT", message="no candidate is left after a funnel stage: {message}")

    def _step(self, function, link: str, description: str, process: str, **inputs):
        return calcfunction_step(self, function, link, description, process, _CODES, **inputs)

    # ------------------------------------------------------------------ steps
    def check_inputs(self):
        message = validate_crystal_gan_inputs(self.inputs)
        if message:
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
        if not self.node.label:
            self.node.label = "crystal GAN"
        return None

    def filter_training(self):
        inputs = {"structures": self.inputs.training}
        if "space_groups" in self.inputs:
            inputs["space_groups"] = self.inputs.space_groups
        outputs, failure = self._step(crystal_training_set, "training_set", "the usable training crystals",
                                      "training filter", **inputs)
        if failure:
            return failure
        self.ctx.training = outputs["training"]
        counts = self.ctx.training.base.attributes.get("dropped_counts")
        self.report(f"{len(self.ctx.training)} of {len(self.inputs.training)} crystals kept for training"
                    + (f"; dropped: {counts}" if counts else ""))
        return None

    def train(self):
        groups = self.inputs.get("space_groups")
        target = {"space_groups": groups.get_list() if groups is not None else None}
        inputs = {"family": orm.Str("crystal_gan"), "target": orm.Dict(target), "seeds": self.inputs.train.seeds}
        if "settings" in self.inputs.train:
            inputs["settings"] = self.inputs.train.settings
        canonical, failure = self._step(normalise_training_inputs, "normalise_training", "canonical training inputs",
                                        "normalisation", **inputs)
        if failure:
            return failure
        what = f"{len(self.inputs.train.seeds.get_list())} crystal-GAN model(s) on {len(self.ctx.training)} crystals"
        self.report(f"training {what}")
        outputs, failure = self._step(train, "train", f"train {what}", "training", training=self.ctx.training,
                                      family=inputs["family"], device=self.inputs.device, **canonical)
        if failure:
            return failure
        self.ctx.models = dict(outputs["models"])
        return None

    def generate(self):
        conditions = self.inputs.generate.conditions.get_dict() if "conditions" in self.inputs.generate \
            else DEFAULT_CONDITIONS
        self.ctx.generated = {}
        for name, condition in conditions.items():
            link = "".join(c if c.isalnum() else "_" for c in name).strip("_") or "condition"
            crystals, failure = self._step(
                generate, f"generate_{link}", f"{self.inputs.generate.count.value} crystals for {name}",
                f"generation for {name}", count=self.inputs.generate.count, seed=self.inputs.generate.seed,
                condition=orm.Dict(condition), **self.ctx.models)
            if failure:
                return failure
            share = float(crystals.get_batch().info["symmetric"].mean())
            self.report(f"{name}: {len(crystals)} crystals, {share:.0%} keep the requested space group")
            self.ctx.generated[link] = crystals
        return None

    def validity(self):
        inputs = dict(self.ctx.generated)
        if "validity" in self.inputs:
            inputs["settings"] = self.inputs.validity
        outputs, failure = self._step(crystal_validity, "validity", "closest pair, density, charge balance",
                                      "validity", **inputs)
        if failure:
            return failure
        self.ctx.valid = outputs["valid"]
        counts = self.ctx.valid.base.attributes.get("counts")
        self.report(f"validity: {counts['valid']} of {counts['generated']} valid; reasons: {counts['reasons']}")
        return None

    def relax(self):
        settings = orm.Dict(settings_module.merge(
            CHEAP_SETTINGS, self.inputs.cheap_settings.get_dict() if "cheap_settings" in self.inputs else {}))
        self.ctx.cheap_settings = settings
        outputs, failure = self._step(relax_cheap, "relax_chgnet", f"CHGNet relaxation of {len(self.ctx.valid)} "
                                      "crystals", "CHGNet relaxation", structures=self.ctx.valid, settings=settings)
        if failure:
            return failure
        self.ctx.relaxed = outputs["relaxed"]
        outputs, failure = self._step(elemental_references, "references", "elemental reference structures",
                                      "elemental references", structures=self.ctx.valid)
        if failure:
            return failure
        outputs, failure = self._step(relax_cheap, "relax_references", "CHGNet relaxation of the elemental "
                                      "references", "reference relaxation", structures=outputs["references"],
                                      settings=settings)
        if failure:
            return failure
        self.ctx.references = outputs["relaxed"]
        return None

    def assess(self):
        inputs = {"relaxed": self.ctx.relaxed, "references": self.ctx.references, "training": self.ctx.training}
        if "matcher" in self.inputs:
            inputs["settings"] = self.inputs.matcher
        outputs, failure = self._step(assess_crystals, "assess", "formation energy, uniqueness, novelty",
                                      "assessment", **inputs)
        if failure:
            return failure
        self.ctx.assessed = outputs["assessed"]
        self.report(f"assessment: {self.ctx.assessed.base.attributes.get('counts')}")
        return None

    def should_run_dft(self):
        return "code" in self.inputs.dft

    def run_dft(self):
        from ..engines import get_engine

        outputs, failure = self._step(pick_crystals, "pick", f"the best {self.inputs.dft.count.value} for DFT",
                                      "pick", assessed=self.ctx.assessed, count=self.inputs.dft.count)
        if failure:
            return failure
        self.ctx.picked = dict(outputs["picked"])
        engine = get_engine("gpaw", "structure")
        overrides = settings_module.merge(
            DFT_OVERRIDES, self.inputs.dft.overrides.get_dict() if "overrides" in self.inputs.dft else {})
        protocol = self.inputs.dft.protocol.value
        references = self.ctx.references.get_batch()
        jobs = {}
        for label, structure in list(self.ctx.picked.items()):
            try:
                builder = engine.get_builder(self.inputs.dft.code, structure, protocol, overrides, True)
            except ValueError as error:  # the engine refuses this structure: the others still run
                self.report(f"{label} ({structure.get_formula()}) is left out of DFT: {error}")
                del self.ctx.picked[label]
                continue
            jobs[label] = (builder, f"DFT relaxation and DOS of {label} ({structure.get_formula()})")
        if not jobs:
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED.format(
                process="DFT", message="the engine refused every picked crystal")
        from ase.data import chemical_symbols

        symbols = sorted({kind.symbol for s in self.ctx.picked.values() for kind in s.kinds})
        for index in range(len(references)):
            symbol = chemical_symbols[int(references.info["element"][index])]
            if symbol in symbols:
                structure = orm.StructureData(ase=references[index])
                jobs[f"ref_{symbol}"] = (engine.get_builder(self.inputs.dft.code, structure, protocol, overrides,
                                                            False), f"DFT relaxation of elemental {symbol}")
        submitted = {}
        for label, (builder, description) in jobs.items():
            builder.metadata = {"call_link_label": f"dft_{label}", "label": label, "description": description}
            submitted[f"dft_{label}"] = self.submit(builder)
        self.report(f"submitted {len(jobs)} GPAW relaxation(s): {sorted(jobs)}")
        return ToContext(**submitted)

    def inspect_dft(self):
        self.ctx.dft_inputs = {}
        for key in [k for k in self.ctx if k.startswith("dft_") and k != "dft_inputs"]:
            node = self.ctx[key]
            label = key[4:]
            if not node.is_finished_ok:
                self.report(f"DFT of {label} failed ({node.process_label}<{node.pk}> exit status "
                            f"{node.exit_status}); it is left out of the DFT check")
                continue
            self.ctx.dft_inputs[f"{label}_parameters"] = node.outputs.output_parameters
            self.ctx.dft_inputs[f"{label}_structure"] = node.outputs.output_structure
            if label.startswith("crystal_"):
                self.ctx.dft_inputs[f"{label}_picked"] = self.ctx.picked[label]
                self.out(f"dft_structures.{label}", node.outputs.output_structure)
                if "dos" in node.outputs:
                    self.out(f"dos.{label}", node.outputs.dos)
        if not any(k.startswith("crystal_") for k in self.ctx.dft_inputs):
            return self.exit_codes.ERROR_SUB_PROCESS_FAILED.format(process="DFT", message="every crystal failed")
        self.out("picked", self.ctx.picked)
        return None

    def results(self):
        outputs, failure = self._step(crystal_report, "report", "funnel counts and the DFT check", "report",
                                      valid=self.ctx.valid, assessed=self.ctx.assessed,
                                      **self.ctx.get("dft_inputs", {}))
        if failure:
            return failure
        self.report("crystal funnel:\n" + outputs["report"]["text"])
        self.out("training_set", self.ctx.training)
        self.out("models", self.ctx.models)
        self.out("generated", self.ctx.generated)
        self.out("valid", self.ctx.valid)
        self.out("relaxed", self.ctx.relaxed)
        self.out("assessed", self.ctx.assessed)
        self.out("report", outputs["report"])
        self.out("histogram", outputs["histogram"])
        return None

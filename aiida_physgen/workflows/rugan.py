"""``physgen.rugan``: porous graphene end to end with RUGAN and the EDNN surrogate.

    sheets (physgen.porous_graphene) ──▶ reference energies (physgen.label_reference, one batch)
        ──▶ EDNN trained on them (physgen.train, family ednn)
        ──▶ RUGAN trained on them (physgen.train, family rugan; conditioned on energy per area)
        ──▶ sheets generated at labels drawn from the training set, at every requested scale
            (physgen.generate; scale 2 = 4× the area, the same fully convolutional model)
        ──▶ the label check (physgen.check_labels: requested vs obtained by EDNN and by the reference
            method; Kolmogorov–Smirnov table and figures)
        ──▶ optionally a GPAW density of states of one generated sheet.

With a ``training_code`` both trainings run as ``physgen.train.job`` CalcJobs (under
``physgen.train.base``, so they restart from their checkpoints) on any computer.

Every step is a process node with its inputs and outputs in the provenance graph; thousands of
sheets stay one ``physgen.structure_set`` per step. Give ``training`` (labelled sheets) to skip the
first two steps. Bad inputs are refused at launch (``ERROR_INVALID_INPUT``, 300).
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import ToContext, WorkChain, if_

from ..calculations.functions import EXIT_CODES, generate, normalise_training_inputs
from ..calculations.graphene import ReferenceSettings, check_labels, label_reference, pick_structure, porous_graphene
from ..data.generator_model import GeneratorModel
from ..data.structure_set import StructureSet
from ..ml import graphene
from ..ml import settings as settings_module
from ..ml.family import get_family
from ..ml.training import plan_members
from .orphans import failed_step_exit_code, run_calcfunction_step
from .training_base import launch_training, trained_models

__all__ = ["RuganWorkChain", "validate_rugan_inputs"]

TARGET = {"property": "energy"}

#: GPAW parameters of the DOS step, over the protocol's: a single point in LCAO with the small sz(dzp)
#: basis at the Γ point (a generated 14 × 8-cell sheet has about 400 atoms in a 34 Å cell); ``dos.overrides``
#: changes them (e.g. ``{'gpaw': {'parameters': {'kpts': [2, 2, 1]}}}``)
DOS_PARAMETERS = {"calculation": "static", "dos": True, "mode": "lcao", "basis": "sz(dzp)", "ecut": None,
                  "h": 0.25, "kpts": [1, 1, 1]}


def _dict(inputs, *path):
    node = inputs
    for key in path:
        if key not in node:
            return None
        node = node[key]
    return node.get_dict()


def _list(inputs, *path, default):
    node = inputs
    for key in path:
        if key not in node:
            return list(default)
        node = node[key]
    return list(node.get_list())


def validate_rugan_inputs(inputs, _ctx=None):
    """Refuse bad inputs at launch: sheet settings, reference settings, both families' settings against
    the training sheets (given or to be made), the scales and the DOS step's code and protocol."""
    try:
        if "training" in inputs:
            batch = inputs["training"].get_batch()
            if "energy" not in batch.info:
                return "training: the sheets have no 'energy' info array (label them with physgen.label_reference)"
            graphene.batch_to_sheets(batch, where="training")
        else:
            sheets = settings_module.from_dict(graphene.SheetSettings, _dict(inputs, "sheets", "settings"),
                                               where="sheets.settings")
            count = inputs["sheets"]["count"].value if "sheets" in inputs and "count" in inputs["sheets"] else 4096
            if count < 20:
                return f"sheets.count: got {count}, expected at least 20 sheets (a held-out part is needed)"
            # a few real sheets of the requested lattice, so the families check their settings against it
            batch = graphene.sheets_to_batch(sheets.make(20, 0), sheets.lattice,
                                             info={"energy": [-1.0] * 20})
        ReferenceSettings(_dict(inputs, "reference"))
        for name in ("ednn", "rugan"):
            family = get_family(name)
            target = family.check_target(TARGET)
            members = plan_members(family, _dict(inputs, name, "settings"), _list(inputs, name, "seeds", default=[0]), None)
            for member in members[:1]:
                family.validate(batch, target, member.settings)
        scales = _list(inputs, "check", "scales", default=[1, 2])
        if not scales or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in scales):
            return f"check.scales: got {scales!r}, expected positive integer multiples of the sheet's side, e.g. [1, 2]"
        if len(set(scales)) != len(scales):
            return f"check.scales: got {scales!r}, expected each scale once"
        rugan = get_family("rugan")
        for scale in scales:
            rugan.check_condition({"labels": "training", "scale": scale}, {})
        if "training_code" in inputs:
            from .generation import _check_training_job

            message = _check_training_job(inputs)
            if message:
                return message
        if "dos" in inputs and "code" in inputs["dos"]:
            from ..engines import get_engine

            problem = get_engine("gpaw", "structure", "dos").validate(
                inputs["dos"]["code"], inputs["dos"]["protocol"].value if "protocol" in inputs["dos"] else "fast",
                None, True, True, ["C"])
            if problem:
                return f"dos.{problem}"
    except ValueError as error:
        return str(error)
    return None


class RuganWorkChain(WorkChain):
    """Sheets → reference labels → EDNN → RUGAN → generation at 1× and larger → label check → (GPAW DOS)."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("training", valid_type=StructureSet, required=False,
                   help="Labelled sheets (info 'energy', eV); when given, no sheets are made or labelled.")
        spec.input_namespace("sheets", help="The random porous sheets to learn from (when no training is given).")
        spec.input("sheets.count", valid_type=orm.Int, default=lambda: orm.Int(4096), help="Number of sheets.")
        spec.input("sheets.seed", valid_type=orm.Int, default=lambda: orm.Int(0), help="Seed of the holes.")
        spec.input("sheets.settings", valid_type=orm.Dict, required=False,
                   help="nx, ny (orthogonal cells, default 14 × 8), holes [min, max], radius [min, max] Å, prune.")
        spec.input("reference", valid_type=orm.Dict, required=False,
                   help="The reference method: method (tersoff), relax (false).")
        for name, what in (("ednn", "the EDNN energy surrogate"), ("rugan", "the RUGAN generator")):
            spec.input_namespace(name, help=f"Training of {what}.")
            spec.input(f"{name}.settings", valid_type=orm.Dict, required=False, help=f"Nested {name} settings.")
            spec.input(f"{name}.seeds", valid_type=orm.List, default=lambda: orm.List([0]),
                       help="One model per seed.")
        spec.input("device", valid_type=orm.Str, default=lambda: orm.Str("cpu"), help="cpu, cuda or auto.")
        spec.input("training_code", valid_type=orm.AbstractCode, required=False,
                   help="Train both models as physgen.train.job CalcJobs with this code (under physgen.train.base), "
                        "on any computer, instead of the physgen.train calcfunction.")
        spec.input("training_options", valid_type=orm.Dict, required=False,
                   help="metadata.options of the training jobs (resources, max_wallclock_seconds, queue_name...).")
        spec.input_namespace("check", help="The label check: requested against obtained energies.")
        spec.input("check.count", valid_type=orm.Int, default=lambda: orm.Int(10000),
                   help="Sheets generated per RUGAN model and scale.")
        spec.input("check.scales", valid_type=orm.List, default=lambda: orm.List([1, 2]),
                   help="Sheet side multiples to generate at (2 = 4× the area).")
        spec.input("check.seed", valid_type=orm.Int, default=lambda: orm.Int(0), help="Seed of the generation.")
        spec.input("check.reference", valid_type=orm.Bool, default=lambda: orm.Bool(True),
                   help="Also label the generated sheets with the reference method (not only the EDNN).")
        spec.input_namespace("dos", required=False, help="Optional GPAW DOS of one generated sheet.")
        spec.input("dos.code", valid_type=orm.AbstractCode, required=False, help="A Python with ASE and GPAW.")
        spec.input("dos.protocol", valid_type=orm.Str, default=lambda: orm.Str("fast"), help="GPAW protocol.")
        spec.input("dos.overrides", valid_type=orm.Dict, required=False, help="Overrides of the GPAW protocol.")
        spec.input("dos.index", valid_type=orm.Int, default=lambda: orm.Int(0),
                   help="Which generated sheet (of the first scale) gets the DOS.")
        spec.inputs.validator = validate_rugan_inputs
        spec.outline(
            cls.check_inputs,
            if_(cls.should_make_sheets)(cls.make_sheets, cls.label),
            cls.train_ednn,
            cls.inspect_ednn,
            cls.train_rugan,
            cls.inspect_rugan,
            cls.generate,
            cls.check,
            if_(cls.should_run_dos)(cls.run_dos, cls.inspect_dos),
            cls.results,
        )
        spec.output("sheets", valid_type=StructureSet, required=False, help="The random sheets made.")
        spec.output("training", valid_type=StructureSet, help="The labelled sheets both models learnt from.")
        spec.output("ednn", valid_type=GeneratorModel, help="The EDNN surrogate (first seed).")
        spec.output_namespace("rugan", valid_type=GeneratorModel, dynamic=True, help="The RUGAN model(s).")
        spec.output_namespace("generated", valid_type=StructureSet, dynamic=True,
                              help="Generated sheets per scale (scale_1, scale_2...).")
        spec.output("table", valid_type=orm.Dict, help="The Kolmogorov–Smirnov table (rows and text).")
        spec.output("energies", valid_type=orm.ArrayData, help="Requested and obtained energies per area.")
        spec.output_namespace("figures", valid_type=orm.SinglefileData, dynamic=True, help="Heat maps, histograms.")
        spec.output("dos_sheet", valid_type=orm.StructureData, required=False, help="The sheet given to GPAW.")
        spec.output("dos", valid_type=orm.XyData, required=False, help="GPAW DOS of that sheet.")
        spec.exit_code(300, "ERROR_INVALID_INPUT", message="invalid input: {message}")
        spec.exit_code(310, "ERROR_TRAINING_DIVERGED", message="training diverged: {message}")
        spec.exit_code(320, "ERROR_SUB_PROCESS_FAILED", message="the {process} step failed: {message}")

    @classmethod
    def get_builder_from_protocol(cls, protocol: str | None = None, overrides: dict | None = None,
                                  training: StructureSet | None = None, dos_code: orm.AbstractCode | None = None):
        """A builder from the chain's protocol (``fast`` or ``paper``; sizes in ``workflows/protocols/rugan.yaml``)
        and the EDNN and RUGAN families' protocols of the same name (settings and seeds).

        :param overrides: nested overrides, by namespace: ``sheets``, ``check``, ``reference``, ``ednn`` and
            ``rugan`` (each ``{'settings': {...}, 'seeds': [...]}``), e.g. ``{'check': {'count': 500}}``.
        :param training: labelled sheets to learn from instead of making and labelling new ones.
        :param dos_code: a GPAW code: the chain ends with the DOS of one generated sheet.
        """
        from .protocols import generation_protocol, load_protocol

        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - {"sheets", "check", "reference", "ednn", "rugan", "dos"})
        if unknown:
            raise ValueError(f"overrides: unknown key(s) {unknown}; expected sheets, check, reference, ednn, rugan, dos")
        values = load_protocol("rugan", protocol, {k: overrides[k] for k in ("sheets", "check") if k in overrides})
        builder = cls.get_builder()
        if training is not None:
            builder.training = training
        else:
            builder.sheets.count = orm.Int(values["sheets"]["count"])
            if values["sheets"].get("settings"):
                builder.sheets.settings = orm.Dict(values["sheets"]["settings"])
        check = values["check"]
        builder.check.count = orm.Int(check["count"])
        builder.check.scales = orm.List([int(s) for s in check["scales"]])
        for key in ("seed",):
            if key in check:
                builder.check.seed = orm.Int(check[key])
        if "reference" in check:
            builder.check.reference = orm.Bool(check["reference"])
        if "reference" in overrides:
            builder.reference = orm.Dict(overrides["reference"])
        for name in ("ednn", "rugan"):
            family = generation_protocol(name, protocol or "fast", TARGET, overrides.get(name))
            if family.get("settings"):
                builder[name].settings = orm.Dict(family["settings"])
            if "seeds" in family:
                builder[name].seeds = orm.List([int(s) for s in family["seeds"]])
        if dos_code is not None:
            builder.dos.code = dos_code
            for key, node_type in (("protocol", orm.Str), ("overrides", orm.Dict), ("index", orm.Int)):
                if key in overrides.get("dos", {}):
                    builder.dos[key] = node_type(overrides["dos"][key])
        return builder

    @classmethod
    def get_available_protocols(cls) -> dict[str, str]:
        from .protocols import get_available_protocols

        return get_available_protocols("rugan")

    # ------------------------------------------------------------------ helpers
    def _failed(self, node, process: str):
        """Map a failed step onto this workchain's exit code of the same meaning."""
        return failed_step_exit_code(self, node, process, EXIT_CODES)

    # ------------------------------------------------------------------ steps
    def check_inputs(self):
        message = validate_rugan_inputs(self.inputs)
        if message:
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
        if not self.node.label:
            self.node.label = "rugan porous graphene"
        return None

    def should_make_sheets(self):
        if "training" in self.inputs:
            self.ctx.training = self.inputs.training
            return False
        return True

    def make_sheets(self):
        inputs = {"count": self.inputs.sheets.count, "seed": self.inputs.sheets.seed}
        if "settings" in self.inputs.sheets:
            inputs["settings"] = self.inputs.sheets.settings
        sheets, node = run_calcfunction_step(self, porous_graphene, "sheets",
                                             f"{self.inputs.sheets.count.value} random porous sheets", **inputs)
        if not node.is_finished_ok:
            return self._failed(node, "sheets")
        self.ctx.sheets = sheets
        self.out("sheets", sheets)
        return None

    def label(self):
        inputs = {"structures": self.ctx.sheets}
        if "reference" in self.inputs:
            inputs["settings"] = self.inputs.reference
        self.report(f"labelling {len(self.ctx.sheets)} sheets with the reference method")
        labelled, node = run_calcfunction_step(self, label_reference, "label",
                                               "reference energies of the training sheets", **inputs)
        if not node.is_finished_ok:
            return self._failed(node, "labelling")
        self.ctx.training = labelled
        return None

    def _train(self, name: str):
        """Train the ``name`` models: a calcfunction here, or a job (returns ``ToContext``) with a ``training_code``."""
        namespace = self.inputs[name]
        inputs = {"family": orm.Str(name), "target": orm.Dict(TARGET), "seeds": namespace.seeds}
        if "settings" in namespace:
            inputs["settings"] = namespace.settings
        canonical, node = run_calcfunction_step(self, normalise_training_inputs, f"normalise_{name}",
                                                f"canonical {name} training inputs", **inputs)
        if not node.is_finished_ok:
            return self._failed(node, f"{name} normalisation")
        n_seeds = len(namespace.seeds.get_list())
        what = f"{n_seeds} {name} model(s) on {len(self.ctx.training)} sheets"
        train_inputs = {"training": self.ctx.training, "family": inputs["family"], **canonical}
        return launch_training(self, train_inputs, what, f"train_{name}", f"training_{name}", f"{name}_training")

    def _inspect(self, name: str):
        """The models of the ``name`` training (calcfunction or job) into ``ctx.<name>_models``, or the exit code."""
        models, failure = trained_models(self, f"{name}_training", f"{name} training", EXIT_CODES)
        if failure:
            return failure
        self.ctx[f"{name}_models"] = models
        return None

    def train_ednn(self):
        return self._train("ednn")

    def inspect_ednn(self):
        return self._inspect("ednn")

    def train_rugan(self):
        return self._train("rugan")

    def inspect_rugan(self):
        return self._inspect("rugan")

    def _ednn(self):
        """The EDNN the check uses: the first seed's model."""
        models = self.ctx.ednn_models
        return models[sorted(models)[0]]

    def generate(self):
        self.ctx.generated = {}
        count = self.inputs.check.count.value
        for scale in self.inputs.check.scales.get_list():
            self.report(f"generating {count} sheets per model at {scale * scale}× area, labels drawn from training")
            sheets, node = run_calcfunction_step(
                self, generate, f"generate_scale_{scale}", f"{count} sheets at scale {scale} ({scale * scale}× area)",
                count=self.inputs.check.count, seed=self.inputs.check.seed,
                condition=orm.Dict({"labels": "training", "scale": scale}), **self.ctx.rugan_models,
            )
            if not node.is_finished_ok:
                return self._failed(node, f"generation at scale {scale}")
            self.ctx.generated[f"scale_{scale}"] = sheets
        return None

    def check(self):
        inputs = {"surrogate": self._ednn(), "reference": self.inputs.check.reference, **self.ctx.generated}
        if "reference" in self.inputs:
            inputs["settings"] = orm.Dict({"reference": self.inputs.reference.get_dict()})
        outputs, node = run_calcfunction_step(self, check_labels, "check",
                                              "requested against obtained energies (KS)", **inputs)
        if not node.is_finished_ok:
            return self._failed(node, "label check")
        self.ctx.check = outputs
        self.report("label check:\n" + outputs["table"]["text"])
        return None

    def should_run_dos(self):
        return "dos" in self.inputs and "code" in self.inputs.dos

    def run_dos(self):
        from .gpaw_base import GpawBaseWorkChain

        first = self.ctx.generated[sorted(self.ctx.generated, key=lambda k: int(k.split("_")[-1]))[0]]
        index = self.inputs.dos.index.value
        if not 0 <= index < len(first):
            return self.exit_codes.ERROR_INVALID_INPUT.format(
                message=f"dos.index: got {index}, expected 0 <= index < {len(first)}")
        structure, node = run_calcfunction_step(self, pick_structure, "pick_sheet", f"generated sheet {index}",
                                                structures=first, index=self.inputs.dos.index)
        if not node.is_finished_ok:
            return self._failed(node, "sheet pick")
        overrides = {"gpaw": {"parameters": dict(DOS_PARAMETERS)}}
        if "overrides" in self.inputs.dos:
            overrides = settings_module.merge(overrides, self.inputs.dos.overrides.get_dict())
        builder = GpawBaseWorkChain.get_builder_from_protocol(
            self.inputs.dos.code, structure, protocol=self.inputs.dos.protocol.value, overrides=overrides)
        builder.metadata = {"call_link_label": "dos", "label": "dos",
                            "description": f"GPAW DOS of generated sheet {index}"}
        self.ctx.dos_sheet = structure
        node = self.submit(builder)
        self.report(f"GPAW DOS of generated sheet {index} ({len(structure.sites)} atoms): {node.process_label}<{node.pk}>")
        return ToContext(dos=node)

    def inspect_dos(self):
        node = self.ctx.dos
        if not node.is_finished_ok:
            return self._failed(node, "GPAW DOS")
        self.out("dos_sheet", self.ctx.dos_sheet)
        if "dos" in node.outputs:
            self.out("dos", node.outputs.dos)
        return None

    def results(self):
        self.out("training", self.ctx.training)
        self.out("ednn", self._ednn())
        self.out("rugan", self.ctx.rugan_models)
        self.out("generated", self.ctx.generated)
        for key in ("table", "energies", "figures"):
            self.out(key, self.ctx.check[key])

"""``physgen.generation``: train an ensemble → generate candidates → select representatives.

A thin WorkChain over the three calcfunctions, so the chain is one process in the provenance
graph that users can drop into their own pipelines (the screening workflow does).
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import WorkChain

from ..calculations.functions import EXIT_CODES, generate, select_representatives, train_logan
from ..data.generator_model import GeneratorModel
from ..data.structure_set import StructureSet
from ..ml.logan import parse_composition

__all__ = ["GenerationWorkChain", "validate_generation_inputs"]


def validate_generation_inputs(inputs, _ctx=None):
    """Reject inconsistent inputs at launch, before anything is trained or stored."""
    try:
        if "composition" in inputs:
            parse_composition(inputs["composition"].value)
        if "cell" in inputs:
            cell = inputs["cell"].get_list()
            if len(cell) != 3 or any(len(row) != 3 for row in cell):
                return "cell: expected a 3x3 list of lattice vectors"
        if "pbc" in inputs and len(inputs["pbc"].get_list()) != 3:
            return "pbc: expected three booleans"
    except (ValueError, TypeError) as error:
        return str(error)
    if "seeds" in inputs and not inputs["seeds"].get_list():
        return "seeds: expected at least one seed"
    if "count" in inputs and inputs["count"].value <= 0:
        return f"count: got {inputs['count'].value}, expected a positive number of candidates per model"
    if "count" in inputs and "seeds" in inputs:
        n_members = len(inputs["seeds"].get_list())
        if "grid" in inputs:
            for values in inputs["grid"].get_dict().values():
                n_members *= len(values) if isinstance(values, list) else 1
        n_candidates = n_members * inputs["count"].value
        settings = inputs["selection_settings"].get_dict() if "selection_settings" in inputs else {}
        n_clusters = settings.get("n_clusters", 20)
        if not isinstance(n_clusters, int) or not 1 <= n_clusters <= n_candidates:
            return (
                f"selection_settings.n_clusters: got {n_clusters!r}, expected an integer between 1 and the "
                f"{n_candidates} candidates that will be generated"
            )
    return None


class GenerationWorkChain(WorkChain):
    """Train LoGAN models on known structures, generate candidates, select one per PCA/k-means cluster."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("training", valid_type=StructureSet, help="Known structures to learn environments from.")
        spec.input("composition", valid_type=orm.Str, help="Target composition, e.g. 'C5H12O'.")
        spec.input("cell", valid_type=orm.List, help="Target cell (3x3 lattice vectors, Å); a box for molecules.")
        spec.input("pbc", valid_type=orm.List, help="Periodicity of the target along the 3 cell vectors.")
        spec.input("seeds", valid_type=orm.List, help="One ensemble member per seed (times the grid).")
        spec.input("settings", valid_type=orm.Dict, required=False, help="LoGAN training settings.")
        spec.input("grid", valid_type=orm.Dict, required=False, help="Settings to vary across the ensemble.")
        spec.input("count", valid_type=orm.Int, default=lambda: orm.Int(2000), help="Candidates per model.")
        spec.input("generation_seed", valid_type=orm.Int, default=lambda: orm.Int(0))
        spec.input("selection_settings", valid_type=orm.Dict, required=False,
                   help="n_components, n_clusters and descriptor settings of the selection.")
        spec.input("selection_seed", valid_type=orm.Int, default=lambda: orm.Int(0))
        spec.inputs.validator = validate_generation_inputs
        spec.outline(cls.train, cls.generate, cls.select, cls.results)
        spec.output_namespace("models", valid_type=GeneratorModel, dynamic=True)
        spec.output("candidates", valid_type=StructureSet)
        spec.output("representatives", valid_type=StructureSet)
        spec.output_namespace("structures", valid_type=orm.StructureData, dynamic=True)
        spec.output("selection", valid_type=orm.ArrayData)
        spec.output("pca_plot", valid_type=orm.SinglefileData, required=False)
        spec.exit_code(300, "ERROR_INVALID_INPUT", message="invalid input: {message}")
        spec.exit_code(310, "ERROR_TRAINING_DIVERGED", message="training diverged: {message}")
        spec.exit_code(320, "ERROR_SUB_PROCESS_FAILED", message="the {process} step failed: {message}")

    def _failed(self, node, process: str):
        """Map a failed calcfunction onto this workchain's exit code of the same meaning."""
        for label, code in EXIT_CODES.items():
            if node.exit_status == code.status:
                return self.exit_codes[label].format(message=node.exit_message.split(": ", 1)[-1])
        return self.exit_codes.ERROR_SUB_PROCESS_FAILED.format(process=process, message=node.exit_message or "")

    def train(self):
        inputs = {k: self.inputs[k] for k in ("training", "composition", "cell", "pbc", "seeds")}
        for optional in ("settings", "grid"):
            if optional in self.inputs:
                inputs[optional] = self.inputs[optional]
        self.report(f"training {len(self.inputs.seeds.get_list())} seed(s) of LoGAN on {len(self.inputs.training)} structures")
        outputs, node = train_logan.run_get_node(**inputs)
        if not node.is_finished_ok:
            return self._failed(node, "training")
        self.ctx.models = outputs["models"]
        self.out("models", outputs["models"])

    def generate(self):
        models = dict(self.ctx.models)
        self.report(f"generating {self.inputs.count.value} candidates from each of {len(models)} models")
        candidates, node = generate.run_get_node(count=self.inputs.count, seed=self.inputs.generation_seed, **models)
        if not node.is_finished_ok:
            return self._failed(node, "generation")
        self.ctx.candidates = candidates
        self.out("candidates", candidates)

    def select(self):
        inputs = {"candidates": self.ctx.candidates, "seed": self.inputs.selection_seed}
        if "selection_settings" in self.inputs:
            inputs["settings"] = self.inputs.selection_settings
        outputs, node = select_representatives.run_get_node(**inputs)
        if not node.is_finished_ok:
            return self._failed(node, "selection")
        self.ctx.selected = outputs
        self.report(f"selected {len(outputs['representatives'])} representatives from {len(self.ctx.candidates)} candidates")

    def results(self):
        for key in ("representatives", "structures", "selection", "pca_plot"):
            if key in self.ctx.selected:
                self.out(key, self.ctx.selected[key])

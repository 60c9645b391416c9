"""``physgen.vasp.relax``: VASP relaxation + DOS through aiida-vasp, with outputs shaped like the GPAW engine's.

aiida-vasp's ``vasp.vasp`` (``VaspWorkChain``, with its own restart handlers for SCF and ionic non-convergence)
does the work. This chain adds what the screening needs around it, and keeps it in the provenance graph:

* a molecule (no periodic direction) is first put in a periodic box by the ``box_for_vasp`` calcfunction,
  since VASP needs a periodic cell, and computed at the Gamma point only;
* the ``vasp_outputs`` calcfunction turns aiida-vasp's ``misc``, ``structure`` and ``dos`` into the outputs
  every physgen engine gives: ``output_structure`` (with the input's periodicity: a molecule stays a
  molecule), ``output_parameters`` (``energy`` in eV, ``fermi_level``, ``max_force``, …) and ``dos`` (an
  ``XyData`` on E − E_F: ``dos`` spin-summed, ``dos_up``/``dos_down`` when spin-polarised).

Everything aiida-vasp checks only at run time (the POTCAR of every element, the code's plugin) is checked
here at launch, before anything runs.

Needs the optional extra ``pip install 'aiida-physgen[vasp]'`` (aiida-vasp).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction, if_

from ..ports import expose_inputs_under, optional_input, optional_output
from .orphans import how_it_ended
from .protocols import ProtocolMixin, load_protocol

__all__ = ["VaspRelaxWorkChain", "box_for_vasp", "vasp_outputs", "check_potentials", "VASP_PLUGIN"]

PROTOCOL_FILE = "vasp"
VASP_PLUGIN = "vasp.vasp"
_PROTOCOL_KEYS = (
    "incar",
    "kpoints_spacing",
    "potential_family",
    "potential_mapping",
    "options",
    "vacuum",
    "max_iterations",
    "clean_workdir",
)


def _vasp_workchain():
    from aiida.plugins import WorkflowFactory

    return WorkflowFactory("vasp.vasp")


@calcfunction
def box_for_vasp(structure: orm.StructureData, vacuum: orm.Float) -> orm.StructureData:
    """A molecule centred in a periodic box with ``vacuum`` Å on every side (VASP needs a periodic cell).

    :param structure: the molecule (the output is the same molecule, periodic in all three directions).
    :param vacuum: Å of vacuum between the molecule's extent and each face of the box.
    """
    from .gpaw_base import centered_copy

    boxed = centered_copy(structure, vacuum.value)
    boxed.pbc = (True, True, True)
    return boxed


@calcfunction
def vasp_outputs(misc: orm.Dict, structure: orm.StructureData, molecule: orm.Bool, dos: orm.ArrayData | None = None):
    """aiida-vasp's outputs in the shape of every physgen engine's.

    ``output_parameters``: ``energy`` (eV, VASP's energy extrapolated to zero smearing), ``energy_per_atom``,
    ``fermi_level`` (eV, absolute), ``max_force`` (eV/Å), ``band_gap`` (eV) when VASP gives it, and the run
    status; ``output_structure``: the relaxed structure, non-periodic again for a molecule; ``dos`` (with a DOS
    input): an ``XyData`` with x = E − E_F (eV) and ``dos`` (spin-summed), plus ``dos_up`` and ``dos_down`` for a
    spin-polarised run, in states/eV per cell.

    :param misc: aiida-vasp's ``misc`` output (energies, Fermi level, forces, run status).
    :param structure: the relaxed structure (aiida-vasp's ``structure`` output, or the input of a static run).
    :param molecule: whether the structure is a molecule boxed for VASP (its output is made non-periodic again).
    :param dos: aiida-vasp's ``dos`` output (``energy`` and ``tdos`` arrays, absolute energies).
    """
    values = misc.get_dict()
    energies = values.get("total_energies") or {}
    energy = energies.get("energy_extrapolated", energies.get("energy_no_entropy"))
    if energy is None or not np.isfinite(energy):
        raise ValueError(f"misc: no finite total energy among {sorted(energies)}")
    fermi = values.get("fermi_level")
    forces = np.asarray(values.get("forces") or [], dtype=float).reshape(-1, 3)
    parameters = {
        "energy": float(energy),
        "energy_per_atom": float(energy) / len(structure.sites),
        "fermi_level": None if fermi is None else float(fermi),
        "max_force": float(np.linalg.norm(forces, axis=1).max()) if len(forces) else None,
        "engine": "vasp",
        "version": values.get("version"),
        "run_status": values.get("run_status", {}),
    }
    gap = (values.get("band_properties") or {}).get("band_gap")
    if gap is not None:
        parameters["band_gap"] = float(gap)
    relaxed = structure.clone()
    if molecule.value:
        relaxed.pbc = (False, False, False)
    outputs = {"output_parameters": orm.Dict(parameters), "output_structure": relaxed}
    if dos is not None:
        grid = np.asarray(dos.get_array("energy"), dtype=float)
        total = np.asarray(dos.get_array("tdos"), dtype=float)
        shift = float(fermi) if fermi is not None else 0.0
        arrays, names = (
            ([total.sum(axis=0), total[0], total[1]], ["dos", "dos_up", "dos_down"])
            if total.ndim == 2
            else ([total], ["dos"])
        )
        xy = orm.XyData()
        xy.set_x(grid - shift, "energy", "eV")
        xy.set_y(arrays, names, ["states/eV"] * len(arrays))
        if fermi is not None:
            xy.base.attributes.set("fermi_energy", float(fermi))
        outputs["dos"] = xy
    return outputs


#: INCAR tags whose value must be a positive number (aiida-vasp checks the names, not the values)
POSITIVE_INCAR_TAGS = ("encut", "ediff", "nelm", "nedos", "sigma", "potim")


def check_incar_values(incar: Mapping[str, Any]) -> None:
    """Refuse values VASP would stop on or misread, naming the tag: a cut-off, a convergence criterion, a count
    that is not a positive number (e.g. ``encut`` -400)."""
    for tag in POSITIVE_INCAR_TAGS:
        value = incar.get(tag)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"incar.{tag}: got {value!r}, expected a positive number")


def check_potentials(family: str | None, mapping: Mapping[str, str] | None, elements) -> str | None:
    """A message naming ``potential_family`` or ``potential_mapping`` when the POTCAR family does not exist or
    lacks an element, else ``None`` (one database query per call; nothing is stored)."""
    from aiida.common.exceptions import NotExistent
    from aiida_vasp.data.potcar import PotcarData

    if not family:
        return (
            "potential_family: missing; expected the name of a POTCAR family uploaded with "
            "`aiida-vasp potcar uploadfamily` (e.g. relax_overrides={'potential_family': 'PBE.54'})"
        )
    if PotcarData.get_potcar_group(family) is None:
        known = sorted(group.label for group in PotcarData.get_potcar_groups())
        return f"potential_family: no POTCAR family {family!r} in this profile; families here: {known}"
    mapping = dict(mapping or {})
    if not elements:
        return None
    full = {element: mapping.get(element, element) for element in elements}
    missing = []
    for element in sorted(full):
        try:
            PotcarData.get_potcars_dict([element], family, full)
        except NotExistent:
            missing.append(element)
    if missing:
        return (
            f"potential_mapping: family {family!r} has no POTCAR for element(s) {missing} "
            f"(looked for {[full[e] for e in missing]} by its POTCAR names)"
        )
    return None


def check_code(code) -> str | None:
    """A message naming ``code`` unless it is an AiiDA code of the ``vasp.vasp`` plugin."""
    if code is None:
        return f"code: a Code of the {VASP_PLUGIN!r} plugin (VASP on a computer) is required"
    if not isinstance(code, orm.AbstractCode):
        return f"code: got {type(code).__name__}, expected an AiiDA Code of the {VASP_PLUGIN!r} plugin"
    plugin = code.default_calc_job_plugin
    if plugin != VASP_PLUGIN:
        return f"code: {code.full_label} runs the {plugin!r} plugin; expected a code of the {VASP_PLUGIN!r} plugin"
    return None


def validate_inputs(inputs, _ctx=None) -> str | None:
    """The code's plugin and every element's POTCAR, at launch (aiida-vasp finds a missing one only at run time)."""
    vasp = inputs.get("vasp") or {}
    message = check_code(vasp.get("code"))
    if message:
        return f"vasp.{message}"
    family = vasp.get("potential_family")
    mapping = vasp.get("potential_mapping")
    structure = inputs.get("structure")
    elements = sorted({kind.symbol for kind in structure.kinds}) if structure is not None else None
    message = check_potentials(
        family.value if family is not None else None, mapping.get_dict() if mapping is not None else None, elements
    )
    if message:
        return f"vasp.{message}"
    if "vacuum" in inputs and (not np.isfinite(inputs["vacuum"].value) or inputs["vacuum"].value <= 0):
        return f"vacuum: got {inputs['vacuum'].value!r}, expected a positive number of Å"
    return None


_VASP_PORT_HELP = {
    "parameters": "INCAR tags under the key 'incar' (lower case), e.g. {'incar': {'encut': 450, 'ibrion': 2}}.",
    "kpoints": "The k-point mesh or list (a molecule: the Gamma point); or give kpoints_spacing instead.",
    "calc": "Inputs of each VaspCalculation, e.g. calc.metadata.options (resources, walltime, queue).",
    "potential_family": "Name of the POTCAR family (aiida-vasp potcar uploadfamily ...).",
    "potential_mapping": "Element (kind name) -> POTCAR name in the family, e.g. {'Si': 'Si_pv'}.",
}


def lost_only_remote_folder(node: orm.WorkflowNode) -> orm.CalcJobNode | None:
    """The last calculation of an aiida-vasp ``VaspWorkChain`` that ended 11 (``ERROR_MISSING_OUTPUT``) only
    because that calculation finished OK without ``remote_folder``, with ``misc`` returned; else ``None``.

    aiida-core 2.9 leaves a CalcJob without ``remote_folder`` when its daemon worker is killed just after the job's
    upload (:meth:`aiida_physgen.workflows.restarts.HandlerReports.handle_missing_outputs`). The job itself ran and
    was parsed, and aiida-vasp's handlers had accepted it: ``VaspWorkChain.results`` returned every other output,
    then failed on the missing required ``remote_folder``. This chain does not use ``remote_folder``."""
    if node.exit_status != 11 or "misc" not in node.outputs:
        return None
    calculations = [child for child in node.called if isinstance(child, orm.CalcJobNode)]
    if not calculations:
        return None
    last = max(calculations, key=lambda child: child.ctime)
    if last.is_finished_ok and "remote_folder" not in last.outputs and "remote_folder" not in node.outputs:
        return last
    return None


class VaspRelaxWorkChain(ProtocolMixin, WorkChain):
    """Box a molecule → ``vasp.vasp`` relaxation + DOS (aiida-vasp's handlers restart it) → physgen-shaped outputs."""

    _protocol_file = PROTOCOL_FILE

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("structure", valid_type=orm.StructureData, help="The structure to relax (positions).")
        optional_input(
            spec,
            "vacuum",
            orm.Float,
            "For a molecule: put it in a periodic box with this much vacuum (Å) on every side first.",
        )
        expose_inputs_under(
            spec, _vasp_workchain(), "vasp", "Inputs of aiida-vasp's VaspWorkChain (vasp.vasp).", exclude=("structure",)
        )
        # aiida-vasp leaves some of its ports without help; say what they hold
        for name, text in _VASP_PORT_HELP.items():
            port = spec.inputs["vasp"][name]
            if not port.help:
                port.help = text
        spec.inputs.validator = validate_inputs
        spec.outline(
            if_(cls.is_molecule)(cls.box),
            cls.run_vasp,
            cls.inspect_vasp,
            cls.results,
        )
        spec.output("output_structure", valid_type=orm.StructureData, help="The relaxed structure.")
        spec.output("output_parameters", valid_type=orm.Dict, help="energy (eV), fermi_level, max_force, run status.")
        optional_output(spec, "dos", orm.XyData, "DOS on E − E_F (eV), spin-summed and per spin.")
        spec.exit_code(401, "ERROR_VASP_FAILED", message="the VASP work chain failed: {message}")
        spec.exit_code(402, "ERROR_OUTPUT_MISSING", message="the VASP work chain returned no {output} output")
        spec.exit_code(403, "ERROR_OUTPUT_CONVERSION", message="VASP's outputs could not be read: {message}")

    def is_molecule(self):
        return "vacuum" in self.inputs

    def box(self):
        self.ctx.structure = box_for_vasp(
            self.inputs.structure, self.inputs.vacuum, metadata={"call_link_label": "box"}
        )

    def run_vasp(self):
        inputs = self.exposed_inputs(_vasp_workchain(), namespace="vasp")
        inputs["structure"] = self.ctx.get("structure", self.inputs.structure)
        inputs.setdefault("metadata", {})
        inputs["metadata"] = {**inputs["metadata"], "call_link_label": "vasp"}
        return ToContext(vasp=self.submit(_vasp_workchain(), **inputs))

    def inspect_vasp(self):
        node = self.ctx.vasp
        calculation = lost_only_remote_folder(node)
        if calculation is not None:
            self.report(
                f"{node.process_label}<{node.pk}> ended {node.exit_status} only because its "
                f"{calculation.process_label}<{calculation.pk}> finished OK without remote_folder (a daemon worker "
                "killed just after the job's upload, see aiida_physgen.workflows.restarts): using its results"
            )
        elif not node.is_finished_ok:
            return self.exit_codes.ERROR_VASP_FAILED.format(message=how_it_ended(node))
        if "misc" not in node.outputs:
            return self.exit_codes.ERROR_OUTPUT_MISSING.format(output="misc")
        return None

    def results(self):
        node = self.ctx.vasp
        # a static run (nsw 0) returns no structure: its structure is the one it was given
        structure = node.outputs.structure if "structure" in node.outputs else node.inputs.structure
        inputs = {"misc": node.outputs.misc, "structure": structure, "molecule": orm.Bool(self.is_molecule())}
        if "dos" in node.outputs:
            inputs["dos"] = node.outputs.dos
        try:
            outputs = vasp_outputs(**inputs, metadata={"call_link_label": "convert"})
        except ValueError as error:
            return self.exit_codes.ERROR_OUTPUT_CONVERSION.format(message=str(error))
        self.out_many(outputs)
        return None

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        structure: orm.StructureData,
        protocol: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        dos: bool = True,
    ):
        """A builder with the inputs of ``protocol`` (``fast``, ``balanced``, ``stringent``) for ``structure``.

        ``overrides`` is merged over the protocol, e.g. ``{'potential_family': 'PBE.54', 'potential_mapping':
        {'Si': 'Si_pv'}, 'incar': {'encut': 520}, 'options': {'queue_name': 'debug'}}``; ``potential_family`` is
        required. A molecule (no periodic direction) gets ``vacuum`` and the Gamma point; a crystal the protocol's
        ``kpoints_spacing``. With ``dos`` the parser returns the DOS of the final geometry. Stores nothing.

        :raises ValueError: unknown protocol or protocol key, missing POTCAR family, non-finite positions.
        """
        from .gpaw_base import check_finite_structure

        if not isinstance(structure, orm.StructureData):
            raise TypeError(f"structure: expected a StructureData, got {type(structure).__name__}")
        check_finite_structure(structure)
        molecule = not any(structure.pbc)
        inputs = load_protocol(PROTOCOL_FILE, protocol, overrides, variant="molecule" if molecule else "crystal")
        unknown = sorted(set(inputs) - set(_PROTOCOL_KEYS))
        if unknown:
            raise ValueError(f"unknown protocol input(s) {', '.join(unknown)}; accepted: {', '.join(_PROTOCOL_KEYS)}")
        if not inputs.get("potential_family"):
            raise ValueError(check_potentials(None, None, None))
        incar = dict(inputs.get("incar") or {})
        check_incar_values(incar)
        builder = cls.get_builder()
        builder.structure = structure
        if molecule:
            builder.vacuum = orm.Float(float(inputs.get("vacuum") or 5.0))
            kpoints = orm.KpointsData()
            kpoints.set_kpoints_mesh([1, 1, 1])
            builder.vasp.kpoints = kpoints
        else:
            builder.vasp.kpoints_spacing = orm.Float(float(inputs["kpoints_spacing"]))
        vasp = builder.vasp
        vasp.code = code
        vasp.parameters = orm.Dict({"incar": incar})
        vasp.potential_family = orm.Str(inputs["potential_family"])
        elements = sorted({kind.symbol for kind in structure.kinds})
        mapping = dict(inputs.get("potential_mapping") or {})
        vasp.potential_mapping = orm.Dict({element: mapping.get(element, element) for element in elements})
        vasp.settings = orm.Dict({"parser_settings": {"include_node": ["dos"] if dos else []}})
        vasp.calc.metadata.options = dict(inputs.get("options") or {})
        vasp.max_iterations = orm.Int(int(inputs.get("max_iterations", 5)))
        vasp.clean_workdir = orm.Bool(bool(inputs.get("clean_workdir", False)))
        return builder

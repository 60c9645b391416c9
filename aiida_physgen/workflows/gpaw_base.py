"""``GpawBaseWorkChain``: run a :class:`~aiida_physgen.calculations.gpaw.GpawCalculation` and recover from failures.

Handled failures (each bounded, after which the work chain stops with a named exit code):

* SCF not converged (calculation exit code 310): restart with softer density mixing (``beta`` 0.05, then halved down
  to 0.01; ``nmaxold`` 5, ``weight`` 50) and twice the SCF iterations, from the last converged geometry of a
  relaxation if there is one. At most ``_max_scf_restarts`` (2) times, then 410 ``ERROR_SCF_NOT_CONVERGED``.
* Relaxation not converged within ``max_steps`` (calculation exit code 320): restart from the last geometry.
  At most ``_max_relax_restarts`` (3) times, then 420 ``ERROR_RELAX_NOT_CONVERGED``.

* Driver interrupted (killed, out of memory, walltime; calculation exit code 330): restart from the last geometry
  it recorded. At most ``_max_interrupted_restarts`` (2) times, then 430 ``ERROR_INTERRUPTED``; without a geometry to
  restart from, 430 at once.
* Settings rejected by the driver (calculation exit code 303): deterministic, so no restart: 403
  ``ERROR_INVALID_SETTINGS`` at once.

Any other failure is "unhandled". AiiDA's ``BaseRestartWorkChain`` aborts on the first unhandled failure unless its
``on_unhandled_failure`` input says otherwise (its default is ``'abort'``; the often-quoted "restart once, stop on the
second consecutive one" is the ``'restart_once'`` choice). This work chain sets the default to ``'restart_once'``, so a
transient failure (a node that died, a full disk) gets one more try; pass ``on_unhandled_failure='abort'`` to stop at
once.

Every restart also counts towards the generic ``max_iterations`` of :class:`~aiida.engine.BaseRestartWorkChain`.

Molecules are centred in their box by the first step of the outline (``center_structure``, which calls the
``center_molecule`` calcfunction) when the ``center`` inputs are given: ``get_builder_from_protocol`` only records
the ``vacuum`` (and ``box``) to use and stores nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, calcfunction, process_handler, while_

from aiida_physgen.calculations import gpaw_driver as driver
from aiida_physgen.calculations.gpaw import GpawCalculation, validate_parameters
from aiida_physgen.workflows.orphans import run_calcfunction_step
from aiida_physgen.workflows.protocols import ProtocolMixin, load_protocol
from aiida_physgen.workflows.restarts import HandlerReports

from ..ports import expose_inputs_under, optional_input

__all__ = ("GpawBaseWorkChain", "center_molecule")

PROTOCOL_FILE = "gpaw"

#: Top-level keys a GPAW protocol (or its overrides) may contain; ``vacuum`` and ``box`` are used by the builder only.
_PROTOCOL_KEYS = ("gpaw", "max_iterations", "clean_workdir", "vacuum", "box", "handler_overrides")
_PROTOCOL_GPAW_KEYS = ("parameters", "metadata")
_SYSTEM_TYPES = ("molecule", "crystal")


def centered_copy(structure: orm.StructureData, vacuum: float, box: float | None = None) -> orm.StructureData:
    """Return a non-periodic copy of ``structure`` centred in a box with ``vacuum`` Å on every side (kinds kept),
    or, when ``box`` is given, centred in a cube of that edge (which must leave ``vacuum`` on every side)."""
    atoms = structure.get_ase()
    atoms.pbc = False
    if box is None:
        atoms.center(vacuum=vacuum)
    else:
        extent = float((atoms.positions.max(axis=0) - atoms.positions.min(axis=0)).max())
        if box < extent + 2 * vacuum:
            raise ValueError(
                f"box: a {box:.2f} Å cube leaves less than the vacuum of {vacuum} Å around a molecule "
                f"{extent:.2f} Å across; expected at least {extent + 2 * vacuum:.2f} Å"
            )
        atoms.cell = [box, box, box]
        atoms.center()
    centred = structure.clone()
    centred.reset_cell(atoms.cell.array.tolist())
    centred.reset_sites_positions(atoms.positions.tolist())
    centred.pbc = (False, False, False)
    return centred


def check_finite_structure(structure: orm.StructureData, field: str = "structure") -> None:
    """Raise a ``ValueError`` naming ``field`` when a position or the cell of ``structure`` is not a finite number."""
    positions = np.array([site.position for site in structure.sites], dtype=float).reshape(-1, 3)
    if not np.isfinite(positions).all():
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(positions))[:, 0]})
        raise ValueError(f"{field}: atoms {bad} have non-finite positions (NaN or inf); expected finite numbers in Å")
    if not np.isfinite(np.array(structure.cell, dtype=float)).all():
        raise ValueError(f"{field}: the cell has non-finite entries (NaN or inf); expected finite numbers in Å")


def validate_center(inputs, _ctx=None) -> str | None:
    """The ``center`` inputs: a positive ``vacuum``, an optional positive ``box`` that leaves that vacuum around the
    structure; checked at launch, before ``center_molecule`` runs."""
    center = inputs.get("center") or {}
    if not center:
        return None
    vacuum = center.get("vacuum")
    box = center.get("box")
    if vacuum is None:
        return "center.vacuum: missing; expected a positive number of Å of vacuum around the molecule"
    if not np.isfinite(vacuum.value) or vacuum.value <= 0:
        return f"center.vacuum: got {vacuum.value!r}, expected a positive number of Å"
    if box is not None and (not np.isfinite(box.value) or box.value <= 0):
        return f"center.box: got {box.value!r}, expected a positive cube edge in Å"
    structure = (inputs.get("gpaw") or {}).get("structure")
    if structure is None:
        return None
    try:
        check_finite_structure(structure, "gpaw.structure")
        centered_copy(structure, float(vacuum.value), float(box.value) if box is not None else None)
    except ValueError as error:
        return f"center.{error}" if str(error).startswith("box:") else str(error)
    return None


@calcfunction
def center_molecule(structure: orm.StructureData, vacuum: orm.Float, box: orm.Float | None = None) -> orm.StructureData:
    """Centre a molecule in a non-periodic box with ``vacuum`` Å on every side, or in a cube of edge ``box``
    (keeps the provenance)."""
    return centered_copy(structure, vacuum.value, box.value if box is not None else None)


class GpawBaseWorkChain(HandlerReports, ProtocolMixin, BaseRestartWorkChain):
    """Run a ``GpawCalculation``, restarting it on SCF or relaxation non-convergence."""

    _protocol_file = PROTOCOL_FILE

    _process_class = GpawCalculation

    _max_scf_restarts = 2
    _max_relax_restarts = 3
    _max_interrupted_restarts = 2
    _soft_mixer = {"beta": 0.05, "nmaxold": 5, "weight": 50.0}
    _min_mixer_beta = 0.01
    _maxiter_factor = 2

    @classmethod
    def define(cls, spec):
        super().define(spec)
        expose_inputs_under(spec, GpawCalculation, "gpaw", "Inputs of the `GpawCalculation`.")
        spec.input_namespace(
            "center",
            required=False,
            help="Centre the structure (a molecule) in a non-periodic box before the first calculation, through the "
            "`center_molecule` calcfunction: `vacuum` Å on every side, or a cube of edge `box` Å.",
        )
        optional_input(spec, "center.vacuum", orm.Float, "Vacuum (Å) on every side.")
        optional_input(spec, "center.box", orm.Float, "Edge (Å) of the cube; must leave `vacuum`.")
        spec.inputs.validator = validate_center
        spec.inputs["on_unhandled_failure"].default = lambda: orm.Str("restart_once")
        spec.outline(
            cls.setup,
            cls.center_structure,
            while_(cls.should_run_process)(
                cls.run_process,
                cls.inspect_process,
            ),
            cls.results,
        )
        spec.expose_outputs(GpawCalculation)
        spec.exit_code(
            410,
            "ERROR_SCF_NOT_CONVERGED",
            message="The SCF did not converge even after the maximum number of restarts with softer mixing.",
        )
        spec.exit_code(
            420,
            "ERROR_RELAX_NOT_CONVERGED",
            message="The relaxation did not converge even after the maximum number of restarts.",
        )
        spec.exit_code(
            403,
            "ERROR_INVALID_SETTINGS",
            message="The GPAW driver rejected its settings; restarting would not help.",
        )
        spec.exit_code(
            404,
            "ERROR_ATOM_LEFT_BOX",
            message="An atom reached the edge of the molecule's box: the molecule is coming apart; restarting would "
            "not help.",
        )
        spec.exit_code(
            430,
            "ERROR_INTERRUPTED",
            message="The GPAW driver was interrupted (killed) and no restart from its last geometry was possible or "
            "the maximum number of such restarts was reached.",
        )

    def setup(self):
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(GpawCalculation, "gpaw"))
        self.ctx.scf_restarts = 0
        self.ctx.relax_restarts = 0
        self.ctx.interrupted_restarts = 0
        if not self.node.label:  # launched alone; a screening labels its relaxations itself
            calculation = self._parameters().get("calculation", "scf")
            self.node.label = f"GPAW {calculation} {self.ctx.inputs.structure.get_formula()}"

    def center_structure(self):
        """Centre the structure with the ``center_molecule`` calcfunction when the ``center`` inputs ask for it."""
        center = self.inputs.get("center") or {}
        if "vacuum" not in center:
            return
        extra = {"box": center["box"]} if "box" in center else {}
        outputs, _ = run_calcfunction_step(
            self,
            center_molecule,
            "center",
            "centre the molecule in its box",
            structure=self.ctx.inputs.structure,
            vacuum=center["vacuum"],
            **extra,
        )
        self.ctx.inputs.structure = outputs

    # ------------------------------------------------------------------------------------------------------------------
    # helpers

    def _parameters(self) -> dict:
        parameters = self.ctx.inputs.parameters
        return dict(parameters.get_dict() if isinstance(parameters, orm.Dict) else parameters)

    def _restart_from_last_geometry(self, node) -> bool:
        """Use the last geometry of ``node`` as the next input structure; return whether there was one."""
        if "output_structure" not in node.outputs:
            return False
        self.ctx.inputs.structure = node.outputs.output_structure
        return True

    # ------------------------------------------------------------------------------------------------------------------
    # process handlers

    @process_handler(priority=500, exit_codes=GpawCalculation.exit_codes.ERROR_SCF_NOT_CONVERGED)
    def handle_scf_not_converged(self, node):
        """Soften the density mixing and allow more SCF iterations."""
        if self.ctx.scf_restarts >= self._max_scf_restarts:
            what = f"did not converge its SCF after {self.ctx.scf_restarts} restarts with softer mixing: giving up"
            return self.handled(node, what, self.exit_codes.ERROR_SCF_NOT_CONVERGED)

        parameters = self._parameters()
        mixer = dict(parameters.get("mixer") or {})
        beta = mixer.get("beta")
        if beta is None or beta > self._soft_mixer["beta"]:
            beta = self._soft_mixer["beta"]
        else:
            beta = max(beta / 2, self._min_mixer_beta)
        mixer.update({"beta": beta, "nmaxold": self._soft_mixer["nmaxold"], "weight": self._soft_mixer["weight"]})
        maxiter = int(parameters.get("maxiter", driver.DEFAULTS["maxiter"])) * self._maxiter_factor
        parameters.update({"mixer": mixer, "maxiter": maxiter})
        self.ctx.inputs.parameters = parameters
        self.ctx.scf_restarts += 1

        moved = parameters.get("calculation") == "relax" and self._restart_from_last_geometry(node)
        where = " from the last converged geometry" if moved else ""
        return self.handled(
            node,
            f"did not converge its SCF: restarting{where} with mixer {mixer} and maxiter={maxiter} "
            f"(restart {self.ctx.scf_restarts}/{self._max_scf_restarts})",
        )

    @process_handler(priority=400, exit_codes=GpawCalculation.exit_codes.ERROR_RELAX_NOT_CONVERGED)
    def handle_relax_not_converged(self, node):
        """Restart the relaxation from the last geometry reached."""
        if self.ctx.relax_restarts >= self._max_relax_restarts:
            what = f"did not converge its relaxation after {self.ctx.relax_restarts} restarts: giving up"
            return self.handled(node, what, self.exit_codes.ERROR_RELAX_NOT_CONVERGED)
        if not self._restart_from_last_geometry(node):
            what = "has no `output_structure` to restart from: giving up"
            return self.handled(node, what, self.exit_codes.ERROR_RELAX_NOT_CONVERGED)
        self.ctx.relax_restarts += 1
        return self.handled(
            node,
            "reached the relaxation's maximum number of steps: restarting from the last geometry "
            f"(restart {self.ctx.relax_restarts}/{self._max_relax_restarts})",
        )

    @process_handler(priority=450, exit_codes=GpawCalculation.exit_codes.ERROR_INVALID_SETTINGS)
    def handle_invalid_settings(self, node):
        """The driver refused its settings: the same settings would be refused again."""
        return self.handled(node, f"rejected its settings: {node.exit_message}", self.exit_codes.ERROR_INVALID_SETTINGS)

    @process_handler(priority=440, exit_codes=GpawCalculation.exit_codes.ERROR_ATOM_LEFT_BOX)
    def handle_atom_left_box(self, node):
        """An atom reached the edge of the non-periodic box: the same start would get there again (a larger box only
        lets the fragments fly further), so the chain stops with a name instead of retrying an unknown crash."""
        what = f"lost an atom through its box: {node.exit_message}"
        return self.handled(node, what, self.exit_codes.ERROR_ATOM_LEFT_BOX)

    @process_handler(priority=300, exit_codes=GpawCalculation.exit_codes.ERROR_INTERRUPTED)
    def handle_interrupted(self, node):
        """The driver was killed mid-run: restart from the last geometry it recorded."""
        if self.ctx.interrupted_restarts >= self._max_interrupted_restarts:
            what = f"was interrupted again after {self.ctx.interrupted_restarts} restarts: giving up"
            return self.handled(node, what, self.exit_codes.ERROR_INTERRUPTED)
        moved = self._restart_from_last_geometry(node)
        if not moved and self._parameters().get("calculation") == "relax":
            what = "was interrupted with no geometry to restart from: giving up"
            return self.handled(node, what, self.exit_codes.ERROR_INTERRUPTED)
        self.ctx.interrupted_restarts += 1
        where = "from its last geometry" if moved else "from the same input"
        counts = f"restart {self.ctx.interrupted_restarts}/{self._max_interrupted_restarts}"
        return self.handled(node, f"was interrupted: restarting {where} ({counts})")

    # ------------------------------------------------------------------------------------------------------------------
    # protocols

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        structure: orm.StructureData,
        protocol: str | None = "fast",
        overrides: Mapping[str, Any] | None = None,
        **kwargs,
    ):
        """Return a builder filled with the inputs of ``protocol`` for ``structure``.

        The settings for molecules are used when the structure is periodic in no direction (the builder then sets the
        ``center`` inputs, so that the work chain's first step centres it in a non-periodic box with the protocol's
        ``vacuum``, or in a cube of edge ``box``, through the ``center_molecule`` calcfunction), those for crystals
        otherwise (k-points along non-periodic directions are set to 1). Building stores no node.

        :param code: the ``Code`` of a Python interpreter that can import ASE and GPAW.
        :param structure: the ``StructureData`` to compute.
        :param protocol: ``'fast'``, ``'balanced'`` or ``'stringent'`` (see ``get_available_protocols``); ``None``
            selects the default protocol.
        :param overrides: nested dictionary merged recursively over the protocol inputs, e.g.
            ``{'gpaw': {'parameters': {'ecut': 300.0}}, 'max_iterations': 3, 'vacuum': 4.0}``; a ``None`` value
            deletes a key.
        :param kwargs: ``options`` (dict merged into ``gpaw.metadata.options``) and ``system_type`` (``'molecule'``
            or ``'crystal'``, to override the choice made from the periodicity).
        :raises ValueError: unknown protocol, missing code, invalid overrides or parameters, non-finite positions.
        """
        options = kwargs.pop("options", None)
        system_type = kwargs.pop("system_type", None)
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(kwargs))}")

        if code is None:
            raise ValueError("`code` is required: pass the Code of a Python interpreter that can import ASE and GPAW.")
        if not isinstance(code, orm.AbstractCode):
            raise TypeError(f"`code` must be an AiiDA Code, got {type(code).__name__}")
        if not isinstance(structure, orm.StructureData):
            raise TypeError(f"`structure` must be a StructureData, got {type(structure).__name__}")
        check_finite_structure(structure)
        if system_type is None:
            system_type = "crystal" if any(structure.pbc) else "molecule"
        elif system_type not in _SYSTEM_TYPES:
            raise ValueError(f"unknown system_type '{system_type}'; expected one of: {', '.join(_SYSTEM_TYPES)}")

        inputs = load_protocol(PROTOCOL_FILE, protocol, overrides, variant=system_type)

        unknown = sorted(set(inputs) - set(_PROTOCOL_KEYS))
        if unknown:
            raise ValueError(f"unknown protocol input(s) {', '.join(unknown)}; accepted: {', '.join(_PROTOCOL_KEYS)}")
        gpaw_inputs = inputs.get("gpaw") or {}
        unknown = sorted(set(gpaw_inputs) - set(_PROTOCOL_GPAW_KEYS))
        if unknown:
            raise ValueError(
                f"unknown protocol input(s) gpaw.{', gpaw.'.join(unknown)}; accepted: {', '.join(_PROTOCOL_GPAW_KEYS)}"
            )

        parameters = dict(gpaw_inputs.get("parameters") or {})
        metadata = dict(gpaw_inputs.get("metadata") or {})
        if options:
            metadata["options"] = {**(metadata.get("options") or {}), **options}

        vacuum = inputs.get("vacuum")
        box = inputs.get("box")
        center = None
        if system_type == "molecule":
            if vacuum is None or not isinstance(vacuum, (int, float)) or vacuum <= 0:
                raise ValueError(f"the protocol `vacuum` must be a positive number of Å for molecules, got {vacuum!r}")
            if box is not None and (not isinstance(box, (int, float)) or box <= 0):
                raise ValueError(f"the protocol `box` must be a positive cube edge in Å, got {box!r}")
            centered_copy(structure, float(vacuum), box)  # checks the box; the work chain's first step centres
            center = {"vacuum": orm.Float(float(vacuum))}
            if box is not None:
                center["box"] = orm.Float(float(box))
        elif isinstance(parameters.get("kpts"), list):
            parameters["kpts"] = [n if periodic else 1 for n, periodic in zip(parameters["kpts"], structure.pbc)]

        parameters_node = orm.Dict(parameters)
        problem = validate_parameters(parameters_node)
        if problem:
            raise ValueError(f"protocol {protocol!r} with the given overrides gives invalid {problem}")

        builder = cls.get_builder()
        builder.gpaw.code = code
        builder.gpaw.structure = structure
        builder.gpaw.parameters = parameters_node
        if center is not None:
            builder.center = center
        if metadata:
            builder.gpaw.metadata = metadata
        builder.max_iterations = orm.Int(inputs.get("max_iterations", 5))
        builder.clean_workdir = orm.Bool(inputs.get("clean_workdir", False))
        if inputs.get("handler_overrides"):
            builder.handler_overrides = orm.Dict(inputs["handler_overrides"])
        return builder

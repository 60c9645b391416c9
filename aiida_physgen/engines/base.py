"""The two kinds of relaxation engine the screening workflow knows, and the helpers they share.

* A :class:`RelaxationEngine` relaxes one structure per process (a DFT code: GPAW, later VASP). The
  screening asks it for builders for a whole set of structures at once (so it can give molecules one
  common box), submits them concurrently, and reads each back into one :class:`RelaxationResult`.
* A :class:`BatchRelaxationEngine` relaxes a whole ``physgen.structure_set`` in one process and
  returns one set with an energy per structure as info arrays (the cheap tier: GFN2-xTB, CHGNet):
  tens of thousands of candidates never become tens of thousands of nodes.

Both check their inputs at launch with ``validate`` (fast, stores nothing, opens no transport), and
both are found by name through the entry-point group ``aiida_physgen.engines``
(:func:`aiida_physgen.engines.get_engine`): the screening knows no engine by name.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiida import orm
from aiida.engine import ProcessBuilder

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..data.structure_set import StructureSet

__all__ = [
    "RelaxationEngine",
    "BatchRelaxationEngine",
    "RelaxationResult",
    "merge_overrides",
    "dummy_structure",
    "validate_builder",
    "builders_problem",
    "protocol_problem",
    "batch_settings",
    "process_inputs",
]


@dataclass
class RelaxationResult:
    """What the screening reads back from a finished relaxation."""

    structure: orm.StructureData
    parameters: orm.Dict
    energy: float
    dos: orm.XyData | None


class RelaxationEngine(abc.ABC):
    """One DFT code as seen by the screening workflow: one process per structure."""

    name: str
    granularity = "structure"
    #: the protocol file (``workflows/protocols/<name>.yaml``) whose ``default_protocol`` applies when none is named
    protocol_file: str | None = None

    @abc.abstractmethod
    def get_builder(
        self,
        code: orm.AbstractCode,
        structure: orm.StructureData,
        protocol: str,
        overrides: Mapping[str, Any] | None,
        dos: bool,
    ) -> ProcessBuilder:
        """A builder that relaxes ``structure`` (positions) and, when ``dos``, computes its DOS."""

    def get_builders(
        self,
        code: orm.AbstractCode,
        structures: Mapping[str, orm.StructureData],
        protocol: str,
        overrides: Mapping[str, Any] | None,
        dos: bool,
    ) -> dict[str, ProcessBuilder | str]:
        """Builders for a set of structures whose energies will be compared with each other; a structure
        that cannot be computed gets the reason (a string) instead of a builder. The set's
        :meth:`shared_overrides` apply to every one of them."""
        overrides = self.shared_overrides(structures, protocol, overrides)
        builders: dict[str, ProcessBuilder | str] = {}
        for label, structure in structures.items():
            try:
                builders[label] = self.get_builder(code, structure, protocol, overrides, dos)
            except ValueError as error:
                builders[label] = str(error)
        return builders

    def shared_overrides(
        self,
        structures: Mapping[str, orm.StructureData],
        protocol: str,
        overrides: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """``overrides`` plus the settings that every structure of one comparison must share and that depend on
        the whole set (GPAW: one box for all molecules). By default there are none. A caller that builds the
        set in batches (the throttled screening) computes them once, for the whole set, and passes them to
        every batch's :meth:`get_builders`; they are part of the relaxation key, so a relaxation made with
        other shared settings is not reused."""
        return dict(overrides or {})

    def get_result(self, node: orm.ProcessNode) -> RelaxationResult:
        """Read the relaxed structure, total energy (eV) and DOS of a finished, successful process.

        By default from the outputs every physgen relaxation chain gives (``output_structure``,
        ``output_parameters`` with ``energy``, optional ``dos``); an engine whose processes return other
        outputs overrides this."""
        parameters = node.outputs.output_parameters
        return RelaxationResult(
            structure=node.outputs.output_structure,
            parameters=parameters,
            energy=float(parameters["energy"]),
            dos=node.outputs.dos if "dos" in node.outputs else None,
        )

    def validate(
        self,
        code: orm.AbstractCode | None,
        protocol: str,
        overrides: Mapping[str, Any] | None = None,
        dos: bool = True,
        periodic: bool | None = None,
        elements: list[str] | None = None,
    ) -> str | None:
        """A message when ``code``, ``protocol`` or ``overrides`` cannot work with this engine, else ``None``.

        Meant for launch-time validators: fast, stores no node, opens no transport. ``periodic`` says which kind
        of structure will be relaxed (``True`` crystals, ``False`` molecules, ``None`` either) and ``elements``
        which elements it holds (``None``: not known), so that the overrides are checked against the inputs the
        engine will really build (VASP: a POTCAR for every element). The message starts with the name of the
        argument at fault (``code``, ``protocol``, ``overrides``).
        """
        return None

    def default_protocol(self) -> str:
        """The protocol used when the caller names none: the ``default_protocol`` of :attr:`protocol_file`."""
        from ..workflows.protocols import get_default_protocol

        if self.protocol_file is None:
            raise ValueError(f"protocol: the {self.name} engine has no protocol file; name a protocol")
        return get_default_protocol(self.protocol_file)

    def default_code(self) -> orm.AbstractCode | None:
        """The code used when the caller gives none (GPAW: a Python with GPAW on localhost); ``None``: required."""
        return None

    def launch_structure(self, crystal: bool, overrides: Mapping[str, Any]) -> orm.StructureData:
        """The unstored structure of a kind (``True``: a crystal) that :func:`builders_problem` builds an input
        for at launch (default :func:`dummy_structure`); an engine whose overrides constrain it (a magnetic
        moment per atom, a POTCAR family) returns one that fits them."""
        return dummy_structure(crystal)

    def refuses(self, error: Exception) -> bool:
        """Whether ``error`` (not a ``ValueError``/``TypeError``) raised by :meth:`get_builder` is the plugin
        refusing the inputs (e.g. its own ``InputValidationError``) rather than a bug; default ``False``."""
        return False


class BatchRelaxationEngine(abc.ABC):
    """A relaxation method that relaxes a whole structure set in one process (the cheap tier).

    :meth:`get_process` names the process function and its inputs; the screening runs it as one step and
    hands the finished node to :meth:`get_result`, which returns the relaxed set: the structures in input
    order with ``cheap_energy`` (eV, NaN when failed) and ``cheap_failed`` (1/0) info arrays at least.
    """

    name: str
    granularity = "batch"
    #: whether the engine needs a trained model (``cheap_model``: a ``physgen.generator_model``, e.g. the EDNN)
    needs_model = False

    @abc.abstractmethod
    def validate(self, settings: Mapping[str, Any] | None, periodic: bool | None = None) -> str | None:
        """A message naming ``settings.<field>`` (or the missing package) when ``settings`` cannot relax
        structures of the kind ``periodic`` says (``None``: either), else ``None``. Fast, stores nothing."""

    #: the process function that relaxes (or scores) a set: its entry point in ``aiida.calculations``, taking
    #: ``structures``, optional ``settings`` and, with :attr:`needs_model`, ``model``
    process: str | None = None

    def get_process(
        self, structures: StructureSet, settings: orm.Dict | None, model: orm.Data | None = None
    ) -> tuple[Callable[..., Any], dict[str, Any]]:
        """The process function that relaxes (or scores) ``structures`` and the inputs to run it with; ``model``
        is the ``cheap_model`` input of the screening (given only to engines with :attr:`needs_model`).

        By default the function of :attr:`process`; an engine whose process takes other inputs overrides this."""
        from aiida.plugins import CalculationFactory

        if self.process is None:
            raise NotImplementedError(f"the {self.name} engine names no process: set `process` or override get_process")
        extra = {}
        if self.needs_model:
            if model is None:
                raise ValueError(
                    f"cheap_model: the {self.name} cheap engine needs a trained model (a physgen.generator_model)"
                )
            extra["model"] = model
        return CalculationFactory(self.process), process_inputs(structures, settings, **extra)

    def get_result(self, node: orm.ProcessNode) -> StructureSet:
        """The relaxed structure set of a finished, successful process."""
        return node.outputs.relaxed


def merge_overrides(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict:
    """``base`` with ``extra`` merged in, nested dictionaries key by key (``extra`` wins)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = value
    return out


def dummy_structure(crystal: bool, natoms: int = 2) -> orm.StructureData:
    """An unstored chain of ``natoms`` atoms for launch checks: H in a box (molecule) or Si in a periodic
    cell (crystal)."""
    from ase import Atoms

    if crystal:
        atoms = Atoms(
            f"Si{natoms}",
            positions=[[2.35 * i, 0.0, 0.0] for i in range(natoms)],
            cell=[2.35 * natoms, 4.0, 4.0],
            pbc=True,
        )
    else:
        atoms = Atoms(f"H{natoms}", positions=[[0.9 * i, 0.0, 0.0] for i in range(natoms)], pbc=False)
        atoms.center(vacuum=2.0)
    return orm.StructureData(ase=atoms)


def validate_builder(builder: ProcessBuilder) -> str | None:
    """Run the port validation of the builder's process on its inputs (defaults filled in), storing nothing."""
    spec = builder._process_class.spec()
    inputs = spec.inputs.pre_process(builder._inputs(prune=True))
    error = spec.inputs.validate(inputs)
    return None if error is None else error.message


def builders_problem(
    engine: RelaxationEngine, code, protocol: str, overrides: Mapping[str, Any], dos: bool, periodic: bool | None
) -> str | None:
    """Build the engine's input for its launch structure of each kind (:meth:`RelaxationEngine.launch_structure`:
    a molecule and a crystal, or the kind ``periodic`` says) and run its port validation: a message naming
    ``overrides`` and the kind of structure, else ``None``. Errors of ``get_builder`` other than ``ValueError``
    and ``TypeError`` propagate unless :meth:`RelaxationEngine.refuses` them."""
    for crystal in [False, True] if periodic is None else [bool(periodic)]:
        what = "crystal" if crystal else "molecule"
        try:
            builder = engine.get_builder(code, engine.launch_structure(crystal, overrides), protocol, overrides, dos)
        except (ValueError, TypeError) as error:
            return f"overrides: for a {what}: {error}"
        except Exception as error:
            if not engine.refuses(error):
                raise
            return f"overrides: for a {what}: {error}"
        problem = validate_builder(builder)
        if problem:
            return f"overrides: for a {what}: {problem}"
    return None


def protocol_problem(protocol: str, available: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> str | None:
    """A message when ``protocol`` is not one of ``available`` or ``overrides`` is not a dictionary, else ``None``."""
    if protocol not in available:
        return f"protocol: unknown protocol {protocol!r}; expected one of {sorted(available)}"
    if overrides is not None and not isinstance(overrides, Mapping):
        return f"overrides: got {type(overrides).__name__}, expected a dictionary of protocol inputs"
    return None


def batch_settings(settings: Mapping[str, Any] | None, parse: Callable[[dict | None], Any], expected: str) -> Any:
    """A batch engine's ``settings`` (a dictionary or ``None``) read by ``parse`` (e.g. a settings class's
    ``from_dict``); ``ValueError`` naming ``settings`` when it is not a dictionary (``expected``: what it holds)."""
    if settings is not None and not isinstance(settings, Mapping):
        raise ValueError(f"settings: got {type(settings).__name__}, expected {expected}")
    return parse(dict(settings) if settings else None)


def process_inputs(structures: StructureSet, settings: orm.Dict | None, **extra: Any) -> dict[str, Any]:
    """The inputs of a batch engine's process function: ``extra``, ``structures`` and ``settings`` when given."""
    inputs = {**extra, "structures": structures}
    if settings is not None:
        inputs["settings"] = settings
    return inputs

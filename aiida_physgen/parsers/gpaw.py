"""Parser for :class:`aiida_physgen.calculations.gpaw.GpawCalculation`.

The driver reports its outcome in ``results.json`` (``status``). Outputs are built completely before any is attached,
so a file that turns out unreadable leaves the node without half of its outputs.

============================  ===========================================================================
driver status                 outputs attached / exit code
============================  ===========================================================================
``ok``                        all outputs / 0
``relax_not_converged``       ``output_parameters``, ``forces``, ``output_structure`` (last geometry),
                              ``output_trajectory`` / 320 ``ERROR_RELAX_NOT_CONVERGED``
``scf_not_converged``         ``output_parameters``; for a relaxation that completed steps before the failure
                              also ``output_structure`` (last converged step) and ``output_trajectory``
                              / 310 ``ERROR_SCF_NOT_CONVERGED``
``invalid_input``             nothing / 303 ``ERROR_INVALID_SETTINGS``
``crashed``                   nothing / 302 ``ERROR_DRIVER_CRASHED``
``atom_left_box``             nothing / 304 ``ERROR_ATOM_LEFT_BOX`` (GPAW's ``GridBoundsError``)
============================  ===========================================================================

Missing ``results.json`` after a relaxation that recorded steps (the driver was killed: SIGKILL, out of memory,
walltime) gives 330 ``ERROR_INTERRUPTED`` with ``output_structure`` (the last geometry, from ``final.extxyz``, which
the driver replaces atomically at every step), ``output_trajectory`` (the complete frames recorded) and a short
``output_parameters`` (``status: 'interrupted'``). Otherwise missing ``results.json`` gives 300
``ERROR_OUTPUT_MISSING``; unparsable or inconsistent files 301
``ERROR_OUTPUT_UNREADABLE``.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
from aiida import orm
from aiida.parsers import Parser

from aiida_physgen.calculations import gpaw_driver as driver
from aiida_physgen.calculations.gpaw import STDERR_FILENAME

__all__ = ("GpawParser",)

#: Keys of ``results.json`` that do not go into ``output_parameters`` (arrays have their own nodes, inputs are inputs).
_EXCLUDED_KEYS = ("forces", "settings", "traceback")


class OutputReadError(Exception):
    """An output file exists but its content cannot be turned into output nodes."""

    def __init__(self, filename: str, error: str):
        super().__init__(f"{filename}: {error}")
        self.filename = filename
        self.error = error


class GpawParser(Parser):
    """Turn the files written by the GPAW driver into output nodes and an exit code."""

    def parse(self, **kwargs):
        names = set(self.retrieved.base.repository.list_object_names())

        if driver.RESULTS_FILENAME not in names:
            self._log_stderr(names)
            interrupted = self._parse_interrupted(names)
            if interrupted is not None:
                return interrupted
            return self.exit_codes.ERROR_OUTPUT_MISSING.format(filename=driver.RESULTS_FILENAME)

        try:
            results = json.loads(self.retrieved.base.repository.get_object_content(driver.RESULTS_FILENAME, "r"))
        except (ValueError, UnicodeDecodeError) as exception:
            return self.exit_codes.ERROR_OUTPUT_UNREADABLE.format(
                filename=driver.RESULTS_FILENAME, error=f"invalid JSON ({exception})"
            )
        if not isinstance(results, dict) or results.get("status") not in driver.EXIT_STATUS:
            return self.exit_codes.ERROR_OUTPUT_UNREADABLE.format(
                filename=driver.RESULTS_FILENAME, error="no valid `status` entry"
            )

        status = results["status"]
        error = "; ".join(str(e) for e in results.get("errors") or []) or "no details given"

        if status == driver.STATUS_CRASHED:
            traceback = results.get("traceback")
            if traceback is None and driver.ERROR_FILENAME in names:
                traceback = self.retrieved.base.repository.get_object_content(driver.ERROR_FILENAME, "r")
            if traceback:
                self.logger.error(f"GPAW driver traceback:\n{traceback}")
            return self.exit_codes.ERROR_DRIVER_CRASHED.format(error=error)
        if status == driver.STATUS_LEFT_BOX:
            return self.exit_codes.ERROR_ATOM_LEFT_BOX.format(error=error)
        if status == driver.STATUS_INVALID_INPUT:
            return self.exit_codes.ERROR_INVALID_SETTINGS.format(error=error)

        try:
            outputs = self._build_outputs(results, names)
        except OutputReadError as exception:
            return self.exit_codes.ERROR_OUTPUT_UNREADABLE.format(filename=exception.filename, error=exception.error)
        except FileNotFoundError as exception:
            return self.exit_codes.ERROR_OUTPUT_MISSING.format(filename=str(exception))

        for label, node in outputs.items():
            self.out(label, node)

        if status == driver.STATUS_SCF_NOT_CONVERGED:
            return self.exit_codes.ERROR_SCF_NOT_CONVERGED.format(error=error)
        if status == driver.STATUS_RELAX_NOT_CONVERGED:
            return self.exit_codes.ERROR_RELAX_NOT_CONVERGED.format(error=error)
        return None

    # ------------------------------------------------------------------------------------------------------------------

    def _parse_interrupted(self, names):
        """A relaxation killed before it wrote ``results.json`` but after recording steps: attach the last geometry
        (``output_structure``), the steps so far (``output_trajectory``) and a short ``output_parameters``, and
        return 330 ``ERROR_INTERRUPTED``; ``None`` when there is nothing to recover."""
        if driver.FINAL_STRUCTURE_FILENAME not in names and driver.TRAJECTORY_FILENAME not in names:
            return None
        settings = self.node.inputs.parameters.get_dict()
        if settings.get("calculation", driver.DEFAULTS["calculation"]) != "relax":
            return None
        frames = []
        if driver.TRAJECTORY_FILENAME in names:
            frames = self._read_complete_frames(driver.TRAJECTORY_FILENAME)
        last = None
        if driver.FINAL_STRUCTURE_FILENAME in names:
            try:
                last = self._read_frames(driver.FINAL_STRUCTURE_FILENAME)[-1]
            except OutputReadError as exception:
                self.logger.warning(f"ignoring {exception}")
        if last is None and frames:
            last = frames[-1]
        if last is None:
            return None

        parameters = {
            "status": "interrupted",
            "calculation": "relax",
            "relax_converged": False,
            "trajectory_frames": len(frames),
            "relax_steps": max(len(frames) - 1, 0),
            "energy_units": "eV",
            "force_units": "eV/Angstrom",
        }
        with contextlib.suppress(Exception):  # the last step's energy and forces, when the file carries them
            parameters["energy"] = float(last.get_potential_energy())
            parameters["max_force"] = float(np.linalg.norm(last.get_forces(), axis=1).max())
        self.out("output_parameters", orm.Dict(parameters))
        self.out("output_structure", self._structure_from(last))
        if frames:
            try:
                self.out("output_trajectory", self._trajectory(frames))
            except OutputReadError as exception:
                self.logger.warning(f"no output_trajectory: {exception}")
        return self.exit_codes.ERROR_INTERRUPTED.format(frames=len(frames))

    def _read_complete_frames(self, filename: str) -> list:
        """The frames of a file that a killed run may have left with a truncated last frame: every complete one."""
        from ase.io import iread

        natoms = len(self.node.inputs.structure.sites)
        frames = []
        try:
            content = self.retrieved.base.repository.get_object_content(filename, "r")
            for frame in iread(io.StringIO(content), index=":", format="extxyz"):
                if len(frame) != natoms:
                    break
                frames.append(frame)
        except Exception as exception:  # noqa: BLE001 - a truncated last frame raises one of many errors
            self.logger.warning(f"{filename}: kept the {len(frames)} complete frame(s) before {exception!r}")
        return frames

    def _log_stderr(self, names):
        """Put the tail of the driver's stderr into the log, to help when it died before writing results."""
        if STDERR_FILENAME in names:
            tail = self.retrieved.base.repository.get_object_content(STDERR_FILENAME, "r")[-3000:]
            if tail.strip():
                self.logger.error(f"stderr of the driver (tail):\n{tail}")

    def _read_frames(self, filename: str):
        from ase.io import read

        try:
            content = self.retrieved.base.repository.get_object_content(filename, "r")
            frames = read(io.StringIO(content), index=":", format="extxyz")
        except Exception as exception:  # noqa: BLE001 - ASE raises many different errors on corrupt files
            raise OutputReadError(filename, f"{type(exception).__name__}: {exception}") from exception
        if not frames:
            raise OutputReadError(filename, "no structure in the file")
        natoms = len(self.node.inputs.structure.sites)
        if any(len(frame) != natoms for frame in frames):
            raise OutputReadError(filename, f"expected {natoms} atoms per structure")
        return frames

    def _structure_from(self, atoms) -> orm.StructureData:
        """Copy the input structure (keeping its kinds) with the positions and cell of ``atoms``."""
        structure = self.node.inputs.structure.clone()
        structure.reset_cell(atoms.cell.array.tolist())
        structure.reset_sites_positions(atoms.positions.tolist())
        return structure

    def _build_outputs(self, results: dict, names: set[str]) -> dict[str, orm.Data]:
        status = results["status"]
        calculation = results.get("calculation")
        settings = results.get("settings") or {}
        outputs: dict[str, orm.Data] = {}

        parameters = {key: value for key, value in results.items() if key not in _EXCLUDED_KEYS}
        parameters["energy_units"] = "eV"
        parameters["force_units"] = "eV/Angstrom"
        parameters["stress_units"] = "eV/Angstrom^3"
        outputs["output_parameters"] = orm.Dict(parameters)

        if status in (driver.STATUS_OK, driver.STATUS_RELAX_NOT_CONVERGED):
            forces = results.get("forces")
            try:
                forces_array = np.array(forces, dtype=float)
            except (TypeError, ValueError) as exception:
                raise OutputReadError(driver.RESULTS_FILENAME, f"invalid `forces`: {exception}") from exception
            natoms = len(self.node.inputs.structure.sites)
            if forces_array.shape != (natoms, 3):
                raise OutputReadError(
                    driver.RESULTS_FILENAME, f"`forces` has shape {forces_array.shape}, expected ({natoms}, 3)"
                )
            array = orm.ArrayData()
            array.set_array("forces", forces_array)
            outputs["forces"] = array
            if driver.FINAL_STRUCTURE_FILENAME not in names:
                raise FileNotFoundError(driver.FINAL_STRUCTURE_FILENAME)

        if calculation == "relax":
            if driver.FINAL_STRUCTURE_FILENAME in names:
                final = self._read_frames(driver.FINAL_STRUCTURE_FILENAME)[-1]
                outputs["output_structure"] = self._structure_from(final)
            if driver.TRAJECTORY_FILENAME in names:
                outputs["output_trajectory"] = self._trajectory(self._read_frames(driver.TRAJECTORY_FILENAME))
            elif results.get("trajectory_frames"):
                raise FileNotFoundError(driver.TRAJECTORY_FILENAME)

        if status == driver.STATUS_OK and settings.get("dos"):
            if driver.DOS_FILENAME not in names:
                raise FileNotFoundError(driver.DOS_FILENAME)
            outputs["dos"] = self._dos()

        return outputs

    def _trajectory(self, frames) -> orm.TrajectoryData:
        symbols = [site.kind_name for site in self.node.inputs.structure.sites]
        trajectory = orm.TrajectoryData()
        trajectory.set_trajectory(
            symbols=symbols,
            positions=np.array([frame.positions for frame in frames]),
            cells=np.array([frame.cell.array for frame in frames]),
            stepids=np.arange(len(frames)),
            pbc=[bool(p) for p in self.node.inputs.structure.pbc],
        )
        try:
            trajectory.set_array("energy", np.array([frame.get_potential_energy() for frame in frames]))
            trajectory.set_array("forces", np.array([frame.get_forces() for frame in frames]))
        except Exception as exception:  # noqa: BLE001 - missing results in a frame
            raise OutputReadError(driver.TRAJECTORY_FILENAME, f"a step lacks energy or forces ({exception})") from None
        if all("stress" in (frame.calc.results if frame.calc else {}) for frame in frames):
            trajectory.set_array("stress", np.array([frame.get_stress(voigt=False) for frame in frames]))
        return trajectory

    def _dos(self) -> orm.XyData:
        try:
            data = json.loads(self.retrieved.base.repository.get_object_content(driver.DOS_FILENAME, "r"))
            energy = np.array(data["energy"], dtype=float)
            names = ["dos", "dos_up", "dos_down"] if data.get("spin_polarized") else ["dos"]
            arrays = [np.array(data[name], dtype=float) for name in names]
        except (ValueError, KeyError, TypeError) as exception:
            raise OutputReadError(driver.DOS_FILENAME, f"{type(exception).__name__}: {exception}") from exception
        if energy.ndim != 1 or len(energy) < 2 or any(array.shape != energy.shape for array in arrays):
            raise OutputReadError(driver.DOS_FILENAME, "the energy grid and the DOS arrays differ in length")
        xy = orm.XyData()
        xy.set_x(energy, "energy", "eV")
        xy.set_y(arrays, names, ["states/eV"] * len(arrays))
        fermi_energy = data.get("fermi_energy")
        if isinstance(fermi_energy, (int, float)) and np.isfinite(fermi_energy):
            xy.base.attributes.set("fermi_energy", float(fermi_energy))
        return xy

"""``amorphous``: the RePAP study (amorphous silicon) on plain files, no AiiDA profile.

    aiida-physgen amorphous md -o trajectory.npz --held-out 0.2    # melt-quench MD (LAMMPS), split in time
    aiida-physgen train trajectory_training.npz -f repap --target '{}' -o models
    aiida-physgen generate models/model_00.pt -n 4000 --condition '{"min_distance": 2.0}' -o repap.npz
    aiida-physgen generate models/model_00.pt -n 4000 --condition '{"min_distance": 0}' -o no_redraws.npz
    aiida-physgen amorphous random trajectory_held_out.npz -n 4000 -o random.npz
    aiida-physgen amorphous quality trajectory_held_out.npz repap.npz no_redraws.npz random.npz -o quality/

Training and sampling are the generic ``train`` and ``generate``. ``quality`` computes the table of the
screening's ``amorphous`` assessor (:func:`aiida_physgen.amorphous.report.quality_rows`, the same
definitions). Bad input exits with code 2 and a one-line message naming the option, before any MD or
measurement.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from ._common import (
    InputError,
    check_output_dir,
    check_output_file,
    load_mapping,
    output_files,
    progress_bar,
    read_structures,
    value_errors_as_input,
)
from .files import check_structure_output, save_batch, write_batch
from .options import output_file_option, output_folder_option

__all__ = ["amorphous", "POTENTIALS", "RANDOM_CHUNK"]

#: the potentials of :mod:`aiida_physgen.amorphous.md` (its ``POTENTIALS``, not imported here: the help stays fast)
POTENTIALS = ("sw_vink", "sw", "tersoff")
#: random structures drawn per call of ``random_structures`` (one call for 4,000 peaks at 1.7 GB)
RANDOM_CHUNK = 500
#: the options of ``md`` that override a field of the settings
_MD_OPTIONS = {"frames": "--frames", "potential": "--potential", "seed": "--seed"}
#: the quality settings and the options of ``quality`` that set them
_QUALITY_OPTIONS = {
    "min_distance": "--min-distance",
    "cutoff": "--cutoff",
    "r_max": "--r-max",
    "bins": "--bins",
    "energy_structures": "--energies",
    "potential": "--potential",
}


@click.group()
def amorphous():
    """Amorphous silicon for RePAP on files: melt-quench MD, random structures, the quality table."""


# ---------------------------------------------------------------------- helpers
def _split_paths(output) -> tuple[Path, Path]:
    """``<stem>_training<suffix>`` and ``<stem>_held_out<suffix>`` beside ``output``."""
    path = Path(output)
    return (path.with_name(f"{path.stem}_training{path.suffix}"), path.with_name(f"{path.stem}_held_out{path.suffix}"))


def _formula(batch, index: int = 0) -> str:
    return batch[index].get_chemical_formula(mode="metal")


def _md_settings(settings_text, frames, potential, seed):
    """:class:`~aiida_physgen.amorphous.md.MeltQuenchSettings` from ``--settings`` and the options that override it."""
    from ..amorphous.md import MeltQuenchSettings
    from ..ml import settings as settings_module

    values = load_mapping(settings_text, "--settings") if settings_text else {}
    given = {"frames": frames, "potential": potential, "seed": seed}
    values.update({key: value for key, value in given.items() if value is not None})
    try:
        return settings_module.from_dict(MeltQuenchSettings, values, "settings")
    except ValueError as error:
        message = str(error)
        field, _, rest = message.partition(":")
        if given.get(field) is not None:
            raise InputError(f"{_MD_OPTIONS[field]}:{rest}") from None
        raise InputError(f"--settings: {message.removeprefix('settings: ')}") from None


def _held_out_count(fraction: float, frames: int) -> int:
    """Frames held out for ``--held-out`` (``physgen.split_trajectory``'s rule), refused naming ``--held-out``."""
    import math

    if not (math.isfinite(fraction) and 0 < fraction < 1):
        raise InputError(f"--held-out: got {fraction:g}, expected the share of the frames held out, in (0, 1)")
    held = int(round(frames * fraction))
    if held < 2 or frames - held < 2:
        raise InputError(
            f"--held-out: {fraction:g} of {frames} frames holds out {held} and keeps {frames - held}; "
            "expected at least 2 of each (more frames, or another share)"
        )
    return held


class _MdBar:
    """A tqdm bar over the MD steps, named after the stage (melt, quench, anneal, production)."""

    def __init__(self, settings):
        s = settings
        self.stages = [
            (s.melt_steps, "melt"),
            (s.melt_steps + s.quench_steps, "quench"),
            (s.melt_steps + s.quench_steps + s.equilibration_steps, "anneal"),
            (s.total_steps, "production"),
        ]
        self.bar = progress_bar(total=s.total_steps, unit="step", unit_scale=True, desc="melt")

    def __call__(self, done: int, total: int) -> None:
        stage = next((name for end, name in self.stages if done < end), "production")
        self.bar.set_description_str(stage, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


# ---------------------------------------------------------------------- md
@amorphous.command("md")
@click.option(
    "--settings",
    "settings_text",
    help="Fields of the melt-quench protocol (MeltQuenchSettings: atoms, density, potential, "
    "melt_steps, quench_steps, equilibration_steps, frames, stride, seed, ...) as JSON or a "
    "JSON/YAML file. Default: 30 atoms at 2.28 g/cm³, 40,000 frames every 10 fs.",
)
@click.option("--frames", type=int, help="Production frames (overrides the settings).  [default: 40000]")
@click.option(
    "--potential", type=click.Choice(POTENTIALS), help="Silicon potential (overrides the settings).  [default: sw_vink]"
)
@click.option(
    "--seed",
    type=int,
    help="Seed of the random initial atoms and velocities, 1 to 2³¹−1 (overrides the settings).  [default: 1]",
)
@click.option(
    "--held-out",
    "held_out",
    type=float,
    metavar="F",
    help="Also write <stem>_training and <stem>_held_out beside the output: the last F of the frames "
    "held out (in time order), at least 2 frames on each side.",
)
@output_file_option(
    default="trajectory.npz", help="The trajectory (.npz, the structure sets' format; or any format ASE writes)."
)
def md_command(settings_text, frames, potential, seed, held_out, output):
    """A melt-and-quench MD trajectory of amorphous silicon (LAMMPS), the training data of RePAP.

    Every frame holds the same atoms in the same order in one cubic periodic cell, with info arrays
    ``energy`` (potential energy, eV), ``temperature`` (K), ``time`` (ps since the production start) and
    ``potential``; the split files add ``frame`` (the index in the trajectory). Prints the frames, the
    cell edge, the potential, the mean energy per atom and temperature, and the time taken.
    """
    import numpy as np

    fmt = check_structure_output(output)
    paths = [Path(output)]
    if held_out is not None:
        paths += list(_split_paths(output))
        for path in paths[1:]:
            check_output_file(path, "--output")
    settings = _md_settings(settings_text, frames, potential, seed)
    held = _held_out_count(held_out, settings.frames) if held_out is not None else 0

    from ..amorphous.md import cell_length, check_frames_fit, melt_quench, potential_description

    try:
        check_frames_fit(settings)
    except ValueError as error:
        raise InputError(f"--{error}" if str(error).startswith("frames") else str(error)) from None
    started = time.monotonic()
    bar = _MdBar(settings)
    try:
        batch = melt_quench(settings, progress=bar)
    except ImportError as error:  # no LAMMPS: the message says what to install
        raise click.ClickException(str(error)) from None
    except RuntimeError as error:  # LAMMPS failed (named command), or atoms that could not be placed
        raise click.ClickException(str(error)) from None
    finally:
        bar.close()
    seconds = time.monotonic() - started
    batch.info["potential"] = np.full(len(batch), settings.potential)
    parts = []
    if held:
        count = len(batch)
        for index in (np.arange(count - held), np.arange(count - held, count)):
            part = batch.subset(index)
            part.info["frame"] = index
            parts.append(part)
    with output_files(*paths) as temporary:
        for part, tmp in zip([batch, *parts], temporary):
            save_batch(part, tmp, fmt)

    energy = batch.info["energy"] / settings.atoms
    temperature = batch.info["temperature"]
    length = cell_length(settings.atoms, settings.density)
    click.echo(
        f"wrote {len(batch)} frames of {_formula(batch)} to {output} ({settings.total_steps:,} MD steps, "
        f"{float(batch.info['time'][-1]):g} ps of production every {settings.stride} steps)"
    )
    click.echo(f"cell: cubic, edge {length:.4f} Å ({settings.density:g} g/cm³)")
    click.echo(f"potential: {settings.potential}: {potential_description(settings.potential)}")
    click.echo(
        f"energy: {energy.mean():.4f} ± {energy.std():.4f} eV/atom; temperature: {temperature.mean():.1f} ± "
        f"{temperature.std():.1f} K (mean ± std over the frames)"
    )
    if held:
        click.echo(
            f"training: frames 0–{len(batch) - held - 1} in {paths[1]}; held out: frames "
            f"{len(batch) - held}–{len(batch) - 1} in {paths[2]}"
        )
    click.echo(f"took {seconds:.1f} s")


# ---------------------------------------------------------------------- quality
def _set_names(sets, names) -> list[str]:
    from ..amorphous.report import FLOOR

    if names and len(names) != len(sets):
        raise InputError(
            f"--name: got {len(names)} name(s) for {len(sets)} SET(s); give one --name per SET, in "
            "their order, or none (the file names)"
        )
    chosen = [str(name) for name in names] if names else [Path(path).stem for path in sets]
    option = "--name" if names else "SET"
    for name in chosen:
        if not name.strip():
            raise InputError(f"{option}: got an empty name; expected a name for the table")
        if name == FLOOR:
            raise InputError(f"{option}: {FLOOR!r} is the row of the MD floor; name the set otherwise (--name)")
    for i, name in enumerate(chosen):
        if name in chosen[:i]:
            first = sets[chosen.index(name)]
            raise InputError(f"{option}: {first} and {sets[i]} are both named {name!r}; give one --name per SET")
    return chosen


def _potential_of(batch) -> str | None:
    """The potential ``amorphous md`` recorded in the frames' ``info['potential']``, if one."""
    import numpy as np

    values = batch.info.get("potential")
    if values is None or values.dtype.kind not in "US":
        return None
    found = set(np.asarray(values).astype(str).tolist())
    return found.pop() if len(found) == 1 and found <= set(POTENTIALS) else None


def _quality_error(message: str, held_out, paths: dict) -> InputError:
    """A ValueError of :func:`~aiida_physgen.amorphous.report.quality_rows` → the argument or option it is about."""
    field, _, rest = message.partition(":")
    if field == "held_out":
        return InputError(f"HELD_OUT {held_out}:{rest}")
    if field in paths:
        return InputError(f"SET {paths[field]} ({field}):{rest}")
    key = field.removeprefix("settings.")
    if key in _QUALITY_OPTIONS:
        return InputError(f"{_QUALITY_OPTIONS[key]}:{rest}")
    return InputError(message)


@amorphous.command("quality")
@click.argument("held_out", metavar="HELD_OUT", type=click.Path(exists=True, dir_okay=False))
@click.argument("sets", metavar="SET...", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--name",
    "names",
    multiple=True,
    help="The name of a SET in the table; repeat the option, once per SET in their order (default: "
    "the file names without suffix).",
)
@click.option(
    "--min-distance",
    type=float,
    default=2.0,
    help="Close contact: a pair (periodic images included) closer than this, Å.",
)
@click.option(
    "--cutoff",
    type=float,
    default=2.85,
    help="Neighbours within this for the coordination and the bond angles, Å.",
)
@click.option("--r-max", type=float, default=8.0, help="Range of the RDF, Å.")
@click.option("--bins", type=int, default=160, help="Bins of the RDF.")
@click.option(
    "--energies",
    "energy_structures",
    type=int,
    default=500,
    help="Structures per set (evenly spaced) whose energy LAMMPS computes; 0: no energies.",
)
@click.option(
    "--potential",
    type=click.Choice(POTENTIALS),
    help="Potential of the energies (default: the one `amorphous md` recorded in HELD_OUT, else sw_vink).",
)
@click.option(
    "--grid-bins",
    type=int,
    default=None,
    help="The generator's grid (bins per cell vector, e.g. 50): adds the md_on_grid row, the hold-out placed "
    "on that grid, the best a generator on it could do.",
)
@output_folder_option(
    default="amorphous_quality", help="Folder for rdf.png, angles.png, energies.png and quality.json."
)
def quality_command(
    held_out, sets, names, min_distance, cutoff, r_max, bins, energy_structures, potential, grid_bins, output
):
    """The quality table of every SET of structures against the HELD_OUT MD frames, and its figures.

    Per SET: count, RDF error (mean over the bins of (g − g_MD)², the RePAP paper's measure), the share
    with a pair closer than --min-distance, the mean coordination within --cutoff and the energy per
    atom (mean ± std, LAMMPS) of up to --energies structures; and the MD floor row md_hold_out (the
    hold-out's second half against its first half; with --grid-bins also md_on_grid). The same table as
    the screening's amorphous assessor.
    Prints the table (Markdown) and writes the figures and quality.json into --output.
    """
    from ..amorphous.report import FIGURES, JSON_FILE, quality_rows, quality_settings

    folder = check_output_dir(output, "--output")
    chosen = _set_names(sets, names)
    values = {
        "min_distance": min_distance,
        "cutoff": cutoff,
        "r_max": r_max,
        "bins": bins,
        "energy_structures": energy_structures,
        "potential": potential,
        "grid_bins": grid_bins,
    }
    paths = dict(zip(chosen, sets))
    try:
        quality_settings(values)
    except ValueError as error:
        raise _quality_error(str(error), held_out, {}) from None
    reference = read_structures(held_out, "HELD_OUT")
    batches = {name: read_structures(path, f"SET {path}") for name, path in paths.items()}
    recorded = _potential_of(reference)
    used = potential or recorded or "sw_vink"
    try:
        report = quality_rows(reference, batches, values, recorded)
    except ValueError as error:
        raise _quality_error(str(error), held_out, paths) from None
    except RuntimeError as error:  # LAMMPS failed on a structure (the set is named)
        raise click.ClickException(f"energies: {error}") from None
    except ImportError as error:  # no LAMMPS: the message says what to install (or --energies 0)
        raise click.ClickException(f"{error}; or skip the energies with --energies 0") from None
    try:
        written = report.write(folder)
    except OSError as error:
        from ._common import OutputError

        raise OutputError(
            f"--output: cannot write into {str(folder)!r} ({error.strerror or error}); nothing was written"
        ) from None
    click.echo(report.quality["text"])
    click.echo("")
    click.echo(
        f"md_hold_out: the second half of the {len(reference)} held-out frames against the first half (the "
        "floor of the RDF error); every SET against all of them"
    )
    if energy_structures:
        source = "--potential" if potential else ("recorded in HELD_OUT" if recorded else "default")
        click.echo(f"energies: {used} ({source}), up to {energy_structures} structures per set")
    else:
        click.echo("energies: skipped (--energies 0)")
    names_written = [FIGURES[key] for key in ("rdf", "angles", "energies") if key in written] + [JSON_FILE]
    click.echo(f"wrote {', '.join(names_written)} to {folder}")


# ---------------------------------------------------------------------- random
def _reference_cell(batch, option: str):
    """Atoms (symbols of structure 0) and cell of a fixed-cell set; refused when the structures differ."""
    import numpy as np

    mismatch = batch.trajectory_mismatch(option, same_order=False)
    if mismatch:
        raise InputError(f"{mismatch}; expected the frames of one fixed-cell trajectory (one set of atoms, one cell)")
    return batch[0].get_chemical_symbols(), np.array(batch.cells[0]), [bool(p) for p in batch.pbc[0]]


def _chunk_seed(seed: int, chunk: int) -> int:
    """The seed of chunk ``chunk``: ``seed`` itself for the first (so up to 500 structures are those of one
    ``random_structures`` call, as ``physgen.generate_random`` draws them), then one derived from both."""
    import numpy as np

    if chunk == 0:
        return seed
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])


@amorphous.command("random")
@click.argument("reference", metavar="REFERENCE", type=click.Path(exists=True, dir_okay=False))
@click.option("--count", "-n", type=click.IntRange(min=1), default=1000, help="Random structures.")
@click.option(
    "--min-distance",
    type=float,
    default=2.0,
    help="Every pair of atoms (periodic images included) at least this far apart, Å.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, help="Seed of the positions.")
@output_file_option(default="random.npz", help="The structures (.npz, or any format ASE writes).")
def random_command(reference, count, min_distance, seed, output):
    """COUNT random structures with the atoms and cell of REFERENCE (the held-out frames): the baseline.

    Positions uniform in the cell, every pair (periodic images included) at least --min-distance
    apart: random sequential addition (aiida_physgen.ml.random_structures), drawn 500 structures at
    a time. The same seed and count give the same file.
    """
    import numpy as np

    from ..ml.batch import StructureBatch
    from ..ml.random_structures import random_structures
    from ..ml.training import BYTES_PER_ATOM, check_fits_in_memory

    fmt = check_structure_output(output)
    batch = read_structures(reference, "REFERENCE")
    symbols, cell, pbc = _reference_cell(batch, "REFERENCE")
    with value_errors_as_input():
        check_fits_in_memory("--count", count, BYTES_PER_ATOM * int(batch.n_atoms[0]), "random structures")

    def draw(k: int, size: int):
        try:
            return random_structures(symbols, cell, pbc, size, _chunk_seed(seed, k), min_distance=min_distance)
        except ValueError as error:  # the min-distance rule cannot be met, or a bad distance
            message = str(error)
            if message.startswith("min_distance:"):
                message = "--min-distance:" + message[len("min_distance:") :]
            raise InputError(message) from None

    starts = list(range(0, count, RANDOM_CHUNK))
    chunks = [draw(0, min(RANDOM_CHUNK, count))]  # a refusal comes before the progress bar
    with progress_bar(
        total=count, initial=len(chunks[0]), unit="structure", desc="random", disable=len(starts) == 1
    ) as bar:
        for k, start in enumerate(starts[1:], start=1):
            chunks.append(draw(k, min(RANDOM_CHUNK, count - start)))
            bar.update(len(chunks[-1]))
    out = chunks[0] if len(chunks) == 1 else StructureBatch.concatenate(chunks)
    write_batch(out, output, fmt)
    edges = " × ".join(f"{x:.3f}" for x in np.linalg.norm(cell, axis=1))
    click.echo(
        f"wrote {len(out)} random structures of {_formula(batch)} in the cell of REFERENCE ({edges} Å), every "
        f"pair at least {min_distance:g} Å apart, to {output}"
    )

"""``generate``, ``select`` and ``plot``: model files → candidates → representatives, no AiiDA profile."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import click
import numpy as np

from ._common import (
    InputError,
    check_output_file,
    echo_user_warnings,
    load_mapping,
    output_files,
    read_structures,
)
from .options import output_file_option

__all__ = [
    "generate",
    "select",
    "plot",
    "load_models",
    "structure_format",
    "check_structure_output",
    "save_batch",
    "write_batch",
    "write_structures",
]

#: selection fields and the options that set them, to name the option in a refusal
_SELECT_OPTIONS = {
    "n_clusters": "--clusters",
    "n_components": "--components",
    "min_distance": "--min-distance",
    "descriptor.r_cut": "--r-cut",
    "descriptor.n_max": "--n-max",
    "descriptor.l_max": "--l-max",
    "descriptor.max_neighbours": "--max-neighbours",
    "descriptor.radial": "--radial",
}


#: bytes of extended XYZ per atom and per structure (header line), to estimate an output file's size
_XYZ_BYTES_PER_ATOM = 56
_XYZ_BYTES_PER_STRUCTURE = 160


def load_models(paths, option: str = "MODELS"):
    from ..ml.model_io import load_model

    models = []
    for path in paths:
        try:
            models.append(load_model(path))
        except Exception as error:  # noqa: BLE001 - junk, a config without architecture, weights of another shape
            detail = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
            raise InputError(
                f"{option}: {path} is not a usable model file ({type(error).__name__}: {detail})"
            ) from None
    return models


def _atoms_per_structure(model) -> int | None:
    """Atoms in each structure a model generates, when its target says (a composition), else ``None``."""
    from ..ml.composition import parse_composition

    composition = (model.config.get("target") or {}).get("composition")
    try:
        return len(parse_composition(composition)) if composition else None
    except ValueError:
        return None


def structure_format(path, option: str) -> str:
    """The ASE format of a structure file to write, from its name (extended XYZ for .xyz, .extxyz or none)."""
    import ase.io.formats

    path = Path(path)
    if path.suffix in ("", ".xyz", ".extxyz"):
        return "extxyz"
    if path.suffix == ".npz":  # a structure set's own archive (fast for thousands of structures)
        return "npz"
    try:
        fmt = ase.io.formats.filetype(str(path), read=False)
        if not ase.io.formats.ioformats[fmt].can_write:
            raise ValueError(f"ASE cannot write {fmt}")
    except Exception as error:  # noqa: BLE001 - ASE raises UnknownFileTypeError, KeyError, ...
        raise InputError(
            f"{option}: cannot tell a structure format ASE writes from the name {str(path)!r} "
            f"({error}); expected e.g. .extxyz"
        ) from None
    return fmt


def check_structure_output(path, option: str = "--output") -> str:
    """The format of a structure file to write (:func:`structure_format`), refused (exit code 2) before any
    work when the file cannot be written or its name says no format."""
    check_output_file(path, option)
    return structure_format(path, option)


def save_batch(batch, path, fmt: str) -> None:
    """Write a structure batch to ``path`` in ``fmt`` (``'npz'``: the structure sets' own archive), directly;
    :func:`write_batch` or :func:`~._common.output_files` make it atomic."""
    if fmt == "npz":
        Path(path).write_bytes(batch.to_npz_bytes())
    else:
        batch.write(path, format=fmt)


def write_batch(batch, path, fmt: str) -> None:
    """Write a structure batch through a temporary name (the whole file appears at once, or nothing)."""
    with output_files(path) as (tmp,):
        save_batch(batch, tmp, fmt)


def write_structures(batch, path, option: str = "--output") -> None:
    """Write a structure batch to ``path`` in the format its name says (:func:`structure_format`), atomically."""
    write_batch(batch, path, structure_format(path, option))


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--count", "-n", type=int, help="Candidates per model.  [default: 2000]")
@click.option("--seed", type=int, default=0, help="Seed of the latent draws.")
@click.option("--condition", "condition_text", help="Family-defined sampling condition as JSON or a JSON/YAML file.")
@output_file_option(default="candidates.extxyz")
def generate(models, count, seed, condition_text, output):
    """Generate COUNT candidates from each model file (MODELS) into one extended-XYZ file.

    The ``model_index`` of every candidate says which model (in the order given) made it.
    """
    from ..ml.training import DEFAULT_COUNT
    from ..ml.training import generate as generate_batch

    count = DEFAULT_COUNT if count is None else count
    if count <= 0:
        raise click.BadParameter(f"got {count}, expected a positive number of candidates", param_hint="--count")
    fmt = check_structure_output(output)
    condition = load_mapping(condition_text, "--condition") if condition_text else None
    trained = load_models(models)
    atoms = [_atoms_per_structure(model) for model in trained]
    if all(n is not None for n in atoms):  # the size of the file, refused at once when the disk cannot hold it
        needed = count * sum(n * _XYZ_BYTES_PER_ATOM + _XYZ_BYTES_PER_STRUCTURE for n in atoms)
        directory = Path(output).parent
        free = shutil.disk_usage(directory).free
        if needed > free:
            raise InputError(
                f"--count: {count} candidates from each of {len(trained)} model(s) need a file of about "
                f"{needed / 1e9:.3g} GB but {str(directory)!r} has {free / 1e9:.3g} GB free; ask for fewer"
            )
    try:
        with echo_user_warnings():  # a family's notes, e.g. RUGAN labels outside the training range, RePAP redraws
            batch = generate_batch(trained, count, seed, condition)
    except ValueError as error:  # the API's field names → the options that set them
        message = str(error)
        for field, option in (("count:", "--count:"), ("condition:", "--condition:"), ("models:", "MODELS:")):
            if message.startswith(field):
                message = option + message[len(field) :]
        if message.startswith("condition."):  # a field of the condition: keep its name after the option's
            message = f"--condition: {message}"
        raise InputError(message) from None
    except MemoryError:
        raise InputError(f"--count: {count} candidates per model do not fit in memory; ask for fewer") from None
    write_batch(batch, output, fmt)
    click.echo(f"wrote {len(batch)} candidates from {len(trained)} model(s) to {output}")


def _models_descriptor(paths) -> dict | None:
    """The descriptor parameters shared by the model files, read from their configs."""
    from ..ml.model_io import read_model_file

    descriptors = []
    for path in paths:
        try:
            config, _ = read_model_file(Path(path).read_bytes())
        except ValueError as error:
            raise InputError(f"--models: {path}: {error}") from None
        descriptors.append(config.get("descriptor"))
    first = descriptors[0] if descriptors else None
    if any(d != first for d in descriptors):
        raise click.BadParameter(
            "the models were trained with different descriptors; give the descriptor "
            "options (--r-cut, --n-max, ...) explicitly",
            param_hint="--models",
        )
    return first


@click.command()
@click.argument("candidates", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--models",
    "model_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Model files that made the candidates: the descriptor defaults to theirs. Repeat the option.",
)
@click.option("--clusters", "-k", type=int, help="Representatives to pick (k-means clusters).  [default: 20]")
@click.option("--components", type=int, help="PCA components.  [default: 10]")
@click.option("--seed", type=int, default=0, help="Seed of the k-means.")
@click.option(
    "--min-distance",
    type=float,
    help="Drop candidates with two atoms closer than this (Å) before clustering.  [default: 0.5]",
)
@click.option("--r-cut", type=float, help="Descriptor cutoff in Å (default: the models', else 5).")
@click.option("--n-max", type=int, help="Radial basis size (default: the models', else 4).")
@click.option("--l-max", type=int, help="Angular channels (default: the models', else 4).")
@click.option("--max-neighbours", type=int, help="Neighbours per atom (default: the models', else 20).")
@click.option("--radial", type=click.Choice(["gaussian", "bessel"]), help="Radial basis (default: the models').")
@output_file_option(default="representatives.extxyz")
@output_file_option(
    "--selection",
    "selection_file",
    default="selection.npz",
    help="Where to save PCA coordinates, labels and distances.",
)
@output_file_option("--plot", "plot_file", help="Also draw the PCA scatter (PNG).")
def select(
    candidates,
    model_files,
    clusters,
    components,
    seed,
    min_distance,
    r_cut,
    n_max,
    l_max,
    max_neighbours,
    radial,
    output,
    selection_file,
    plot_file,
):
    """Select one representative per k-means cluster of CANDIDATES in descriptor-PCA space.

    Every default is that of the selection settings (the ``selection`` of a generation protocol).
    """
    from ..screening.selection import SelectionSettings, select_candidates

    values = {"n_clusters": clusters, "n_components": components, "min_distance": min_distance, "plot": False}
    values = {key: value for key, value in values.items() if value is not None}
    descriptor = {"r_cut": r_cut, "n_max": n_max, "l_max": l_max, "max_neighbours": max_neighbours, "radial": radial}
    descriptor = {key: value for key, value in descriptor.items() if value is not None}
    if descriptor:
        values["descriptor"] = descriptor
    targets = [(output, "--output"), (selection_file, "--selection")] + ([(plot_file, "--plot")] if plot_file else [])
    for path, option in targets:
        check_output_file(path, option)
    if len({Path(path).resolve() for path, _ in targets}) < len(targets):
        raise InputError("--output, --selection, --plot: expected different files, got the same one twice")
    fmt = structure_format(output, "--output")
    model_descriptor = _models_descriptor(model_files) if model_files else None

    def refuse(error):
        message = str(error)
        field = message.split(":", 1)[0].strip()
        field = field.split("=", 1)[0].removeprefix("settings.")
        option = _SELECT_OPTIONS.get(field)
        return InputError(f"{option} ({message})" if option else message)

    try:
        settings = SelectionSettings.from_dict(values)
    except (ValueError, TypeError) as error:
        raise refuse(error) from None
    batch = read_structures(candidates, "CANDIDATES")
    if settings.n_clusters > len(batch):
        raise InputError(
            f"--clusters: got {settings.n_clusters}, but {candidates} holds only {len(batch)} candidates; "
            f"expected at most {len(batch)} clusters"
        )
    try:
        with echo_user_warnings():  # e.g. fewer clusters than asked: fewer candidates survived the distance filter
            result, kept, _ = select_candidates(batch, settings, seed, model_descriptor)
    except (ValueError, TypeError) as error:
        raise refuse(error) from None
    chosen = batch.subset(kept[result.indices])
    chosen.info["candidate_index"] = kept[result.indices]
    for key in ("model_index", "candidate_index"):  # indices, read back from extxyz as floats
        if key in chosen.info:
            values_ = np.asarray(chosen.info[key])
            if np.all(np.isfinite(values_)) and np.all(values_ == np.round(values_)):
                chosen.info[key] = values_.astype(np.int64)
    # all files or none: each is written to a temporary name, renamed once every one is complete
    paths = [Path(output), Path(selection_file)] + ([Path(plot_file)] if plot_file else [])
    with output_files(*paths, option="--output, --selection" + (", --plot" if plot_file else "")) as temporary:
        chosen.write(temporary[0], format=fmt)
        with temporary[1].open("wb") as handle:  # a handle: np.savez would append .npz to a name
            np.savez(handle, candidate_index=kept, **result.arrays())
        if plot_file:
            _plot(result, temporary[2], title=f"{len(kept)} candidates → {len(chosen)} representatives")
    click.echo(
        f"wrote {len(chosen)} representatives of {len(kept)} candidates to {output} and the selection to "
        f"{selection_file}"
    )
    if plot_file:
        click.echo(f"wrote {plot_file}")


def _plot(result, path: Path, title: str | None = None) -> None:
    """:func:`~aiida_physgen.screening.selection.plot_selection` to ``path`` (any suffix: the format is PNG)."""
    from ..screening.selection import plot_selection

    plot_selection(result, path, title=title)


@click.command()
@click.argument("selection_file", type=click.Path(exists=True, dir_okay=False))
@output_file_option(default="pca_clusters.png")
def plot(selection_file, output):
    """Draw the PCA scatter of a saved selection (from ``select``), representatives marked."""
    from ..screening.selection import Selection

    check_output_file(output, "--output")

    def refuse(error):
        detail = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        return InputError(
            f"SELECTION_FILE: {selection_file} is not a selection file from `select` "
            f"({type(error).__name__}{': ' + detail if detail else ''})"
        )

    if not zipfile.is_zipfile(selection_file):
        raise InputError(
            f"SELECTION_FILE: {selection_file} is not a selection file from `select` (not an .npz archive)"
        )
    try:
        with np.load(selection_file, allow_pickle=False) as data:
            result = Selection.from_arrays({key: data[key] for key in data.files})
    except Exception as error:  # noqa: BLE001 - NumPy raises many types on junk (ValueError, OSError, BadZipFile, ...)
        raise refuse(error) from None
    try:
        with output_files(output) as (tmp,):
            _plot(result, tmp)
    except (ValueError, KeyError, IndexError, TypeError) as error:  # arrays of inconsistent shapes
        raise refuse(error) from None
    click.echo(f"wrote {output}")

"""``generate``, ``select`` and ``plot``: model files → candidates → representatives, no AiiDA profile."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ._common import InputError, load_mapping

__all__ = ["generate", "select", "plot"]

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


def _load_models(paths):
    from ..ml.model_io import load_model

    models = []
    for path in paths:
        try:
            models.append(load_model(path))
        except (ValueError, KeyError, RuntimeError) as error:  # not a model file, or a config the family refuses
            raise InputError(f"{path}: {error}") from None
    return models


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--count", "-n", type=int, help="Candidates per model.  [default: 2000]")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the latent draws.")
@click.option("--condition", "condition_text", help="Family-defined sampling condition as JSON or a JSON/YAML file.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="candidates.extxyz", show_default=True)
def generate(models, count, seed, condition_text, output):
    """Generate COUNT candidates from each model file (MODELS) into one extended-XYZ file.

    The ``model_index`` of every candidate says which model (in the order given) made it.
    """
    from ..ml.training import DEFAULT_COUNT
    from ..ml.training import generate as generate_batch

    count = DEFAULT_COUNT if count is None else count
    if count <= 0:
        raise click.BadParameter(f"got {count}, expected a positive number of candidates", param_hint="--count")
    condition = load_mapping(condition_text, "--condition") if condition_text else None
    trained = _load_models(models)
    try:
        batch = generate_batch(trained, count, seed, condition)
    except ValueError as error:
        raise InputError(str(error)) from None
    batch.write(output)
    click.echo(f"wrote {len(batch)} candidates from {len(trained)} model(s) to {output}")


def _models_descriptor(paths) -> dict | None:
    """The descriptor parameters shared by the model files, read from their configs."""
    from ..ml.model_io import read_model_file

    descriptors = []
    for path in paths:
        try:
            config, _ = read_model_file(Path(path).read_bytes())
        except ValueError as error:
            raise InputError(f"{path}: {error}") from None
        descriptors.append(config.get("descriptor"))
    first = descriptors[0] if descriptors else None
    if any(d != first for d in descriptors):
        raise click.BadParameter("the models were trained with different descriptors; give the descriptor "
                                 "options (--r-cut, --n-max, ...) explicitly", param_hint="--models")
    return first


@click.command()
@click.argument("candidates", type=click.Path(exists=True, dir_okay=False))
@click.option("--models", "model_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Model files that made the candidates: the descriptor defaults to theirs. Repeat the option.")
@click.option("--clusters", "-k", type=int, help="Representatives to pick (k-means clusters).  [default: 20]")
@click.option("--components", type=int, help="PCA components.  [default: 10]")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the k-means.")
@click.option("--min-distance", type=float,
              help="Drop candidates with two atoms closer than this (Å) before clustering.  [default: 0.5]")
@click.option("--r-cut", type=float, help="Descriptor cutoff in Å (default: the models', else 5).")
@click.option("--n-max", type=int, help="Radial basis size (default: the models', else 4).")
@click.option("--l-max", type=int, help="Angular channels (default: the models', else 4).")
@click.option("--max-neighbours", type=int, help="Neighbours per atom (default: the models', else 20).")
@click.option("--radial", type=click.Choice(["gaussian", "bessel"]), help="Radial basis (default: the models').")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="representatives.extxyz", show_default=True)
@click.option("--selection", "selection_file", type=click.Path(dir_okay=False), default="selection.npz",
              show_default=True, help="Where to save PCA coordinates, labels and distances.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), help="Also draw the PCA scatter (PNG).")
def select(candidates, model_files, clusters, components, seed, min_distance, r_cut, n_max, l_max, max_neighbours,
           radial, output, selection_file, plot_file):
    """Select one representative per k-means cluster of CANDIDATES in descriptor-PCA space.

    Every default is that of the selection settings (the ``selection`` of a generation protocol).
    """
    from ..ml.batch import StructureBatch
    from ..selection import SelectionSettings, plot_selection, select_candidates

    values = {"n_clusters": clusters, "n_components": components, "min_distance": min_distance, "plot": False}
    values = {key: value for key, value in values.items() if value is not None}
    descriptor = {"r_cut": r_cut, "n_max": n_max, "l_max": l_max, "max_neighbours": max_neighbours, "radial": radial}
    descriptor = {key: value for key, value in descriptor.items() if value is not None}
    if descriptor:
        values["descriptor"] = descriptor
    model_descriptor = _models_descriptor(model_files) if model_files else None
    try:
        settings = SelectionSettings.from_dict(values)
        batch = StructureBatch.read(candidates)
        result, kept, _ = select_candidates(batch, settings, seed, model_descriptor)
    except (ValueError, TypeError) as error:
        message = str(error)
        field = message.split(":", 1)[0].strip()
        field = field.split("=", 1)[0].removeprefix("settings.")
        option = _SELECT_OPTIONS.get(field)
        raise InputError(f"{option} ({message})" if option else message) from None
    chosen = batch.subset(kept[result.indices])
    chosen.info["candidate_index"] = kept[result.indices]
    chosen.write(output)
    np.savez(selection_file, candidate_index=kept, **result.arrays())
    click.echo(f"wrote {len(chosen)} representatives of {len(kept)} candidates to {output} and the selection to "
               f"{selection_file}")
    if plot_file:
        plot_selection(result, plot_file, title=f"{len(kept)} candidates → {len(chosen)} representatives")
        click.echo(f"wrote {plot_file}")


@click.command()
@click.argument("selection_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="pca_clusters.png", show_default=True)
def plot(selection_file, output):
    """Draw the PCA scatter of a saved selection (from ``select``), representatives marked."""
    from ..selection import Selection, plot_selection

    try:
        with np.load(selection_file) as data:
            result = Selection.from_arrays({key: data[key] for key in data.files})
    except (ValueError, KeyError, OSError) as error:
        raise InputError(f"{selection_file}: not a selection file from `select` ({type(error).__name__}: {error})")
    plot_selection(result, output)
    click.echo(f"wrote {output}")

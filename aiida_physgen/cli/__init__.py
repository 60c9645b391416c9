"""The ``aiida-physgen`` command.

``train``, ``generate``, ``select`` and ``plot`` work on plain files and need no AiiDA profile (a
remote training CalcJob runs them on machines without a database). Commands that read the AiiDA
database import AiiDA lazily.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

__all__ = ["main"]


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _key_values(pairs: tuple[str, ...], option: str) -> dict:
    values = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=option)
        key, value = pair.split("=", 1)
        values[key.strip()] = _parse_value(value)
    return values


def _cell_and_pbc(cell: tuple[float, ...] | None, box: float | None, like: str | None, periodic: bool | None):
    """The target cell from ``--cell``, ``--box`` or ``--like``; ``(cell, pbc, composition or None)``."""
    given = [name for name, value in (("--cell", cell), ("--box", box), ("--like", like)) if value]
    if len(given) != 1:
        raise click.UsageError("give the target cell with exactly one of --cell, --box or --like")
    composition = None
    if like:
        import ase.io

        target = ase.io.read(like)
        matrix, pbc = target.cell.array, [bool(p) for p in target.pbc]
        from ..ml.logan import composition_string

        composition = composition_string(target.get_chemical_symbols())
    elif box:
        if box <= 0:
            raise click.BadParameter(f"got {box}, expected a positive box length in Å", param_hint="--box")
        matrix, pbc = np.eye(3) * box, [False] * 3
    else:
        if len(cell) == 3:
            matrix = np.diag(cell)
        elif len(cell) == 9:
            matrix = np.asarray(cell).reshape(3, 3)
        else:
            raise click.BadParameter(f"got {len(cell)} numbers, expected 3 (a, b, c) or 9 (three vectors)",
                                     param_hint="--cell")
        pbc = [True] * 3
    if periodic is not None:
        pbc = [periodic] * 3
    return np.asarray(matrix, dtype=float), pbc, composition


@click.group()
@click.version_option(package_name="aiida-physgen")
def main():
    """Generate, select and verify candidate structures (LoGAN and friends)."""


@main.command()
@click.argument("training_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--composition", "-c", help="Target composition, e.g. C5H12O (default: that of --like).")
@click.option("--cell", type=float, multiple=True, help="Target cell: a b c, or nine numbers. Repeat the option.")
@click.option("--box", type=float, help="Cubic box length in Å for molecules (non-periodic).")
@click.option("--like", type=click.Path(exists=True, dir_okay=False), help="Take cell, pbc and composition from this structure file.")
@click.option("--pbc/--no-pbc", "periodic", default=None, help="Override the periodicity.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds: one model each.")
@click.option("--steps", type=int, help="Generator steps (epochs) per model.")
@click.option("--preset", type=click.Choice(["molecule", "sio2"]), help="The paper's settings.")
@click.option("--set", "overrides", multiple=True, help="Any LoGAN setting as KEY=VALUE (JSON values).")
@click.option("--grid", "grid", multiple=True, help="Vary a setting over the ensemble: KEY=[v1,v2].")
@click.option("--output", "-o", type=click.Path(file_okay=False), default="models", show_default=True)
def train(training_file, composition, cell, box, like, periodic, seeds, steps, preset, overrides, grid, output):
    """Train an ensemble of LoGAN models on TRAINING_FILE (any format ASE reads)."""
    from tqdm import tqdm

    from ..ml.batch import StructureBatch
    from ..ml.logan import PRESETS, LoganSettings, train_logan
    from ..ml.model_io import save_model
    from ..ml.wgan import TrainingDivergedError

    matrix, pbc, like_composition = _cell_and_pbc(cell, box, like, periodic)
    composition = composition or like_composition
    if not composition:
        raise click.UsageError("give --composition (or --like with a target structure)")
    try:
        seed_values = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"got {seeds!r}, expected comma-separated integers", param_hint="--seeds") from None
    values = dict(PRESETS[preset]) if preset else {}
    values.update(_key_values(overrides, "--set"))
    if steps is not None:
        values["steps"] = steps
    grid_values = _key_values(grid, "--grid")
    try:
        settings = LoganSettings.from_dict(values)
        training = StructureBatch.read(training_file)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    n_members = len(seed_values)
    for v in grid_values.values():
        n_members *= len(v) if isinstance(v, list) else 1
    bar = tqdm(total=settings.steps, desc=f"training {n_members} model(s)", unit="step")

    def progress(step, losses):
        bar.n = step
        bar.set_postfix(W=f"{np.mean(losses['wasserstein']):.3g}", refresh=False)
        bar.refresh()

    try:
        models = train_logan(training, composition, matrix, pbc, settings, seed_values, grid_values, callback=progress)
    except (ValueError, TrainingDivergedError) as error:
        bar.close()
        raise click.ClickException(str(error)) from None
    bar.close()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    for i, model in enumerate(models):
        path = out / f"model_{i:02d}.pt"
        save_model(path, model.module, model.config)
        click.echo(f"{path}  seed={model.config['seed']}  W={model.config['losses'].get('wasserstein', float('nan')):.4g}")


@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--count", "-n", type=int, default=2000, show_default=True, help="Candidates per model.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="candidates.extxyz", show_default=True)
def generate(models, count, seed, output):
    """Generate COUNT candidates from each model file into one extended-XYZ file."""
    from tqdm import tqdm

    from ..ml.logan import generate as generate_batch
    from ..ml.model_io import load_model

    if count <= 0:
        raise click.BadParameter(f"got {count}, expected a positive number of candidates", param_hint="--count")
    modules = []
    for path in tqdm(models, desc="loading models", unit="model"):
        try:
            modules.append(load_model(path)[0])
        except ValueError as error:
            raise click.ClickException(f"{path}: {error}") from None
    batch = generate_batch(modules, count, seed)
    batch.write(output)
    click.echo(f"wrote {len(batch)} candidates to {output}")


@main.command()
@click.argument("candidates", type=click.Path(exists=True, dir_okay=False))
@click.option("--clusters", "-k", type=int, default=20, show_default=True)
@click.option("--components", type=int, default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--r-cut", type=float, default=5.0, show_default=True)
@click.option("--n-max", type=int, default=4, show_default=True)
@click.option("--l-max", type=int, default=4, show_default=True)
@click.option("--max-neighbours", type=int, default=20, show_default=True)
@click.option("--radial", type=click.Choice(["gaussian", "bessel"]), default="gaussian", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="representatives.extxyz", show_default=True)
@click.option("--selection", "selection_file", type=click.Path(dir_okay=False), default="selection.npz",
              show_default=True, help="Where to save PCA coordinates, labels and distances.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), help="Also draw the PCA scatter (PNG).")
@click.option("--min-distance", type=float, default=0.5, show_default=True,
              help="Drop candidates with two atoms closer than this (Å) before clustering.")
def select(candidates, clusters, components, seed, r_cut, n_max, l_max, max_neighbours, radial, output,
           selection_file, plot_file, min_distance):
    """Select one representative per k-means cluster of CANDIDATES in descriptor-PCA space."""
    from ..ml.batch import StructureBatch
    from ..ml.descriptors import DescriptorSettings
    from ..selection import plot_selection, select_representatives

    try:
        batch = StructureBatch.read(candidates)
        kept = np.flatnonzero(batch.min_distances() >= min_distance)
        if clusters < 1 or clusters > len(kept):
            raise click.BadParameter(
                f"got {clusters}, expected between 1 and the {len(kept)} candidates of {candidates} whose atoms "
                f"are at least --min-distance {min_distance} Å apart ({len(batch)} in all)",
                param_hint="--clusters",
            )
        pool = batch.subset(kept)
        settings = DescriptorSettings(
            species=tuple(sorted(set(batch.numbers.tolist()))), r_cut=r_cut, n_max=n_max, l_max=l_max,
            max_neighbours=max_neighbours, radial=radial,
        )
        result = select_representatives(pool, settings, n_components=components, n_clusters=clusters, seed=seed)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    chosen = batch.subset(kept[result.indices])
    chosen.info["candidate_index"] = kept[result.indices]
    chosen.write(output)
    np.savez(selection_file, candidate_index=kept, **result.arrays())
    click.echo(f"wrote {len(chosen)} representatives to {output} and the selection to {selection_file}")
    if plot_file:
        plot_selection(result, plot_file)
        click.echo(f"wrote {plot_file}")


@main.command()
@click.argument("selection_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="pca_clusters.png", show_default=True)
def plot(selection_file, output):
    """Draw the PCA scatter of a saved selection (from ``select``), representatives marked."""
    from ..selection import Selection, plot_selection

    with np.load(selection_file) as data:
        result = Selection.from_arrays({key: data[key] for key in data.files})
    plot_selection(result, output)
    click.echo(f"wrote {output}")


@main.command()
@click.argument("pk", type=int)
@click.option("--output", "-o", type=click.Path(file_okay=False), help="Folder for the figures (default report_<pk>).")
@click.option("--profile", "-p", help="AiiDA profile (default: the default profile).")
def report(pk, output, profile):
    """Table of the unique minima of screening run PK, and its figures (PCA, energies, DOS)."""
    from aiida import load_profile

    from ..report import print_report

    load_profile(profile)
    try:
        print_report(pk, output_dir=output or f"report_{pk}")
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    except Exception as error:  # noqa: BLE001 - NotExistent / MultipleObjectsError from load_node
        if type(error).__name__ in ("NotExistent", "MultipleObjectsError"):
            raise click.ClickException(f"pk: {error}") from None
        raise

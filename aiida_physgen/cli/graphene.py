"""``sheets``, ``label``, ``predict`` and ``check-labels``: the porous-graphene chain on plain files, no AiiDA.

    aiida-physgen sheets -n 4096 -o sheets.npz                     # random porous sheets
    aiida-physgen label sheets.npz -o labelled.npz                 # Tersoff reference energies
    aiida-physgen train labelled.npz -f ednn --target '{"property": "energy"}' -o ednn
    aiida-physgen train labelled.npz -f rugan --target '{"property": "energy"}' -o rugan
    aiida-physgen generate rugan/model_00.pt -n 10000 --condition '{"scale": 2}' -o big.npz
    aiida-physgen check-labels big.npz --surrogate ednn/model_00.pt -o check/

``.npz`` files are the structure sets' own format (fast for thousands of sheets); any file ASE
reads or writes (extended XYZ...) works too, with energies as ``info`` entries.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ._common import (
    InputError,
    check_output_dir,
    check_output_file,
    load_mapping,
    read_structures,
    value_errors_as_input,
)
from .files import write_structures
from .options import output_file_option, output_folder_option

__all__ = ["sheets", "label", "predict", "check_labels"]


@click.command()
@click.option("--count", "-n", type=click.IntRange(min=1), default=4096, help="Number of sheets.")
@click.option("--seed", type=int, default=0, help="Seed of the holes.")
@click.option("--settings", "settings_text", help="nx, ny, holes, radius, prune as JSON or a JSON/YAML file.")
@output_file_option(default="sheets.npz")
def sheets(count, seed, settings_text, output):
    """Random porous graphene sheets (periodic; holes of random number and size) into one file."""
    from ..ml import graphene
    from ..ml import settings as settings_module

    check_output_file(output, "--output")
    given = load_mapping(settings_text, "--settings") if settings_text else None
    with value_errors_as_input():
        values = settings_module.from_dict(graphene.SheetSettings, given, "--settings")
    with value_errors_as_input():
        try:
            occupancy = values.make(count, seed)
        except ValueError as error:  # the API's field → the option
            raise ValueError(f"--{error}" if str(error).startswith("count") else str(error)) from None
    batch = graphene.sheets_to_batch(occupancy, values.lattice)
    write_structures(batch, output)
    lx, ly = values.lattice.lengths
    click.echo(f"wrote {count} sheets of {values.nx} × {values.ny} cells ({lx:.1f} Å × {ly:.1f} Å) to {output}")


@click.command()
@click.argument("structures", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--relax/--no-relax",
    default=False,
    help="Fixed-cell Tersoff relaxation first (to --fmax); default: single points on the lattice.",
)
@click.option(
    "--fmax",
    type=click.FloatRange(min=0, min_open=True),
    default=0.05,
    help="Relaxation convergence, eV/Å.",
)
@output_file_option(default="labelled.npz")
def label(structures, relax, fmax, output):
    """Reference (LAMMPS Tersoff) energies of every sheet, written as the ``energy`` info array (eV)."""
    from ..graphene.reference_energy import label_sheets
    from ..ml import graphene

    check_output_file(output, "--output")
    batch = read_structures(structures, "STRUCTURES")
    with value_errors_as_input():
        graphene.batch_to_sheets(batch, "STRUCTURES")
        batch.info["energy"] = label_sheets(batch, relax=relax, progress=True, fmax=fmax)
    write_structures(batch, output)
    click.echo(f"wrote {len(batch)} labelled sheets to {output}")


@click.command()
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("structures", type=click.Path(exists=True, dir_okay=False))
@output_file_option(help="Write the structures with the prediction as an info array (default: print the values).")
def predict(model_file, structures, output):
    """What a surrogate model (EDNN) predicts for every structure of STRUCTURES."""
    from .files import load_models

    if output:
        check_output_file(output, "--output")
    (model,) = load_models([model_file], "MODEL_FILE")
    batch = read_structures(structures, "STRUCTURES")
    with value_errors_as_input():
        values = model.predict(batch)
    name = model.config["target"].get("property", "value")
    if output:
        batch.info[f"predicted_{name}"] = np.asarray(values)
        write_structures(batch, output)
        click.echo(f"wrote {len(batch)} structures with predicted_{name} to {output}")
    else:
        for value in values:
            click.echo(f"{value:.6f}")


@click.command("check-labels")
@click.argument("generated", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--surrogate", type=click.Path(exists=True, dir_okay=False), required=True, help="EDNN model file.")
@click.option(
    "--reference/--no-reference",
    default=True,
    help="Also compute the obtained energies with the reference method (Tersoff).",
)
@click.option(
    "--relax/--no-relax",
    default=False,
    help="Relax before the reference energy (as the training labels were made).",
)
@click.option(
    "--training",
    type=click.Path(exists=True, dir_okay=False),
    help="The training sheets: also compare the sheets' structure with theirs (holes, coordination, edges, "
    "connectivity; printed, and structure.json).",
)
@output_folder_option(default="label_check")
def check_labels(generated, surrogate, reference, relax, training, output):
    """Requested against obtained energy per area of GENERATED sheets (files from ``generate`` with rugan; each
    file is one set, named by its file name): the Kolmogorov–Smirnov table (printed, and ``ks.json``) and the
    heat maps and histograms (PNG), as the screening's ``label_consistency`` assessor makes them; with
    ``--training``, the structure table too."""
    from ..graphene import label_check
    from ..graphene.reference_energy import ReferenceSettings
    from ..graphene.surrogate import check_surrogate
    from ..ml import graphene
    from .files import load_models

    out = check_output_dir(output, "--output")
    (model,) = load_models([surrogate], "--surrogate")
    with value_errors_as_input():
        check_surrogate(model, "--surrogate")
    sets = {}
    for path in generated:
        batch = read_structures(path, "GENERATED")
        if "label" not in batch.info:
            raise InputError(f"GENERATED: {path} has no requested 'label' per sheet (generate it with a rugan model)")
        with value_errors_as_input():
            graphene.batch_to_sheets(batch, "GENERATED")
        sets[Path(path).stem] = batch
    if len(sets) != len(generated):
        raise InputError("GENERATED: two files have the same name; each names its set in the table")
    training_sheets = None
    if training:
        training_sheets = read_structures(training, "--training")
        with value_errors_as_input():
            graphene.batch_to_sheets(training_sheets, "--training")
    lattice = model.config.get("lattice")
    base_area = (
        graphene.Lattice.from_dict(lattice).area
        if lattice
        else min(graphene.batch_to_sheets(batch)[1].area for batch in sets.values())
    )
    labeller = ReferenceSettings(relax=relax) if reference else None
    with value_errors_as_input():
        scales = label_check.sheet_scales(sets, base_area)
        requested, obtained = label_check.obtained_labels(sets, model, labeller)
    rows = label_check.ks_rows(requested, obtained, scales)
    click.echo(label_check.format_ks_table(rows))
    out.mkdir(parents=True, exist_ok=True)
    (out / "ks.json").write_text(json.dumps(rows, indent=2) + "\n")
    if training_sheets is not None:
        from ..graphene import sheet_structure

        with value_errors_as_input():
            structure = sheet_structure.compare_with_training(sets, training_sheets)
        click.echo(sheet_structure.format_structure_table(structure))
        (out / "structure.json").write_text(json.dumps(structure, indent=2) + "\n")
    for name, path in label_check.plot_label_check(requested, obtained, out, scales).items():
        click.echo(f"{name}: {path}")

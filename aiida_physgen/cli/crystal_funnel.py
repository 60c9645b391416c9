"""``aiida-physgen crystals funnel``: a crystal study's checks on a file of generated crystals, without AiiDA.

    aiida-physgen crystals funnel generated.npz --training crystals/ -o assessed.npz --top 5 --cif-dir best/

validity (closest pair, density, charge balance) → primitive cells → CHGNet relaxation with the cell free
→ elemental references relaxed the same way → formation energy per atom → uniqueness within the batch
and novelty against ``--training`` → the counts of every stage, and the best ``--top`` as CIFs. The
measurements are those of the screening's ``crystal`` validity check and ``formation`` assessor
(:mod:`aiida_physgen.crystals`), on every valid crystal rather than on the screening's representatives.
"""

from __future__ import annotations

from pathlib import Path

import click

from ._common import InputError, check_output_dir, check_output_file, read_structures
from .crystals import crystals, read_crystals
from .files import write_structures
from .options import output_file_option, output_folder_option

__all__ = ["funnel"]


@crystals.command("funnel")
@click.argument("generated", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--training", type=click.Path(exists=True), help="Training crystals for novelty: a CIF folder or a structure file."
)
@click.option(
    "--min-distance",
    type=click.FloatRange(min=0, min_open=True),
    default=0.5,
    help="Closest pair allowed (Å).",
)
@click.option(
    "--density",
    nargs=2,
    type=float,
    default=(1.0, 25.0),
    metavar="LOW HIGH",
    help="Density range (g/cm³).",
)
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=300,
    help="CHGNet FIRE steps at most per crystal.",
)
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=5,
    help="How many of the lowest-formation-energy unique, novel crystals to write as CIFs.",
)
@output_folder_option("--cif-dir", help="Folder for the --top CIFs.")
@output_file_option(
    default="assessed.npz", help="The relaxed, valid crystals with formation_energy, unique and novel info arrays."
)
def funnel(generated, training, min_distance, density, max_steps, top, cif_dir, output):
    """Validity → CHGNet → formation energy → uniqueness and novelty, on generated crystals in a file."""
    import numpy as np

    from ..crystals import assessors as formation_assessor
    from ..crystals import properties as crystal_properties
    from ..ml.crystal_build import primitive_cells
    from ..screening import cheap_relax

    output = check_output_file(output, "--output")
    if cif_dir:
        check_output_dir(cif_dir, "--cif-dir")
    if density[0] >= density[1] or density[0] < 0:
        raise InputError(f"--density: got {list(density)}, expected LOW < HIGH, both non-negative (g/cm³)")
    batch = read_structures(generated, "GENERATED")
    if not batch.pbc.all():
        raise InputError("GENERATED: the funnel takes crystals (periodic along every axis)")
    reference = read_crystals(training, "--training") if training else None
    flags = crystal_properties.validity(batch, min_distance=min_distance, density_range=tuple(density))
    keep = np.flatnonzero(flags["valid"] == 1)
    counts = {"generated": len(batch), "valid": int(keep.size)}
    if "symmetric" in batch.info:
        counts["symmetric"] = int(np.sum(batch.info["symmetric"]))
    if keep.size == 0:
        raise InputError(
            f"GENERATED: none of the {len(batch)} crystals is valid (closest pair ≥ {min_distance} Å, "
            f"density {density[0]}–{density[1]} g/cm³, charge balance)"
        )
    valid = primitive_cells(batch.subset(keep))
    valid.info["generated_index"] = keep
    settings = {"method": "chgnet", "fix_cell": False, "max_steps": max_steps}
    click.echo(f"relaxing {len(valid)} valid crystal(s) with CHGNet (cell free, at most {max_steps} steps)", err=True)
    relaxed = cheap_relax.relax_batch(valid, settings)
    mu, _ = formation_assessor.elemental_references(relaxed.elements(), formation_assessor.reference_settings(settings))
    marks = formation_assessor.mark_crystals(relaxed, mu, reference)
    for key in ("formation_energy", "group", "unique", "novel"):
        relaxed.info[key] = marks[key]
    formation = marks["formation_energy"]
    unique = marks["unique"] == 1
    novel = unique & (marks["novel"] != 0)
    counts.update(
        relaxed=int(np.isfinite(formation).sum()),
        unique=int(unique.sum()),
        unique_novel=int(novel.sum()),
        negative_formation_energy=int((novel & (formation < 0)).sum()),
    )
    write_structures(relaxed, output)
    for stage, value in counts.items():
        click.echo(f"{stage:>26}: {value}")
    best = np.flatnonzero(novel)[np.argsort(formation[novel], kind="stable")][:top]
    for rank, index in enumerate(best):
        atoms = relaxed[int(index)]
        click.echo(f"{rank:>3}  {atoms.get_chemical_formula(mode='metal'):>12}  {formation[index]:+.3f} eV/atom")
        if cif_dir:
            from pymatgen.io.ase import AseAtomsAdaptor
            from pymatgen.io.cif import CifWriter

            Path(cif_dir).mkdir(parents=True, exist_ok=True)
            CifWriter(AseAtomsAdaptor.get_structure(atoms), symprec=0.1).write_file(
                str(Path(cif_dir) / f"crystal_{rank:03d}.cif")
            )
    click.echo(f"wrote {output}", err=True)

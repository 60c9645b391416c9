"""``crystals``: the crystal GAN's data and samples on plain files, no AiiDA profile.

    aiida-physgen crystals filter cifs/ -o crystals.npz              # usable ternaries of a CIF folder
    aiida-physgen crystals download-mp -o mp_ternaries.npz           # the paper's set (Materials Project key)
    aiida-physgen train crystals.npz -f crystal_gan --target '{"space_groups": [216]}' -o models
    aiida-physgen crystals generate models/model_00.pt --space-group F-43m --elements Li Zn As \\
        -n 300 -o generated.npz --cif-dir cifs_generated/

Training is the generic ``train`` (on the ``.npz`` that ``filter`` or ``download-mp`` writes) and
``crystals generate`` is the generic ``generate`` with the crystal GAN's condition as options
(``--space-group``, ``--elements``): the same sampling code, plus the symmetric share and one
symmetrised CIF per crystal. Bad input exits with code 2 and a one-line message naming the option.

More commands of the crystal chain are added to the :func:`crystals` group here (``@crystals.command()``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from ._common import (
    InputError,
    check_output_dir,
    echo_user_warnings,
    output_files,
    read_structures,
    value_errors_as_input,
)
from .files import check_structure_output, write_structures
from .options import output_file_option, output_folder_option

__all__ = ["crystals", "read_crystals", "MP_API_KEY_VARIABLE", "MP_INSTALL_HINT"]

#: the environment variable that mp-api itself reads the key from
MP_API_KEY_VARIABLE = "MP_API_KEY"
#: how to install the Materials Project client
MP_INSTALL_HINT = "pip install 'aiida-physgen[mp]' (or: pip install mp-api)"
#: the CIF symmetry tolerance (Å) when none is given: the crystal GAN's default
_SYMPREC = 0.1


@click.group()
def crystals():
    """The crystal GAN's crystals on files: filter a CIF folder, download the paper's set, generate, assess."""


# ---------------------------------------------------------------------- helpers
def _groups(values, option: str) -> list[int] | None:
    """Space-group numbers of ``--space-group`` values (numbers or symbols), ``None`` when none was given."""
    from ..ml.space_groups import space_group

    if not values:
        return None
    with value_errors_as_input():
        return sorted({space_group(value, option).number for value in values})


def _group_name(number: int) -> str:
    """``'F-43m (216)'``, for any of the 230 groups (spglib may find a monoclinic one in a generated crystal)."""
    from pymatgen.symmetry.groups import SpaceGroup

    number = int(number)
    if number == 0:
        return "undetermined"
    try:
        return f"{SpaceGroup.from_int_number(number).symbol} ({number})"
    except Exception:  # noqa: BLE001 - not a space-group number
        return str(number)


def _per_group(numbers) -> str:
    import numpy as np

    groups, counts = np.unique(np.asarray(numbers, dtype=int), return_counts=True)
    return ", ".join(f"{_group_name(g)}: {c}" for g, c in zip(groups, counts))


def read_crystals(path, option: str):
    """The structures of a CIF folder (every ``*.cif``, labelled by file name) or of one structure file;
    refused (exit code 2) naming ``option`` when there is none or one cannot be read."""
    from ..ml.crystal_data import read_cif_folder

    if not Path(path).is_dir():
        return read_structures(path, option)
    with value_errors_as_input():
        return read_cif_folder(path, option)


def _keep_usable(batch, groups, symprec: float, source: str, verbose: bool):
    """The structures of ``batch`` that :func:`~aiida_physgen.ml.crystal_data.training_crystals` accepts,
    as a subset of ``batch`` (``info['source_index']``: their index in it), and the filter's result.
    Prints the dropped counts per reason (``verbose``: every dropped structure and why); nothing left is
    refused naming ``source``."""
    import numpy as np

    from ..ml.crystal_data import training_crystals

    usable = training_crystals(batch, groups, symprec)
    labels = getattr(batch, "labels", None) or [f"structure {i}" for i in range(len(batch))]
    summary = usable.dropped_summary()
    if len(usable) == 0:
        if verbose:
            _report_dropped(usable, len(batch), verbose)
        reasons = "; ".join(f"{n} {reason}" for reason, n in summary.items())
        raise InputError(
            f"{source}: nothing left after filtering the {len(batch)} structure(s) ({reasons}); the crystal "
            "GAN needs ternaries with three base sites, one per element, in the requested space groups"
        )
    index = {str(label): i for i, label in enumerate(labels)}
    kept = np.array([index[label] for label in usable.labels], dtype=np.int64)
    subset = batch.subset(kept)
    subset.info["source_index"] = kept
    subset.info["space_group"] = np.asarray(usable.space_groups, dtype=np.int64)
    return subset, usable


def _report_dropped(usable, total: int, verbose: bool) -> None:
    summary = usable.dropped_summary()
    click.echo(f"dropped {len(usable.dropped)} of {total}" + (":" if summary else ""))
    for reason, n in sorted(summary.items(), key=lambda item: (-item[1], item[0])):
        click.echo(f"  {n:6d}  {reason}")
    if verbose:
        for label, reason in usable.dropped:
            click.echo(f"  {label}: {reason}")


# ---------------------------------------------------------------------- the filter's options
def _space_groups_option(help: str):
    """``--space-group``/``-s``, repeatable: the groups the filter keeps (see :func:`_groups`)."""
    return click.option("--space-group", "-s", "space_groups", multiple=True, metavar="N", help=help)


def _symprec_option(help: str):
    """``--symprec``: spglib's tolerance when the filter finds the space group and the base sites."""
    return click.option("--symprec", type=click.FloatRange(min=0, min_open=True), default=_SYMPREC, help=help)


def _verbose_option(dropped: str):
    """``--verbose``/``-v``: :func:`_report_dropped` names every dropped ``dropped`` (structure, material...)."""
    return click.option("--verbose", "-v", is_flag=True, help=f"Name every dropped {dropped} and why.")


# ---------------------------------------------------------------------- filter
@crystals.command("filter")
@click.argument("source", metavar="FOLDER_OR_FILE", type=click.Path(exists=True))
@_space_groups_option(
    "Keep only this space group (number or symbol, e.g. 216 or F-43m); repeat the option. "
    "Default: every supported group (16–230)."
)
@_symprec_option("spglib's symmetry tolerance in Å.")
@_verbose_option("structure")
@output_file_option(
    default="crystals.npz", help="The kept structures (.npz, the structure sets' format; or any format ASE writes)."
)
def filter_command(source, space_groups, symprec, verbose, output):
    """The crystal-GAN-usable ternaries of a CIF folder (every *.cif) or of one structure file.

    Kept: ternaries with exactly three symmetry-distinct sites, one per element, in a supported (or the
    requested) space group. The output keeps the structures as read, with info arrays ``space_group``
    and ``source_index`` (the index in the sorted CIF names, or in the file); train on it with
    ``aiida-physgen train OUT.npz -f crystal_gan --target '{"space_groups": [...]}'``.
    """
    check_structure_output(output)
    groups = _groups(space_groups, "--space-group")
    batch = read_crystals(source, "FOLDER_OR_FILE")
    kept, usable = _keep_usable(batch, groups, symprec, "FOLDER_OR_FILE", verbose)
    write_structures(kept, output)
    click.echo(f"kept {len(kept)} of {len(batch)} structures ({_per_group(usable.space_groups)}) in {output}")
    _report_dropped(usable, len(batch), verbose)


# ---------------------------------------------------------------------- generate
def _cif_name(index: int, width: int, atoms, number: int) -> str:
    return f"{index:0{width}d}_{atoms.get_chemical_formula(mode='metal')}_{number}.cif"


def _readable(text: str) -> bool:
    """Whether pymatgen reads the CIF back (it refuses one with atoms of different elements on one position)."""
    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return len(CifParser.from_str(text).parse_structures(primitive=False)) > 0
    except Exception:  # noqa: BLE001 - pymatgen raises ValueError and others on such CIFs
        return False


def _write_cifs(batch, folder: Path, symprec: float) -> tuple[int, list[int]]:
    """One CIF per crystal, symmetrised by pymatgen's ``CifWriter`` (with spglib at ``symprec``; a crystal
    spglib gives up on is written in P1). A crystal whose CIF pymatgen would not read back (atoms of
    different elements on one position) is left out. All files appear together or none.
    Returns the number written and the indices left out."""
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifWriter

    width = max(4, len(str(len(batch) - 1)))
    found = batch.info.get("space_group_found")
    paths, texts, skipped = [], [], []
    for i, atoms in enumerate(batch):
        structure = AseAtomsAdaptor.get_structure(atoms)
        number = int(found[i]) if found is not None else 0
        text = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if number:
                try:
                    text = str(CifWriter(structure, symprec=symprec))
                except Exception:  # noqa: BLE001 - spglib fails on degenerate cells: the unsymmetrised CIF
                    text = None
            if text is None or not _readable(text):
                text = str(CifWriter(structure))
        if not _readable(text):
            skipped.append(i)
            continue
        paths.append(folder / _cif_name(i, width, atoms, number))
        texts.append(text)
    folder.mkdir(parents=True, exist_ok=True)
    if paths:
        with output_files(*paths, option="--cif-dir") as temporary:
            for tmp, text in zip(temporary, texts):
                Path(tmp).write_text(text, encoding="utf-8")
    return len(paths), skipped


#: prefixes of the family's field names → the options of ``crystals generate``
_CONDITION_OPTIONS = (
    ("condition.space_group", "--space-group"),
    ("condition.elements", "--elements"),
    ("condition.merge_distance", "--merge-distance"),
    ("condition.wyckoff_tolerance", "--wyckoff-tolerance"),
    ("count", "--count"),
    ("models", "MODEL"),
    ("condition", "--space-group/--elements"),
)


def _space_group_option_name(message: str) -> str:
    """A family's warning about ``condition.space_group``, about ``--space-group`` instead."""
    return message.replace("condition.space_group:", "--space-group:")


@crystals.command("generate")
@click.argument("model_file", metavar="MODEL", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--space-group",
    "-s",
    "group",
    metavar="N",
    help="Space group (number or symbol, e.g. F-43m); default: the model's most common training group.",
)
@click.option(
    "--elements",
    "-e",
    "element_triples",
    nargs=3,
    multiple=True,
    metavar="A B C",
    help="Three different elements of every crystal; repeat the option for several triples (cycled). "
    "Default: the model's training triples of that space group, drawn from the seed.",
)
@click.option(
    "--merge-distance",
    type=float,
    metavar="Å",
    help="Post-processing: images of one element closer than this become one atom (default: the "
    "model's training setting).",
)
@click.option(
    "--wyckoff-tolerance",
    type=float,
    metavar="Å",
    help="Base sites within this distance of a special position of the group are placed on it before the group "
    "is applied (default: the model's training setting; 0: off, only the merge).",
)
@click.option("--count", "-n", type=int, default=300, help="Crystals to generate.")
@click.option("--seed", type=int, default=0, help="Seed of the latent draws (and element draws).")
@output_file_option(default="generated.npz", help="All crystals (.npz, or any format ASE writes).")
@output_folder_option(
    "--cif-dir", help="Also write one symmetrised CIF per crystal into this folder (NNNN_FORMULA_FOUNDGROUP.cif)."
)
def generate_command(
    model_file, group, element_triples, merge_distance, wyckoff_tolerance, count, seed, output, cif_dir
):
    """Sample COUNT crystals from a trained crystal_gan MODEL file for one space group.

    The same sampling as ``aiida-physgen generate MODEL --condition '{"space_group": ..., "elements":
    [...], "merge_distance": ...}'`` (identical crystals for the same seed). Every crystal has info
    ``space_group_requested``, ``space_group_found`` (spglib, 0 if undetermined), ``symmetric`` (1 when
    it is the requested group), ``images``, ``merged_atoms``, ``snapped_sites``, ``reassigned_sites`` and
    ``merge_needed``; the share of symmetric crystals, of crystals on their Wyckoff positions (no merge needed), of
    crystals with two elements sent to one position (one moved on) and the atoms per cell are printed.
    """
    import numpy as np

    from ..ml import elements as element_table
    from ..ml.space_groups import space_group
    from ..ml.training import generate as generate_batch
    from .files import load_models

    if count <= 0:
        raise InputError(f"--count: got {count}, expected a positive number of crystals")
    check_structure_output(output)
    folder = check_output_dir(cif_dir, "--cif-dir") if cif_dir else None
    condition = {}
    if group is not None:
        with value_errors_as_input():
            condition["space_group"] = space_group(group, "--space-group").number
    if element_triples:
        for triple in element_triples:
            if len(set(triple)) != 3:
                raise InputError(f"--elements: got {' '.join(triple)}, expected three different element symbols")
            with value_errors_as_input():
                element_table.check_elements(triple, "--elements")
        condition["elements"] = [list(triple) for triple in element_triples]
    if merge_distance is not None:
        if not merge_distance > 0 or merge_distance == float("inf"):
            raise InputError(f"--merge-distance: got {merge_distance}, expected a positive distance in Å")
        condition["merge_distance"] = merge_distance
    if wyckoff_tolerance is not None:
        if not 0 <= wyckoff_tolerance < float("inf"):
            raise InputError(
                f"--wyckoff-tolerance: got {wyckoff_tolerance}, expected a non-negative distance in Å (0: off)"
            )
        condition["wyckoff_tolerance"] = wyckoff_tolerance
    (model,) = load_models([model_file], "MODEL")
    if model.family.name != "crystal_gan":
        raise InputError(f"MODEL: {model_file} is a {model.family.name} model; expected a crystal_gan model")
    try:
        with echo_user_warnings(_space_group_option_name):  # e.g. a space group the model was not trained on
            batch = generate_batch([model], count, seed, condition)
    except MemoryError:
        raise InputError(f"--count: {count} crystals do not fit in memory; ask for fewer") from None
    except ValueError as error:  # the family's field names → the options that set them
        message = str(error)
        field = message.split(":", 1)[0]
        for prefix, option in _CONDITION_OPTIONS:
            if field.startswith(prefix) and ":" in message:
                message = f"{option}:{message.split(':', 1)[1]}"
                break
        raise InputError(message) from None
    write_structures(batch, output)
    number = int(batch.info["space_group_requested"][0])
    symmetric = int(np.sum(batch.info["symmetric"]))
    click.echo(
        f"wrote {len(batch)} crystals of {_group_name(number)} to {output}; {symmetric} "
        f"({100 * symmetric / len(batch):.1f}%) have the requested space group (spglib, symprec "
        f"{model.config.get('symprec', _SYMPREC):g} Å)"
    )
    on_wyckoff = len(batch) - int(np.sum(batch.info["merge_needed"]))
    reassigned = int(np.sum(batch.info["reassigned_sites"] > 0))
    sizes, size_counts = np.unique(batch.n_atoms, return_counts=True)
    click.echo(
        f"  on their Wyckoff positions (no merge needed): {on_wyckoff} ({100 * on_wyckoff / len(batch):.1f}%); "
        f"two elements sent to one position and one moved on: {reassigned} ({100 * reassigned / len(batch):.1f}%); "
        "atoms per cell: " + ", ".join(f"{int(n)}: {int(c)}" for n, c in zip(sizes, size_counts))
    )
    groups, counts = np.unique(batch.info["space_group_found"], return_counts=True)
    others = sorted(((int(c), int(g)) for g, c in zip(groups, counts) if int(g) != number), key=lambda x: (-x[0], x[1]))
    if others:
        shown = ", ".join(f"{_group_name(g)}: {c}" for c, g in others[:5])
        click.echo(f"  found instead: {shown}" + (", ..." if len(others) > 5 else ""))
    if folder is not None:
        written, skipped = _write_cifs(batch, folder, float(model.config.get("symprec", _SYMPREC)))
        click.echo(f"wrote {written} CIF files to {folder}")
        if skipped:
            shown = ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
            click.echo(
                f"  left out {len(skipped)} crystal(s) whose CIF pymatgen cannot read back (atoms of different "
                f"elements on one position; index {shown}; they are in {output})"
            )


# ---------------------------------------------------------------------- download-mp
def _mp_number(material_id) -> int:
    """``'mp-149'`` → 149; another kind of id → -1 (an integer info array keeps the ids in the .npz)."""
    text = str(material_id)
    return int(text[3:]) if text.startswith("mp-") and text[3:].isdigit() else -1


def _structure_of(document):
    from pymatgen.core import Structure

    structure = document.get("structure") if isinstance(document, dict) else getattr(document, "structure", None)
    if isinstance(structure, dict):
        structure = Structure.from_dict(structure)
    return structure


def _material_id(document) -> str:
    value = document.get("material_id") if isinstance(document, dict) else getattr(document, "material_id", None)
    return str(value)


@crystals.command("download-mp")
@_space_groups_option(
    "Query this space group (number or symbol); repeat the option. Default: the paper's 12 "
    "(225, 71, 221, 139, 62, 216, 166, 194, 123, 164, 141, 227)."
)
@click.option(
    "--api-key",
    envvar=MP_API_KEY_VARIABLE,
    show_envvar=True,
    help="Materials Project API key (https://materialsproject.org/api, after logging in).",
)
@_symprec_option("spglib's symmetry tolerance in Å, for the filter.")
@_verbose_option("material")
@output_file_option(default="mp_ternaries.npz")
def download_mp(space_groups, api_key, symprec, verbose, output):
    """Materials Project ternaries in the paper's space groups that the crystal GAN can train on.

    Queries the summaries of ternaries (num_elements=3) in each space group with the mp-api client,
    keeps what the crystal GAN's filter accepts (three base sites, one per element) and writes them
    with info arrays ``space_group``, ``mp_id`` (the number of ``mp-N``; -1 for other ids) and
    ``source_index``. Needs ``pip install 'aiida-physgen[mp]'`` and a key (--api-key or MP_API_KEY).
    """
    import numpy as np

    from ..ml.space_groups import PAPER_SPACE_GROUPS

    check_structure_output(output)
    groups = _groups(space_groups, "--space-group") or sorted(PAPER_SPACE_GROUPS)
    api_key = (api_key or "").strip()
    if not api_key:
        raise InputError(
            f"--api-key: no Materials Project API key; give --api-key KEY or set {MP_API_KEY_VARIABLE} "
            "(log in at https://materialsproject.org and copy the key from https://materialsproject.org/api)"
        )
    if len(api_key) != 32:  # what mp-api itself refuses, before it goes online
        raise InputError(
            f"--api-key: got a key of {len(api_key)} characters; a Materials Project API key has 32 "
            "(copy it from https://materialsproject.org/api)"
        )
    try:
        from mp_api.client import MPRester
    except ImportError as error:
        raise click.ClickException(
            f"download-mp needs the Materials Project client mp-api, which is not installed "
            f"({error}): {MP_INSTALL_HINT}"
        ) from None

    from pymatgen.io.ase import AseAtomsAdaptor

    atoms, labels, ids, asked = [], [], [], []
    try:
        with MPRester(api_key) as rester:
            for number in groups:
                documents = rester.materials.summary.search(
                    num_elements=3, spacegroup_number=number, fields=["material_id", "structure"]
                )
                found = 0
                for document in documents:
                    structure = _structure_of(document)
                    if structure is None:
                        continue
                    atoms.append(AseAtomsAdaptor.get_atoms(structure))
                    labels.append(_material_id(document))
                    ids.append(_mp_number(labels[-1]))
                    found += 1
                asked.append((number, found))
                click.echo(f"{_group_name(number)}: {found} ternaries from the Materials Project")
    except click.ClickException:
        raise
    except Exception as error:  # noqa: BLE001 - mp-api raises MPRestError, requests' errors, ...
        detail = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        raise click.ClickException(
            f"the Materials Project query failed ({type(error).__name__}"
            f"{': ' + detail if detail else ''}); check the key and the connection"
        ) from None
    if not atoms:
        raise InputError(f"--space-group: the Materials Project has no ternaries in {', '.join(map(str, groups))}")
    from ..ml.batch import StructureBatch

    batch = StructureBatch.from_atoms(atoms)
    batch.labels = labels  # type: ignore[attr-defined]
    batch.info["mp_id"] = np.asarray(ids, dtype=np.int64)
    kept, usable = _keep_usable(batch, groups, symprec, "--space-group", verbose)
    write_structures(kept, output)
    click.echo(f"kept {len(kept)} of {len(batch)} ternaries in {output}:")
    counts = dict(zip(*np.unique(usable.space_groups, return_counts=True)))
    for number, found in asked:
        click.echo(f"  {_group_name(number):14s} {int(counts.get(number, 0)):6d} of {found}")
    _report_dropped(usable, len(batch), verbose)

"""``families``, ``protocols`` and ``report``."""

from __future__ import annotations

import click

from ._common import InputError, value_errors_as_input
from .options import output_folder_option, profile_option

__all__ = ["families", "protocols", "report"]


@click.command()
def families():
    """List the installed generator families (entry points of ``aiida_physgen.families``) and their roles."""
    from ..ml.family import available_families, get_family

    names = available_families()
    if not names:
        click.echo("no generator family is installed")
        return
    width = max(len(name) for name in names)
    for name in names:
        try:
            family = get_family(name)
        except Exception as error:  # noqa: BLE001 - a broken third-party plugin must not hide the others
            click.echo(f"{name:<{width}}  (cannot be loaded: {type(error).__name__}: {error})")
            continue
        cls = type(family)
        shipped = "protocols" if family.protocol_file is not None else "no protocols"
        click.echo(f"{name:<{width}}  {family.role:<9}  {shipped:<12}  {cls.__module__}:{cls.__qualname__}")


@click.command()
@click.option("--family", "-f", "family_name", help="Only this family (default: every installed family).")
def protocols(family_name):
    """List the generation protocols of the families (for `train --protocol` and the generation work chain)."""
    from ..ml.family import available_families, get_family
    from ..workflows.protocols import family_protocols, get_default_protocol

    names = [family_name] if family_name else available_families()
    for name in names:
        with value_errors_as_input():
            family = get_family(name)
        if family.protocol_file is None:
            click.echo(f"{name}: no protocols")
            continue
        available = family_protocols(family)
        default = get_default_protocol(family.protocol_file)
        click.echo(f"{name}:")
        width = max(len(p) for p in available)
        for protocol, description in available.items():
            mark = " (default)" if protocol == default else ""
            click.echo(f"  {protocol:<{width}}  {description}{mark}")


def _screening_of(pk: int) -> int:
    """PK itself, or the screening that PK (a domain's pre-step chain, e.g. physgen.graphene) ran."""
    from aiida import orm

    node = orm.load_node(pk)
    if isinstance(node, orm.WorkflowNode) and "generation" not in node.inputs:
        called = [child for child in node.called if child.process_type == "aiida.workflows:physgen.screening"]
        if len(called) == 1:
            return called[0].pk
    return pk


@click.command()
@click.argument("pk", type=int)
@output_folder_option(help="Folder for the figures (default report_<pk>).")
@profile_option
@click.option(
    "--vs",
    "others",
    type=int,
    multiple=True,
    metavar="PK",
    help="Another screening (e.g. the random baseline, same funnel and budgets): its discovery metrics "
    "are printed beside PK's. Repeatable.",
)
def report(pk, output, profile, others):
    """Table of the unique minima of screening run PK, and its figures (PCA, energies, DOS); with --vs, the
    discovery metrics of PK and the other screenings side by side. PK may be a domain's pre-step chain that ran
    a screening (physgen.graphene): the report is its screening's, with the assessors' sections (the label
    check's Kolmogorov–Smirnov table...)."""
    from aiida import load_profile

    from ..screening.report import print_report
    from ._common import OutputError, check_output_dir

    output = output or f"report_{pk}"
    check_output_dir(output, "--output")
    try:
        load_profile(profile)
    except Exception as error:  # noqa: BLE001 - ProfileConfigurationError, ConfigurationError, ...
        raise InputError(f"--profile: cannot load the AiiDA profile {profile or '(default)'!r} ({error})") from None
    try:
        from ..screening.report import compare_screenings, load_screening

        for other in others:  # checked before anything is printed or written
            try:
                load_screening(other)
            except Exception as error:  # noqa: BLE001 - ValueError, NotExistent, MultipleObjectsError
                if not isinstance(error, ValueError) and type(error).__name__ not in (
                    "NotExistent",
                    "MultipleObjectsError",
                ):
                    raise
                raise InputError(f"--vs: {str(error).removeprefix('pk: ')}") from None
        pk = _screening_of(pk)
        print_report(pk, output_dir=output)
        if others:
            click.echo(compare_screenings([pk, *others]))
    except ValueError as error:  # not a finished screening, or an output folder that cannot be written
        message = str(error).replace("output_dir:", "--output:", 1)
        raise InputError(message) from None
    except OSError as error:  # e.g. the disk filled up: the figures are written all together or not at all
        raise OutputError(
            f"--output: cannot write the figures in {output!r} ({error.strerror or error}); nothing was written"
        ) from None
    except Exception as error:  # noqa: BLE001 - NotExistent / MultipleObjectsError from load_node
        if type(error).__name__ in ("NotExistent", "MultipleObjectsError"):
            raise InputError(f"pk: {error}") from None
        raise

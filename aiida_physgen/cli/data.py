"""``data show`` and ``data export``: the plugin's data nodes on the command line, in the style of ``verdi data``.

Both commands take a node as verdi does: PK, UUID (or a unique prefix) or label. They work on
``physgen.structure_set`` and ``physgen.generator_model`` nodes. The same group is registered as
``verdi data physgen`` (entry point group ``aiida.cmdline.data``)::

    aiida-physgen data show 1234
    aiida-physgen data export 1234 candidates.cif
    verdi data physgen export 1234 model.json --overwrite

AiiDA is imported only when a command runs (the rest of the CLI stays usable without AiiDA); the
profile is the one given with ``--profile``, else the one ``verdi -p`` loaded, else the default one.
A node that does not exist, is ambiguous or is of another type ends with exit code 2 and a message.
"""

from __future__ import annotations

import math
import typing as t

import click

from ._common import InputError

__all__ = ["data", "show", "export", "DATA_ENTRY_POINTS"]

_PROFILE_KEY = "aiida_physgen.profile"

#: the node types the commands accept
DATA_ENTRY_POINTS = ("aiida.data:physgen.structure_set", "aiida.data:physgen.generator_model")


def _load_profile(ctx: click.Context) -> None:
    """Load the profile given with ``--profile`` (of this command or an enclosing group), else keep the one
    already loaded (``verdi -p``), else the default profile; and its storage."""
    from aiida.common import exceptions
    from aiida.manage import get_manager

    name = ctx.meta.get(_PROFILE_KEY) if ctx is not None else None
    manager = get_manager()
    try:
        if name:
            manager.load_profile(name, allow_switch=True)
        elif manager.get_profile() is None:
            manager.load_profile()
        manager.get_profile_storage()
    except (
        exceptions.ProfileConfigurationError,
        exceptions.ConfigurationError,
        exceptions.MissingConfigurationError,
    ) as error:
        raise InputError(f"--profile: {error}") from None


class PhysgenNodeParamType(click.ParamType):
    """A ``physgen.structure_set`` or ``physgen.generator_model`` node given by PK, UUID or label
    (AiiDA's own ``DataParamType`` does the lookup, after the profile is loaded)."""

    name = "NODE"

    def convert(self, value: t.Any, param: click.Parameter | None, ctx: click.Context | None) -> t.Any:
        if not isinstance(value, str):
            return value
        _load_profile(ctx)
        from aiida.cmdline.params.types import DataParamType

        try:
            return DataParamType(sub_classes=DATA_ENTRY_POINTS).convert(value, param, ctx)
        except click.BadParameter as error:
            self.fail(
                f"{error.message}; expected the PK, UUID or label of a StructureSet or GeneratorModel node",
                param,
                ctx,
            )


def _remember_profile(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.meta[_PROFILE_KEY] = value


NODE = PhysgenNodeParamType()
#: ``--profile`` is eager, so it is known before NODE is looked up
PROFILE_OPTION = click.option(
    "--profile",
    "-p",
    is_eager=True,
    expose_value=False,
    callback=_remember_profile,
    help="AiiDA profile (default: the one already loaded, else the default profile).",
)


@click.group("data")
def data():
    """Show and export the plugin's data nodes (StructureSet, GeneratorModel) like `verdi data`."""


@data.command("show")
@PROFILE_OPTION
@click.argument("node", type=NODE)
def show(node):
    """Summary of NODE: for a structure set its count, formulae and info arrays; for a model its family,
    seed, steps, final losses and target."""
    from ..data.generator_model import GeneratorModel

    header = f"{type(node).__name__}<{node.pk}> {node.uuid}"
    click.echo(header + (f"  label: {node.label}" if node.label else ""))
    if isinstance(node, GeneratorModel):
        lines = _model_lines(node)
    else:
        lines = _set_lines(node)
    for key, value in lines:
        click.echo(f"  {key + ':':<16}{value}")


@data.command("export")
@PROFILE_OPTION
@click.argument("node", type=NODE)
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "-F",
    "fileformat",
    help="Export format (structure sets: cif, extxyz, json, npz; models: pt, json, csv). Default: from PATH's "
    "extension.",
)
@click.option("--overwrite", "-f", is_flag=True, help="Replace PATH if it exists.")
def export(node, path, fileformat, overwrite):
    """Write NODE to PATH (all at once: a failed export leaves no partial file)."""
    formats = node.get_export_formats()
    if fileformat is not None and fileformat not in formats:
        raise click.BadParameter(f"got {fileformat!r}, expected one of {', '.join(formats)}", param_hint="--format")
    try:
        written = node.export(path, fileformat=fileformat, overwrite=overwrite)
    except FileExistsError:
        raise InputError(f"PATH: {path!r} exists; give --overwrite to replace it") from None
    except ValueError as error:
        message = str(error)
        if message.startswith("fileformat:"):
            message = "--format" + message[len("fileformat") :] + " (or give --format)"
        elif message.startswith("path:"):
            message = "PATH" + message[len("path") :]
        raise InputError(message) from None
    except OSError as error:
        if "already" in str(error):
            raise InputError(f"PATH: {path!r} exists; give --overwrite to replace it") from None
        raise InputError(f"PATH: cannot write {path!r} ({error.strerror or error})") from None
    for name in written:
        click.echo(f"wrote {name}")


# ---------------------------------------------------------------------- summaries
def _set_lines(node) -> list[tuple[str, str]]:
    counts = node.formula_counts
    formulae = ", ".join(
        f"{formula} x{n}" for formula, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    )
    pbc = node.pbc
    lines = [
        ("count", f"{node.count} structures, {node.n_atoms_total} atoms"),
        ("formulae", formulae),
        ("elements", ", ".join(node.elements)),
        ("periodicity", "mixed" if pbc is None else ("none (molecules)" if not any(pbc) else str(pbc))),
    ]
    info = []
    for key in node.info_keys:
        values = node.get_array(key)
        try:
            finite = values[[math.isfinite(float(v)) for v in values]] if values.ndim == 1 else values
            summary = f"{key} [{float(finite.min()):.6g} .. {float(finite.max()):.6g}]" if finite.size else f"{key}"
        except (TypeError, ValueError):
            summary = key
        info.append(summary)
    lines.append(("info", ", ".join(info) if info else "(none)"))
    return lines


def _model_lines(node) -> list[tuple[str, str]]:
    losses = node.losses or {}
    loss_text = ", ".join(f"{k} {'n/a' if v is None else f'{v:.6g}'}" for k, v in sorted(losses.items()))
    target = node.target or {}
    return [
        ("family", f"{node.family} ({node.role})"),
        ("seed", str(node.seed)),
        ("steps", str(node.steps)),
        ("final losses", loss_text or "(none)"),
        ("target", ", ".join(f"{k}={v}" for k, v in target.items())),
        ("checksum", f"sha256:{node.checksum}"),
    ]

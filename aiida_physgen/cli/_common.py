"""What the commands share: exit codes, errors that name the field, parsing of option values, reading
structures, writing outputs, passing on warnings."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

__all__ = [
    "EXIT_OK",
    "EXIT_INPUT",
    "EXIT_DIVERGED",
    "EXIT_INTERRUPTED",
    "InputError",
    "value_errors_as_input",
    "DivergedError",
    "OutputError",
    "parse_value",
    "load_mapping",
    "key_values",
    "parse_seeds",
    "check_output_file",
    "check_output_dir",
    "output_files",
    "read_structures",
    "echo_user_warnings",
    "progress_bar",
]

#: exit codes of every command (``1`` is left to unexpected errors, with a Python traceback)
EXIT_OK = 0
#: bad input: a usage error, a setting, target or file that was refused (the message names the field)
EXIT_INPUT = 2
#: training diverged (a loss became NaN or infinite); nothing was written to the output folder
EXIT_DIVERGED = 3
#: training was stopped by SIGTERM / SIGINT or ``--max-seconds`` after writing its checkpoint;
#: run the same command again to resume (``EX_TEMPFAIL`` of sysexits.h: "try again later")
EXIT_INTERRUPTED = 75


class InputError(click.ClickException):
    """Bad input; the message names the option or field."""

    exit_code = EXIT_INPUT


@contextlib.contextmanager
def value_errors_as_input() -> Iterator[None]:
    """A ``ValueError`` of the block (its message names the field, e.g. ``'--elements: ...'``) as an
    :class:`InputError` with that message: exit code 2, no traceback."""
    try:
        yield
    except ValueError as error:
        raise InputError(str(error)) from None


class OutputError(click.ClickException):
    """An output could not be written (e.g. the disk filled up) although it was checked; nothing was written.
    Exit code 1, with a message instead of a traceback."""

    exit_code = 1


class DivergedError(click.ClickException):
    """Training diverged."""

    exit_code = EXIT_DIVERGED


def parse_value(text: str) -> Any:
    """A JSON value, or the text itself when it is not JSON (``--set loop.optimizer=adam``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load_mapping(text: str, option: str) -> dict:
    """A dictionary given inline as JSON, or as the path of a JSON or YAML file."""
    path = Path(text)
    try:
        is_file = path.is_file()
    except OSError:  # a long JSON text is not a valid path
        is_file = False
    if is_file:
        content = path.read_text(encoding="utf-8")
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                value = yaml.safe_load(content)
            else:
                value = json.loads(content)
        except Exception as error:  # noqa: BLE001 - json and yaml raise their own error types
            raise click.BadParameter(
                f"cannot read {text!r} ({type(error).__name__}: {error})", param_hint=option
            ) from error
    else:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise click.BadParameter(
                f"{text!r} is neither a file nor a JSON dictionary ({error})", param_hint=option
            ) from None
    if not isinstance(value, dict):
        raise click.BadParameter(f"expected a dictionary, got {type(value).__name__}", param_hint=option)
    return value


def key_values(pairs: tuple[str, ...], option: str) -> dict:
    """``('loop.steps=100', 'hidden=[32]')`` → ``{'loop': {'steps': 100}, 'hidden': [32]}`` (JSON values)."""
    from ..ml import settings as settings_module

    flat = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=option)
        key, value = pair.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise click.BadParameter(f"expected a dotted setting name before '=', got {pair!r}", param_hint=option)
        flat[key] = parse_value(value)
    try:
        return settings_module.unflatten(flat)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint=option) from None


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"got {text!r}, expected comma-separated integers", param_hint="--seeds") from None
    if not seeds:
        raise click.BadParameter(f"got {text!r}, expected at least one seed", param_hint="--seeds")
    return seeds


def check_output_file(path, option: str, needed_bytes: int = 0) -> Path:
    """:func:`~aiida_physgen.ml.atomic_files.check_output_path` as a bad-input refusal (exit code 2) naming ``option``;
    call it before any heavy work."""
    from ..ml.atomic_files import check_output_path

    with value_errors_as_input():
        return check_output_path(path, option, needed_bytes=needed_bytes)


def check_output_dir(path, option: str) -> Path:
    """A folder the command will create (with its parents) or write into: refused (exit code 2, naming
    ``option``) when it, or its nearest existing ancestor, is a file or cannot be written."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link cannot become a folder
            raise InputError(f"{option}: {str(existing)!r} is a broken symbolic link; expected a folder")
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path else f" (in {str(path)!r})"
        raise InputError(f"{option}: {str(existing)!r} is a file{where}; expected a folder")
    check_output_file(existing / ".physgen-probe", option)
    return path


@contextlib.contextmanager
def output_files(*paths, option: str = "--output") -> Iterator[list[Path]]:
    """Temporary names for a set of output files that appear all together or not at all.

    Yields one temporary path per target (in the target's folder); when the block succeeds, each is
    renamed over its target (:func:`~aiida_physgen.ml.atomic_files.atomic_path`); on any exception every
    temporary file is removed and no target is touched. An ``OSError`` (a full disk, a folder removed
    meanwhile) becomes an :class:`OutputError` naming ``option``, not a traceback.
    """
    from ..ml.atomic_files import atomic_path

    try:
        with contextlib.ExitStack() as stack:
            temporary = [stack.enter_context(atomic_path(path)) for path in paths]
            yield temporary
    except OSError as error:
        names = ", ".join(os.fspath(path) for path in paths)
        raise OutputError(f"{option}: cannot write {names} ({error.strerror or error}); nothing was written") from None


def read_structures(path, option: str, index: str = ":"):
    """A :class:`~aiida_physgen.ml.batch.StructureBatch` from a structure file; an unreadable, empty or
    non-structure file is refused (exit code 2) naming ``option``, never a traceback."""
    from ..ml.batch import StructureBatch

    path = Path(path)
    try:
        if path.suffix == ".npz":
            with path.open("rb") as handle:
                batch = StructureBatch.from_npz(handle)
        else:
            batch = StructureBatch.read(path, index=index)
    except ValueError as error:
        message = str(error)
        raise InputError(f"{option}: {message}" if not message.startswith(option) else message) from None
    except Exception as error:  # noqa: BLE001 - ASE and NumPy raise many types on unreadable files
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise InputError(
            f"{option}: cannot read {os.fspath(path)!r} as structures ({type(error).__name__}"
            f"{': ' + detail[:200] if detail else ''}); expected a file ASE reads, e.g. extended XYZ"
        ) from None
    import numpy as np

    for name, values in (("positions", batch.positions), ("cells", batch.cells)):
        bad = ~np.isfinite(np.asarray(values, dtype=float)).reshape(len(values), -1).all(axis=1)
        if bad.any():
            raise InputError(
                f"{option}: {int(bad.sum())} atom(s) or cell(s) with NaN or infinite {name} in "
                f"{os.fspath(path)!r}; expected finite numbers"
            )
    return batch


@contextlib.contextmanager
def echo_user_warnings(rename: Callable[[str], str] = str) -> Iterator[None]:
    """Records every warning of the block; once the block has succeeded, prints each ``UserWarning`` (a
    family's notes, e.g. labels outside the training range) to stderr as ``Warning: ...``, its text passed
    through ``rename`` (a field's name → the option that sets it). Nothing is printed when the block raises."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            click.echo(f"Warning: {rename(str(warning.message))}", err=True)


def progress_bar(**options):
    """A tqdm progress bar on stderr with ``options`` (total, unit, desc...); in a batch job, where stderr is
    a file, it writes a line every half minute rather than ten a second."""
    from tqdm import tqdm

    return tqdm(file=sys.stderr, mininterval=0.1 if sys.stderr.isatty() else 30.0, **options)

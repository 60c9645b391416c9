"""What the commands share: exit codes, errors that name the field, parsing of option values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

__all__ = [
    "EXIT_OK",
    "EXIT_INPUT",
    "EXIT_DIVERGED",
    "EXIT_INTERRUPTED",
    "InputError",
    "DivergedError",
    "parse_value",
    "load_mapping",
    "key_values",
    "parse_seeds",
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
            raise click.BadParameter(f"cannot read {text!r} ({type(error).__name__}: {error})", param_hint=option)
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

"""Nested settings dataclasses: parse from plain dictionaries, write back, vary over a grid.

Every family describes its settings as a dataclass whose fields may themselves be dataclasses
(``descriptor``, ``loop``, ...). Each default is written once, in the dataclass that owns the field.
These helpers turn such a dataclass into the nested plain dictionary stored in a model file or an
AiiDA ``Dict`` and back, refusing unknown keys with the dotted path of the offending key.

Written here rather than taken from a library: pydantic would do this, but it is not a dependency
of the ML layer, and the few lines below keep the settings plain frozen-free dataclasses.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "from_dict",
    "to_dict",
    "merge",
    "flatten",
    "unflatten",
    "expand_grid",
    "field_paths",
    "require_positive_ints",
    "is_number",
    "is_finite_number",
    "is_positive_int",
]

T = TypeVar("T")


def _nested_default(cls: type, name: str) -> Any:
    """The default instance of field ``name`` of ``cls`` when that field is a settings dataclass, else ``None``."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            return default if dataclasses.is_dataclass(default) else None
    return None


def _nested_type(cls: type, name: str) -> type | None:
    default = _nested_default(cls, name)
    return type(default) if default is not None else None


def from_dict(cls: type[T], values: Mapping[str, Any] | None, where: str = "settings", base: T | None = None) -> T:
    """An instance of the settings dataclass ``cls`` from a nested dictionary.

    Missing keys keep their defaults (or the values of ``base``); unknown keys raise ``ValueError``
    naming their dotted path, e.g. ``settings.loop.stepz``. Field validation is the dataclass's own
    ``__post_init__``; its message is prefixed with the path of the sub-settings it came from.
    """
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ValueError(f"{where}: expected a dictionary, got {type(values).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {[f'{where}.{k}' for k in unknown]}; expected some of {names}")
    kwargs = {}
    for name in names:
        nested = _nested_type(cls, name)
        current = getattr(base, name) if base is not None else None
        if nested is not None:
            # the defaults of a nested group are those its parent's default_factory writes (a family's
            # own loop defaults), not the bare defaults of the nested dataclass
            current = current if current is not None else _nested_default(cls, name)
            given = values.get(name)
            if given is not None and dataclasses.is_dataclass(given):
                given = to_dict(given)
            kwargs[name] = from_dict(nested, given, f"{where}.{name}", current)
        elif name in values:
            kwargs[name] = copy.deepcopy(values[name])
        elif base is not None:
            kwargs[name] = copy.deepcopy(current)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        message = str(error)
        if where != "settings" and not message.startswith(where):
            message = f"{where}.{message}"
        raise ValueError(message) from None


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return to_dict(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_dict(settings: Any) -> dict[str, Any]:
    """The nested plain dictionary of a settings dataclass (tuples become lists)."""
    return {f.name: _plain(getattr(settings, f.name)) for f in dataclasses.fields(settings)}


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``base`` updated recursively with ``overrides`` (a new dictionary)."""
    out = copy.deepcopy(dict(base))
    for key, value in (overrides or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'loop': {'steps': 3}}`` → ``{'loop.steps': 3}``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def unflatten(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{'loop.steps': 3}`` → ``{'loop': {'steps': 3}}`` (keys without dots stay as they are)."""
    out: dict[str, Any] = {}
    for path, value in values.items():
        parts = path.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{path}: {part!r} is both a value and a group of settings")
        node[parts[-1]] = value
    return out


def field_paths(cls: type, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf field of the settings dataclass ``cls``."""
    paths = []
    for f in dataclasses.fields(cls):
        nested = _nested_type(cls, f.name)
        if nested is not None:
            paths.extend(field_paths(nested, f"{prefix}{f.name}."))
        else:
            paths.append(f"{prefix}{f.name}")
    return paths


def expand_grid(cls: type, grid: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every combination of a (nested) grid of setting values, as nested override dictionaries.

    ``{'loop': {'lr_generator': [1e-4, 3e-4]}, 'descriptor': {'radial': ['gaussian', 'bessel']}}``
    gives four combinations; an empty grid gives one empty combination.
    """
    flat = flatten(grid or {})
    known = set(field_paths(cls))
    for path, values in flat.items():
        if path not in known:
            raise ValueError(f"grid: unknown setting {path!r}; expected some of {sorted(known)}")
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"grid.{path}: expected a non-empty list of values, got {values!r}")
    combos = [dict(zip(flat, values)) for values in itertools.product(*flat.values())]
    return [unflatten(combo) for combo in combos] or [{}]


def require_positive_ints(settings: Any, expected: Mapping[str, str]) -> None:
    """Check that each field ``name`` of the settings dataclass instance is a positive integer (NumPy integers
    allowed, booleans not) and store it as ``int``; ``ValueError`` ``"<name>: got …, expected <expected[name]>"``."""
    for name, what in expected.items():
        value = getattr(settings, name)
        if not is_positive_int(value):
            raise ValueError(f"{name}: got {value!r}, expected {what}")
        setattr(settings, name, int(value))


def is_number(value: Any) -> bool:
    """A real number (int, float or their NumPy kinds) that is not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def is_finite_number(value: Any) -> bool:
    """A finite real number (:func:`is_number`, neither NaN nor infinite)."""
    return is_number(value) and math.isfinite(value)


def is_positive_int(value: Any) -> bool:
    """A positive integer (int or a NumPy integer) that is not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def from_dict_named(cls: type[T], values: Mapping[str, Any] | None, where: str = "settings") -> T:
    """:func:`from_dict` whose every error message starts with ``where`` (the dataclass's own checks name only
    the field: ``fmax: ...`` becomes ``settings.fmax: ...``)."""
    try:
        return from_dict(cls, values, where=where)
    except ValueError as error:
        message = str(error)
        raise ValueError(message if message.startswith(where) else f"{where}.{message}") from None

"""One canonical form for the inputs of a training, so equivalent requests are equal.

A cell written with integers or with floats, settings left out or spelled out with their default
values, a grid in any key order: all describe the same training. :func:`canonical_training_inputs`
turns them into one plain form — the family's own normalised target, every setting filled in from
the family's defaults, numbers of float settings as floats — so that two equivalent launches give
equal AiiDA nodes, equal hashes and therefore a cache hit instead of a second training.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from . import settings as settings_module
from .family import GeneratorFamily

__all__ = ["canonical_training_inputs", "canonical_settings", "canonical_grid"]


def _leaf_defaults(cls: type) -> dict[str, Any]:
    """Dotted path → default value of every leaf field of the settings dataclass ``cls``."""
    return settings_module.flatten(settings_module.to_dict(cls()))


def _canonical_value(value: Any, default: Any) -> Any:
    """``value`` as the type of ``default`` where that loses nothing: an integer given for a float field
    becomes a float, a tuple a list."""
    if isinstance(default, float) and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, (list, tuple)):
        inner = default[0] if isinstance(default, (list, tuple)) and default else None
        return [_canonical_value(v, inner) for v in value]
    return value


def canonical_settings(family: GeneratorFamily, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every setting of ``family``, given or default, in plain nested form (raises ``ValueError`` on bad input)."""
    values = settings_module.to_dict(family.settings(settings))
    defaults = _leaf_defaults(family.settings_class)
    flat = {
        path: _canonical_value(value, defaults.get(path)) for path, value in settings_module.flatten(values).items()
    }
    return settings_module.unflatten(flat)


def canonical_grid(family: GeneratorFamily, grid: Mapping[str, Any] | None) -> dict[str, Any]:
    """The grid with each list of values in the types of the settings it varies (key order does not matter)."""
    settings_module.expand_grid(family.settings_class, grid)  # checks paths and lists
    defaults = _leaf_defaults(family.settings_class)
    flat = settings_module.flatten(grid or {})
    return settings_module.unflatten(
        {path: [_canonical_value(v, defaults.get(path)) for v in values] for path, values in sorted(flat.items())}
    )


def canonical_training_inputs(
    family: GeneratorFamily,
    target: Mapping[str, Any],
    seeds: Sequence[int],
    settings: Mapping[str, Any] | None = None,
    grid: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``target``, ``seeds``, ``settings`` and (when given) ``grid`` in canonical form; ``ValueError`` naming
    the field when one of them is invalid."""
    out = {
        "target": family.check_target(target),
        "seeds": [int(seed) for seed in seeds],
        "settings": canonical_settings(family, settings),
    }
    if grid:
        out["grid"] = canonical_grid(family, grid)
    return out

"""Relaxation engines, found by name through the entry-point group ``aiida_physgen.engines``.

``gpaw`` (:class:`~aiida_physgen.engines.gpaw.GpawEngine`, one process per structure) and ``cheap``
(:class:`~aiida_physgen.engines.cheap.CheapEngine`, GFN2-xTB / CHGNet over a whole set) ship with the
package. A third party adds an engine with one class and one entry point in that group::

    [project.entry-points."aiida_physgen.engines"]
    mycode = "my_package.engine:MyEngine"

and the screening takes it as ``engine='mycode'`` (a per-structure :class:`RelaxationEngine`) or
``cheap_engine='mycode'`` (a :class:`BatchRelaxationEngine`).
"""

from __future__ import annotations

import importlib.metadata

from .base import BatchRelaxationEngine, RelaxationEngine, RelaxationResult

__all__ = [
    "RelaxationEngine",
    "BatchRelaxationEngine",
    "RelaxationResult",
    "ENTRY_POINT_GROUP",
    "DEFAULT_ENGINE",
    "DEFAULT_CHEAP_ENGINE",
    "available_engines",
    "get_engine",
]

ENTRY_POINT_GROUP = "aiida_physgen.engines"
#: the engines a screening uses when it names none: GPAW for DFT (a Python on localhost is enough), and
#: GFN2-xTB / CHGNet for the cheap tier (the ``cheap`` extra); written here once
DEFAULT_ENGINE = "gpaw"
DEFAULT_CHEAP_ENGINE = "cheap"
_INSTANCES: dict[str, RelaxationEngine | BatchRelaxationEngine] = {}


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_engines(granularity: str | None = None) -> list[str]:
    """Names of the installed engines; with ``granularity`` (``'structure'`` or ``'batch'``) only those."""
    names = sorted(_entry_points())
    if granularity is None:
        return names
    return [name for name in names if _granularity(name) == granularity]


def _granularity(name: str) -> str | None:
    """The engine's granularity, or ``None`` when it does not load (a broken plug-in is not offered)."""
    try:
        return _load(name).granularity
    except Exception:  # noqa: BLE001 - any import error of a third-party engine
        return None


def _load(name: str):
    if name not in _INSTANCES:
        entry_point = _entry_points()[name]
        engine = entry_point.load()()
        if not isinstance(engine, (RelaxationEngine, BatchRelaxationEngine)):
            raise TypeError(f"engine entry point {name!r} ({entry_point.value}) is not a relaxation engine")
        _INSTANCES[name] = engine
    return _INSTANCES[name]


def get_engine(name: str, granularity: str | None = None, field: str = "engine"):
    """The engine called ``name``; with ``granularity`` it must be of that kind.

    :raises ValueError: naming ``field`` and the engines that would do, when there is no such engine.
    """
    expected = available_engines(granularity)
    if not isinstance(name, str) or name not in _entry_points() or name not in expected:
        kind = {"structure": "relaxation engine", "batch": "batch relaxation engine"}.get(granularity, "engine")
        raise ValueError(f"{field}: unknown {kind} {name!r}; expected one of {expected}")
    return _load(name)

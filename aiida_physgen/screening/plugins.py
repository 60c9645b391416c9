"""Plug-ins found by name through entry points: one small registry shared by every plug-in kind.

The screening names no domain: its validity checks (``aiida_physgen.validity``) and assessors
(``aiida_physgen.assessors``) are classes registered by entry point, like the generator families
(``aiida_physgen.families``) and the engines (``aiida_physgen.engines``). A third-party package adds
one with one class and one line in its own ``pyproject.toml``; nothing in this package changes.
"""

from __future__ import annotations

import importlib.metadata
import sys
from typing import Generic, TypeVar

__all__ = ["PluginRegistry"]

T = TypeVar("T")


class PluginRegistry(Generic[T]):
    """The installed plug-ins of one entry-point group, each loaded once and checked against ``base``.

    :param group: the entry-point group, e.g. ``'aiida_physgen.validity'``.
    :param base: the class every plug-in must derive from.
    :param what: what one plug-in is called in messages, e.g. ``'validity check'``.
    """

    def __init__(self, group: str, base: type[T], what: str) -> None:
        self.group = group
        self.base = base
        self.what = what
        self._instances: dict[str, T] = {}
        self._points: tuple[tuple[str, ...], dict[str, importlib.metadata.EntryPoint]] | None = None

    def _entry_points(self) -> dict[str, importlib.metadata.EntryPoint]:
        # reading the installed distributions' metadata costs about 0.08 s here and a launch check asks several
        # times: kept per sys.path, so a plug-in put on (or taken off) the path is seen at once
        path = tuple(sys.path)
        if self._points is None or self._points[0] != path:
            self._points = (path, {ep.name: ep for ep in importlib.metadata.entry_points(group=self.group)})
        return self._points[1]

    def available(self) -> list[str]:
        """Names of the installed plug-ins, sorted."""
        return sorted(self._entry_points())

    def get(self, name: str, field: str) -> T:
        """The plug-in called ``name``.

        :param field: the input that named it, for the message.
        :raises ValueError: naming ``field`` and the installed plug-ins, when there is no such plug-in or it
            does not load.
        """
        if isinstance(name, self.base):
            return name
        # the entry points follow sys.path, so a plug-in that was only on sys.path for a while is not served from
        # the cache; instances are cached per entry point (name and value)
        points = self._entry_points()
        if not isinstance(name, str) or name not in points:
            raise ValueError(f"{field}: unknown {self.what} {name!r}; expected one of {sorted(points)}")
        key = f"{name}={points[name].value}"
        if key in self._instances:
            return self._instances[key]
        try:
            plugin = points[name].load()()
        except Exception as error:  # a broken third-party plug-in must not look like an unknown name
            raise ValueError(
                f"{field}: the {self.what} {name!r} ({points[name].value}) does not load: {error}"
            ) from error
        if not isinstance(plugin, self.base):
            raise ValueError(
                f"{field}: entry point {name!r} ({points[name].value}) is not a {self.what} "
                f"(expected a subclass of {self.base.__name__})"
            )
        self._instances[key] = plugin
        return plugin

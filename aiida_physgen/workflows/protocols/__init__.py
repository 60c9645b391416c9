"""Protocols: named sets of default inputs for the DFT work chains, stored as YAML files in this package.

A protocol file ``<name>.yaml`` has the layout::

    default_protocol: fast            # used when no protocol is named
    default_inputs:                   # shared by every protocol
      ...
      variants:                       # optional: inputs that depend on the kind of system
        molecule: {...}
        crystal: {...}
    protocols:
      fast:
        description: one line saying what the protocol is for
        ...                           # merged over ``default_inputs``
        variants:
          molecule: {...}             # merged over ``default_inputs.variants.molecule``

:func:`load_protocol` merges, in this order (later wins): ``default_inputs``, ``default_inputs.variants[variant]``,
the protocol, the protocol's ``variants[variant]`` and finally the caller's ``overrides``. Merging is recursive for
dictionaries; any other value replaces the previous one, and ``None`` deletes the key (so an override can remove, for
instance, ``kpts`` in favour of ``kpoint_density``).
"""

from __future__ import annotations

import copy
import functools
import pathlib
from collections.abc import Mapping
from typing import Any

__all__ = (
    "get_available_protocols",
    "get_default_protocol",
    "load_protocol",
    "recursive_merge",
    "generation_protocol",
    "family_protocols",
    "ProtocolMixin",
    "available_domains",
)

_DIRECTORY = pathlib.Path(__file__).parent


@functools.cache
def _read(name: str | pathlib.Path) -> dict:
    """The content of the protocol file ``<name>.yaml`` of this package, or of the file at a given path."""
    import yaml

    filepath = name if isinstance(name, pathlib.Path) else _DIRECTORY / f"{name}.yaml"
    if not filepath.is_file():
        available = sorted(path.stem for path in _DIRECTORY.glob("*.yaml"))
        raise ValueError(f"no protocol file '{name}.yaml'; available protocol files: {', '.join(available)}")
    with filepath.open(encoding="utf-8") as handle:
        content = yaml.safe_load(handle)
    if not isinstance(content, dict) or not isinstance(content.get("protocols"), dict) or not content["protocols"]:
        raise ValueError(f"protocol file '{filepath}' has no `protocols` mapping")
    return content


def get_available_protocols(name: str) -> dict[str, str]:
    """Return the protocols of the file ``<name>.yaml`` mapped to their descriptions."""
    return {key: value.get("description", "") for key, value in _read(name)["protocols"].items()}


def get_default_protocol(name: str) -> str:
    """Return the protocol used when none is named."""
    content = _read(name)
    return content.get("default_protocol") or next(iter(content["protocols"]))


def recursive_merge(base: Mapping, overrides: Mapping | None) -> dict:
    """Return a new dictionary: ``base`` updated recursively with ``overrides``; a ``None`` override deletes a key."""
    merged = copy.deepcopy(dict(base))
    for key, value in (overrides or {}).items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = recursive_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_protocol(
    name: str, protocol: str | None = None, overrides: Mapping | None = None, variant: str | None = None
) -> dict[str, Any]:
    """Return the inputs of ``protocol`` from the file ``<name>.yaml``, for ``variant``, with ``overrides`` merged in.

    :param name: the protocol file, without ``.yaml`` (e.g. ``'gpaw'``).
    :param protocol: the protocol; ``None`` selects the file's ``default_protocol``.
    :param overrides: nested dictionary merged recursively over the result (``None`` values delete keys).
    :param variant: the system variant (e.g. ``'molecule'`` or ``'crystal'``); ``None`` ignores all variants.
    :raises ValueError: for an unknown protocol or variant, naming it and listing the available ones.
    """
    content = _read(name)
    protocols = content["protocols"]
    protocol = protocol if protocol is not None else get_default_protocol(name)
    if protocol not in protocols:
        raise ValueError(f"unknown protocol '{protocol}' for {name}; available protocols: {', '.join(protocols)}")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise TypeError(f"`overrides` must be a dictionary, got {type(overrides).__name__}")

    defaults = copy.deepcopy(content.get("default_inputs") or {})
    default_variants = defaults.pop("variants", None) or {}
    selected = copy.deepcopy(protocols[protocol])
    selected.pop("description", None)
    protocol_variants = selected.pop("variants", None) or {}

    if variant is not None:
        available = sorted(set(default_variants) | set(protocol_variants))
        if variant not in available:
            raise ValueError(
                f"unknown variant '{variant}' for {name}; available variants: {', '.join(available) or 'none'}"
            )

    inputs = defaults
    if variant is not None:
        inputs = recursive_merge(inputs, default_variants.get(variant))
    inputs = recursive_merge(inputs, selected)
    if variant is not None:
        inputs = recursive_merge(inputs, protocol_variants.get(variant))
    return recursive_merge(inputs, overrides)


# ---------------------------------------------------------------------- generation protocols
#: keys of a generation protocol: nested family settings, seeds, candidates per model, selection settings
GENERATION_KEYS = ("settings", "seeds", "count", "selection", "grid")


def _family_file(family) -> pathlib.Path:
    from aiida_physgen.ml.family import get_family

    family = get_family(family)
    if family.protocol_file is None:
        raise ValueError(f"protocol: the {family.name} family ships no protocols; give settings explicitly")
    return pathlib.Path(family.protocol_file)


def family_protocols(family) -> dict[str, str]:
    """The generation protocols of ``family`` mapped to their descriptions."""
    return get_available_protocols(_family_file(family))


def generation_protocol(
    family, protocol: str | None, target: Mapping, overrides: Mapping | None = None
) -> dict[str, Any]:
    """The generation inputs (``settings``, ``seeds``, ``count``, ``selection``) of a family's ``protocol``
    for ``target`` (whose kind picks the variant, e.g. molecule or crystal), with ``overrides`` merged in."""
    from aiida_physgen.ml.family import get_family

    family = get_family(family)
    path = _family_file(family)
    variant = family.protocol_variant(family.check_target(target))
    content = _read(path)
    has_variants = any(
        "variants" in block for block in [content.get("default_inputs") or {}, *content["protocols"].values()]
    )
    inputs = load_protocol(path, protocol, overrides, variant=variant if has_variants else None)
    unknown = sorted(set(inputs) - set(GENERATION_KEYS))
    if unknown:
        raise ValueError(
            f"protocol: unknown key(s) {unknown} in the {family.name} protocol {protocol!r} or the "
            f"overrides; expected some of {list(GENERATION_KEYS)}"
        )
    return inputs


# ---------------------------------------------------------------------- the protocol mixin
class ProtocolMixin:
    """Protocols for a work chain, in the aiida-quantumespresso style: ``get_available_protocols``,
    ``get_default_protocol``, ``get_protocol_inputs``; the work chain's ``get_builder_from_protocol`` turns the
    inputs into a builder.

    A work chain sets ``_protocol_file`` (one file ``<name>.yaml`` in this package) or ``_protocol_directory``
    (one file per domain, ``<directory>/<domain>.yaml``, the ``domain`` argument of every method). Every
    default of a study is written once, in its YAML file.
    """

    _protocol_file: str | None = None
    _protocol_directory: str | None = None

    @classmethod
    def _protocol_path(cls, domain: str | None = None) -> pathlib.Path:
        if cls._protocol_directory is not None:
            directory = _DIRECTORY / cls._protocol_directory
            available = sorted(path.stem for path in directory.glob("*.yaml"))
            if domain not in available:
                raise ValueError(f"domain: unknown domain {domain!r} for {cls.__name__}; expected one of {available}")
            return directory / f"{domain}.yaml"
        if cls._protocol_file is None:
            raise ValueError(f"{cls.__name__} has no protocol file")
        return _DIRECTORY / f"{cls._protocol_file}.yaml"

    @classmethod
    def get_available_protocols(cls, domain: str | None = None) -> dict[str, str]:
        """The protocols (of ``domain``, for a chain with one file per domain) mapped to their descriptions."""
        return get_available_protocols(cls._protocol_path(domain))

    @classmethod
    def get_default_protocol(cls, domain: str | None = None) -> str:
        return get_default_protocol(cls._protocol_path(domain))

    @classmethod
    def get_protocol_inputs(
        cls,
        protocol: str | None = None,
        overrides: Mapping | None = None,
        domain: str | None = None,
        variant: str | None = None,
    ) -> dict[str, Any]:
        """The inputs of ``protocol`` (the file's ``default_protocol`` when ``None``) with ``overrides`` merged in."""
        return load_protocol(cls._protocol_path(domain), protocol, overrides, variant=variant)


def available_domains() -> list[str]:
    """The domains with a screening protocol file (``protocols/screening/<domain>.yaml``)."""
    return sorted(path.stem for path in (_DIRECTORY / "screening").glob("*.yaml"))

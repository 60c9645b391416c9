"""The generator-family contract, and the registry that finds families through entry points.

A *family* is one method (LoGAN, RUGAN, EDNN, the crystal GAN, RePAP, or a user's own). It is
one class implementing :class:`GeneratorFamily`, registered under the entry-point group
``aiida_physgen.families``::

    [project.entry-points."aiida_physgen.families"]
    logan = "aiida_physgen.ml.logan:LoganFamily"

Everything generic (the ensemble over seeds × grid, checkpoints and resume, devices, progress,
the model file, the AiiDA processes) works through this contract and names no family.

The contract, in the order a run uses it:

* ``name``, ``role`` (``"generator"`` makes structures; ``"surrogate"`` predicts a property and
  cannot sample), ``settings_class`` (a nested settings dataclass, see :mod:`.settings`) and
  ``vectorised`` (dotted settings that may differ between members trained in one pass);
* :meth:`~GeneratorFamily.check_target` normalises the family-defined *target* (LoGAN: composition,
  cell, periodicity) and :meth:`~GeneratorFamily.validate` checks training data + target +
  settings, both raising ``ValueError`` that names the field, before any heavy work;
* :meth:`~GeneratorFamily.build_trainer` makes a :class:`~aiida_physgen.ml.loop.Trainer` for a
  group of members; the generic code trains, checkpoints and resumes it;
* :meth:`~GeneratorFamily.module_from_config` rebuilds a trained member from its config (the
  model file), and :meth:`~GeneratorFamily.sample` draws ``count`` structures from it with a
  ``seed`` and an optional family-defined ``condition`` (generators), or
  :meth:`~GeneratorFamily.predict` gives its property for a batch of structures (surrogates);
  :meth:`~GeneratorFamily.member_config` adds what a member learnt from its data (label statistics)
  to its config.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib.metadata
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from . import settings as settings_module
from .batch import StructureBatch
from .loop import Trainer

__all__ = [
    "get_generator",
    "ENTRY_POINT_GROUP",
    "ROLES",
    "GeneratorFamily",
    "TrainedModel",
    "get_family",
    "available_families",
]

ENTRY_POINT_GROUP = "aiida_physgen.families"
ROLES = ("generator", "surrogate")


class GeneratorFamily(abc.ABC):
    """One generative method; see the module docstring for the contract."""

    #: the name the family is registered under (its entry-point name)
    name: ClassVar[str]
    #: ``"generator"`` or ``"surrogate"``
    role: ClassVar[str] = "generator"
    #: the nested settings dataclass; every default is written there, once
    settings_class: ClassVar[type]
    #: dotted settings that may differ between members trained together in one vectorised pass
    vectorised: ClassVar[tuple[str, ...]] = ()
    #: YAML file of generation protocols (``fast``, ``balanced``, the paper's), or ``None``
    protocol_file: ClassVar[Path | None] = None
    #: the settings that shape the module, in the order :meth:`architecture` gives them (``None``: all)
    architecture_settings: ClassVar[tuple[str, ...] | None] = None

    # ------------------------------------------------------------------ settings and target
    def settings(self, values: Mapping[str, Any] | Any | None = None):
        """The settings dataclass from a nested dictionary (unknown keys and bad values are errors)."""
        if isinstance(values, self.settings_class):
            return values
        return settings_module.from_dict(self.settings_class, values)

    def total_steps(self, settings) -> int:
        """Training steps per member (for progress bars); families with no ``loop.steps`` override this."""
        return int(settings.loop.steps)

    @abc.abstractmethod
    def check_target(self, target: Mapping[str, Any]) -> dict[str, Any]:
        """The normalised target as a small JSON-able dictionary; ``ValueError`` naming ``target.<field>``."""

    @abc.abstractmethod
    def validate(self, training: StructureBatch | None, target: dict[str, Any], settings) -> None:
        """Check training data, (normalised) target and settings together; ``ValueError`` naming the field."""

    def check_condition(self, condition: Mapping[str, Any] | None, config: Mapping[str, Any]) -> dict | None:
        """Normalise a sampling condition for a model with ``config``; the default accepts none."""
        if condition:
            raise ValueError(f"condition: the {self.name} family takes no condition, got {dict(condition)!r}")
        return None

    def target_facts(self, target: dict[str, Any]) -> dict[str, Any]:
        """The queryable facts of a target (the ``target`` attribute of a model node); small values only."""
        return dict(target)

    def atoms_per_structure(self, target: dict[str, Any]) -> int | None:
        """Atoms in every structure a model for the (normalised) ``target`` generates, or ``None`` when
        the family cannot tell (then :func:`~aiida_physgen.ml.training.check_generation_size` bounds the
        count only)."""
        return None

    def protocol_variant(self, target: dict[str, Any]) -> str | None:
        """Which variant of the family's protocols fits ``target`` (e.g. ``'molecule'``), or ``None``."""
        return None

    def descriptor(self, target: dict[str, Any], settings) -> dict[str, Any] | None:
        """The descriptor parameters the model was trained with, when it has one (the selection's default)."""
        return None

    # ------------------------------------------------------------------ training
    @abc.abstractmethod
    def build_trainer(
        self,
        training: StructureBatch | None,
        target: dict[str, Any],
        members: Sequence[Any],
        seeds: Sequence[int],
        device: torch.device,
    ) -> Trainer:
        """A trainer for members that share every setting outside :attr:`vectorised`.

        ``members[k]`` is member ``k``'s settings and ``seeds[k]`` its seed; every random stream of a
        member must come from its seed alone (:func:`~aiida_physgen.ml.ensemble.member_seed`).
        """

    def architecture(self, settings) -> dict[str, Any]:
        """What :meth:`module_from_config` needs besides target and seed: the :attr:`architecture_settings` (by
        default every setting), as plain values (tuples become lists)."""
        values = settings_module.to_dict(settings)
        if self.architecture_settings is None:
            return values
        return {name: values[name] for name in self.architecture_settings}

    def member_config(self, trainer: Trainer, k: int) -> dict[str, Any]:
        """What member ``k`` learnt from its data besides weights (label statistics, the training
        lattice...), merged into its config after training; small JSON-able values only. Default: nothing."""
        return {}

    # ------------------------------------------------------------------ trained models
    @abc.abstractmethod
    def module_from_config(self, config: Mapping[str, Any]) -> torch.nn.Module:
        """An untrained single-member module shaped as ``config`` says (weights are loaded after)."""

    def sample(
        self, module: torch.nn.Module, config: Mapping[str, Any], count: int, seed: int, condition: dict | None = None
    ) -> StructureBatch:
        """``count`` structures from one trained member, reproducible from ``seed``."""
        raise ValueError(f"role: {self.name} models are {self.role}s and cannot generate structures")

    def predict(self, module: torch.nn.Module, config: Mapping[str, Any], structures: StructureBatch) -> np.ndarray:
        """The property a surrogate learnt, one value per structure (``role == 'surrogate'`` only)."""
        raise ValueError(f"role: {self.name} models are {self.role}s and predict no property")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({self.role})>"


# ---------------------------------------------------------------------- the registry
_CACHE: dict[str, GeneratorFamily] = {}


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_families() -> list[str]:
    """Names of every installed family."""
    return sorted(_entry_points())


def get_generator(name: str | GeneratorFamily) -> GeneratorFamily:
    """:func:`get_family`, refusing a family that cannot generate structures (a surrogate such as the EDNN)."""
    family = get_family(name)
    if family.role != "generator":
        raise ValueError(
            f"family: {family.name!r} is a {family.role}: it predicts a property of given structures and cannot "
            "generate them; choose a generator family"
        )
    return family


def get_family(name: str | GeneratorFamily) -> GeneratorFamily:
    """The family registered as ``name`` (an instance is returned as it is)."""
    if isinstance(name, GeneratorFamily):
        return name
    # the entry points are read every time (about 5 ms), so a family that is uninstalled, or was only
    # on sys.path for a while, is not served from a stale cache; instances are cached per entry point
    points = _entry_points()
    if not isinstance(name, str) or name not in points:
        raise ValueError(f"family: unknown generator family {name!r}; installed: {sorted(points)}")
    key = f"{name}={points[name].value}"
    if key in _CACHE:
        return _CACHE[key]
    cls = points[name].load()
    family = cls() if isinstance(cls, type) else cls
    if not isinstance(family, GeneratorFamily):
        raise TypeError(f"family: entry point {name!r} gives {cls!r}, not a GeneratorFamily")
    if family.role not in ROLES:
        raise TypeError(f"family: {name!r} has role {family.role!r}; expected one of {ROLES}")
    _CACHE[key] = family
    return family


# ---------------------------------------------------------------------- one trained member
FORMAT_VERSION = 2


@dataclasses.dataclass
class TrainedModel:
    """One trained ensemble member: a single-member module and its JSON-able config.

    The config always holds ``family``, ``role``, ``seed``, ``steps``, ``losses``, ``hyperparameters``
    (the nested settings), ``target`` (normalised) and ``history`` (loss curves); the family adds
    what it needs to rebuild the module (``architecture``, ``descriptor``...).
    """

    module: torch.nn.Module
    config: dict[str, Any]

    @property
    def family(self) -> GeneratorFamily:
        return get_family(self.config["family"])

    def predict(self, structures: StructureBatch) -> np.ndarray:
        """The learnt property of every structure (surrogate models only)."""
        return self.family.predict(self.module, self.config, structures)

    def sample(self, count: int, seed: int, condition: Mapping[str, Any] | None = None) -> StructureBatch:
        """``count`` structures from this model, reproducible from ``seed``."""
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count <= 0:
            raise ValueError(f"count: got {count!r}, expected a positive number of structures")
        family = self.family
        return family.sample(
            self.module, self.config, int(count), int(seed), family.check_condition(condition, self.config)
        )

    # ------------------------------------------------------------------ the model file
    def to_bytes(self) -> bytes:
        """Config + weights in one ``torch.save`` file (what the CLI writes and a model node keeps)."""
        for key in ("family", "role", "seed", "steps"):
            if key not in self.config:
                raise ValueError(f"config: the key {key!r} is required")
        # identical models give identical bytes (so equal SHA-256 checksums, and AiiDA caching and
        # de-duplication by content work): the config is written in a canonical form (JSON round trip with
        # sorted keys, so neither key order nor which Python objects happen to be shared, which pickle's
        # memo records, reaches the file), the weights as fresh contiguous CPU copies. torch.save itself
        # is deterministic: its zip records carry a fixed 1980 timestamp, and the archive's
        # ``.data/serialization_id`` is derived from the records' CRC-32 checksums, not drawn at random
        # (``tests/ml/test_input_checks.py`` checks this across processes)
        handle = io.BytesIO()
        state = {key: value.detach().cpu().clone().contiguous() for key, value in self.module.state_dict().items()}
        torch.save({"format": FORMAT_VERSION, "config": canonical_config(self.config), "state_dict": state}, handle)
        return handle.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainedModel:
        config, state = read_model_file(data)
        module = get_family(config["family"]).module_from_config(config)
        module.load_state_dict(state)
        return cls(module.eval(), config)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def canonical_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as plain JSON types with sorted keys (NumPy scalars and arrays become numbers and lists);
    ``ValueError`` naming the config when a value is not JSON-able."""
    try:
        text = json.dumps(config, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as error:
        raise ValueError(f"config: every value must be JSON-able ({error})") from None
    return json.loads(text)


def read_model_file(data: bytes) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Config and state dict of a model file, without importing its family."""
    try:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exception:  # torch raises UnpicklingError, RuntimeError, EOFError, ... on junk
        raise ValueError(f"not a readable model file ({type(exception).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT_VERSION:
        raise ValueError(f"not an aiida-physgen model file (format {FORMAT_VERSION} expected)")
    if not isinstance(blob.get("config"), dict):
        raise ValueError("the model file holds no config dictionary")
    return blob["config"], blob.get("state_dict", {})


def finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def keys_checked(value: Mapping[str, Any] | None, where: str, allowed: Sequence[str], expected: str) -> dict[str, Any]:
    """``value`` (``None``: empty) as a dictionary with no key outside ``allowed``.

    :raises ValueError: naming ``where``: ``expected`` says what the dictionary should hold, for the message.
    """
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected {expected}, got {value!r}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {', '.join(allowed)}")
    return dict(value)

"""``physgen.generator_model``: a trained model of any family as an AiiDA node.

The node keeps the model file written by :mod:`aiida_physgen.ml.model_io` (config and weights in
one ``torch.save`` file, the same file the CLI and the training CalcJob write) as ``model.pt`` in
its repository. The facts one searches models by are copied from the config into attributes, and
they are the same for every family: ``family``, ``role`` (generator or surrogate), ``seed``,
``steps``, ``hyperparameters`` (the nested settings), ``losses`` (final), ``target`` (the family's
queryable target facts, e.g. LoGAN's composition, formula, cell and periodicity), ``descriptor``
(when the model has one) and the file's SHA-256 ``checksum``. Weights, loss curves and any other
config entries stay in the file only.

A node is only made from a file its family can load: the constructor rebuilds the module once and
refuses (``ValueError`` naming ``model_bytes``) a config without the architecture, weights that do
not fit the module (missing keys, size mismatch) or an unknown family. The same bytes always give
the same node hash. ``node.export(path, fileformat=None, overwrite=False)`` (AiiDA's ``Data.export``)
writes ``pt`` (the model file), ``json`` (the config without weights, final losses included) or
``csv`` (the loss curves).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import typing as t
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from aiida.common import exceptions
from aiida.orm import Data
from aiida.orm.pydantic import OrmMetadataField

from aiida_physgen.ml import model_io
from aiida_physgen.ml.family import ROLES, TrainedModel, get_family

from .structure_set import export_node

__all__ = ["GeneratorModel"]

#: config keys every model file must provide; they become the node's attributes
REQUIRED_CONFIG_KEYS = ("family", "role", "target", "hyperparameters", "seed", "steps", "losses")

#: largest JSON size (characters) of a dictionary copied into the attributes; anything array-like
#: and bigger belongs in an extra config key, which is kept in the model file only
MAX_ATTRIBUTE_JSON = 32_768


def _attribute(key: str, doc: str) -> property:
    """A read-only property giving the node attribute ``key`` (``None`` when unset), as a deep copy: editing a
    returned dictionary never touches the node."""

    def get(self: GeneratorModel) -> t.Any:
        return copy.deepcopy(self.base.attributes.get(key, None))

    return property(get, doc=doc)


class GeneratorModel(Data):
    """A trained model: the model file ``model.pt`` plus queryable facts about it.

    Attributes usable in ``QueryBuilder`` filters: ``family``, ``role``, ``seed``, ``steps``,
    ``hyperparameters``, ``losses``, ``target``, ``descriptor`` and ``checksum``, e.g.
    ``filters={'attributes.family': 'logan', 'attributes.seed': 3, 'attributes.target.formula': 'C5H12O'}``.
    """

    FILENAME = "model.pt"

    #: file extensions that name an export format (others are taken as the format's name)
    _export_format_replacements = {"pth": "pt"}

    class AttributesModel(Data.AttributesModel):
        family: str = OrmMetadataField(description="Family of the model (its entry point in aiida_physgen.families)")
        role: str = OrmMetadataField(description="'generator' (makes structures) or 'surrogate' (predicts a property)")
        target: dict[str, t.Any] = OrmMetadataField(description="The family's target facts (e.g. composition, cell)")
        descriptor: dict[str, t.Any] | None = OrmMetadataField(None, description="Descriptor parameters, if any")
        hyperparameters: dict[str, t.Any] = OrmMetadataField(description="Training settings (nested)")
        seed: int = OrmMetadataField(description="Random seed of the training")
        steps: int = OrmMetadataField(description="Number of training steps")
        losses: dict[str, float | None] = OrmMetadataField(
            description="Final training losses (null where the loss was not finite)"
        )
        checksum: str = OrmMetadataField(description="SHA-256 checksum of the model file")

    def __init__(self, model_bytes: bytes | None = None, config: dict | None = None, **kwargs: t.Any) -> None:
        """Construct a new node from the content of a model file.

        :param model_bytes: the model file as bytes, as written by :meth:`aiida_physgen.ml.family.TrainedModel.to_bytes`
            (or :func:`aiida_physgen.ml.model_io.save_model`).
            ``None`` creates an empty node that cannot be stored, which only AiiDA's own machinery needs.
        :param config: optionally the config the file was written with; the config inside the file is
            authoritative, this one is only checked against it.
        :raises ValueError: if the bytes are not a model file, a required config key is missing or
            invalid, or ``config`` differs from the config in the file.
        """
        super().__init__(**kwargs)
        if model_bytes is None:
            if config is not None:
                raise ValueError("model_bytes: the model file content is required when a config is given")
            return
        self._set_model_bytes(model_bytes, config)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_model(cls, model: TrainedModel, **kwargs) -> GeneratorModel:
        """A new node holding a trained model (see :class:`~aiida_physgen.ml.family.TrainedModel`)."""
        _attributes_from_config(model.config)  # fail on a bad config before serialising the weights
        _check_file_types(model.config, "config")
        return cls(model.to_bytes(), **kwargs)

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs) -> GeneratorModel:
        """Build a node from a model file written by the CLI or :func:`~aiida_physgen.ml.model_io.save_model`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model file {str(path)!r} does not exist")
        return cls(path.read_bytes(), **kwargs)

    def _set_model_bytes(self, data: bytes, config: dict | None) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"model_bytes: expected bytes, got {type(data).__name__}")
        data = bytes(data)
        file_config = _read_config(data)
        if config is not None and _canonical_json(config) != _canonical_json(file_config):
            raise ValueError("config: differs from the config stored in model_bytes")
        attributes = _attributes_from_config(file_config)
        _check_loadable(data, attributes["family"])
        attributes["checksum"] = model_io.sha256(data)
        self.base.repository.put_object_from_bytes(data, self.FILENAME)
        self.base.attributes.set_many(attributes)
        self._config_cache = file_config

    def _validate(self) -> bool:
        super()._validate()
        if self.FILENAME not in self.base.repository.list_object_names():
            raise exceptions.ValidationError(f"the repository file {self.FILENAME!r} is missing")
        missing = [key for key in (*REQUIRED_CONFIG_KEYS, "checksum") if key not in self.base.attributes]
        if missing:
            raise exceptions.ValidationError(f"attributes missing: {', '.join(missing)}")
        if not self.verify_checksum():
            raise exceptions.ValidationError(f"the checksum of {self.FILENAME!r} does not match the attribute")
        return True

    # ------------------------------------------------------------------ attributes
    family = _attribute("family", "The family of the model (its entry point in ``aiida_physgen.families``).")
    role = _attribute("role", "``'generator'`` (makes structures) or ``'surrogate'`` (predicts a property).")
    target = _attribute("target", "The family's target facts (LoGAN: composition, formula, n_atoms, cell, pbc).")
    descriptor = _attribute("descriptor", "The descriptor parameters the model was trained with, or ``None``.")
    hyperparameters = _attribute("hyperparameters", "The training settings (nested).")
    seed = _attribute("seed", "The random seed of the training.")
    steps = _attribute("steps", "The number of training steps.")
    losses = _attribute(
        "losses", "Final losses; a loss that was not finite is ``None`` here (the file keeps the original)."
    )
    checksum = _attribute("checksum", "SHA-256 checksum (hex) of the model file.")

    # ------------------------------------------------------------------ access
    def get_model_bytes(self) -> bytes:
        """The content of the model file."""
        try:
            return self.base.repository.get_object_content(self.FILENAME, mode="rb")
        except FileNotFoundError:
            raise ValueError(f"this GeneratorModel holds no model (no {self.FILENAME!r} in its repository)") from None

    def get_config(self) -> dict[str, t.Any]:
        """The full config stored in the model file, including keys not copied to the attributes."""
        cached = getattr(self, "_config_cache", None)
        if cached is None:
            cached = self._config_cache = _read_config(self.get_model_bytes())
        return copy.deepcopy(cached)

    def verify_checksum(self) -> bool:
        """Whether the model file still has the SHA-256 checksum recorded in the ``checksum`` attribute."""
        return model_io.sha256(self.get_model_bytes()) == self.checksum

    def load(self) -> TrainedModel:
        """The model (module in eval mode + config), ready to generate with ``.sample(count, seed)``.

        :raises ValueError: if the model file does not match its checksum.
        """
        data = self.get_model_bytes()
        if model_io.sha256(data) != self.checksum:
            raise ValueError(f"checksum: the model file of node {self.pk} does not match its recorded checksum")
        return TrainedModel.from_bytes(data)

    def get_loss_curves(self) -> dict[str, list[float]]:
        """The training losses logged every ``log_every`` steps: ``{'steps': [...], '<loss>': [...]}``."""
        return self.get_config().get("history") or {"steps": []}

    def export(
        self, path: str | os.PathLike, fileformat: str | None = None, overwrite: bool = False, **kwargs: t.Any
    ) -> list[str]:
        """Write the model to ``path`` in ``fileformat`` (AiiDA's ``Data.export``), whole or not at all.

        :param fileformat: ``pt`` (the model file, readable by :func:`~aiida_physgen.ml.model_io.load_model`),
            ``json`` (the config without the weights) or ``csv`` (loss curves); guessed from the extension
            when ``None``.
        :param overwrite: replace an existing file; otherwise an existing file is refused.
        :returns: the names of the files written (AiiDA's convention).
        :raises OSError: if the file exists and ``overwrite`` is false.
        :raises ValueError: naming ``fileformat`` or ``path``.
        """
        return export_node(self, path, fileformat, overwrite, **kwargs)

    def _prepare_pt(self, main_file_name: str = "", **kwargs) -> tuple[bytes, dict]:
        """The model file itself (config and weights)."""
        return self.get_model_bytes(), {}

    def _prepare_json(self, main_file_name: str = "", **kwargs) -> tuple[bytes, dict]:
        """The config of the model file without the weights (losses, loss curves and target included;
        non-finite numbers as ``null``), plus the ``checksum`` of the model file."""
        config = _json_safe(self.get_config())
        config["checksum"] = self.checksum
        return (json.dumps(config, indent=1, sort_keys=True, allow_nan=False) + "\n").encode("utf-8"), {}

    def _prepare_csv(self, main_file_name: str = "", **kwargs) -> tuple[bytes, dict]:
        """The loss curves: a ``steps`` column, then one column per loss (empty where not finite)."""
        curves = self.get_loss_curves()
        names = ["steps", *sorted(key for key in curves if key != "steps")]
        handle = io.StringIO()
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(names)
        for row in zip(*(curves.get(name, []) for name in names)):
            writer.writerow(
                [
                    "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else value
                    for value in row
                ]
            )
        return handle.getvalue().encode("utf-8"), {}

    def __str__(self) -> str:
        facts = self.target or {}
        return f"{super().__str__()} {self.family} {facts.get('formula', '')} seed: {self.seed}".replace("  ", " ")


# ---------------------------------------------------------------------- helpers
def _check_loadable(data: bytes, family: str) -> None:
    """Rebuild the module from the file once, so a file the family cannot load is never stored."""
    try:
        TrainedModel.from_bytes(data)
    except (KeyError, RuntimeError, TypeError, ValueError, AttributeError, IndexError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if isinstance(error, KeyError):
            detail = f"the config lacks {error}, which the family needs to rebuild the module"
        elif isinstance(error, RuntimeError) and "state_dict" in str(error):
            detail = (
                "the weights do not fit the module the config describes ("
                + " ".join(line.strip() for line in str(error).splitlines()[1:3])
                + ")"
            )
        raise ValueError(
            f"model_bytes: the {family!r} family cannot load this model file ({type(error).__name__}: {detail}); "
            "expected a file written by TrainedModel.to_bytes / save_model"
        ) from None


def _json_safe(value: t.Any) -> t.Any:
    """Plain JSON values: tensors and arrays as lists, non-finite floats as ``None``, other objects as text."""
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, (np.ndarray, np.generic, torch.Tensor)):
        return _json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _read_config(data: bytes) -> dict[str, t.Any]:
    """The config of a model file without building the module (the family class need not be importable)."""
    try:
        config, _ = model_io.read_model_file(data)
    except ValueError as error:
        raise ValueError(f"model_bytes: {error}") from None
    return config


def _attributes_from_config(config: t.Any) -> dict[str, t.Any]:
    """Validate the required config keys and convert them to JSON-safe attribute values."""
    if not isinstance(config, Mapping):
        raise ValueError(f"config: expected a dictionary, got {type(config).__name__}")
    missing = [key for key in REQUIRED_CONFIG_KEYS if key not in config]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise ValueError(f"config: missing required key{plural} {', '.join(map(repr, missing))}")

    family = get_family(config["family"]) if isinstance(config["family"], str) else None
    if family is None:
        raise ValueError(f"family: expected the name of an installed family, got {config['family']!r}")
    if config["role"] not in ROLES or config["role"] != family.role:
        raise ValueError(f"role: got {config['role']!r}; the {family.name} family's models are {family.role}s")

    integers = {}
    for key in ("seed", "steps"):
        value = _plain(config[key], key)
        if isinstance(value, bool) or not isinstance(value, int) or (key == "steps" and value < 0):
            kind = "a non-negative integer" if key == "steps" else "an integer"
            raise ValueError(f"{key}: expected {kind}, got {config[key]!r}")
        integers[key] = value

    try:
        target = family.check_target(config["target"])
    except ValueError as error:
        raise ValueError(str(error)) from None
    dictionaries = {key: _attribute_dict(key, config[key]) for key in ("hyperparameters", "losses")}
    dictionaries["target"] = _attribute_dict("target", family.target_facts(target))
    descriptor = config.get("descriptor")
    dictionaries["descriptor"] = None if descriptor is None else _attribute_dict("descriptor", descriptor)
    losses = {}
    for name, value in dictionaries["losses"].items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"losses: expected numbers, got {name!r}: {value!r}")
        losses[name] = None if value is None else float(value)

    return {
        "family": family.name,
        "role": family.role,
        "target": dictionaries["target"],
        "descriptor": dictionaries["descriptor"],
        "hyperparameters": dictionaries["hyperparameters"],
        "seed": integers["seed"],
        "steps": integers["steps"],
        "losses": losses,
    }


def _attribute_dict(key: str, value: t.Any) -> dict[str, t.Any]:
    """A config dictionary as a JSON-safe attribute value, refusing anything array-sized."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected a dictionary, got {type(value).__name__}")
    plain = _plain(value, key)
    size = len(json.dumps(plain))
    if size > MAX_ATTRIBUTE_JSON:
        raise ValueError(
            f"{key}: {size} characters of JSON are too large for an attribute (limit {MAX_ATTRIBUTE_JSON}); "
            "keep arrays in other config keys, which are stored in the model file only"
        )
    return plain


def _plain(value: t.Any, where: str = "config") -> t.Any:
    """Convert to plain JSON types: tuples and arrays become lists, NumPy/torch scalars Python numbers,
    non-finite floats ``None``. Dictionary keys must be strings without ``.`` (an AiiDA attribute rule)."""
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str) or "." in key:
                raise ValueError(f"{where}: dictionary keys must be strings without '.', got {key!r}")
            result[key] = _plain(item, f"{where}.{key}")
        return result
    if isinstance(value, (list, tuple)):
        return [_plain(item, where) for item in value]
    if isinstance(value, (np.ndarray, np.generic, torch.Tensor)):
        return _plain(value.tolist(), where)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"{where}: {type(value).__name__} values cannot be stored as attributes")


def _check_file_types(value: t.Any, where: str) -> None:
    """Refuse config values ``torch.load(weights_only=True)`` would not read back (NumPy scalars, objects)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise ValueError(f"{where}: dictionary key {key!r} of type {type(key).__name__} cannot be stored")
            _check_file_types(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_file_types(item, f"{where}[{index}]")
    elif not (value is None or isinstance(value, (bool, int, float, str, torch.Tensor))) or isinstance(
        value, np.generic
    ):
        raise ValueError(
            f"{where}: {type(value).__module__}.{type(value).__name__} cannot be stored in a model file; "
            "use plain Python values (convert NumPy values with .item() or .tolist())"
        )


def _canonical_json(config: t.Any) -> str:
    """A canonical text form of a config, for comparing configs that differ only in container types."""

    def default(value):
        if isinstance(value, (np.ndarray, np.generic, torch.Tensor)):
            return value.tolist()
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    try:
        return json.dumps(config, sort_keys=True, default=default)
    except (TypeError, ValueError) as exception:
        raise ValueError(f"config: cannot be compared with the config of the model file ({exception})") from None

"""One file format for every trained generator: config + weights in a single ``torch.save`` file.

The same file is what the CLI writes and what a ``physgen.generator_model`` node keeps in its
repository, so a model trained on a cluster by the CLI and one trained by a calcfunction are
interchangeable.
"""

from __future__ import annotations

import hashlib
import importlib
import io
from pathlib import Path
from typing import Any

import torch

__all__ = ["FAMILIES", "save_model", "load_model", "model_bytes", "model_from_bytes", "sha256"]

FORMAT_VERSION = 1

#: generator family -> "module:Class"; the class provides ``from_config(config)``.
FAMILIES = {
    "logan": "aiida_physgen.ml.logan:LoganGenerator",
}


def generator_class(family: str):
    try:
        module_name, class_name = FAMILIES[family].split(":")
    except KeyError:
        raise ValueError(f"family: unknown generator family {family!r}; expected one of {sorted(FAMILIES)}") from None
    return getattr(importlib.import_module(module_name), class_name)


def model_bytes(module: torch.nn.Module, config: dict[str, Any]) -> bytes:
    """Serialise ``module`` (its state dict) and its JSON-able ``config`` to bytes."""
    if "family" not in config:
        raise ValueError("config: the key 'family' is required")
    handle = io.BytesIO()
    state = {key: value.detach().cpu().clone() for key, value in module.state_dict().items()}
    torch.save({"format": FORMAT_VERSION, "config": config, "state_dict": state}, handle)
    return handle.getvalue()


def model_from_bytes(data: bytes) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Inverse of :func:`model_bytes`: a module in eval mode, ready to generate, and its config."""
    try:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exception:  # torch raises UnpicklingError, RuntimeError, EOFError, ... on junk
        raise ValueError(f"not a readable model file ({type(exception).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT_VERSION:
        raise ValueError(f"not an aiida-physgen model file (format {FORMAT_VERSION} expected)")
    config = blob["config"]
    module = generator_class(config["family"]).from_config(config)
    module.load_state_dict(blob["state_dict"])
    module.eval()
    return module, config


def save_model(path: str | Path, module: torch.nn.Module, config: dict[str, Any]) -> str:
    """Write the model file; returns its SHA-256 checksum."""
    data = model_bytes(module, config)
    Path(path).write_bytes(data)
    return sha256(data)


def load_model(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    return model_from_bytes(path.read_bytes())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

"""One file format for every trained model: config + weights in a single ``torch.save`` file.

The same file is what the CLI writes and what a ``physgen.generator_model`` node keeps in its
repository, so a model trained on a cluster by the CLI (or the training CalcJob) and one trained by
a calcfunction are interchangeable. The family named in the config rebuilds the module
(:meth:`~aiida_physgen.ml.family.GeneratorFamily.module_from_config`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .atomic_files import write_bytes
from .family import FORMAT_VERSION, TrainedModel, read_model_file

__all__ = ["FORMAT_VERSION", "save_model", "load_model", "read_model_file", "sha256"]


def save_model(path: str | Path, model: TrainedModel) -> str:
    """Write the model file; returns its SHA-256 checksum."""
    data = model.to_bytes()
    write_bytes(path, data)  # atomic: a killed job never leaves half a model file
    return sha256(data)


def load_model(path: str | Path) -> TrainedModel:
    """The model in a file written by :func:`save_model` (module in eval mode, ready to generate)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    return TrainedModel.from_bytes(path.read_bytes())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

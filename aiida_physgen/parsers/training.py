"""Parser of :class:`~aiida_physgen.calculations.training.TrainingCalculation`.

``aiida-physgen train --status status.json`` reports how it ended; the parser maps that onto the
job's exit codes. When training finished, every model file listed in ``summary.json`` becomes a
``physgen.generator_model`` node under ``models`` (``model_00``...). All nodes are built and checked
(file present, checksum as in the summary, config accepted by the family) before the first is
attached: the job has either every model or none.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiida.parsers import Parser

from ..calculations.training import (
    PROGRESS_FILENAME,
    STATUS_FILENAME,
    STDERR_FILENAME,
    SUMMARY_FILENAME,
)
from ..data.generator_model import GeneratorModel
from ..ml.model_io import sha256
from ..ml.progress import read_progress_log

__all__ = ["TrainingParser"]


class _Unusable(Exception):
    def __init__(self, label: str, **kwargs):
        super().__init__(label)
        self.label = label
        self.kwargs = kwargs


class TrainingParser(Parser):
    """Turn the files of ``aiida-physgen train`` into ``GeneratorModel`` nodes and an exit code."""

    def _read(self, name: str) -> str | None:
        try:
            return self.retrieved.base.repository.get_object_content(name, mode="r")
        except (FileNotFoundError, OSError):
            return None

    def _tail(self, name: str, lines: int = 15) -> str:
        text = self._read(name) or ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def parse(self, **kwargs):
        progress = read_progress_log(self._read(PROGRESS_FILENAME) or "")
        text = self._read(STATUS_FILENAME)
        if text is None:
            tail = self._tail(STDERR_FILENAME)
            if tail:
                self.logger.error(f"the training left no {STATUS_FILENAME}; the end of {STDERR_FILENAME}:\n{tail}")
            step = f"{progress['done']}/{progress['total']}" if progress["total"] else "none"
            return self.exit_codes.ERROR_NO_OUTPUT.format(step=step)
        try:
            status = json.loads(text)
            state, message = status["status"], status.get("message", "")
        except (ValueError, KeyError, TypeError) as error:
            return self.exit_codes.ERROR_OUTPUT_UNREADABLE.format(filename=STATUS_FILENAME, error=repr(error))

        if state == "invalid_input":
            return self.exit_codes.ERROR_INVALID_INPUT.format(message=message)
        if state == "diverged":
            return self.exit_codes.ERROR_TRAINING_DIVERGED.format(message=message)
        if state == "interrupted":
            if status.get("done") is not None:
                step = f"{status['done']}/{status['total']}"
            else:
                step = f"{status.get('step')} (of its group)"
            return self.exit_codes.ERROR_INTERRUPTED.format(step=step, reason=status.get("reason") or "stopped")
        if state != "ok":
            tail = self._tail(STDERR_FILENAME)
            if tail:
                self.logger.error(f"the end of {STDERR_FILENAME}:\n{tail}")
            return self.exit_codes.ERROR_TRAINING_CRASHED.format(message=message)

        try:
            models = self._models(kwargs.get("retrieved_temporary_folder"))
        except _Unusable as problem:
            return self.exit_codes[problem.label].format(**problem.kwargs)
        for label, node in models.items():
            self.out(f"models.{label}", node)
        return None

    def _models(self, temporary_folder) -> dict[str, GeneratorModel]:
        text = self._read(SUMMARY_FILENAME)
        if text is None:
            raise _Unusable("ERROR_OUTPUT_MISSING", filename=SUMMARY_FILENAME)
        try:
            summary = json.loads(text)
            entries = summary["models"]
            if not isinstance(entries, list) or len(entries) != summary["n_models"] or not entries:
                raise ValueError(f"it lists {len(entries)} model(s) but says n_models={summary['n_models']}")
            files = [(str(entry["file"]), entry.get("sha256")) for entry in entries]
        except (ValueError, KeyError, TypeError) as error:
            raise _Unusable("ERROR_OUTPUT_UNREADABLE", filename=SUMMARY_FILENAME, error=repr(error)) from None

        models = {}
        for index, (name, checksum) in enumerate(files):
            path = Path(temporary_folder) / name if temporary_folder else None
            if path is None or not path.is_file():
                raise _Unusable("ERROR_OUTPUT_MISSING", filename=f"models/{name}")
            data = path.read_bytes()
            if checksum is not None and sha256(data) != checksum:
                raise _Unusable(
                    "ERROR_OUTPUT_UNREADABLE",
                    filename=f"models/{name}",
                    error="its checksum differs from the one in summary.json (truncated copy?)",
                )
            try:
                models[f"model_{index:02d}"] = GeneratorModel(data)
            except (ValueError, TypeError) as error:
                raise _Unusable("ERROR_OUTPUT_UNREADABLE", filename=f"models/{name}", error=str(error)) from None
        return models

"""The plain progress log of a training run, written so that a job's progress can be read remotely.

``aiida-physgen train`` appends to ``<checkpoint dir>/progress.log`` (one line per event, flushed at
once): the start, a resume, a line of mean losses about every 1 % of the steps, every checkpoint,
and how the run ended. A resumed run appends to the same file, so the log tells the whole story of
a training that ran as several jobs. :func:`read_progress_log` turns the text back into numbers
(the training CalcJob and its restarting work chain use it).

Example::

    2025-05-01T10:00:00 start: 4 model(s) of logan in 1 group(s), 800 steps, device cpu, 2 thread(s)
    2025-05-01T10:00:02 resumed group 1/1 at step 200/800
    2025-05-01T10:00:09 step 208/800 (26.0%) group 1/1 step 208/800 critic -1.2 generator 3.4 wasserstein 2.1
    2025-05-01T10:00:40 checkpoint group 1/1 step 300/800
    2025-05-01T10:01:10 interrupted at step 350/800 (SIGTERM); checkpoint written
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["ProgressLog", "read_progress_log", "FILENAME"]

FILENAME = "progress.log"

_STEP = re.compile(r"^\S+ step (\d+)/(\d+) ")
_CHECKPOINT = re.compile(r"^\S+ checkpoint group (\d+)/(\d+) step (\d+)/(\d+)")
_RESUMED = re.compile(r"^\S+ resumed group (\d+)/(\d+) at step (\d+)/(\d+)")
_END = re.compile(r"^\S+ (finished|interrupted|diverged|failed)\b(.*)$")
_STOPPED = re.compile(r"^interrupted at step (\d+)/(\d+)")


class ProgressLog:
    """Append-only progress file; every line starts with an ISO timestamp."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        self.failed: str | None = None

    def write(self, text: str) -> None:
        """Append one line (a whole line at once: one ``write`` of an ``O_APPEND`` file). A log that cannot be
        written (a full disk, a removed folder) never stops the training: the error is reported once on
        stderr and the log is given up."""
        if self.path is None or self.failed is not None:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        try:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(f"{stamp} {text}\n")
        except OSError as error:
            self.failed = f"{self.path}: {error.strerror or error}"
            print(
                f"Warning: the progress log cannot be written ({self.failed}); training goes on without it",
                file=sys.stderr,
            )


def read_progress_log(text: str) -> dict[str, Any]:
    """The facts of a progress log: ``done``/``total`` (last step logged over all groups; exact after a stop),
    ``checkpoint`` (last checkpoint logged: ``{'group', 'step', 'steps'}``), ``resumed`` (every
    ``{'group', 'step', 'steps'}`` a run resumed at) and ``end`` (the last ``finished`` /
    ``interrupted`` / ``diverged`` / ``failed`` line, or ``None`` while running or after a hard kill)."""
    facts: dict[str, Any] = {"done": 0, "total": None, "checkpoint": None, "resumed": [], "end": None}
    for line in text.splitlines():
        if match := _STEP.match(line):
            facts["done"], facts["total"] = int(match[1]), int(match[2])
        elif match := _CHECKPOINT.match(line):
            facts["checkpoint"] = {"group": int(match[1]), "step": int(match[3]), "steps": int(match[4])}
        elif match := _RESUMED.match(line):
            facts["resumed"].append({"group": int(match[1]), "step": int(match[3]), "steps": int(match[4])})
            facts["end"] = None
        elif match := _END.match(line):
            facts["end"] = (match[1] + match[2]).strip()
            if stopped := _STOPPED.match(facts["end"]):
                facts["done"], facts["total"] = int(stopped[1]), int(stopped[2])
        elif " start: " in line:
            facts["end"] = None
    return facts

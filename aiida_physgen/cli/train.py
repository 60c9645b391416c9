"""``aiida-physgen train``: train an ensemble of any generator family on a structure file.

The command needs no AiiDA profile and imports no AiiDA module: the training CalcJob
(``physgen.train.job``) runs exactly this command on the remote computer
(``python -m aiida_physgen train training.npz --job job.json ...``).

Precedence of the settings, later wins: the family's defaults, the ``--protocol``, the ``--job``
file, ``--settings``, every ``--set`` and finally ``--steps``. Seeds come from ``--seeds``, else the
job file, else the protocol, else :data:`~aiida_physgen.ml.training.DEFAULT_SEEDS`.

Checkpoints go to ``--checkpoint-dir`` (default ``OUTDIR/checkpoints``) every ``--checkpoint-every``
steps, with a plain ``progress.log`` beside them. SIGTERM, SIGINT or ``--max-seconds`` stop the
training cleanly: the checkpoint is written and the command exits with code 75; the same command
run again resumes where it stopped, and ends with the same weights, bit for bit, as a run that
was never stopped (on the same device and number of threads).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..ml.progress import FILENAME as PROGRESS_FILENAME
from ..ml.progress import ProgressLog
from ._common import (
    EXIT_INTERRUPTED,
    DivergedError,
    InputError,
    OutputError,
    check_output_dir,
    check_output_file,
    key_values,
    load_mapping,
    output_files,
    parse_seeds,
    progress_bar,
    read_structures,
    value_errors_as_input,
)
from .options import output_file_option, output_folder_option

__all__ = ["train", "JOB_KEYS"]

#: the keys a ``--job`` file may hold (what the training CalcJob writes)
JOB_KEYS = ("family", "target", "settings", "seeds", "grid")


def _write_json(path: Path, value: dict) -> None:
    from ..ml.atomic_files import write_text

    write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


#: the family the LoGAN target options (--composition with --box, --cell or --like) describe a target of
LOGAN_FAMILY = "logan"


def _logan_target(composition, cell, box, like, periodic) -> dict[str, Any]:
    """LoGAN's target ``{composition, cell, pbc}`` from ``-c`` and one of ``--cell``, ``--box``, ``--like``."""
    given = [name for name, value in (("--cell", cell), ("--box", box), ("--like", like)) if value]
    if len(given) != 1:
        raise click.UsageError("give the target cell with exactly one of --cell, --box or --like")
    like_composition = None
    if like:
        import ase.io

        from ..ml.composition import composition_string

        try:
            structure = ase.io.read(like)
        except Exception as error:  # noqa: BLE001 - ASE raises many types on unreadable files
            raise click.BadParameter(
                f"cannot read {like!r} ({type(error).__name__}: {error})", param_hint="--like"
            ) from error
        matrix, pbc = structure.cell.array, [bool(p) for p in structure.pbc]
        like_composition = composition_string(structure.get_chemical_symbols())
    elif box:
        if box <= 0:
            raise click.BadParameter(f"got {box}, expected a positive box length in Å", param_hint="--box")
        matrix, pbc = np.eye(3) * box, [False] * 3
    else:
        if len(cell) == 3:
            matrix = np.diag(cell)
        elif len(cell) == 9:
            matrix = np.asarray(cell).reshape(3, 3)
        else:
            raise click.BadParameter(
                f"got {len(cell)} numbers, expected 3 (a, b, c) or 9 (three vectors)", param_hint="--cell"
            )
        pbc = [True] * 3
    if periodic is not None:
        pbc = [periodic] * 3
    composition = composition or like_composition
    if not composition:
        raise click.UsageError("give --composition (or --like with a target structure)")
    return {"composition": composition, "cell": np.asarray(matrix, dtype=float).tolist(), "pbc": pbc}


class _Stopper:
    """``should_stop`` for the training: true after SIGTERM / SIGINT or once ``max_seconds`` have passed."""

    def __init__(self, started: float, max_seconds: float | None):
        self.started = started
        self.max_seconds = max_seconds
        self.reason: str | None = None
        self._previous: dict[int, Any] = {}

    def __call__(self) -> bool:
        if self.reason is None and self.max_seconds is not None and time.monotonic() - self.started >= self.max_seconds:
            self.reason = f"--max-seconds {self.max_seconds:g} reached"
        return self.reason is not None

    def _handle(self, signum, frame):
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.reason = self.reason or signal.Signals(signum).name

    def __enter__(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: no signal handling, --max-seconds still works
                continue
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        return False


class _Reporter:
    """The training callback: a tqdm bar over all steps and the progress log."""

    def __init__(self, log: ProgressLog, checkpoint_every: int):
        self.log = log
        self.checkpoint_every = checkpoint_every
        self.bar = None
        self.last = None
        self.seen_groups: set[int] = set()

    def __call__(self, progress) -> None:
        if self.bar is None:
            self.bar = progress_bar(total=progress.total, initial=progress.done - 1, unit="step", desc="training")
        self.last = progress
        where = f"group {progress.group + 1}/{progress.n_groups} step {{}}/{progress.steps}"
        if progress.group not in self.seen_groups:
            self.seen_groups.add(progress.group)
            if progress.step > 1:
                self.log.write(f"resumed {where.format(progress.step - 1).replace(' step ', ' at step ')}")
                self.bar.write(
                    f"resumed group {progress.group + 1}/{progress.n_groups} at step {progress.step - 1}"
                    f"/{progress.steps} from its checkpoint",
                    file=sys.stdout,
                )
        means = {name: float(np.mean(values)) for name, values in progress.losses.items()}
        self.bar.set_postfix({name: f"{value:.3g}" for name, value in means.items()}, refresh=False)
        self.bar.update(progress.done - self.bar.n)
        every = max(1, progress.total // 100)
        if progress.done % every == 0 or progress.step == progress.steps:
            losses = " ".join(f"{name} {value:.6g}" for name, value in means.items())
            percent = 100.0 * progress.done / max(1, progress.total)
            self.log.write(
                f"step {progress.done}/{progress.total} ({percent:.1f}%) {where.format(progress.step)} {losses}"
            )
        if progress.step % self.checkpoint_every == 0 or progress.step == progress.steps:
            self.log.write(f"checkpoint {where.format(progress.step)}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.command()
@click.argument("training_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--family",
    "-f",
    "family_name",
    help="Generator family (an installed entry point); the LoGAN target options (--composition) imply logan.",
)
@click.option(
    "--job",
    "job_file",
    type=click.Path(exists=True, dir_okay=False),
    help=f"JSON file with any of {', '.join(JOB_KEYS)} (what the training CalcJob writes); "
    "command-line options override it.",
)
@click.option("--target", "target_text", help="The family's target as JSON or a JSON/YAML file.")
@click.option("--composition", "-c", help="LoGAN: target composition, e.g. C5H12O (default: that of --like).")
@click.option("--cell", type=float, multiple=True, help="LoGAN: target cell, a b c or nine numbers; repeat the option.")
@click.option("--box", type=float, help="LoGAN: cubic box length in Å for molecules (non-periodic).")
@click.option(
    "--like",
    type=click.Path(exists=True, dir_okay=False),
    help="LoGAN: take cell, pbc and composition from this structure file.",
)
@click.option("--pbc/--no-pbc", "periodic", default=None, help="LoGAN: override the periodicity.")
@click.option("--protocol", "-p", help="Start from the family's generation protocol (see `aiida-physgen protocols`).")
@click.option("--settings", "settings_text", help="Nested settings as JSON or a JSON/YAML file.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="One setting, dotted key and JSON value, e.g. loop.steps=100; repeat the option.",
)
@click.option(
    "--grid",
    "grid_pairs",
    multiple=True,
    metavar="KEY=[V1,V2]",
    help="Vary a setting over the ensemble, e.g. loop.lr_generator=[1e-4,3e-4]; repeat the option.",
)
@click.option("--seeds", "seeds_text", help="Comma-separated seeds, one model each (times the grid).")
@click.option("--steps", type=click.IntRange(min=0), help="Shortcut for --set loop.steps=N.")
@click.option("--device", default="cpu", help="cpu, cuda, cuda:<n> or auto.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: OMP_NUM_THREADS, else all allowed).")
@output_folder_option(
    "--checkpoint-dir",
    help="Checkpoints and progress.log (default: OUTDIR/checkpoints); checkpoints found there are resumed.",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    default=100,
    help="Write a checkpoint every N steps.",
)
@click.option(
    "--max-seconds",
    type=click.FloatRange(min=0),
    help="Stop (checkpoint, exit code 75) after this many seconds, e.g. a little below a job's walltime.",
)
@output_file_option(
    "--status",
    "status_file",
    help="Write the outcome as JSON here (ok, invalid_input, diverged, interrupted, crashed).",
)
@output_folder_option(default="models", help="Folder for model_XX.pt and summary.json.")
def train(status_file, **options):
    """Train an ensemble of models on TRAINING_FILE (any format ASE reads, or a StructureSet .npz).

    Settings, later wins: the family's defaults, --protocol, --job, --settings, --set, --steps.
    Seeds: --seeds, else the job file, else the protocol, else 0,1,2,3. Checkpoints found in
    --checkpoint-dir are resumed: after a stop, run the same command again.

    \b
    Exit codes: 0 done; 2 bad input (the message names the field); 3 training diverged;
    75 stopped by SIGTERM/SIGINT or --max-seconds with a checkpoint (run it again to resume).
    """
    status_path = Path(status_file) if status_file else None
    if status_path is not None:
        check_output_file(status_path, "--status")  # refused before anything else: there would be no record
        status_path.unlink(missing_ok=True)

    def record(status: str, code: int, message: str, **extra) -> None:
        if status_path is not None:
            _write_json(status_path, {"status": status, "exit_code": code, "message": message, **extra})

    try:
        outcome = _train(**options)
    except click.exceptions.Exit:
        raise
    except click.ClickException as error:
        status = "diverged" if isinstance(error, DivergedError) else "invalid_input"
        if isinstance(error, OutputError):  # a file could not be written (a full disk): not the input's fault
            status = "crashed"
        record(status, error.exit_code, error.format_message())
        raise
    except BaseException as error:
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            record("crashed", 130 if isinstance(error, KeyboardInterrupt) else 1, type(error).__name__)
        else:
            record("crashed", 1, f"{type(error).__name__}: {error}")
        raise
    if outcome.get("status") == "interrupted":
        record(**outcome)
        click.echo(outcome["message"], err=True)
        sys.exit(EXIT_INTERRUPTED)
    record(**outcome)


def _train(
    training_file,
    family_name,
    job_file,
    target_text,
    composition,
    cell,
    box,
    like,
    periodic,
    protocol,
    settings_text,
    overrides,
    grid_pairs,
    seeds_text,
    steps,
    device,
    threads,
    checkpoint_dir,
    checkpoint_every,
    max_seconds,
    output,
) -> dict:
    started = time.monotonic()
    from ..ml import settings as settings_module
    from ..ml.family import available_families, finite_or_none, get_family
    from ..ml.loop import TrainingDivergedError, TrainingInterrupted
    from ..ml.model_io import sha256
    from ..ml.training import DEFAULT_SEEDS, plan_members, resolve_device, set_threads, train_ensemble

    # ---------------------------------------------------------------- what to train
    job: dict[str, Any] = {}
    if job_file:
        job = load_mapping(job_file, "--job")
        unknown = sorted(set(job) - set(JOB_KEYS))
        if unknown:
            raise click.BadParameter(f"unknown key(s) {unknown}; expected some of {list(JOB_KEYS)}", param_hint="--job")

    logan_given = bool(composition or cell or box or like) or periodic is not None
    if target_text and logan_given:
        raise click.UsageError("give the target either with --target or with --composition/--cell/--box/--like")
    if target_text:
        target = load_mapping(target_text, "--target")
    elif logan_given:
        target = _logan_target(composition, cell, box, like, periodic)
    elif "target" in job:
        target = job["target"]
    else:
        raise click.UsageError(
            "give the target: --target JSON (any family) or, for LoGAN, --composition with one of --box, --cell "
            "or --like"
        )
    with value_errors_as_input():
        name = family_name or job.get("family") or (LOGAN_FAMILY if logan_given else None)
        if name is None:
            raise ValueError(f"family: give --family (or 'family' in the job file), e.g. one of {available_families()}")
        family = get_family(name)
        target = family.check_target(target)

    settings: dict[str, Any] = {}
    grid: dict[str, Any] = {}
    seeds = None
    if protocol:
        from ..workflows.protocols import generation_protocol

        try:
            values = generation_protocol(family, protocol, target)
        except ValueError as error:
            raise InputError(f"--protocol: {error}") from None
        settings = values.get("settings") or {}
        grid = values.get("grid") or {}
        seeds = values.get("seeds")
    layers = [
        ("--job settings", job.get("settings")),
        ("--settings", settings_text and load_mapping(settings_text, "--settings")),
        ("--set", overrides and key_values(overrides, "--set")),
    ]
    for source, given in layers:
        if given:
            if not isinstance(given, dict):
                raise InputError(f"{source}: expected a dictionary of settings, got {given!r}")
            settings = settings_module.merge(settings, given)
    if steps is not None:
        settings = settings_module.merge(settings, {"loop": {"steps": steps}})
    for source, given in (("--job grid", job.get("grid")), ("--grid", grid_pairs and key_values(grid_pairs, "--grid"))):
        if given:
            if not isinstance(given, dict):
                raise InputError(f"{source}: expected a dictionary of settings with lists of values, got {given!r}")
            grid = settings_module.merge(grid, given)
    if seeds_text:
        seeds = parse_seeds(seeds_text)
    elif "seeds" in job:
        seeds = job["seeds"]
    if seeds is None:
        seeds = list(DEFAULT_SEEDS)

    with value_errors_as_input():
        members = plan_members(family, settings, seeds, grid)
    out = Path(output)
    checkpoints = Path(checkpoint_dir) if checkpoint_dir else out / "checkpoints"
    check_output_dir(out, "--output")
    check_output_dir(checkpoints, "--checkpoint-dir" if checkpoint_dir else "--output")
    training = read_structures(training_file, "training")
    with value_errors_as_input():
        checked = set()
        for member in members:
            key = json.dumps(settings_module.to_dict(member.settings), sort_keys=True)
            if key not in checked:
                checked.add(key)
                family.validate(training, target, member.settings)
        torch_device = resolve_device(device)

    # ---------------------------------------------------------------- train
    n_threads = set_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    checkpoints.mkdir(parents=True, exist_ok=True)
    log = ProgressLog(checkpoints / PROGRESS_FILENAME)
    n_steps = sorted({family.total_steps(m.settings) for m in members})
    log.write(
        f"start: {len(members)} model(s) of {family.name}, seeds {list(seeds)}, {'/'.join(map(str, n_steps))} steps "
        f"each, device {torch_device}, {n_threads} thread(s)"
    )
    click.echo(
        f"training {len(members)} model(s) of {family.name} (seeds {list(seeds)}) on {len(training)} structures, "
        f"{'/'.join(map(str, n_steps))} steps each, on {torch_device} with {n_threads} thread(s); "
        f"checkpoints in {checkpoints}"
    )
    reporter = _Reporter(log, checkpoint_every)
    with _Stopper(started, max_seconds) as stopper:
        try:
            models = train_ensemble(
                family,
                training,
                target,
                settings,
                seeds,
                grid,
                callback=reporter,
                checkpoint_dir=checkpoints,
                checkpoint_every=checkpoint_every,
                should_stop=stopper,
                device=torch_device,
            )
        except TrainingInterrupted as error:
            reporter.close()
            last = reporter.last
            if last is not None:
                # the trainer wrote the checkpoint of the group it was training, at the step it stopped
                done = f"{last.done}/{last.total}"
                if last.step < last.steps:  # else it stopped on entering the next group
                    log.write(f"checkpoint group {last.group + 1}/{last.n_groups} step {error.step}/{last.steps}")
            else:
                done = f"{error.step} of its group, before a step of this run"
            log.write(f"interrupted at step {done} ({stopper.reason}); checkpoint written")
            return {
                "status": "interrupted",
                "code": EXIT_INTERRUPTED,
                "reason": stopper.reason,
                "step": error.step,
                "done": last.done if last is not None else None,
                "total": last.total if last is not None else None,
                "message": f"training interrupted at step {done} ({stopper.reason}); the checkpoint is in "
                f"{checkpoints}: run the same command again to resume",
            }
        except TrainingDivergedError as error:
            reporter.close()
            log.write(f"diverged: {error}")
            raise DivergedError(f"training diverged: {error}") from None
        except ValueError as error:  # e.g. checkpoints of another training in --checkpoint-dir
            reporter.close()
            log.write(f"failed: {error}")
            raise InputError(str(error)) from None
        except OSError as error:  # a checkpoint could not be written: the previous one is whole (written atomically)
            reporter.close()
            log.write(f"failed: cannot write a checkpoint ({error.strerror or error})")
            raise OutputError(
                f"{'--checkpoint-dir' if checkpoint_dir else '--output'}: cannot write a checkpoint in "
                f"{str(checkpoints)!r} "
                f"({error.strerror or error}); the last complete checkpoint is kept: make room and run the same "
                "command again to resume"
            ) from None
    reporter.close()

    # ---------------------------------------------------------------- write the models
    # every model file and summary.json appear together or not at all: all are written to temporary
    # names first and renamed once each one is complete (a full disk or a kill leaves no half set)
    entries, blobs = [], []
    for index, model in enumerate(models):
        name = f"model_{index:02d}.pt"
        data = model.to_bytes()
        blobs.append(data)
        config = model.config
        entries.append(
            {
                "file": name,
                "index": index,
                "seed": config["seed"],
                "steps": config["steps"],
                "grid": config.get("ensemble", {}).get("grid", {}),
                "sha256": sha256(data),
                "losses": {k: finite_or_none(float(v)) for k, v in config["losses"].items()},
            }
        )
    summary = {
        "family": family.name,
        "target": target,
        "seeds": list(seeds),
        "grid": grid,
        "n_models": len(models),
        "device": str(torch_device),
        "threads": n_threads,
        "seconds": round(time.monotonic() - started, 3),
        "models": entries,
    }
    needed = sum(len(data) for data in blobs)
    check_output_file(out / "summary.json", "--output", needed_bytes=needed)
    with output_files(*(out / entry["file"] for entry in entries), out / "summary.json") as temporary:
        for tmp, data in zip(temporary, blobs):
            tmp.write_bytes(data)
        temporary[-1].write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for entry, model in zip(entries, models):
        losses = "  ".join(f"{k}={v:.4g}" for k, v in model.config["losses"].items())
        click.echo(f"{out / entry['file']}  seed={entry['seed']}  steps={entry['steps']}  {losses}")
    written = {entry["file"] for entry in entries}
    for stale in out.glob("model_*.pt"):  # models of an earlier, larger run into the same folder
        if stale.name not in written:
            stale.unlink()
    log.write(f"finished: {len(models)} model(s) in {out}")
    return {"status": "ok", "code": 0, "message": f"{len(models)} model(s) written to {out}", "n_models": len(models)}

"""Training an ensemble of any family: members (seeds × grid), groups, devices, threads, resume.

:func:`train_ensemble` is the one entry point used by the CLI, the calcfunction and the training
CalcJob. It validates every member before any heavy work, trains members that differ only in
:attr:`~aiida_physgen.ml.family.GeneratorFamily.vectorised` settings together in one vectorised
pass, writes a checkpoint per group in ``checkpoint_dir`` and, when such a checkpoint exists,
resumes from it (a killed or walltime-limited job continues where it stopped).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from . import settings as settings_module
from .batch import StructureBatch
from .ensemble import member_seed
from .family import GeneratorFamily, TrainedModel, get_family
from .loop import TrainingInterrupted

#: the defaults of a generation run, written once: one model per seed, candidates per model
DEFAULT_SEEDS = (0, 1, 2, 3)
DEFAULT_COUNT = 2000

__all__ = ["DEFAULT_SEEDS", "DEFAULT_COUNT", "Member", "Progress", "plan_members", "train_ensemble", "generate", "resolve_device", "set_threads"]


@dataclass
class Member:
    """One ensemble member: its seed, its grid point and its full settings."""

    index: int
    seed: int
    grid_point: dict[str, Any]
    settings: Any


@dataclass
class Progress:
    """What a progress callback receives after every step."""

    group: int  # index of the group being trained
    n_groups: int
    members: list[int]  # ensemble indices of the group's members
    step: int  # steps done in this group
    steps: int  # steps per member in this group
    done: int  # steps done over all groups
    total: int  # steps over all groups
    losses: dict[str, list[float]]  # this step's losses, per member of the group


def resolve_device(device: str | torch.device | None, check_available: bool = True) -> torch.device:
    """``'cpu'``, ``'cuda'``, ``'cuda:1'`` or ``'auto'`` (CUDA when available) as a torch device.

    ``check_available=False`` checks the spelling only: a launch on one machine may ask for the
    GPU of another (a training job on a cluster's GPU node).
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: got {device!r}, expected 'cpu', 'cuda', 'cuda:<n>' or 'auto'") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device: got {device!r}, expected 'cpu', 'cuda', 'cuda:<n>' or 'auto'")
    if check_available and resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but no CUDA device is available here")
    return resolved


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads from ``n``, else ``OMP_NUM_THREADS``, else the CPUs this process may use.

    Several training processes on one machine must not each take every core: on 2 cores that
    oversubscription was measured at 10–15× slower. A job's allocation sets ``OMP_NUM_THREADS``.
    """
    if n is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        if env.isdigit() and int(env) > 0:
            n = int(env)
        else:  # sched_getaffinity honours cgroups/taskset; it does not exist on macOS or Windows
            n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = max(1, int(n))
    torch.set_num_threads(n)
    return n


def plan_members(
    family: GeneratorFamily, settings: Mapping[str, Any] | Any | None, seeds: Sequence[int], grid: Mapping | None
) -> list[Member]:
    """Every seed × every grid combination, in the order seeds-within-grid; settings checked here."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
        raise ValueError(f"seeds: expected a non-empty list of integers, got {seeds!r}")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seeds: expected integers, got {seed!r}")
    if len(set(int(s) for s in seeds)) != len(seeds):
        raise ValueError(f"seeds: every seed must differ (two members with one seed are the same model), got {list(seeds)}")
    base = family.settings(settings)
    members = []
    for combo in settings_module.expand_grid(family.settings_class, grid):
        values = settings_module.merge(settings_module.to_dict(base), combo)
        member_settings = settings_module.from_dict(family.settings_class, values)
        for seed in seeds:
            members.append(Member(len(members), int(seed), combo, member_settings))
    return members


def _groups(family: GeneratorFamily, members: list[Member]) -> list[list[Member]]:
    groups: dict[str, list[Member]] = {}
    for member in members:
        flat = settings_module.flatten(settings_module.to_dict(member.settings))
        key = json.dumps({k: v for k, v in flat.items() if k not in family.vectorised}, sort_keys=True)
        groups.setdefault(key, []).append(member)
    return list(groups.values())


def _check_or_write_fingerprint(path: Path, family: GeneratorFamily, target, group: list[Member]) -> None:
    """A checkpoint resumes only the training it was written for: same family, target, seeds and settings."""
    fingerprint = {
        "family": family.name,
        "target": target,
        "seeds": [m.seed for m in group],
        "settings": [settings_module.to_dict(m.settings) for m in group],
    }
    text = json.dumps(fingerprint, sort_keys=True)
    if path.is_file():
        if path.read_text() != text:
            raise ValueError(
                f"checkpoint_dir: {path.parent} holds checkpoints of another training (family, target, seeds or "
                "settings differ); use an empty directory"
            )
    else:
        path.write_text(text)


def train_ensemble(
    family: str | GeneratorFamily,
    training: StructureBatch | None,
    target: Mapping[str, Any],
    settings: Mapping[str, Any] | Any | None = None,
    seeds: Sequence[int] = (0,),
    grid: Mapping[str, Any] | None = None,
    *,
    callback: Callable[[Progress], None] | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 100,
    should_stop: Callable[[], bool] | None = None,
    device: str | torch.device | None = "cpu",
) -> list[TrainedModel]:
    """Train every member; returns one :class:`TrainedModel` per member (seeds within grid points).

    :param family: a family name (entry point) or instance.
    :param training: the training structures (``None`` only for families that make their own data).
    :param target: the family-defined target (LoGAN: ``composition``, ``cell``, ``pbc``).
    :param settings: nested settings; missing keys keep the family's defaults.
    :param seeds: one member per seed, times every ``grid`` combination.
    :param grid: nested settings whose values are lists to vary over the ensemble.
    :param callback: called with a :class:`Progress` after every step.
    :param checkpoint_dir: where ``group_<i>.pt`` checkpoints go; existing ones are resumed.
    :param should_stop: polled every step; when true, checkpoints are written and
        :class:`~aiida_physgen.ml.loop.TrainingInterrupted` is raised.
    :param device: ``'cpu'``, ``'cuda'`` or ``'auto'``.
    :raises ValueError: bad target, settings, grid, seeds or training data (before any training).
    """
    family = get_family(family)
    target = family.check_target(target)
    members = plan_members(family, settings, seeds, grid)
    for member in members:
        family.validate(training, target, member.settings)
    device = resolve_device(device)
    groups = _groups(family, members)
    total = sum(family.total_steps(g[0].settings) for g in groups)
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)

    results: list[TrainedModel | None] = [None] * len(members)
    done_before = 0
    for g, group in enumerate(groups):
        steps = family.total_steps(group[0].settings)
        seeds_g = [m.seed for m in group]
        trainer = family.build_trainer(training, target, [m.settings for m in group], seeds_g, device)
        path = None
        if checkpoint_dir is not None:
            path = checkpoint_dir / f"group_{g:02d}.pt"
            _check_or_write_fingerprint(path.with_suffix(".json"), family, target, group)
            if path.is_file():
                trainer.load_checkpoint(path)

        def report(step, losses, g=g, group=group, steps=steps, done_before=done_before):
            if callback is not None:
                callback(Progress(g, len(groups), [m.index for m in group], step, steps, done_before + step, total, losses))

        trainer.train(steps, report, path, checkpoint_every, should_stop)
        final = trainer.final_losses()
        for k, member in enumerate(group):
            config = {
                "family": family.name,
                "role": family.role,
                "seed": member.seed,
                "steps": trainer.step,
                "losses": final[k],
                "hyperparameters": settings_module.to_dict(member.settings),
                "target": target,
                "architecture": family.architecture(member.settings),
                "descriptor": family.descriptor(target, member.settings),
                "ensemble": {"size": len(members), "index": member.index, "grid": member.grid_point},
                "history": trainer.history.member(k),
            }
            if training is not None:
                config["training_set"] = {"count": len(training), "formula_counts": training.formula_counts()}
            results[member.index] = TrainedModel(trainer.member_module(k), config)
        done_before += steps
    return results  # type: ignore[return-value]


def generate(
    models: Sequence[TrainedModel], count: int, seed: int, condition: Mapping[str, Any] | None = None
) -> StructureBatch:
    """``count`` structures from each model; ``info['model_index']`` says which model made each.

    Model ``i`` samples with the seed ``member_seed(seed, i)``, so adding a model never changes what
    the others generate.
    """
    if not models:
        raise ValueError("models: expected at least one generator model")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count <= 0:
        raise ValueError(f"count: got {count!r}, expected a positive number of structures per model")
    for index, model in enumerate(models):
        if model.family.role != "generator":
            raise ValueError(f"models: model {index} is a {model.family.role} ({model.family.name}), not a generator")
    batches = []
    for index, model in enumerate(models):
        batch = model.sample(count, member_seed(seed, index), condition)
        batch.info["model_index"] = np.full(len(batch), index)
        batches.append(batch)
    return StructureBatch.concatenate(batches)


__all__ += ["TrainingInterrupted"]

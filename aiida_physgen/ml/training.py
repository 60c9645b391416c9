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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

__all__ = [
    "DEFAULT_SEEDS",
    "DEFAULT_COUNT",
    "MAX_COUNT",
    "Member",
    "Progress",
    "plan_members",
    "train_ensemble",
    "generate",
    "check_same_target",
    "check_generation_size",
    "generation_bytes",
    "available_memory",
    "resolve_device",
    "set_threads",
]


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
        if not 0 <= int(seed) < 2**32:  # what NumPy's and torch's generators accept from a seed
            raise ValueError(f"seeds: got {int(seed)}, expected integers from 0 to 2**32 - 1")
    seen: set[int] = set()
    for seed in seeds:
        if int(seed) in seen:
            n = [int(s) for s in seeds].count(int(seed))
            raise ValueError(
                f"seeds: seed {int(seed)} appears {'twice' if n == 2 else f'{n} times'}; every member needs "
                f"its own seed (two members with one seed are the same model), got {[int(s) for s in seeds]}"
            )
        seen.add(int(seed))
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
                callback(
                    Progress(g, len(groups), [m.index for m in group], step, steps, done_before + step, total, losses)
                )

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
            config.update(family.member_config(trainer, k))
            if training is not None:
                config["training_set"] = {"count": len(training), "formula_counts": training.formula_counts()}
            results[member.index] = TrainedModel(trainer.member_module(k), config)
        done_before += steps
    return results  # type: ignore[return-value]


def _describe_target(model: TrainedModel) -> str:
    target = model.config.get("target")
    what = target.get("composition", target) if isinstance(target, Mapping) else target
    return f"{model.config.get('family')} {what!r}"


def check_same_target(models: Sequence[TrainedModel]) -> None:
    """Refuse models of different families or targets (composition, cell, periodicity) in one batch:
    their candidates could not be selected or relaxed together. ``ValueError`` naming the models."""

    def key(model):
        return json.dumps([model.config.get("family"), model.config.get("target")], sort_keys=True, default=str)

    groups: dict[str, list[int]] = {}
    for index, model in enumerate(models):
        groups.setdefault(key(model), []).append(index)
    if len(groups) > 1:
        parts = [f"model(s) {indices} are {_describe_target(models[indices[0]])}" for indices in groups.values()]
        first = [models[indices[0]] for indices in groups.values()]
        same_composition = len({_describe_target(m) for m in first}) == 1
        raise ValueError(
            f"models: one generation needs models of one family and target, but {'; '.join(parts)}"
            + (" (same composition, different cell or periodicity)" if same_composition else "")
            + "; generate each target separately"
        )


#: the most candidates one generation may ask for per model, whatever the memory: far beyond any
#: selection (the paper samples 2,000 to 50,000) and a typo guard (1e9 passes every other layer)
MAX_COUNT = 10_000_000

#: peak memory of a generation and its selection: ``FIXED + count · models · (A · n + B · n (n - 1) / 2 + C)``
#: bytes for ``n`` atoms per candidate. ``B`` per atom pair dominates: the vectorised minimum-distance
#: filter (:meth:`~aiida_physgen.ml.batch.StructureBatch.min_distances`) holds every pair's difference
#: vector, its fractional form and squares, ~4 × 24 bytes; ``A`` per atom covers the positions (float32
#: chunks, float64 copies when chunks and models are concatenated), numbers and atomic descriptors, ``C``
#: the structure descriptor row and PCA coordinates, ``FIXED`` the chunked descriptor and k-means buffers.
#: Calibrated by measuring the peak RSS (``ru_maxrss`` minus the RSS before) of ``generate`` followed by
#: ``select_candidates`` for 2 LoGAN models with 18-atom candidates: C5H12O (molecule) 2 × 50,000 →
#: 1.72 GB, 2 × 10,000 → 0.45 GB (so ~16 kB per candidate + ~0.13 GB fixed), an SiO2 cell (periodic)
#: 2 × 50,000 → 1.92 GB (~19 kB per candidate); generation alone ~1.4 kB per candidate. The constants
#: give 20.7 kB per 18-atom candidate, 10-25 % above the measurements. Only 18-atom runs were measured,
#: so the split between ``A`` and ``B`` follows the array sizes above rather than a fit.
BYTES_PER_ATOM = 100
BYTES_PER_PAIR = 120
BYTES_PER_CANDIDATE = 500
FIXED_BYTES = 200_000_000


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation: ``MemAvailable`` of ``/proc/meminfo`` (Linux),
    else psutil's ``available`` when psutil is installed, else ``None``."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():  # Linux
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def check_fits_in_memory(
    field: str, count: int, bytes_each: int, what: str, available_bytes: int | None = None
) -> None:
    """Refuse, before allocating, ``count`` items of about ``bytes_each`` bytes that the memory cannot hold.

    :raises ValueError: naming ``field``, with the estimate and the memory available.
    """
    available = available_memory() if available_bytes is None else available_bytes
    needed = int(count) * int(bytes_each)
    if available is not None and needed > available:
        raise ValueError(
            f"{field}: {count} {what} need about {_gigabytes(needed)} of memory, more than the "
            f"{_gigabytes(available)} available; ask for fewer"
        )


def generation_bytes(n_atoms: int, n_models: int, count: int) -> int:
    """Estimated peak bytes of generating ``count`` candidates of ``n_atoms`` atoms from each of
    ``n_models`` models and selecting among them (see :data:`BYTES_PER_ATOM`)."""
    per_candidate = BYTES_PER_ATOM * n_atoms + BYTES_PER_PAIR * n_atoms * (n_atoms - 1) // 2 + BYTES_PER_CANDIDATE
    return FIXED_BYTES + int(n_models) * int(count) * per_candidate


def _gigabytes(n: float) -> str:
    return f"{n / 1e9:.0f} GB" if n >= 10e9 else f"{n / 1e9:.1f} GB"


def check_generation_size(
    family: str | GeneratorFamily,
    target: Mapping[str, Any],
    n_models: int,
    count: int,
    available_bytes: int | None = None,
) -> int | None:
    """Refuse, before any sampling, a generation that cannot fit in memory.

    :param family: the family (name or instance) of the models.
    :param target: their target (normalised or not).
    :param n_models: how many models generate.
    :param count: candidates per model.
    :param available_bytes: the memory to compare with; by default :func:`available_memory`.
    :returns: the estimated bytes (``None`` when the family cannot tell the structures' size).
    :raises ValueError: naming ``count``, when ``count`` exceeds :data:`MAX_COUNT` or the estimate
        (:func:`generation_bytes`) exceeds the available memory.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count <= 0:
        raise ValueError(f"count: got {count!r}, expected a positive number of structures per model")
    if isinstance(n_models, bool) or not isinstance(n_models, (int, np.integer)) or n_models <= 0:
        raise ValueError(f"models: got {n_models!r} models, expected at least one")
    family = get_family(family)
    n_atoms = family.atoms_per_structure(family.check_target(target))
    needed = None if n_atoms is None else generation_bytes(n_atoms, n_models, count)
    available = available_memory() if available_bytes is None else int(available_bytes)
    if needed is not None and available is not None and needed > available:
        fits = max(0, (available - FIXED_BYTES) // max(1, (needed - FIXED_BYTES) // int(count)))
        raise ValueError(
            f"count: {int(count)} candidates per model × {int(n_models)} models need about {_gigabytes(needed)}; "
            f"about {_gigabytes(available)} are available ({n_atoms} atoms per candidate); expected at most about "
            f"{min(fits, MAX_COUNT)} candidates per model"
        )
    if count > MAX_COUNT:
        raise ValueError(
            f"count: got {int(count)} candidates per model, expected at most {MAX_COUNT} (the selection keeps a few "
            "dozen representatives; a few thousand candidates per model are plenty)"
        )
    return needed


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
    check_same_target(models)
    family = models[0].family
    check_generation_size(family, models[0].config["target"], len(models), int(count))
    batches = []
    for index, model in enumerate(models):
        batch = model.sample(count, member_seed(seed, index), condition)
        batch.info["model_index"] = np.full(len(batch), index)
        batches.append(batch)
    return StructureBatch.concatenate(batches)


__all__ += ["TrainingInterrupted"]

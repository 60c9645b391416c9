"""One-line launchers for the common cases (in the spirit of aiida-shell).

from aiida_physgen.launch import gpaw_code, screening_builder
builder = screening_builder("logan/C5H12O_training.extxyz", "C5H12O", box=9.5, code=gpaw_code())
run(builder)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from aiida import orm

# gpaw_code and localhost live with the other code checks; re-exported here, where users import them from
from .calculations.codes import DEFAULT_GPAW_CODE, gpaw_code, localhost  # noqa: F401
from .data.structure_set import StructureSet
from .engines import DEFAULT_ENGINE
from .resources import ROOT as RESOURCES

__all__ = ["gpaw_code", "localhost", "training_set", "generation_inputs", "screening_builder"]


def training_set(source: str | Path | Sequence | StructureSet) -> StructureSet:
    """A ``physgen.structure_set`` from a file (a shipped resource name like ``'logan/C5H12O_training.extxyz'``
    works too), a list of ``ase.Atoms``, or an existing node."""
    if isinstance(source, StructureSet):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file() and (RESOURCES / str(source)).is_file():
            path = RESOURCES / str(source)
        return StructureSet.from_file(path)
    return StructureSet.from_ase(list(source))


def generation_inputs(
    training,
    composition: str | None = None,
    *,
    family: str = "logan",
    target: dict[str, Any] | None = None,
    cell=None,
    box: float | None = None,
    pbc: Sequence[bool] | None = None,
    protocol: str | None = None,
    seeds: Sequence[int] | None = None,
    settings: dict[str, Any] | None = None,
    grid: dict[str, list] | None = None,
    count: int | None = None,
    n_clusters: int | None = None,
    n_components: int | None = None,
    generation_seed: int = 0,
    selection_seed: int = 0,
    selection_settings: dict[str, Any] | None = None,
    training_code: orm.AbstractCode | None = None,
    training_options: dict[str, Any] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Inputs of :class:`~aiida_physgen.workflows.generation.GenerationWorkChain` from plain values.

    The family's generation ``protocol`` (default: its default protocol) fills everything not given.
    For LoGAN give ``composition`` and either ``box`` (a cubic, non-periodic box for molecules) or
    ``cell`` (+ ``pbc``, periodic by default); any other family takes its ``target`` dictionary.
    """
    from .workflows.generation import GenerationWorkChain

    if target is None:
        if composition is None or (box is None) == (cell is None):
            raise ValueError(
                "target: give target=..., or composition with exactly one of box (molecule) or cell (crystal)"
            )
        matrix = np.eye(3) * float(box) if box is not None else np.asarray(cell, dtype=float)
        periodic = [False] * 3 if box is not None else [bool(p) for p in (pbc if pbc is not None else [True] * 3)]
        target = {"composition": composition, "cell": matrix.tolist(), "pbc": periodic}
    overrides: dict[str, Any] = {}
    if seeds is not None:
        overrides["seeds"] = [int(s) for s in seeds]
    if settings:
        overrides["settings"] = settings
    if grid:
        overrides["grid"] = grid
    if count is not None:
        overrides["count"] = int(count)
    selection = dict(selection_settings or {})
    if n_clusters is not None:
        selection["n_clusters"] = n_clusters
    if n_components is not None:
        selection["n_components"] = n_components
    if selection:
        overrides["selection"] = selection
    builder = GenerationWorkChain.get_builder_from_protocol(
        training_set(training),
        target,
        family=family,
        protocol=protocol,
        overrides=overrides,
        training_code=training_code,
        generation_seed=generation_seed,
        selection_seed=selection_seed,
        **({"training_options": training_options} if training_options else {}),
        **({"device": device} if device else {}),
    )
    return {key: builder[key] for key in builder if key != "metadata"}


def screening_builder(
    training,
    composition: str,
    *,
    code: orm.AbstractCode | None = None,
    engine: str = DEFAULT_ENGINE,
    protocol: str | None = None,
    generation_protocol: str | None = None,
    relax_overrides: dict[str, Any] | None = None,
    dos: bool = True,
    group_label: str | None = None,
    funnel: bool = True,
    dft_budget: int | None = None,
    cheap_engine: str | None = None,
    cheap_settings: dict[str, Any] | None = None,
    cheap_model: orm.Data | None = None,
    max_concurrent_relaxations: int | None = None,
    reuse_relaxations: bool = True,
    **generation: Any,
):
    """A ready :class:`~aiida_physgen.workflows.screening.ScreeningWorkChain` builder from plain values;
    ``generation`` takes the keywords of :func:`generation_inputs`; ``protocol`` is the DFT protocol and
    ``generation_protocol`` the family's generation protocol (its default when ``None``). With ``funnel``
    (the default) the representatives (``n_clusters`` of them: choose many more than ``dft_budget``,
    e.g. 10×) are relaxed with the cheap tier first, and DFT gets one per distinct sound basin, at most
    ``dft_budget``; ``funnel=False`` sends every representative straight to DFT. ``cheap_engine`` names the
    cheap tier's batch engine (the work chain's default when ``None``) and ``cheap_model`` the trained model an
    engine such as ``ednn`` needs. At most
    ``max_concurrent_relaxations`` relaxations run at once (the work chain's default when ``None``), and
    relaxations that finished before with the same structure and settings are reused unless
    ``reuse_relaxations=False``."""
    from .workflows.screening import ScreeningWorkChain

    builder = ScreeningWorkChain.get_builder()
    builder.generation = generation_inputs(training, composition, protocol=generation_protocol, **generation)
    builder.engine = orm.Str(engine)
    if code is None:
        from .engines import get_engine

        code = get_engine(engine, "structure").default_code()
        if code is None:
            raise ValueError(f"code: the {engine!r} engine has no default code; pass code=orm.load_code('<label>')")
    builder.code = code
    if protocol is not None:  # else the engine's default protocol (its YAML file's default_protocol)
        builder.protocol = orm.Str(protocol)
    builder.dos = orm.Bool(dos)
    if relax_overrides:
        builder.relax_overrides = orm.Dict(relax_overrides)
    if group_label:
        builder.group_label = orm.Str(group_label)
    builder.funnel = orm.Bool(funnel)
    if dft_budget is not None:
        builder.dft_budget = orm.Int(dft_budget)
    if cheap_engine is not None:
        builder.cheap_engine = orm.Str(cheap_engine)
    if cheap_settings:
        builder.cheap_settings = orm.Dict(cheap_settings)
    if cheap_model is not None:
        builder.cheap_model = cheap_model
    if max_concurrent_relaxations is not None:
        builder.max_concurrent_relaxations = orm.Int(max_concurrent_relaxations)
    builder.reuse_relaxations = orm.Bool(reuse_relaxations)
    return builder

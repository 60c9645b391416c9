"""Tiny but real inputs of the physgen work chains, shared by the reliability tests."""

from __future__ import annotations

from ase.build import molecule

from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.launch import generation_inputs, screening_builder
from aiida_physgen.workflows.generation import GenerationWorkChain

# two training steps of small networks: seconds per chain; the tests check plumbing, not quality
TINY = {
    "loop": {"steps": 2, "batch_size": 4},
    "rattle_copies": 0,
    "hidden": [16, 8],
    "critic_hidden": [8],
    "descriptor": {"r_cut": 3.0, "n_max": 2, "l_max": 2, "max_neighbours": 8},
}
# tiny LCAO settings: seconds per relaxation of a water molecule (as tests/aiida/test_screening.py, but BFGS: 11-25
# steps where FIRE took 41-60 on rattled waters. Not in tests/aiida, where one candidate of a 3-step model is
# pushed out of its 5 Å box by BFGS's first step and GPAW stops with GridBoundsError)
QUICK = {
    "gpaw": {
        "parameters": {"basis": "sz(dzp)", "h": 0.3, "fmax": 0.3, "max_steps": 60, "dos_npts": 101, "optimizer": "BFGS"}
    },
    "vacuum": 2.0,
}


def water_like():
    """H2O and H2O2: a training set whose target H2O relaxes in seconds."""
    return [molecule("H2O"), molecule("H2O2"), molecule("H2O")]


def water_set() -> StructureSet:
    return StructureSet.from_ase(water_like())


def tiny_generation(
    training,
    generation_seed: int = 0,
    settings: dict | None = None,
    count: int = 40,
    selection: dict | None = None,
    **extra,
):
    """A ``physgen.generation`` builder: 1 seed, 2 steps, 40 candidates (``count``), 3 representatives (two-step models
    put every atom near the box centre: the min-distance filter is off, as in tests/aiida/test_generation.py)."""
    builder = GenerationWorkChain.get_builder()
    builder._update(
        generation_inputs(
            training,
            "H2O",
            box=5.0,
            seeds=[0],
            settings=settings or TINY,
            count=count,
            n_clusters=3,
            n_components=2,
            generation_seed=generation_seed,
            selection_settings={"min_distance": 0.0, **(selection or {})},
            **extra,
        )
    )
    return builder


def tiny_screening(code, training=None, settings: dict | None = None):
    """A ``physgen.screening`` builder: 1 seed, 3 steps, 3 representatives, GPAW protocol 'fast'."""
    return screening_builder(
        training if training is not None else water_like(),
        "H2O",
        box=5.0,
        code=code,
        seeds=[0],
        settings=settings or {**TINY, "loop": {"steps": 3, "batch_size": 4}},
        count=40,
        n_clusters=3,
        n_components=2,
        relax_overrides=QUICK,
        protocol="fast",
        funnel=False,
        reuse_relaxations=False,  # every test here needs its relaxations to run, not to come from an earlier test
        max_concurrent_relaxations=3,  # all three in flight at once (the default is the machine's cores)
    )

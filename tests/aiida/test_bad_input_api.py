"""The API's bad-input table: every row is refused with a message naming the field, before any heavy
work, with no traceback leaking out as another exception type and nothing stored half-way.

Three kinds of rows:
* ``launch``: a work chain launch; ``ValueError`` from the input validation, no node stored;
* ``function``: a calcfunction; exit status 300, the message naming the field, no output created;
* ``construct``: building a node or a builder; ``ValueError`` (or a subclass) before anything is stored.

The command line has its own table (tests/test_cli_bad_input.py).
"""

from __future__ import annotations

import io
import sys
import time

import numpy as np
import pytest
import torch
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node
from ase import Atoms
from ase.build import molecule
from tiny_settings import TINIEST as TINY

from aiida_physgen.calculations.functions import deduplicate_minima, generate, select_representatives, train
from aiida_physgen.data.generator_model import GeneratorModel
from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.launch import gpaw_code, screening_builder
from aiida_physgen.ml.training import train_ensemble
from aiida_physgen.workflows.generation import GenerationWorkChain
from aiida_physgen.workflows.gpaw_base import GpawBaseWorkChain

SELECTION = {
    "n_components": 2,
    "n_clusters": 2,
    "min_distance": 0.0,
    "descriptor": {"r_cut": 3.0, "n_max": 2, "l_max": 2, "max_neighbours": 8},
}
BOX = [[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]]


def count_nodes() -> int:
    return orm.QueryBuilder().append(orm.Node).count()


def waters() -> list[Atoms]:
    return [molecule("H2O"), molecule("H2O2"), molecule("H2O")]


def squashed() -> list[Atoms]:
    bad = molecule("H2O")
    bad.positions[1] = bad.positions[0] + [0.3, 0, 0]
    return [molecule("H2O"), bad]


# ------------------------------------------------------------------------------------------ launches
def generation(**changes):
    builder = GenerationWorkChain.get_builder()
    builder.family = orm.Str("logan")
    builder.training = StructureSet.from_ase(changes.pop("structures", waters()))
    builder.target = orm.Dict(changes.pop("target", {"composition": "H2O", "cell": BOX, "pbc": False}))
    builder.seeds = orm.List(changes.pop("seeds", [0]))
    builder.settings = orm.Dict(changes.pop("settings", TINY))
    builder.count = orm.Int(changes.pop("count", 4))
    builder.selection_settings = orm.Dict(changes.pop("selection", SELECTION))
    for key, value in changes.items():
        builder[key] = value
    return builder


def with_loop(**loop):
    return {**TINY, "loop": {**TINY["loop"], **loop}}


def screening(code_factory=None, **kwargs):
    code = code_factory() if code_factory else gpaw_code()
    options = {"seeds": [0], "settings": TINY, "count": 4, "n_clusters": 2, "n_components": 2, **kwargs}
    return screening_builder(waters(), "H2O", box=5.0, code=code, **options)


def _code(label: str, executable: str) -> orm.InstalledCode:
    computer = gpaw_code().computer
    try:
        return orm.load_code(f"{label}@{computer.label}")
    except Exception:  # noqa: BLE001 - not made yet
        return orm.InstalledCode(label=label, computer=computer, filepath_executable=executable).store()


def bash_code():
    return _code("bash", "/bin/bash")


def missing_code():
    return _code("missing-python", "/nonexistent/python3")


LAUNCHES = {
    "unknown family": (lambda: generation(family=orm.Str("nope")), "family"),
    "bad composition": (
        lambda: generation(target={"composition": "H2Q", "cell": BOX, "pbc": False}),
        "target.composition",
    ),
    "cell not 3x3": (
        lambda: generation(target={"composition": "H2O", "cell": [[5, 0, 0]], "pbc": False}),
        "target.cell",
    ),
    "zero-volume cell": (
        lambda: generation(target={"composition": "H2O", "cell": [[5, 0, 0]] * 3, "pbc": False}),
        "target.cell",
    ),
    "pbc a string": (lambda: generation(target={"composition": "H2O", "cell": BOX, "pbc": "yes"}), "target.pbc"),
    "unknown target key": (
        lambda: generation(target={"composition": "H2O", "cell": BOX, "pbc": False, "x": 1}),
        "target",
    ),
    "element not in training": (
        lambda: generation(target={"composition": "CH4", "cell": BOX, "pbc": False}),
        "training",
    ),
    "no seeds": (lambda: generation(seeds=[]), "seeds"),
    "duplicate seeds": (lambda: generation(seeds=[1, 1]), "seeds"),
    "seed not an integer": (lambda: generation(seeds=["a"]), "seeds"),
    "negative seed": (lambda: generation(seeds=[-1]), "seeds: got -1"),
    "a surrogate asked to generate": (lambda: generation(family=orm.Str("ednn")), "cannot generate"),
    "unknown setting": (lambda: generation(settings={"loop": {"stepz": 3}}), "settings.loop.stepz"),
    "zero steps": (lambda: generation(settings=with_loop(steps=0)), "steps"),
    "negative learning rate": (lambda: generation(settings=with_loop(lr_generator=-1e-4)), "lr_generator"),
    "zero batch size": (lambda: generation(settings=with_loop(batch_size=0)), "batch_size"),
    "unknown grid path": (lambda: generation(grid=orm.Dict({"loop": {"stepz": [1, 2]}})), "grid"),
    "grid value not a list": (lambda: generation(grid=orm.Dict({"loop": {"steps": 3}})), "grid"),
    "zero count": (lambda: generation(count=0), "count"),
    "negative count": (lambda: generation(count=-5), "count"),
    "absurd count": (lambda: generation(count=10**9), "count"),
    "too many clusters": (lambda: generation(selection={**SELECTION, "n_clusters": 5}), "n_clusters"),
    "zero components": (lambda: generation(selection={**SELECTION, "n_components": 0}), "n_components"),
    "unknown selection key": (lambda: generation(selection={**SELECTION, "bogus": 1}), "bogus"),
    "unknown device": (lambda: generation(device=orm.Str("tpu")), "device"),
    "atoms 0.3 Å apart in training": (lambda: generation(structures=squashed()), "training"),
    "bash as the training code": (lambda: generation(training_code=bash_code()), "training_code"),
    "training option typo": (
        lambda: generation(training_code=gpaw_code(), training_options=orm.Dict({"queue_nam": "x"})),
        "queue_nam",
    ),
    "resource the scheduler does not know": (
        lambda: generation(training_code=gpaw_code(), training_options=orm.Dict({"resources": {"num_cores": 2}})),
        "training_options.resources",
    ),
    "relax override typo": (lambda: screening(relax_overrides={"gpaw": {"parameters": {"ecutt": 300}}}), "ecutt"),
    "zero DFT budget": (lambda: _with(screening(), dft_budget=orm.Int(0)), "dft_budget"),
    "cheap setting typo": (lambda: screening(cheap_settings={"fmaxx": 0.1}), "cheap_settings.fmaxx"),
    "negative cheap fmax": (lambda: screening(cheap_settings={"fmax": -1.0}), "cheap_settings.fmax"),
    "unknown engine": (lambda: _with(screening(), engine=orm.Str("castep")), "engine"),
    "unknown GPAW protocol": (lambda: _with(screening(), protocol=orm.Str("precise")), "protocol"),
    "bash as the GPAW code": (lambda: screening(bash_code), "code"),
    "missing executable": (lambda: screening(missing_code), "code"),
}


def _with(builder, **values):
    for key, value in values.items():
        builder[key] = value
    return builder


@pytest.mark.parametrize("name", sorted(LAUNCHES))
def test_bad_launch_is_refused_before_anything_runs(name, gpaw_code):
    make, field = LAUNCHES[name]
    try:
        builder = make()
    except ValueError as error:  # some are refused while building already: just as good
        assert field in str(error), str(error)
        return
    before = count_nodes()
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        run_get_node(builder)
    assert field in str(info.value), str(info.value)
    assert time.perf_counter() - start < 5.0
    assert count_nodes() == before, "a refused launch stored nodes"


# ------------------------------------------------------------------------------------------ calcfunctions
@pytest.fixture(scope="module")
def models(aiida_profile):
    """Two tiny stored models: one for H2O, one for H2O2 (different targets)."""
    out = {}
    for formula in ("H2O", "H2O2"):
        (model,) = train_ensemble(
            "logan",
            StructureSet.from_ase(waters()).get_batch(),
            {"composition": formula, "cell": BOX, "pbc": False},
            TINY,
            seeds=[0],
        )
        out[formula] = GeneratorModel.from_model(model).store()
    return out


def _candidates():
    return StructureSet.from_ase(waters())  # a set with NaN positions cannot be made: see the construct rows


FUNCTIONS = {
    "generate: an Int as a model": (
        lambda m: generate.run_get_node(count=orm.Int(2), seed=orm.Int(0), model_00=orm.Int(3)),
        "models",
    ),
    "generate: no model": (lambda m: generate.run_get_node(count=orm.Int(2), seed=orm.Int(0)), "models"),
    "generate: zero count": (
        lambda m: generate.run_get_node(count=orm.Int(0), seed=orm.Int(0), model_00=m["H2O"]),
        "count",
    ),
    "generate: absurd count": (
        lambda m: generate.run_get_node(count=orm.Int(10**9), seed=orm.Int(0), model_00=m["H2O"]),
        "count",
    ),
    "generate: models of different targets": (
        lambda m: generate.run_get_node(count=orm.Int(2), seed=orm.Int(0), a=m["H2O"], b=m["H2O2"]),
        "H2O2",
    ),
    "select: unknown setting": (
        lambda m: select_representatives.run_get_node(
            candidates=_candidates(), seed=orm.Int(0), settings=orm.Dict({"bogus": 1})
        ),
        "bogus",
    ),
    "select: zero clusters": (
        lambda m: select_representatives.run_get_node(
            candidates=_candidates(), seed=orm.Int(0), settings=orm.Dict({"n_clusters": 0})
        ),
        "n_clusters",
    ),
    "deduplicate: no energy": (
        lambda m: deduplicate_minima.run_get_node(
            structure_a=orm.StructureData(ase=molecule("H2O")), parameters_a=orm.Dict({"x": 1})
        ),
        "energy",
    ),
    "deduplicate: structure without parameters": (
        lambda m: deduplicate_minima.run_get_node(structure_a=orm.StructureData(ase=molecule("H2O"))),
        "parameters_",
    ),
    "deduplicate: nothing": (lambda m: deduplicate_minima.run_get_node(), "structure_"),
    "train: zero steps": (
        lambda m: train.run_get_node(
            training=StructureSet.from_ase(waters()),
            family=orm.Str("logan"),
            target=orm.Dict({"composition": "H2O", "cell": BOX, "pbc": False}),
            seeds=orm.List([0]),
            settings=orm.Dict(with_loop(steps=0)),
        ),
        "steps",
    ),
    "train: learning rate a string": (
        lambda m: train.run_get_node(
            training=StructureSet.from_ase(waters()),
            family=orm.Str("logan"),
            target=orm.Dict({"composition": "H2O", "cell": BOX, "pbc": False}),
            seeds=orm.List([0]),
            settings=orm.Dict(with_loop(lr_critic="fast")),
        ),
        "lr_critic",
    ),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_bad_calcfunction_input_ends_on_300_without_outputs(name, models):
    call, field = FUNCTIONS[name]
    start = time.perf_counter()
    result, node = call(models)
    assert node.exit_status == 300, (node.exit_status, node.exit_message)
    assert field in node.exit_message, node.exit_message
    assert not result and node.base.links.get_outgoing(link_type=LinkType.CREATE).all() == []
    assert time.perf_counter() - start < 10.0


# ------------------------------------------------------------------------------------------ nodes and builders
def _model_bytes(models, change) -> bytes:
    blob = torch.load(io.BytesIO(models["H2O"].get_model_bytes()), map_location="cpu", weights_only=True)
    change(blob)
    handle = io.BytesIO()
    torch.save(blob, handle)
    return handle.getvalue()


def _drop_architecture(blob):
    del blob["config"]["architecture"]


def _shrink_first_weight(blob):
    key = next(iter(blob["state_dict"]))
    blob["state_dict"][key] = blob["state_dict"][key][..., :1].clone()


def _write(tmp_path, name, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _nan_structure():
    atoms = molecule("H2O")
    atoms.positions[0, 0] = np.nan
    return atoms


CONSTRUCT = {
    "set of no structures": (lambda tmp, m: StructureSet.from_ase([]), "structures"),
    "set with NaN positions": (lambda tmp, m: StructureSet.from_ase([molecule("H2O"), _nan_structure()]), "positions"),
    "binary file as extxyz": (
        lambda tmp, m: StructureSet.from_file(_write(tmp, "junk.extxyz", bytes(range(256)))),
        "junk.extxyz",
    ),
    "empty file": (lambda tmp, m: StructureSet.from_file(_write(tmp, "empty.xyz", b"")), "empty.xyz"),
    "text that is no xyz": (
        lambda tmp, m: StructureSet.from_file(_write(tmp, "notes.xyz", b"hello\nworld\n")),
        "notes.xyz",
    ),
    "missing file": (lambda tmp, m: StructureSet.from_file(tmp / "nope.extxyz"), "nope.extxyz"),
    "junk bytes as a model": (lambda tmp, m: GeneratorModel(b"not a model"), "model"),
    "model without architecture": (lambda tmp, m: GeneratorModel(_model_bytes(m, _drop_architecture)), "architecture"),
    "model with mismatched weights": (lambda tmp, m: GeneratorModel(_model_bytes(m, _shrink_first_weight)), "model"),
    "GPAW builder with NaN positions": (
        lambda tmp, m: GpawBaseWorkChain.get_builder_from_protocol(
            gpaw_code(), orm.StructureData(ase=_nan_structure())
        ),
        "structure",
    ),
    "misspelt GPAW code label": (lambda tmp, m: gpaw_code("gpaw-pyhton"), "code"),
}


@pytest.mark.parametrize("name", sorted(CONSTRUCT))
def test_bad_node_or_builder_is_refused_before_storing(name, models, tmp_path, gpaw_code):
    make, field = CONSTRUCT[name]
    before = count_nodes()
    with pytest.raises(ValueError) as info:
        make(tmp_path, models)
    assert field in str(info.value), str(info.value)
    assert count_nodes() == before


def test_table_size():
    """The table the closing note quotes: how many bad inputs are tried through the API."""
    assert len(LAUNCHES) + len(FUNCTIONS) + len(CONSTRUCT) >= 50
    print(
        f"API bad inputs: {len(LAUNCHES)} launches, {len(FUNCTIONS)} calcfunctions, {len(CONSTRUCT)} nodes/builders",
        file=sys.stderr,
    )


def test_the_screening_builder_takes_the_cheap_tier(gpaw_code):
    """``screening_builder(cheap_engine=..., cheap_model=...)`` sets the cheap tier (it raised TypeError)."""
    builder = screening(cheap_engine="lammps")
    assert builder.cheap_engine.value == "lammps" and "cheap_model" not in builder

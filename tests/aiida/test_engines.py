"""The engine registry (entry-point group ``aiida_physgen.engines``): both tiers are found by name, checked at
launch, and a third-party batch engine (tests/plugins/physgen_toy/physgen_toy/engine.py) drives the screening's
cheap tier with no change to aiida_physgen."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node
from ase.build import molecule
from tiny_settings import QUICK, TINY

from aiida_physgen.engines import BatchRelaxationEngine, RelaxationEngine, available_engines, get_engine
from aiida_physgen.launch import screening_builder
from aiida_physgen.workflows.screening import validate_screening_inputs


@pytest.fixture
def toy_engine(toy_plugins):
    assert "toy_emt" in available_engines("batch")


def water_screening(gpaw_code, **kwargs):
    return screening_builder(
        [molecule("H2O"), molecule("H2O2"), molecule("H2O")],
        "H2O",
        box=5.0,
        code=gpaw_code,
        seeds=[0],
        settings=TINY,
        count=12,
        n_clusters=4,
        n_components=2,
        relax_overrides=QUICK,
        **kwargs,
    )


def test_shipped_engines_are_registered_by_granularity():
    assert {"gpaw", "cheap"} <= set(available_engines())
    assert "gpaw" in available_engines("structure") and "gpaw" not in available_engines("batch")
    assert "cheap" in available_engines("batch") and "cheap" not in available_engines("structure")
    assert isinstance(get_engine("gpaw", "structure"), RelaxationEngine)
    assert isinstance(get_engine("cheap", "batch"), BatchRelaxationEngine)
    assert get_engine("cheap") is get_engine("cheap")  # one instance per entry point


@pytest.mark.parametrize(
    "name, granularity, field, expected",
    [
        ("nope", None, "engine", "engine: unknown engine 'nope'"),
        ("cheap", "structure", "engine", "engine: unknown relaxation engine 'cheap'; expected one of ['gpaw', 'vasp']"),
        ("gpaw", "batch", "cheap_engine", "cheap_engine: unknown batch relaxation engine 'gpaw'"),
    ],
)
def test_unknown_or_wrong_kind_of_engine_is_named(name, granularity, field, expected):
    with pytest.raises(ValueError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        get_engine(name, granularity, field=field)


def test_cheap_engine_checks_its_settings_and_packages(monkeypatch):
    import importlib.util

    engine = get_engine("cheap", "batch")
    assert engine.validate(None, periodic=False) is None
    assert engine.validate({"fmax": 0.1, "method": "chgnet"}, periodic=True) is None
    assert engine.validate({"fmax": -1}).startswith("settings.fmax")
    assert engine.validate([1, 2]).startswith("settings: got list")
    # a method forced on the other kind of structure is named at launch, not after the training
    assert engine.validate({"method": "chgnet"}, periodic=False).startswith("settings.method: 'chgnet' relaxes")
    assert engine.validate({"method": "gfn2-xtb"}, periodic=True).startswith("settings.method: 'gfn2-xtb' relaxes")
    assert engine.validate({"method": "gfn2-xtb"}, periodic=None) is None  # kind not known yet
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "chgnet" else real(name, *a))
    assert engine.validate(None, periodic=False) is None  # molecules need only tblite
    assert "'chgnet' package" in engine.validate(None, periodic=True)
    assert "'chgnet' package" in engine.validate(None, periodic=None)  # either kind: both packages


def test_screening_refuses_an_unknown_cheap_engine_at_launch(gpaw_code):
    builder = water_screening(gpaw_code)
    builder.cheap_engine = orm.Str("gfn2")
    message = validate_screening_inputs(builder._inputs(prune=True))
    expected = available_engines("batch")
    assert message == f"cheap_engine: unknown batch relaxation engine 'gfn2'; expected one of {expected}"
    assert "cheap" in available_engines("batch")
    builder.funnel = orm.Bool(False)  # no funnel, no cheap engine needed
    assert validate_screening_inputs(builder._inputs(prune=True)) is None


def test_third_party_engine_settings_are_checked_by_the_engine(gpaw_code, toy_engine):
    builder = water_screening(gpaw_code, cheap_settings={"steps": 3})
    builder.cheap_engine = orm.Str("toy_emt")
    assert validate_screening_inputs(builder._inputs(prune=True)) == (
        "cheap_settings.steps: unknown setting; expected some of ['fmax', 'max_steps']"
    )


@pytest.mark.slow
def test_third_party_batch_engine_runs_the_cheap_tier(gpaw_code, toy_engine):
    builder = water_screening(gpaw_code, dft_budget=1, cheap_settings={"fmax": 0.2})
    builder.cheap_engine = orm.Str("toy_emt")
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    cheap = node.base.links.get_outgoing(link_label_filter="relax_cheap").one().node
    assert cheap.process_label == "relax_emt"  # the plugin's own calcfunction ran the tier
    relaxed = results["cheap_relaxed"]
    assert relaxed.pk in {n.pk for n in cheap.base.links.get_outgoing().all_nodes()}
    assert len(relaxed) == 4 and "cheap_energy" in relaxed.get_batch().info
    assert results["funnel"]["n_picked"] == 1 and results["report"]["n_relaxed"] == 1

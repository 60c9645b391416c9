"""A third-party package adds one plug-in of every kind and a screening uses all four, with no change to
aiida_physgen (issue 25).

``tests/plugins/physgen_toy`` is a package of its own (``pyproject.toml`` + ``physgen_toy/``), registered only
by the entry points of its ``pyproject.toml`` (the ``toy_plugins`` fixture writes its dist-info to a temporary
folder on ``sys.path``, as ``pip install -e`` would): the ``toy`` family, the ``toy_compact`` validity check,
the ``toy_emt`` cheap engine and the ``toy_energy`` assessor. One ``physgen.screening`` trains the toy family,
keeps what ``toy_compact`` accepts, relaxes the representatives with EMT, sends the sound basins to real GPAW
and measures the result with ``toy_energy`` (and the package's own ``discovery``).
"""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from tiny_settings import QUICK

from aiida_physgen.data.structure_set import StructureSet
from aiida_physgen.engines import available_engines, get_engine
from aiida_physgen.ml.family import available_families, get_family
from aiida_physgen.screening.assessors import available_assessors, get_assessor
from aiida_physgen.screening.validity import available_validity_checks, get_validity_check
from aiida_physgen.workflows.screening import ScreeningWorkChain

#: the plug-ins of the toy package, by entry-point group
TOY = {
    "aiida_physgen.families": "toy",
    "aiida_physgen.validity": "toy_compact",
    "aiida_physgen.engines": "toy_emt",
    "aiida_physgen.assessors": "toy_energy",
}
# tiny LCAO settings: seconds per relaxation of a water molecule


def _plugins():
    return {
        "aiida_physgen.families": available_families(),
        "aiida_physgen.validity": available_validity_checks(),
        "aiida_physgen.engines": available_engines("batch"),
        "aiida_physgen.assessors": available_assessors(),
    }


def toy_screening(code, **generation):
    """A screening that uses the four plug-ins of the toy package: family, validity, cheap engine, assessor."""
    from physgen_toy.family import water_molecules

    builder = ScreeningWorkChain.get_builder()
    gen = builder.generation
    gen.family = orm.Str("toy")
    gen.training = StructureSet.from_ase(water_molecules(6))
    gen.target = orm.Dict({"composition": "H2O", "box": 6.0})
    gen.seeds = orm.List([0])
    gen.settings = orm.Dict({"loop": {"steps": 20}})
    gen.count = orm.Int(60)
    gen.validity = orm.Str("toy_compact")
    gen.validity_settings = orm.Dict({"min_distance": 0.7, "max_extent": 3.0})
    gen.selection_settings = orm.Dict(
        {"n_clusters": 3, "n_components": 2, "min_distance": 0.0, "descriptor": {"n_max": 2, "l_max": 2}}
    )
    for key, value in generation.items():
        gen[key] = value
    builder.code = code
    builder.relax_overrides = orm.Dict(QUICK)
    builder.cheap_engine = orm.Str("toy_emt")
    builder.cheap_settings = orm.Dict({"fmax": 0.1})
    builder.dft_budget = orm.Int(2)
    builder.reuse_relaxations = orm.Bool(False)
    builder.assessors = orm.Dict({"toy_energy": {"bins": 5}, "discovery": {"smiles": ["O"]}})
    return builder


def test_the_toy_package_registers_one_plugin_of_each_kind_by_its_own_entry_points(toy_plugins):
    import tomllib

    declared = tomllib.loads((toy_plugins / "pyproject.toml").read_text())["project"]["entry-points"]
    points = importlib.metadata.distribution("physgen-toy").entry_points
    assert {(ep.group, ep.name, ep.value) for ep in points} == {
        (group, name, value) for group, names in declared.items() for name, value in names.items()
    }
    for group, name in TOY.items():
        assert name in _plugins()[group], group
    loaded = [
        get_family("toy"),
        get_validity_check("toy_compact"),
        get_engine("toy_emt", "batch"),
        get_assessor("toy_energy"),
    ]
    assert [type(plugin).__module__ for plugin in loaded] == [
        "physgen_toy.family",
        "physgen_toy.validity",
        "physgen_toy.engine",
        "physgen_toy.assessor",
    ]


def test_without_the_package_none_of_its_plugins_is_known():
    for group, name in TOY.items():
        assert name not in _plugins()[group], group
    with pytest.raises(ValueError, match=r"validity: unknown validity check 'toy_compact'; expected one of \["):
        get_validity_check("toy_compact")
    with pytest.raises(ValueError, match="assessors: unknown assessor 'toy_energy'"):
        get_assessor("toy_energy")


@pytest.mark.parametrize(
    "port, value, message",
    [
        ("validity_settings", {"max_extent": 0.5}, "max_extent: got 0.5, expected a distance in Å above min_distance"),
        ("cheap_settings", {"fmax": -1}, "cheap_settings.fmax: got -1, expected a positive force in eV/Å"),
        ("assessors", {"toy_energy": {"bins": 0}}, "assessors.toy_energy.bins: got 0, expected a positive number"),
        ("assessors", {"toy_energy": {}, "toy_missing": {}}, "assessors.toy_missing: unknown assessor 'toy_missing'"),
    ],
)
def test_the_plugins_check_their_settings_at_launch(toy_plugins, gpaw_code, port, value, message):
    builder = toy_screening(gpaw_code)
    if port == "validity_settings":
        builder.generation.validity_settings = orm.Dict(value)
    else:
        builder[port] = orm.Dict(value)
    with pytest.raises(ValueError, match=message):
        run_get_node(builder)
    assert not builder.generation.training.is_stored  # refused before anything was stored


@pytest.mark.slow
def test_one_screening_uses_the_family_validity_cheap_engine_and_assessor_of_a_third_party(toy_plugins, gpaw_code):
    results, node = run_get_node(toy_screening(gpaw_code))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)

    # the family: a toy model trained by the package's one WGAN loop
    models = results["generation"]["models"]
    assert [model.family for model in models.values()] == ["toy"]

    # the validity check: the plug-in's verdicts, counted per reason
    candidates = results["generation"]["candidates"]
    validity = candidates.base.attributes.get("validity")
    assert validity["check"] == "toy_compact" and validity["settings"] == {"min_distance": 0.7, "max_extent": 3.0}
    totals = validity["totals"]
    assert totals["generated"] == 60 and totals["valid"] == len(candidates) >= 3
    assert totals["valid"] + sum(totals["reasons"].values()) == 60
    assert set(totals["reasons"]) <= {"atoms closer than 0.7 Å", "spread over more than 3 Å"}
    assert totals["reasons"]  # the untrained toy model draws some atoms on top of each other
    kept = candidates.get_batch()
    assert all(atoms.get_all_distances()[np.triu_indices(3, 1)].min() >= 0.7 for atoms in kept)

    # the cheap engine: the plug-in's own calcfunction relaxed the three representatives
    cheap_node = node.base.links.get_outgoing(link_label_filter="relax_cheap").one().node
    assert cheap_node.process_label == "relax_emt" and cheap_node.is_finished_ok
    cheap = results["cheap_relaxed"].get_batch()
    assert len(cheap) == 3 and cheap.info["cheap_failed"].tolist() == [0, 0, 0]
    assert np.isfinite(cheap.info["cheap_energy"]).all()
    funnel = results["funnel"]
    assert funnel["n_relaxed"] == 3 and 1 <= funnel["n_picked"] <= 2

    # real GPAW relaxed what the funnel picked, through physgen.relax_set
    report = results["report"]
    assert report["n_relaxed"] == funnel["n_picked"]
    relax_set = node.base.links.get_outgoing(link_label_filter="relax").one().node
    assert {child.process_label for child in relax_set.called} == {"GpawBaseWorkChain"}

    # the assessor: its metrics, rows and figure, stored as the screening's outputs
    assessment = results["assessments"]["toy_energy"].get_dict()
    metrics = assessment["metrics"]
    assert assessment["title"] == "Energies: cheap tier and DFT"
    assert metrics["n_generated"] == 60 and metrics["n_valid"] == totals["valid"]
    assert metrics["n_representatives"] == 3 and metrics["n_cheap"] == 3 and metrics["n_cheap_failed"] == 0
    assert metrics["n_dft"] == report["n_relaxed"] and metrics["n_dft_basins"] == report["n_basins"]
    assert metrics["lowest_dft_energy"] == pytest.approx(min(row["energy"] for row in report["rows"]))
    assert metrics["lowest_cheap_energy"] == pytest.approx(float(cheap.info["cheap_energy"].min()))
    assert len(assessment["rows"]) == report["n_relaxed"]
    assert {row["basin"] for row in assessment["rows"]} == {row["key"] for row in report["rows"]}
    with results["figures"]["toy_energy_cheap_energies"].open(mode="rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    # beside it, the package's own discovery assessor: EMT and GPAW both make water
    discovery = results["assessments"]["discovery"]["metrics"]
    assert discovery["dft"]["known_found"] == ["O"] and discovery["cheap"]["known_found"] == ["O"]

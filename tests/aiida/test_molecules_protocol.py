"""The LoGAN study as a protocol: ``workflows/protocols/screening/molecules.yaml`` builds what the study scripts
build with ``screening_builder`` (``workchains/screen_fast.py``, ``workchains/screen_c5h12o.py``), plus the
molecule validity check and the discovery assessor."""

from __future__ import annotations

import pytest
from aiida import orm
from tiny_settings import QUICK, TINY

from aiida_physgen.engines import get_engine
from aiida_physgen.launch import screening_builder, training_set
from aiida_physgen.workflows.generation import GenerationWorkChain
from aiida_physgen.workflows.screening import ScreeningWorkChain, validate_screening_inputs

TRAINING = "logan/C5H12O_training.extxyz"
BOX = {"composition": "C5H12O", "cell": [[9.5, 0.0, 0.0], [0.0, 9.5, 0.0], [0.0, 0.0, 9.5]], "pbc": [False] * 3}
#: the ports the protocol adds to what the scripts launch: the pipeline's validity and assessment stages
ADDED = {"generation": {"validity"}, "screening": {"assessors"}}


def plain(value):
    if isinstance(value, orm.Dict):
        return value.get_dict()
    if isinstance(value, orm.List):
        return value.get_list()
    if isinstance(value, orm.BaseType):
        return value.value
    if isinstance(value, orm.Data):
        return value.uuid
    return value


def resolved(namespace, spec) -> dict:
    """Every port's value as the process will see it: the builder's, else the port's default; ``training`` by
    content (two launches read the same file into two nodes)."""
    values = {}
    for name, port in spec.items():
        if name == "metadata" or not hasattr(port, "has_default"):  # a namespace (metadata, references)
            continue
        if name in namespace:
            value = namespace[name]
        elif port.has_default():
            value = port.default() if callable(port.default) else port.default
        else:
            continue
        if name == "training":
            batch = value.get_batch()
            values[name] = (len(batch), batch.positions.round(6).tobytes(), tuple(batch.numbers))
        else:
            values[name] = plain(value)
    return values


def compare(protocol_builder, script_builder):
    """The ports of the two builders that differ, as ``{port: (protocol, script)}``."""
    spec = ScreeningWorkChain.spec().inputs
    differ = {}
    for where, a, b, ports in (
        ("generation.", protocol_builder.generation, script_builder.generation, GenerationWorkChain.spec().inputs),
        ("", protocol_builder, script_builder, spec),
    ):
        left, right = resolved(a, ports), resolved(b, ports)
        for name in sorted(set(left) | set(right)):
            if name == "generation" and not where:
                continue
            if left.get(name) != right.get(name):
                differ[f"{where}{name}"] = (left.get(name), right.get(name))
    return differ


def test_fast_protocol_is_the_main_job():
    script = screening_builder(
        TRAINING,
        "C5H12O",
        box=9.5,
        generation_protocol="fast",
        seeds=[0, 1],
        settings={"loop": {"steps": 1200}},
        n_clusters=60,
        protocol="fast",
        funnel=True,
        dft_budget=6,
    )  # workchains/screen_fast.py
    builder = ScreeningWorkChain.get_builder_from_protocol("molecules", training_set(TRAINING), "fast")
    differ = compare(builder, script)
    # the code: the script names GPAW's default code, the protocol leaves it to the engine (the same code)
    assert differ.pop("code") == (None, get_engine("gpaw", "structure").default_code().uuid)
    assert differ == {"generation.validity": ("molecule", None), "assessors": ({"discovery": {}}, None)}
    generation = builder.generation
    assert generation.target.get_dict() == BOX and generation.seeds.get_list() == [0, 1]
    assert generation.settings.get_dict()["loop"] == {"steps": 1200, "lr_generator": 1.0e-3, "lr_critic": 1.0e-3}
    assert generation.count.value == 500 and generation.selection_settings.get_dict()["n_clusters"] == 60
    assert builder.dft_budget.value == 6 and builder.protocol.value == "fast" and builder.funnel.value
    assert validate_screening_inputs(builder._inputs(prune=True)) is None


def test_fast_is_the_default_and_a_target_or_overrides_replace_the_protocol_values():
    assert ScreeningWorkChain.get_default_protocol("molecules") == "fast"
    assert set(ScreeningWorkChain.get_available_protocols("molecules")) == {"fast", "balanced", "paper"}
    c4 = {**BOX, "composition": "C4H10O"}
    builder = ScreeningWorkChain.get_builder_from_protocol(
        "molecules",
        training_set(TRAINING),
        target=c4,
        overrides={"dft_budget": 3, "generation": {"family_overrides": {"seeds": [5]}}},
    )
    assert builder.generation.target.get_dict() == c4
    assert builder.generation.seeds.get_list() == [5] and builder.dft_budget.value == 3
    assert builder.generation.settings.get_dict()["loop"]["steps"] == 1200  # the rest of fast stays


@pytest.mark.parametrize("paper", [False, True])
def test_balanced_and_paper_protocols_are_the_c5h12o_study(paper):
    script = screening_builder(
        TRAINING,
        "C5H12O",
        box=9.5,
        generation_protocol="paper" if paper else "balanced",
        n_clusters=600,
        protocol="balanced" if paper else "fast",
        funnel=True,
        dft_budget=20,
    )  # workchains/screen_c5h12o.py [--paper]
    builder = ScreeningWorkChain.get_builder_from_protocol(
        "molecules", training_set(TRAINING), "paper" if paper else "balanced"
    )
    differ = compare(builder, script)
    differ.pop("code")
    assert set(differ) == {f"generation.{port}" for port in ADDED["generation"]} | ADDED["screening"]
    assert len(builder.generation.seeds.get_list()) == 12
    assert builder.generation.settings.get_dict()["loop"]["steps"] == (45000 if paper else 1500)


def test_an_unknown_key_in_the_overrides_is_named():
    with pytest.raises(ValueError, match="protocol: unknown key 'dft_budgets' in the molecules protocol"):
        ScreeningWorkChain.get_builder_from_protocol("molecules", training_set(TRAINING), overrides={"dft_budgets": 3})
    with pytest.raises(ValueError, match="domain: unknown domain 'molecule'"):
        ScreeningWorkChain.get_builder_from_protocol("molecule", training_set(TRAINING))


@pytest.mark.slow
def test_the_molecules_protocol_runs_logan_through_the_pipeline(gpaw_code):
    """The study's protocol at tiny settings on water: LoGAN → molecule validity → xTB → GPAW → discovery."""
    import io

    from aiida.engine import run_get_node
    from ase.build import molecule

    from aiida_physgen.screening.report import print_report

    water = {"composition": "H2O", "cell": [[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]], "pbc": [False] * 3}
    builder = ScreeningWorkChain.get_builder_from_protocol(
        "molecules",
        training_set([molecule("H2O"), molecule("H2O2"), molecule("H2O")]),
        target=water,
        code=gpaw_code,
        overrides={
            "generation": {
                "family_overrides": {
                    "seeds": [0],
                    "settings": TINY,
                    "count": 24,
                    "selection": {"n_clusters": 4, "n_components": 2},
                },
                # three barely trained steps scatter the atoms over the box: bonds up to 3 × the radii
                "validity_settings": {"bond_factor": 3.0},
            },
            "relax_overrides": QUICK,
            "dft_budget": 2,
            "reuse_relaxations": False,
            "assessors": {"discovery": {"smiles": ["O", "OO"]}},
        },
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    validity = results["generation"]["candidates"].base.attributes.get("validity")
    assert validity["check"] == "molecule" and validity["settings"]["bond_factor"] == 3.0
    assert validity["totals"]["generated"] == 24
    assert validity["totals"]["valid"] + sum(validity["totals"]["reasons"].values()) == 24
    report = results["report"]
    metrics = results["assessments"]["discovery"]["metrics"]
    assert metrics["formula"] == "H2O" and metrics["n_known"] == 2 and metrics["known_source"] == "settings"
    assert metrics["cheap"]["n_structures"] == 4  # every representative went through xTB
    dft = metrics["dft"]
    assert dft["n_dft"] == report["n_relaxed"] == results["funnel"]["n_picked"]
    assert dft["n_isomers"] == report["n_unique_minima"]
    assert sorted(dft["known_found"] + dft["known_missing"]) == ["O", "OO"]
    with results["figures"]["discovery_isomers"].open(mode="rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    out = io.StringIO()
    print_report(node, file=out)
    text = out.getvalue()
    assert "== Discovery: isomers found against the known list ==" in text
    assert f"DFT relaxations: found {dft['n_isomers']} distinct valid H2O isomers with {dft['n_dft']}" in text

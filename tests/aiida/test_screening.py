"""The screening workflow end to end with real training and real GPAW, in process and in the daemon."""

import subprocess
import time

import ase.io
import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node, submit
from tiny_settings import QUICK, TINY

from aiida_physgen.calculations.functions import deduplicate_minima
from aiida_physgen.launch import screening_builder
from aiida_physgen.resources import resource_path
from aiida_physgen.screening.report import cpu_seconds, format_table, print_report, report_rows, timing


def water_like_training():
    """H2O and H2O2 molecules: a tiny training set whose target H2O relaxes in seconds."""
    from ase.build import molecule

    return [molecule("H2O"), molecule("H2O2"), molecule("H2O")]


def tiny_builder(code, **extra):
    return screening_builder(
        water_like_training(),
        "H2O",
        box=5.0,
        code=code,
        seeds=[0],
        settings=TINY,
        count=8,
        n_clusters=2,
        n_components=2,  # the selection takes the models' descriptor (r_cut 3 Å)
        relax_overrides=QUICK,
        **{"funnel": False, "reuse_relaxations": False, **extra},  # the path without the cheap tier
    )


def summary(node):
    return sorted((row["key"], row["count"], round(row["energy"], 4)) for row in node.outputs.report["rows"])


_TINY_RUN: dict = {}


@pytest.fixture
def tiny_run(gpaw_code):
    """The tiny screening, run once in this process: checked in detail by one test, the uninterrupted reference of
    the daemon-restart test (the same inputs give the same minima)."""
    if "run" not in _TINY_RUN:
        _TINY_RUN["run"] = run_get_node(tiny_builder(gpaw_code, group_label="test/screening"))
    return _TINY_RUN["run"]


@pytest.mark.slow
def test_screening_runs_end_to_end(tiny_run, tmp_path):
    results, node = tiny_run
    assert node.is_finished_ok, node.exit_message
    report = results["report"]
    assert report["n_relaxed"] == 2
    assert sum(row["count"] for row in report["rows"]) == 2
    assert set(results["minima"]) == {row["name"] for row in report["rows"]}
    assert set(results["dos"]) == set(results["minima"])
    assert results["energies"].get_dict() == {row["name"]: row["energy"] for row in report["rows"]}
    energies = [row["energy_per_atom"] for row in report["rows"]]
    assert energies == sorted(energies)  # basins are ranked by energy per atom, minima or not
    assert results["generation"]["representatives"].count == 2
    group = orm.load_group("test/screening")
    assert report.uuid in {n.uuid for n in group.nodes}
    # provenance: screening → generation workchain → calcfunctions; relaxations are GpawBaseWorkChains
    cells = {
        tuple(np.round(c.inputs.structure.cell, 6).ravel())
        for c in node.called_descendants
        if c.process_label == "GpawCalculation"
    }
    assert len(cells) == 1, "molecules of one screening must share one box (comparable energies)"
    labels = sorted(n.process_label for n in node.called)
    assert "GenerationWorkChain" in labels and "RelaxSetWorkChain" in labels
    # the relaxations hang under the one relax-a-set chain, throttled by the computer's cores by default
    (relax_set,) = [n for n in node.called if n.process_label == "RelaxSetWorkChain"]
    assert [n.process_label for n in relax_set.called] == ["GpawBaseWorkChain"] * 2
    assert relax_set.base.extras.get("physgen_relaxations")["limit"] >= 1
    assert "relaxed" in results and len(results["relaxed"]) == 2  # every DFT-relaxed structure as one set
    rows = report_rows(node)
    assert all(orm.load_node(row["pk"]).pk == results["minima"][row["name"]].pk for row in rows)
    table = format_table(rows)
    assert all(row["formula"] == "H2O" for row in rows) and table.count("H2O") == len(rows)
    t = timing(node)
    assert t["n_dft_runs"] >= 2 and 0 < t["dft_s"] < t["total_s"]
    written = print_report(node, output_dir=tmp_path / "figures")
    for key in ("pca", "training", "energies", "dos"):
        assert written[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert t["training_s"] > 0
    assert sorted(results["generation"]["models"]) == ["model_00"]
    # CPU by stage, measured by every step itself (nothing falls back to wall time)
    cpu = cpu_seconds(node)
    assert cpu["missing"] == []
    assert cpu["counts"] == {"cheap_relaxations": 0, "dft_jobs": t["n_dft_runs"], "dft_relaxations": 2}
    assert all(cpu[stage] > 0 for stage in ("training", "generation", "selection", "dft")) and cpu["cheap"] == 0
    gpaw_wall = sum(
        c.outputs.output_parameters["wall_time"]
        for c in node.called_descendants
        if c.process_label == "GpawCalculation"
    )
    assert 0.3 * gpaw_wall < cpu["dft"] <= 1.05 * gpaw_wall  # one thread per GPAW run: CPU close to its wall time
    assert cpu["total"] == pytest.approx(sum(cpu[s] for s in ("training", "generation", "selection", "cheap", "dft")))


def test_screening_rejects_bad_engine_protocol_and_code(gpaw_code):
    builder = tiny_builder(gpaw_code)
    builder.engine = orm.Str("castep")
    with pytest.raises(ValueError, match="engine: unknown relaxation engine 'castep'"):
        run_get_node(builder)
    builder = tiny_builder(gpaw_code)
    builder.protocol = orm.Str("superfast")
    with pytest.raises(ValueError, match="protocol: unknown protocol 'superfast'"):
        run_get_node(builder)
    builder = tiny_builder(gpaw_code)
    builder.code = orm.InstalledCode(computer=gpaw_code.computer, filepath_executable="/bin/bash", label="bash")
    with pytest.raises(ValueError, match="code"):
        run_get_node(builder)


def test_screening_without_code_takes_the_engine_default(gpaw_code):
    """No code: the engine's default code (GPAW: a Python on localhost) is checked and used, no error."""
    from aiida_physgen.workflows.screening import validate_screening_inputs

    builder = tiny_builder(gpaw_code)
    del builder.code
    assert validate_screening_inputs(builder._inputs(prune=True)) is None
    builder.protocol = orm.Str("superfast")
    assert "protocol: unknown protocol 'superfast'" in validate_screening_inputs(builder._inputs(prune=True))


def test_deduplicate_flags_a_molecule_that_fell_apart():
    water = ase.io.read(resource_path("logan/C5H12O_training.extxyz"), index=0)
    broken = water.copy()
    broken.positions[-1] += [6.0, 0.0, 0.0]  # one hydrogen far away: two fragments
    rotated = water.copy()
    rotated.rotate(40, "z")
    inputs = {}
    for label, atoms, energy in (("a", water, -10.0), ("b", rotated, -10.2), ("c", broken, -12.0)):
        inputs[f"structure_{label}"] = orm.StructureData(ase=atoms)
        inputs[f"parameters_{label}"] = orm.Dict({"energy": energy})
    outputs, node = deduplicate_minima.run_get_node(**inputs)
    assert node.is_finished_ok
    rows = outputs["report"]["rows"]
    assert outputs["report"]["n_unique_minima"] == 1
    intact = [r for r in rows if r["new_minimum"]]
    fallen = [r for r in rows if not r["connected"]]
    assert len(intact) == 1 and intact[0]["count"] == 2 and intact[0]["representative"] == "b"
    assert len(fallen) == 1 and fallen[0]["members"] == ["c"] and not fallen[0]["new_minimum"]
    # the relative energy is measured from the lowest *valid* minimum, not from the broken one
    assert intact[0]["relative_per_atom"] == 0.0


@pytest.mark.slow
def test_daemon_restart_mid_run_gives_the_same_result(gpaw_code, tiny_run, daemon_client, aiida_profile):
    """``verdi daemon restart`` typed by a user in the middle of a screening: the command succeeds (it timed out
    under load with AiiDA's 2 s default), and the restarted workers finish the run with the same minima."""
    _, reference = tiny_run
    assert reference.is_finished_ok

    daemon_client.start_daemon()
    # one relaxation in flight: the daemon stops while the chain waits for "any one of" its relaxations
    # (aiida_physgen.workflows.await_any), and the restarted worker must take that wait up again
    node = submit(tiny_builder(gpaw_code, max_concurrent_relaxations=1))
    deadline = time.time() + 600
    # wait until the relaxations are under way, then stop the daemon in the middle of them
    while time.time() < deadline:
        if any(n.process_label == "GpawCalculation" for n in node.called_descendants):
            break
        time.sleep(0.5)
    else:
        pytest.fail("the relaxations never started")
    assert not node.is_terminated, "the run finished before the daemon could be restarted"
    restart = subprocess.run(
        ["verdi", "-p", aiida_profile.name, "daemon", "restart"], capture_output=True, text=True, timeout=120
    )
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert "timed out" not in restart.stdout + restart.stderr
    while not node.is_terminated and time.time() < deadline:
        time.sleep(1)
    assert node.is_finished_ok, f"{node.exit_message}\n{_tree(node)}"
    assert summary(node) == summary(reference)


def _tree(node) -> str:
    """Every process below ``node`` with its state and exit message, for the failure message."""
    rows = []
    for child in node.called_descendants:
        rows.append(
            f"  {child.process_label}<{child.pk}> {child.process_state} exit {child.exit_status} "
            f"{child.exit_message or ''}"
        )
        if child.is_excepted:
            rows.append(f"    exception: {(child.exception or '').strip().splitlines()[-1:]}")
    return "\n".join(rows)


def test_gpaw_code_on_an_unknown_computer_is_an_error():
    from aiida_physgen.launch import gpaw_code

    with pytest.raises(ValueError, match="computer: no computer 'nowhere' is configured"):
        gpaw_code(computer="nowhere")


def test_gpaw_engine_gives_every_molecule_one_box_that_fits_the_largest(gpaw_code):
    from ase.build import molecule

    from aiida_physgen.engines import get_engine

    structures = {}
    for name in ("H2O", "CH3CH2OH", "C6H6"):
        atoms = molecule(name)
        atoms.rotate(1, "x")  # the benzene's extent + 6 Å (10.96396...) rounds *down* to 2 decimals
        atoms.rotate(29, "y")
        structures[name] = orm.StructureData(ase=atoms).store()
    builders = get_engine("gpaw").get_builders(gpaw_code, structures, "fast", None, dos=False)
    assert all(not isinstance(b, str) for b in builders.values()), builders
    boxes = {b.center.box.value for b in builders.values()}
    assert len(boxes) == 1

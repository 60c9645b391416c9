"""``aiida-physgen crystals``: filter a CIF folder, generate from a crystal_gan model (with CIFs), and
download-mp without a key, without mp-api, and against a stand-in client (no network)."""

from __future__ import annotations

import json
import shutil
import sys
import types
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from aiida_physgen.cli import main
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.crystal_data import EXAMPLE_FOLDER, example_structures

FAKE_KEY = "x" * 32


def _run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def _read(path) -> StructureBatch:
    with open(path, "rb") as handle:
        return StructureBatch.from_npz(handle)


def _binary(folder):
    from pymatgen.core import Lattice, Structure

    Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(
        filename=str(folder / "NaCl.cif")
    )


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A crystal_gan model trained briefly on the example set (F-43m). 40 steps rather than 5: after 5
    steps every generated crystal has its three elements on one position, which no CIF reader accepts."""
    from aiida_physgen.ml.training import train_ensemble

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = train_ensemble(
            "crystal_gan",
            example_structures(),
            {"space_groups": [216]},
            {"loop": {"steps": 40, "batch_size": 16}, "hidden": 32, "critic_hidden": 32},
            seeds=[0],
        )[0]
    path = tmp_path_factory.mktemp("crystal_model") / "model.pt"
    path.write_bytes(model.to_bytes())
    return path


# ---------------------------------------------------------------------- filter
@pytest.mark.slow  # over 2 s: the fast lane stays under 2 minutes
def test_filter_keeps_the_99_examples(tmp_path):
    out = tmp_path / "crystals.npz"
    result = _run("crystals", "filter", EXAMPLE_FOLDER, "-s", "F-43m", "-o", out)
    assert result.exit_code == 0, result.output
    assert "kept 99 of 99 structures (F-43m (216): 99)" in result.output
    batch = _read(out)
    assert len(batch) == 99 and set(batch.info["space_group"]) == {216}
    assert list(batch.info["source_index"]) == list(range(99))


def test_filter_counts_and_names_what_it_drops(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    for name in sorted(p.name for p in EXAMPLE_FOLDER.glob("*.cif"))[:2]:
        shutil.copy(EXAMPLE_FOLDER / name, folder / name)
    _binary(folder)
    out = tmp_path / "kept.extxyz"
    result = _run("crystals", "filter", folder, "-v", "-o", out)
    assert result.exit_code == 0, result.output
    assert "kept 2 of 3" in result.output and "1  not a ternary" in result.output
    assert "NaCl: not a ternary" in result.output
    assert len(StructureBatch.read(out)) == 2


def test_filter_refuses_a_garbage_cif_naming_the_file(tmp_path):
    shutil.copy(next(EXAMPLE_FOLDER.glob("*.cif")), tmp_path / "good.cif")
    (tmp_path / "broken.cif").write_text("this is not a CIF file\n")
    result = _run("crystals", "filter", tmp_path, "-o", tmp_path / "out.npz")
    assert result.exit_code == 2, result.output
    assert "broken.cif" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out.npz").exists()


def test_filter_says_when_nothing_is_left(tmp_path):
    _binary(tmp_path)
    for source in (tmp_path, tmp_path / "NaCl.cif"):  # the folder, and the file itself (read by ASE)
        result = _run("crystals", "filter", source, "-o", tmp_path / "out.npz")
        assert result.exit_code == 2, result.output
        assert "nothing left" in result.output and "1 not a ternary" in result.output
    assert not (tmp_path / "out.npz").exists()


# ---------------------------------------------------------------------- generate
@pytest.mark.slow  # over 2 s: the fast lane stays under 2 minutes
@pytest.mark.parametrize("group, number", [("F-43m", 216), ("Fm-3m", 225)])
def test_generate_writes_crystals_and_readable_cifs(model_file, tmp_path, group, number):
    from pymatgen.core import Structure

    out, cifs = tmp_path / "generated.npz", tmp_path / "cifs"
    result = _run(
        "crystals", "generate", model_file, "--space-group", group, "-n", 8, "--seed", 0, "-o", out, "--cif-dir", cifs
    )
    assert result.exit_code == 0, result.output
    batch = _read(out)
    assert len(batch) == 8 and set(batch.info["space_group_requested"]) == {number}
    symmetric = int(batch.info["symmetric"].sum())
    assert f"wrote 8 crystals of {group} ({number}) to {out}; {symmetric} (" in result.output
    if number == 225:  # not a training group of the model: said on stderr, not an error
        assert "Warning: --space-group: the model was trained on [216]" in result.output
    paths = sorted(cifs.glob("*.cif"))
    left_out = int(result.output.split("left out ")[1].split()[0]) if "left out " in result.output else 0
    assert len(paths) + left_out == 8 and f"wrote {len(paths)} CIF files" in result.output
    if number == 216:
        assert paths  # the trained group gives crystals with distinct positions
    for path in paths:
        index, _, found = path.stem.split("_")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_file(str(path))
        assert len(structure) == len(batch[int(index)]) and int(found) == batch.info["space_group_found"][int(index)]
        if int(found) == number:  # symmetrised: the CIF states the requested group
            assert f"_symmetry_Int_Tables_number   {number}" in path.read_text()


def test_generate_is_the_generic_generate_with_a_condition(model_file, tmp_path):
    condition = {"space_group": 216, "elements": [["Li", "Zn", "As"]], "merge_distance": 1.2, "wyckoff_tolerance": 0.9}
    generic, convenient = tmp_path / "generic.npz", tmp_path / "crystals.npz"
    assert (
        _run(
            "generate", model_file, "-n", 6, "--seed", 3, "--condition", json.dumps(condition), "-o", generic
        ).exit_code
        == 0
    )
    result = _run(
        "crystals",
        "generate",
        model_file,
        "-s",
        216,
        "-e",
        "Li",
        "Zn",
        "As",
        "--merge-distance",
        1.2,
        "--wyckoff-tolerance",
        0.9,
        "-n",
        6,
        "--seed",
        3,
        "-o",
        convenient,
    )
    assert result.exit_code == 0, result.output
    a, b = _read(generic), _read(convenient)
    assert np.array_equal(a.numbers, b.numbers) and np.allclose(a.positions, b.positions)
    assert sorted(set(b.elements())) == ["As", "Li", "Zn"]
    assert "on their Wyckoff positions (no merge needed): " in result.output and "atoms per cell: " in result.output
    assert np.array_equal(a.info["snapped_sites"], b.info["snapped_sites"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["-s", "Q9"], "--space-group: 'Q9' is not a space-group symbol"),
        (["-s", "P1"], "--space-group: P1 (1) is triclinic"),
        (["-s", "999"], "--space-group: got 999"),
        (["-e", "Li", "Zn", "Xx"], "--elements: ['Xx'] not in the element table"),
        (["-e", "Li", "Li", "As"], "--elements: got Li Li As, expected three different"),
        (["-n", "0"], "--count: got 0"),
        (["--merge-distance", "0"], "--merge-distance: got 0.0"),
        (["--wyckoff-tolerance", "-1"], "--wyckoff-tolerance: got -1.0"),
    ],
)
def test_generate_bad_input_is_one_line_naming_the_option(model_file, tmp_path, args, message):
    result = _run("crystals", "generate", model_file, *args, "-o", tmp_path / "out.npz")
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out.npz").exists()


def test_generate_refuses_a_model_of_another_family(tmp_path):
    from aiida_physgen.ml.training import train_ensemble

    batch = StructureBatch.read(sorted(EXAMPLE_FOLDER.glob("*.cif"))[0])
    logan = train_ensemble(
        "logan",
        batch,
        {"composition": "".join(batch.formulas()), "cell": batch.cells[0].tolist(), "pbc": [True] * 3},
        {"loop": {"steps": 1}},
        seeds=[0],
    )[0]
    path = tmp_path / "logan.pt"
    path.write_bytes(logan.to_bytes())
    result = _run("crystals", "generate", path, "-o", tmp_path / "out.npz")
    assert result.exit_code == 2 and "MODEL:" in result.output and "crystal_gan" in result.output


# ---------------------------------------------------------------------- download-mp
def test_download_mp_without_a_key_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    result = _run("crystals", "download-mp", "-o", tmp_path / "mp.npz")
    assert result.exit_code == 2, result.output
    assert "--api-key" in result.output and "MP_API_KEY" in result.output
    assert "materialsproject.org/api" in result.output
    result = _run("crystals", "download-mp", "--api-key", "short", "-o", tmp_path / "mp.npz")
    assert result.exit_code == 2 and "32" in result.output


def test_download_mp_without_mp_api_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mp_api", None)  # import mp_api → ImportError
    monkeypatch.setitem(sys.modules, "mp_api.client", None)
    result = _run("crystals", "download-mp", "-o", tmp_path / "mp.npz", env={"MP_API_KEY": FAKE_KEY})
    assert result.exit_code == 1, result.output
    assert "pip install 'aiida-physgen[mp]'" in result.output and "Traceback" not in result.output


@pytest.mark.slow  # over 2 s: the fast lane stays under 2 minutes
def test_download_mp_filters_what_the_client_returns(tmp_path, monkeypatch):
    """A stand-in for mp-api's client: the example half-Heuslers for F-43m, rock salt for Fm-3m."""
    from pymatgen.core import Lattice, Structure

    half_heuslers = [Structure.from_file(str(p)) for p in sorted(EXAMPLE_FOLDER.glob("*.cif"))[:3]]
    salt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    calls = []

    class Summary:
        def search(self, **query):
            calls.append(query)
            docs = {216: half_heuslers, 225: [salt]}.get(query["spacegroup_number"], [])
            return [types.SimpleNamespace(material_id=f"mp-{100 + i}", structure=s) for i, s in enumerate(docs)]

    class MPRester:
        def __init__(self, api_key):
            assert api_key == FAKE_KEY
            self.materials = types.SimpleNamespace(summary=Summary())

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    client = types.ModuleType("mp_api.client")
    client.MPRester = MPRester
    monkeypatch.setitem(sys.modules, "mp_api", types.ModuleType("mp_api"))
    monkeypatch.setitem(sys.modules, "mp_api.client", client)
    out = tmp_path / "mp.npz"
    result = _run("crystals", "download-mp", "-s", "F-43m", "-s", "225", "-o", out, env={"MP_API_KEY": FAKE_KEY})
    assert result.exit_code == 0, result.output
    assert [c["spacegroup_number"] for c in calls] == [216, 225] and all(c["num_elements"] == 3 for c in calls)
    assert "kept 3 of 4 ternaries" in result.output and "1  not a ternary" in result.output
    batch = _read(out)
    assert list(batch.info["mp_id"]) == [100, 101, 102] and set(batch.info["space_group"]) == {216}

"""The plug-in registries and the generic validity step, without AiiDA."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from ase import Atoms

from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.screening.assessors import Assessor, available_assessors, get_assessor
from aiida_physgen.screening.plugins import PluginRegistry
from aiida_physgen.screening.validity import (
    NoCheck,
    ValidityCheck,
    apply_validity,
    available_validity_checks,
    get_validity_check,
)


@dataclasses.dataclass
class _Settings:
    max_atoms: int = 2

    def __post_init__(self):
        if self.max_atoms < 1:
            raise ValueError(f"max_atoms: got {self.max_atoms}, expected a positive number")


class _AtMost(ValidityCheck):
    name = "at_most"
    settings_class = _Settings

    def reasons(self, batch, settings):
        return [None if n <= settings.max_atoms else "too many atoms" for n in batch.n_atoms]


def _batch(sizes, tag):
    atoms = [Atoms("H" * n, positions=[[1.5 * i, 0, 0] for i in range(n)]) for n in sizes]
    batch = StructureBatch.from_atoms(atoms)
    batch.info["model_index"] = np.full(len(sizes), tag)
    return batch


def test_the_shipped_checks_and_assessors_are_registered():
    assert {"none", "molecule", "crystal", "sheet", "amorphous"} <= set(available_validity_checks())
    assert {"discovery", "formation", "label_consistency", "amorphous"} <= set(available_assessors())
    assert isinstance(get_validity_check("none"), NoCheck)


def test_unknown_plugins_are_named_with_the_field_and_the_choices():
    with pytest.raises(ValueError, match=r"validity: unknown validity check 'nope'; expected one of \[.*'none'"):
        get_validity_check("nope")
    with pytest.raises(ValueError, match=r"assessors.x: unknown assessor 'x'"):
        get_assessor("x", "assessors.x")


def test_a_plugin_that_does_not_load_or_is_of_the_wrong_kind_says_so(monkeypatch):
    import importlib.metadata

    registry = PluginRegistry("test.group", ValidityCheck, "validity check")
    broken = importlib.metadata.EntryPoint("broken", "no_such_module_xyz:Check", "test.group")
    wrong = importlib.metadata.EntryPoint("wrong", "collections:OrderedDict", "test.group")
    monkeypatch.setattr(registry, "_entry_points", lambda: {"broken": broken, "wrong": wrong})
    with pytest.raises(ValueError, match=r"validity: the validity check 'broken' .* does not load"):
        registry.get("broken", "validity")
    with pytest.raises(ValueError, match=r"validity: entry point 'wrong' .* is not a validity check"):
        registry.get("wrong", "validity")


def test_apply_validity_keeps_joins_and_counts():
    check = _AtMost()
    settings = check.settings({"max_atoms": 2})
    result = apply_validity(check, {"a": _batch([1, 3, 2], 0), "b": _batch([4, 1], 0)}, settings)
    assert len(result.valid) == 3
    assert result.valid.info["condition_index"].tolist() == [0, 0, 1]
    assert result.valid.info["set_index"].tolist() == [0, 2, 1]
    assert result.valid.info["model_index"].tolist() == [0, 0, 0]
    assert result.counts == {
        "a": {"generated": 3, "valid": 2, "reasons": {"too many atoms": 1}},
        "b": {"generated": 2, "valid": 1, "reasons": {"too many atoms": 1}},
    }
    assert result.totals == {"generated": 5, "valid": 3, "reasons": {"too many atoms": 2}}


def test_check_settings_name_the_field():
    with pytest.raises(ValueError, match=r"validity_settings: unknown key\(s\) \['validity_settings.maxatoms'\]"):
        _AtMost().settings({"maxatoms": 1})
    with pytest.raises(ValueError, match="max_atoms: got 0"):
        _AtMost().settings({"max_atoms": 0})


def test_an_assessor_names_the_reference_sets_it_misses():
    class _Needs(Assessor):
        name = "needs"
        requires = ("held_out",)

        def assess(self, data, settings):
            raise AssertionError("not called")

    assert _Needs().check_references({"held_out", "known"}) is None
    message = _Needs().check_references({"known"})
    assert "references: the needs assessor needs the reference set(s) ['held_out']; got ['known']" == message

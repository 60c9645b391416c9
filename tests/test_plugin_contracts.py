"""The plug-in base classes say what a plug-in forgot to implement, naming the plug-in and the method, instead of
failing somewhere later: a validity check, a batch engine and an ensemble of networks."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from ase.build import bulk, molecule
from torch import nn

from aiida_physgen.engines.base import BatchRelaxationEngine
from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.ml.ensemble import MemberNets, Stream
from aiida_physgen.screening.validity import ValidityCheck


@dataclasses.dataclass
class _Nothing:
    pass


def test_a_check_of_any_kind_without_reasons_names_itself():
    class AnyKind(ValidityCheck):
        name = "any_kind"
        settings_class = _Nothing

    batch = StructureBatch.from_atoms([molecule("H2O")])
    with pytest.raises(NotImplementedError, match="the any_kind check sets no periodicity: override reasons"):
        AnyKind().reasons(batch, _Nothing())


def test_a_check_of_a_kind_without_judge_names_itself_and_rejects_the_other_kind_first():
    class CrystalsOnly(ValidityCheck):
        name = "crystals_only"
        kind = "crystal"
        settings_class = _Nothing

    check = CrystalsOnly()
    assert check.periodic is True and check.reads == "crystals"  # taken from KINDS["crystal"]
    assert check.reasons(StructureBatch.from_atoms([molecule("H2O")]), _Nothing()) == [check.wrong_kind]
    with pytest.raises(NotImplementedError, match="the crystals_only check implements neither judge"):
        check.reasons(StructureBatch.from_atoms([bulk("Si")]), _Nothing())


def test_a_batch_engine_without_a_process_names_itself():
    class NoProcess(BatchRelaxationEngine):
        name = "no_process"

        def validate(self, settings, periodic=None):
            return None

    with pytest.raises(NotImplementedError, match="the no_process engine names no process"):
        NoProcess().get_process(None, None)


def test_member_nets_without_member_forward_name_the_class():
    class Bare(MemberNets):
        pass

    nets = Bare([0, 1], Stream.GENERATOR, lambda: nn.Linear(2, 2))
    with pytest.raises(NotImplementedError, match="Bare does not implement member_forward"):
        nets(torch.zeros(2, 3, 2))

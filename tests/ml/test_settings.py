"""Nested settings dataclasses: dictionaries in and out, dotted error paths, grids."""

import dataclasses
import json

import pytest

from aiida_physgen.ml import settings as S
from aiida_physgen.ml.descriptors import DescriptorParameters
from aiida_physgen.ml.logan import LoganSettings
from aiida_physgen.ml.wgan import WGANSettings


@dataclasses.dataclass
class Inner:
    a: int = 1
    b: tuple = (1, 2)

    def __post_init__(self):
        if self.a < 0:
            raise ValueError(f"a: got {self.a}, expected a non-negative number")


@dataclasses.dataclass
class Outer:
    inner: Inner = dataclasses.field(default_factory=lambda: Inner(a=5))
    c: str = "x"


def test_round_trip_through_plain_json():
    settings = S.from_dict(
        LoganSettings, {"loop": {"steps": 7, "lr_critic": 3e-4}, "hidden": [8, 4], "descriptor": {"radial": "bessel"}}
    )
    data = S.to_dict(settings)
    assert data["loop"]["steps"] == 7 and data["hidden"] == [8, 4] and data["descriptor"]["radial"] == "bessel"
    assert data["loop"]["betas"] == [0.0, 0.9]  # tuples become lists
    again = S.from_dict(LoganSettings, json.loads(json.dumps(data)))
    assert again == settings
    assert isinstance(again.loop, WGANSettings) and isinstance(again.descriptor, DescriptorParameters)
    assert again.hidden == (8, 4)


def test_missing_keys_keep_the_defaults_of_the_parent():
    # a nested group's defaults are those its parent's default_factory writes
    assert S.from_dict(Outer, {}).inner.a == 5
    assert S.from_dict(Outer, {"inner": {"b": [3]}}).inner.a == 5
    assert S.from_dict(LoganSettings, {"loop": {"batch_size": 3}}).loop.steps == 2000
    assert S.from_dict(LoganSettings, None) == LoganSettings()


def test_base_values_are_kept_and_not_shared():
    base = S.from_dict(Outer, {"inner": {"a": 9, "b": [1]}, "c": "y"})
    derived = S.from_dict(Outer, {"inner": {"b": [2]}}, base=base)
    assert derived.inner.a == 9 and derived.inner.b == [2] and derived.c == "y"
    values = {"loop": {"steps": 1, "betas": [0.5, 0.9]}}
    made = S.from_dict(LoganSettings, values)
    values["loop"]["betas"][0] = 0.0
    assert made.loop.betas == (0.5, 0.9)
    changed = S.from_dict(Outer, {"inner": {"b": [5]}}, base=derived)
    assert derived.inner.b == [2] and changed.inner.b == [5]


def test_a_dataclass_may_stand_for_its_dictionary():
    loop = WGANSettings(steps=4, batch_size=2)
    settings = S.from_dict(LoganSettings, {"loop": loop})
    assert settings.loop == loop


@pytest.mark.parametrize(
    "values, path",
    [
        ({"epochs": 5}, r"settings\.epochs"),
        ({"loop": {"stepz": 5}}, r"settings\.loop\.stepz"),
        ({"descriptor": {"rcut": 5}}, r"settings\.descriptor\.rcut"),
    ],
)
def test_unknown_keys_name_their_dotted_path(values, path):
    with pytest.raises(ValueError, match=path):
        S.from_dict(LoganSettings, values)


@pytest.mark.parametrize(
    "values, path",
    [
        ({"loop": {"n_critic": 0}}, r"settings\.loop\.n_critic"),
        ({"descriptor": {"n_max": 100}}, r"settings\.descriptor\.n_max"),
        ({"inner": {"a": -1}}, r"settings\.inner\.a"),
    ],
)
def test_bad_values_name_their_dotted_path(values, path):
    cls = Outer if "inner" in values else LoganSettings
    with pytest.raises(ValueError, match=path):
        S.from_dict(cls, values)


def test_a_group_given_as_a_value_is_refused():
    with pytest.raises(ValueError, match=r"settings\.loop: expected a dictionary"):
        S.from_dict(LoganSettings, {"loop": 5})


def test_merge_flatten_unflatten():
    base = {"loop": {"steps": 1, "batch_size": 2}, "hidden": [1]}
    merged = S.merge(base, {"loop": {"steps": 3}, "rattle_copies": 0})
    assert merged == {"loop": {"steps": 3, "batch_size": 2}, "hidden": [1], "rattle_copies": 0}
    assert base["loop"]["steps"] == 1  # not modified
    flat = S.flatten(merged)
    assert flat == {"loop.steps": 3, "loop.batch_size": 2, "hidden": [1], "rattle_copies": 0}
    assert S.unflatten(flat) == merged
    with pytest.raises(ValueError, match="both a value and a group"):
        S.unflatten({"loop": 1, "loop.steps": 2})


def test_field_paths_are_the_leaves():
    paths = S.field_paths(LoganSettings)
    assert "loop.lr_generator" in paths and "descriptor.r_cut" in paths and "hidden" in paths
    assert "loop" not in paths and "descriptor" not in paths


def test_grid_expansion_is_the_product():
    combos = S.expand_grid(
        LoganSettings, {"loop": {"lr_generator": [1e-4, 3e-4, 1e-3]}, "descriptor": {"radial": ["gaussian", "bessel"]}}
    )
    assert len(combos) == 6
    pairs = {(c["loop"]["lr_generator"], c["descriptor"]["radial"]) for c in combos}
    assert pairs == {(lr, r) for lr in (1e-4, 3e-4, 1e-3) for r in ("gaussian", "bessel")}
    # dotted keys are the same grid
    assert S.expand_grid(LoganSettings, {"loop.lr_generator": [1e-4, 3e-4]}) == [
        {"loop": {"lr_generator": 1e-4}},
        {"loop": {"lr_generator": 3e-4}},
    ]
    assert S.expand_grid(LoganSettings, None) == [{}]
    assert S.expand_grid(LoganSettings, {}) == [{}]


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"loop": {"stepz": [1, 2]}}, r"grid: unknown setting 'loop\.stepz'"),
        ({"loop": [1, 2]}, r"grid: unknown setting 'loop'"),
        ({"loop": {"steps": 5}}, r"grid\.loop\.steps: expected a non-empty list"),
        ({"loop": {"steps": []}}, r"grid\.loop\.steps: expected a non-empty list"),
    ],
)
def test_bad_grids_name_the_setting(grid, message):
    with pytest.raises(ValueError, match=message):
        S.expand_grid(LoganSettings, grid)

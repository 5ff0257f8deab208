"""Declarative parameter checks (interp_embed.validation): one error class, specs read at the door."""
from dataclasses import dataclass

import numpy as np
import pytest

from interp_embed.analysis import diff_features, diff_many
from interp_embed.analysis.grouping import GroupingOptions
from interp_embed.validation import (Bool, Choice, Features, Fraction, Int, InvalidParameterError, MemorySize,
                                     Number, OrNone, validate_fields, validate_params)


def test_one_error_class_that_is_both_a_value_and_a_type_error():
    assert issubclass(InvalidParameterError, ValueError) and issubclass(InvalidParameterError, TypeError)
    for caught in (ValueError, TypeError):
        with pytest.raises(caught):
            Int(min=1).check("k", 0, {})


@pytest.mark.parametrize("spec, value, message", [
    (Int(min=1), 0, "k must be an integer >= 1, not 0"),
    (Int(min=1), 2.5, "k must be an integer >= 1, not 2.5"),
    (Int(min=1), True, "k must be an integer >= 1, not True"),
    (Int(max=3), 4, r"k must be an integer in \[0, 3\], not 4"),
    (Fraction(), 1.5, r"k must lie in \[0, 1\], got 1.5"),
    (Fraction(above_zero=True), 0, r"k must lie in \(0, 1\], got 0"),
    (Fraction(above_zero=True, below_one=True), 1.0, r"k must lie in \(0, 1\), got 1.0"),
    (Fraction(), "half", "k must be a number between 0 and 1, got 'half'"),
    (Number(), -1, "k must be a finite number >= 0, got -1"),
    (Number(), float("nan"), "k must be a finite number >= 0"),
    (Number(), False, "k must be a number >= 0, got False"),
    (Bool(), "yes", "k must be True or False, got 'yes'"),
    (Choice(("a", "b")), "c", "k='c' is not supported; use one of 'a', 'b'"),
    (OrNone(Int(min=1)), 0, "k must be an integer >= 1"),
    (MemorySize(), "4 parsecs", "k='4 parsecs' is not a size"),
])
def test_each_spec_names_the_parameter_the_value_and_what_it_may_be(spec, value, message):
    with pytest.raises(InvalidParameterError, match=message):
        spec.check("k", value, {})


def test_specs_return_the_value_as_the_function_uses_it():
    assert Int().check("k", np.int64(3), {}) == 3 and type(Int().check("k", np.int64(3), {})) is int
    assert Fraction().check("a", "0.25", {}) == 0.25 and Bool().check("b", np.bool_(True), {}) is True
    assert OrNone(Int(min=1)).check("k", None, {}) is None
    assert MemorySize().check("m", "2 GiB", {}) == 2 * 2**30


def test_a_bound_set_by_another_parameter_names_both():
    with pytest.raises(InvalidParameterError, match=r"^k must be an integer in \[1, d_sae\] = \[1, 64\], not 65$"):
        Int(min=1, max="d_sae").check("k", 65, {"d_sae": 64})
    with pytest.raises(InvalidParameterError, match=r"min_coverage \(0.6\) must not exceed max_coverage \(0.5\)"):
        Fraction(at_least="min_coverage").check("max_coverage", 0.5, {"min_coverage": 0.6})


def test_the_decorator_checks_at_the_door_and_passes_the_checked_values():
    calls = []

    @validate_params(k=Int(min=1), alpha=Fraction(above_zero=True), grouped=Bool())
    def top(ds, k=10, *, alpha=0.05, grouped=False):
        """Docstring kept."""
        calls.append((ds, k, alpha, grouped))
        return k

    assert top("ds", np.int64(3), alpha="0.5") == 3
    assert calls == [("ds", 3, 0.5, False)] and type(calls[0][1]) is int
    for bad in ({"k": 0}, {"alpha": 0}, {"grouped": 1}):
        with pytest.raises(InvalidParameterError, match=next(iter(bad))):
            top("ds", **bad)
    assert len(calls) == 1  # the body never ran on a bad value
    assert top.__doc__ == "Docstring kept." and top.params["k"] == Int(min=1)
    with pytest.raises(TypeError, match="unexpected keyword"):  # Python's own error for an unknown keyword
        top("ds", kk=3)


def test_a_typo_in_the_declaration_fails_when_the_function_is_defined():
    with pytest.raises(TypeError, match="has no parameter kk"):
        @validate_params(kk=Int())
        def top(k=1):
            return k


def test_features_are_checked_against_the_dataset_they_belong_to():
    class Store:
        d_sae = 8
        encoder = None

    @validate_params(features=Features(), feature=Features("source", one=True))
    def pick(ds, source, features=None, feature=0):
        return features, feature

    features, feature = pick(Store(), Store(), [5, 1, 5], np.int32(7))
    assert features.tolist() == [1, 5] and feature == 7 and type(feature) is int
    assert pick(Store(), Store())[0] is None
    with pytest.raises(InvalidParameterError, match=r"feature contains ids outside \[0, 8\): \[8\]"):
        pick(Store(), Store(), feature=8)
    with pytest.raises(InvalidParameterError, match="features is empty"):
        pick(Store(), Store(), [])


def test_fields_of_a_config_are_checked_in_its_post_init():
    @dataclass(frozen=True)
    class Config:
        d_sae: int = 64
        k: int = 8

        def __post_init__(self):
            validate_fields(self, d_sae=Int(min=1), k=Int(min=1, max="d_sae"))

    assert Config(k=64).k == 64
    with pytest.raises(InvalidParameterError, match=r"k must be an integer in \[1, d_sae\] = \[1, 64\], not 65"):
        Config(k=65)
    with pytest.raises(InvalidParameterError, match="d_sae must be an integer >= 1, not 0"):
        Config(d_sae=0)


def test_grouping_options_check_the_trio_once():
    assert GroupingOptions() == GroupingOptions(False, "explained", 0.05, 0.5)
    for bad, message in [(dict(grouped="yes"), "grouped must be True or False"),
                         (dict(grouping="nearest"), "grouping='nearest' is not supported"),
                         (dict(alpha=0), "alpha must lie in"), (dict(min_overlap=1.5), "min_overlap must lie in")]:
        with pytest.raises(InvalidParameterError, match=message):
            GroupingOptions(**bad)


def test_diff_features_and_diff_many_share_one_declaration():
    assert diff_features.params.items() >= diff_many.params.items()
    assert set(diff_many.params) == {"metric", "min_coverage", "max_coverage", "confidence", "aggregation",
                                     "activated_threshold"}


def test_a_checked_coroutine_function_stays_one():
    import asyncio
    import inspect

    @validate_params(k=Int(min=1))
    async def top(k=10):
        return k

    assert inspect.iscoroutinefunction(top)
    assert asyncio.run(top(k=3)) == 3
    with pytest.raises(InvalidParameterError, match="k must be an integer >= 1, not 0"):
        asyncio.run(top(k=0))

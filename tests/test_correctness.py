"""The correctness wall's pieces on plain CPU tensors, without a worker."""

from __future__ import annotations

import math

import pytest
import torch

from kernelpro.evaluate.correctness import (
    WallConfig,
    compare,
    inputs_changed,
    prepare,
    redistribute,
    run_wall,
    tolerance_for,
    trial_seeds,
)


def test_tolerance_follows_kernelbench_per_precision_and_can_be_overridden():
    assert tolerance_for("float32") == 1e-4
    assert tolerance_for("float16") == tolerance_for("bfloat16") == 1e-2
    assert tolerance_for("float32", 1e-2) == 1e-2


def test_trial_seeds_are_deterministic_and_distinct():
    assert trial_seeds(42, 5) == trial_seeds(42, 5)
    assert len(set(trial_seeds(42, 5))) == 5
    assert trial_seeds(42, 5) != trial_seeds(43, 5)


def test_prepare_keeps_integer_and_bool_dtypes():
    values = [torch.rand(3), torch.arange(3), torch.tensor([True, False]), 7]
    out = prepare(values, torch.device("cpu"), torch.float16)
    assert [getattr(v, "dtype", None) for v in out] == [torch.float16, torch.int64, torch.bool,
                                                         None]


def test_redistribute_changes_only_floating_inputs():
    x, idx = torch.rand(1000), torch.arange(5)
    signed, same_idx = redistribute([x, idx], "signed")
    assert signed.min() < 0 and torch.equal(same_idx, idx)
    with pytest.raises(ValueError, match="unknown input distribution"):
        redistribute([x], "cauchy")


@pytest.mark.parametrize("cand, fragment", [
    (torch.zeros(3, 5), "shape (3, 5) != reference (4, 5)"),
    (torch.zeros(4, 5, dtype=torch.float64), "dtype torch.float64"),
    (torch.full((4, 5), float("nan")), "20 NaN/Inf values"),
    ((torch.zeros(4, 5), torch.zeros(4, 5)), "a sequence of 2 where the reference returns a "
                                              "tensor"),
    ("a string", "output: forward returned str"),
])
def test_compare_rejects_structural_mismatches(cand, fragment):
    result = compare(torch.zeros(4, 5), cand, 1e-4)
    assert not result.ok and fragment in result.reason


def test_compare_tolerance_is_atol_plus_rtol_times_reference():
    ref = torch.tensor([0.0, 100.0])
    assert compare(ref, ref + torch.tensor([0.9e-4, 0.0099]), 1e-4).ok
    bad = compare(ref, ref + torch.tensor([2e-4, 0.0]), 1e-4)
    assert not bad.ok and "1 of 2 values outside tolerance" in bad.reason
    assert math.isclose(bad.max_abs, 2e-4, rel_tol=1e-3)


def test_compare_integer_outputs_must_match_exactly():
    ref = torch.tensor([1, 2, 3])
    assert compare(ref, ref.clone(), 1.0).ok
    assert "1 of 3 exact values differ" in compare(ref, torch.tensor([1, 2, 4]), 1.0).reason


def test_compare_rejects_tensor_subclasses():
    class Lazy(torch.Tensor):
        pass

    ref = torch.ones(3)
    assert "not a plain tensor" in compare(ref, ref.clone().as_subclass(Lazy), 1e-4).reason


def test_inputs_changed_names_the_modified_input_and_tolerates_nan():
    a, b = torch.rand(4), torch.tensor([1.0, float("nan")])
    assert inputs_changed([a, b, 3], [a.clone(), b.clone(), 3]) is None
    a2 = a.clone()
    a2[0] += 1
    assert inputs_changed([a, b], [a, b.clone()]) is None
    assert inputs_changed([b, a], [b, a2]) == "input 1 was modified by the candidate"


def make_inputs():
    return [torch.rand(16, 33)]


def wall(cand, cfg: WallConfig | None = None):
    cfg = cfg or WallConfig()
    return run_wall(torch.relu, cand, make_inputs, torch.device("cpu"), torch.float32, cfg)


def test_wall_passes_an_honest_candidate_with_every_check_listed():
    report = wall(lambda x: x.clamp_min(0))
    names = [c.name for c in report.checks]
    assert report.passed and report.reason is None
    assert names == ["allclose", "plain_tensor_output", "relative_error", "inputs_unchanged",
                     "input_dependence", "distribution_normal", "distribution_signed",
                     "distribution_scaled", "distribution_spikes",
                     "distribution_outliers"]
    assert all(c.passed for c in report.checks)
    assert len(report.trials) == 5 + 5


def test_wall_rejects_input_mutation_even_when_the_output_is_right():
    report = wall(lambda x: x.clamp_(min=0))
    assert not report.passed and "input 0 was modified" in report.reason


def test_wall_catches_an_answer_that_only_holds_for_uniform_inputs():
    # rand() is non-negative, so identity passes the 5 KernelBench trials; signed inputs don't.
    report = wall(lambda x: x.clone())
    assert not report.passed and report.reason.startswith("inputs normal")
    assert "[distribution-specific answer]" in report.reason
    compat = wall(lambda x: x.clone(), WallConfig(robust=False))
    assert compat.passed  # KernelBench's own protocol is fooled by it


def test_wall_skips_a_distribution_the_reference_cannot_handle():
    report = run_wall(torch.log, torch.log, make_inputs, torch.device("cpu"), torch.float32,
                      WallConfig())
    assert report.passed
    assert any("inputs normal: skipped" in n for n in report.notes)
    assert "distribution_normal" not in [c.name for c in report.checks]


def test_wall_refuses_a_task_whose_reference_is_not_finite():
    report = run_wall(lambda x: x / 0, lambda x: x / 0, make_inputs, torch.device("cpu"),
                      torch.float32, WallConfig())
    assert not report.passed and "ill-posed" in report.reason

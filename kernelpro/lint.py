"""`kernelpro lint-task`: find tasks whose check can be passed without doing the work.

A task is only as good as its tolerance. If all zeros, a constant, or the average output over
other inputs passes allclose on every KernelBench trial, a candidate can "pass" without
computing anything (exploits 5 and 6); if the output barely moves when an input is redrawn,
the input does not matter and a kernel can ignore it. Findings can be acknowledged in the task
file with a comment `# kernelpro-lint: RULE[, RULE] -- why`; they are then reported as
annotated and do not fail the run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kernelpro.types import Task

RULES = {
    "trivial-output": "all zeros or a constant passes the tolerance",
    "closed-form": "the average output over other inputs passes the tolerance",
    "input-insensitive": "the output barely changes when an input is redrawn",
}
CALIBRATION_SEEDS = 3  # extra input draws whose mean output is the "closed form"
REDRAWS = 3  # an input is flagged only if every one of these redraws leaves the output alone
DEFAULT_LINT_ELEMENTS = 1 << 24
ANNOTATION = re.compile(r"#\s*kernelpro-lint:\s*([a-z\-, ]+?)\s*(?:--|$)", re.MULTILINE)


@dataclass
class LintFinding:
    rule: str
    message: str
    annotated: bool = False


@dataclass
class LintReport:
    task: str
    path: str
    scale: str
    tol: float
    findings: list[LintFinding] = field(default_factory=list)
    error: str | None = None
    note: str | None = None

    @property
    def failing(self) -> list[LintFinding]:
        return [f for f in self.findings if not f.annotated]

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "path": self.path, "scale": self.scale, "tol": self.tol,
                "error": self.error, "note": self.note,
                "findings": [vars(f) for f in self.findings]}


def annotations(source: str) -> set[str]:
    """Rules a task file acknowledges with `# kernelpro-lint: RULE[, RULE] -- why`."""
    return {rule.strip() for m in ANNOTATION.finditer(source) for rule in m.group(1).split(",")
            if rule.strip()}


def _floats(out: Any) -> list[torch.Tensor]:
    from kernelpro.evaluate.correctness import flatten_outputs

    return [t.detach().double().cpu() for t in flatten_outputs(out) if t.is_floating_point()]


def _passes(guess: list[torch.Tensor], truth: list[torch.Tensor], tol: float) -> bool:
    return bool(truth) and all(g.shape == t.shape and bool(torch.allclose(g, t, atol=tol,
                                                                          rtol=tol))
                               for g, t in zip(guess, truth, strict=True))


def _outputs(model: Any, inputs: list[Any]) -> list[torch.Tensor]:
    from kernelpro.evaluate.correctness import clone_all

    with torch.no_grad():
        return _floats(model(*clone_all(inputs)))


def lint_task(task: Task, tol: float | None = None, scale_down: bool = True,
              max_elements: int = DEFAULT_LINT_ELEMENTS, device: str = "cpu") -> LintReport:
    """Every lint rule on one task, on its KernelBench trial inputs."""
    from kernelpro.evaluate.correctness import (
        prepare,
        set_seed,
        tolerance_for,
        trial_seeds,
    )
    from kernelpro.task import (
        KERNELBENCH_SEED,
        TaskError,
        call_get_inputs,
        import_source,
        plan_scale,
        rewrite_constants,
    )
    from kernelpro.types import ScalePlan

    tol = tolerance_for(task.dtype, tol)
    plan = plan_scale(task, max_elements) if scale_down else ScalePlan()
    report = LintReport(task.name, str(task.path), plan.describe(), tol)
    dev, dtype = torch.device(device), getattr(torch, task.dtype)
    try:
        module = import_source(task.path, rewrite_constants(task.source, plan.overrides),
                               f"kernelpro_lint_{task.sha[:12]}")
        set_seed(KERNELBENCH_SEED)
        init = prepare(call_get_inputs(task.path, module, "get_init_inputs"), dev, dtype)
        set_seed(KERNELBENCH_SEED)
        model = module.Model(*init).to(dev)

        def inputs_for(seed: int) -> list[Any]:
            set_seed(seed)
            return prepare(call_get_inputs(task.path, module), dev, dtype)

        seeds = trial_seeds(KERNELBENCH_SEED, 5)
        trial_inputs = [inputs_for(s) for s in seeds]
        truths = [_outputs(model, x) for x in trial_inputs]
        calib = [_outputs(model, inputs_for(s + 1000)) for s in seeds[:CALIBRATION_SEEDS]]
    except (TaskError, Exception) as exc:  # a task that cannot run is a finding of its own
        report.error = f"the reference does not run: {type(exc).__name__}: {exc}"[:300]
        return report
    if not truths[0]:
        report.note = "no floating-point outputs: exact comparison, nothing to lint"
        return report

    acknowledged = annotations(task.source)

    def add(rule: str, message: str) -> None:
        report.findings.append(LintFinding(rule, message, rule in acknowledged))

    if all(_passes([torch.zeros_like(t) for t in truth], truth, tol) for truth in truths):
        add("trivial-output", f"an all-zero output passes allclose(atol=rtol={tol:g}) on every "
                              "trial")
    else:
        const = [torch.full_like(t, float(t.mean())) for t in truths[0]]
        if all(_passes(const, truth, tol) for truth in truths[1:]):
            add("trivial-output", f"the constant {float(truths[0][0].mean()):.6g} (trial 0's "
                                  "mean) passes on every other trial")
    if all(len(c) == len(calib[0]) and all(a.shape == b.shape for a, b in zip(c, calib[0],
                                                                               strict=True))
           for c in calib):
        mean = [torch.stack([c[i] for c in calib]).mean(0) for i in range(len(calib[0]))]
        if all(_passes(mean, truth, tol) for truth in truths):
            add("closed-form", f"the average output over {CALIBRATION_SEEDS} other input draws "
                               "passes on every trial: a closed-form answer would")
    others = [inputs_for(seeds[0] + 2000 + j) for j in range(REDRAWS)]

    def unmoved(i: int, other: list[Any]) -> bool:
        swapped = list(trial_inputs[0])
        swapped[i] = other[i]
        moved = _outputs(model, swapped)
        return len(moved) == len(truths[0]) and _passes(moved, truths[0], tol)

    for i, value in enumerate(trial_inputs[0]):
        if isinstance(value, torch.Tensor) and all(unmoved(i, o) for o in others):
            add("input-insensitive", f"redrawing input {i} ({REDRAWS} times) leaves the output "
                                     "within tolerance: a kernel could ignore it")
    return report


def lint_paths(paths: list[Path], **kwargs: Any) -> list[LintReport]:
    from kernelpro.task import load_task

    return [lint_task(load_task(p), **kwargs) for p in paths]

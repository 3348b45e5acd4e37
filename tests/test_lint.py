"""`kernelpro lint-task`: tasks a trivial output passes are flagged, annotations acknowledge."""

from __future__ import annotations

import json

from kernelpro.cli import main
from kernelpro.lint import annotations, lint_task
from kernelpro.task import load_task
from tests.conftest import FIXTURES, TASKS


def lint_json(capsys, *args: str) -> tuple[int, list[dict]]:
    code = main(["lint-task", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)["tasks"]


def rules(report: dict) -> set[str]:
    return {f["rule"] for f in report["findings"]}


def test_all_zero_output_passing_is_flagged(capsys):
    code, [report] = lint_json(capsys, str(FIXTURES / "tasks" / "softmax_wide.py"))
    assert code == 1
    assert {"trivial-output", "closed-form"} <= rules(report)
    assert not any(f["annotated"] for f in report["findings"])


def test_an_input_that_barely_matters_is_flagged():
    report = lint_task(load_task(FIXTURES / "tasks" / "ignores_input.py"))
    assert [(f.rule, "input 1" in f.message) for f in report.findings] == [
        ("input-insensitive", True)]


def test_annotated_findings_do_not_fail_the_run(capsys):
    code, [report] = lint_json(capsys, str(TASKS / "level1" / "11_Softmax_rand.py"))
    assert code == 0
    assert "trivial-output" in rules(report)
    assert all(f["annotated"] for f in report["findings"])


def test_the_closed_form_loss_is_flagged_at_the_old_tolerance(capsys):
    code, [report] = lint_json(capsys, str(TASKS / "level1" / "12_MSELoss.py"), "--tol", "1e-2")
    assert code == 0 and {"trivial-output", "closed-form"} <= rules(report)


def test_shipped_tasks_are_clean_or_annotated(capsys):
    code, reports = lint_json(capsys, str(TASKS), "--max-elements", str(1 << 18))
    assert code == 0 and len(reports) == len(list(TASKS.rglob("*.py")))
    assert not any(r["error"] for r in reports)


def test_honest_task_is_clean_and_integer_outputs_are_skipped():
    assert lint_task(load_task(TASKS / "level1" / "2_ReLU.py"), max_elements=1 << 16).findings == []
    argmax = lint_task(load_task(TASKS / "level1" / "9_Argmax_over_a_dimension.py"),
                       max_elements=1 << 16)
    assert argmax.findings == [] and "no floating-point outputs" in argmax.note


def test_annotation_syntax():
    src = "# kernelpro-lint: trivial-output, closed-form -- on purpose\nx = 1\n"
    assert annotations(src) == {"trivial-output", "closed-form"}
    assert annotations("# kernelpro-lint: input-insensitive\n") == {"input-insensitive"}


def test_missing_task_is_bad_input(capsys):
    assert main(["lint-task", "no/such/task.py"]) == 2

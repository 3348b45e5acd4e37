"""Task loading: shipped tasks, KernelBench layout, malformed files, and scaling down."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kernelpro.task import (
    TaskError,
    footprint,
    import_source,
    load_task,
    plan_scale,
    rewrite_constants,
    scaled_values,
)
from tests.conftest import TASKS

SHIPPED = sorted(TASKS.rglob("*.py"))

BASE = """
import torch
import torch.nn as nn

class Model(nn.Module):
    def forward(self, x):
        return x * 2

batch = 4096
dim = 8192
total = batch * dim

def get_inputs():
    return [torch.rand(batch, dim)]

def get_init_inputs():
    return []
"""


def write(tmp_path: Path, text: str, name: str = "7_Task.py") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_at_least_twelve_tasks_cover_all_three_levels():
    levels = {load_task(p).level for p in SHIPPED}
    assert len(SHIPPED) >= 12
    assert levels == {1, 2, 3}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_task_loads_with_its_level_id_and_inputs(path: Path):
    task = load_task(path)
    assert task.level == int(path.parent.name.removeprefix("level"))
    assert task.problem_id == int(path.stem.split("_")[0])
    assert task.inputs and all(s.numel > 0 for s in task.inputs if s.kind == "tensor")
    assert len(task.sha) == 64


def test_integer_targets_of_a_loss_keep_int64():
    task = load_task(TASKS / "level1" / "8_CrossEntropyLoss.py")
    assert [s.dtype for s in task.inputs] == ["float32", "int64"]
    assert task.dtype == "float32"


def test_bool_mask_keeps_bool_dtype():
    task = load_task(TASKS / "level1" / "10_Masked_cumsum.py")
    assert [s.dtype for s in task.inputs] == ["float32", "bool"]


def test_kernelbench_checkout_layout_gives_level_and_id(tmp_path: Path):
    folder = tmp_path / "KernelBench" / "level1"
    folder.mkdir(parents=True)
    task = load_task(write(folder, BASE, "19_ReLU.py"))
    assert (task.level, task.problem_id, task.name) == (1, 19, "19_ReLU")


def test_input_specs_come_from_meta_without_allocating(tmp_path: Path):
    # 2^40 floats would be 4 TiB: only the meta device can describe it.
    huge = BASE.replace("batch = 4096", "batch = 1 << 20").replace("dim = 8192", "dim = 1 << 20")
    task = load_task(write(tmp_path, huge))
    assert task.inputs[0].shape == (1 << 20, 1 << 20)


@pytest.mark.parametrize("text, problem", [
    ("class Model(:\n", "syntax error at line 1"),
    (BASE.replace("class Model", "class Other"), "no `class Model`"),
    (BASE.replace("def get_inputs", "def make_inputs"), "no `get_inputs()`"),
    (BASE.replace("def get_init_inputs", "def init_inputs"), "no `get_init_inputs()`"),
    (BASE.replace("return [torch.rand(batch, dim)]", "raise ValueError('no data')"),
     "get_inputs() raised ValueError: no data"),
    (BASE.replace("return [torch.rand(batch, dim)]", "return torch.rand(3)"),
     "get_inputs() returned Tensor, expected a list"),
    (BASE + "\nimport not_a_module_anywhere\n", "importing the task raised ModuleNotFoundError"),
])
def test_malformed_task_gets_one_line_error_naming_file(tmp_path: Path, text: str, problem: str):
    path = write(tmp_path, text)
    with pytest.raises(TaskError) as info:
        load_task(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert problem in message


def test_missing_file_is_a_task_error(tmp_path: Path):
    with pytest.raises(TaskError, match="no such file"):
        load_task(tmp_path / "nope.py")


def test_scaling_leaves_small_constants_and_floors_large_ones():
    constants = {"batch": 4096, "dim": 393216, "kernel_size": 3, "reduce_dim": 1, "n": 40}
    scaled = scaled_values(constants, 6)
    assert scaled == {"batch": 64, "dim": 6144, "n": 8}  # 40 >> 6 = 0, floored at 8


def test_rewrite_recomputes_derived_constants(tmp_path: Path):
    path = write(tmp_path, BASE)
    source = rewrite_constants(BASE, {"batch": 16, "dim": 32})
    module = import_source(path, source, "kernelpro_test_rewritten")
    assert module.total == 16 * 32


def test_plan_scale_fits_budget_and_still_runs(tmp_path: Path):
    task = load_task(write(tmp_path, BASE))
    plan = plan_scale(task, max_elements=1 << 12)
    assert plan.scaled and plan.input_elements <= 1 << 12
    assert plan.original == {"batch": 4096, "dim": 8192}
    assert "batch 4096->" in plan.describe()


def test_plan_scale_keeps_full_size_when_it_fits(tmp_path: Path):
    small = BASE.replace("batch = 4096", "batch = 8").replace("dim = 8192", "dim = 8")
    plan = plan_scale(load_task(write(tmp_path, small)), max_elements=1 << 12)
    assert not plan.scaled and plan.describe() == "full size"


def test_plan_scale_backs_off_when_scaling_breaks_the_model(tmp_path: Path):
    # Heads must divide the embedding: 768 / 2^k stops dividing by 12 below 12.
    text = BASE.replace("return x * 2", "return x.view(x.shape[0], 12, -1).sum(-1)")
    text = text.replace("dim = 8192", "dim = 768")
    task = load_task(write(tmp_path, text))
    plan = plan_scale(task, max_elements=64)
    assert plan.overrides["dim"] % 12 == 0


def test_footprint_counts_parameters(tmp_path: Path):
    text = BASE.replace("return x * 2", "return self.lin(x)").replace(
        "class Model(nn.Module):",
        "class Model(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.lin = nn.Linear(dim, 16)\n")
    path = write(tmp_path, text)
    assert footprint(path, text) == 4096 * 8192 + 8192 * 16 + 16


def test_scaled_reference_runs_on_cpu_for_every_shipped_task():
    for path in SHIPPED:
        task = load_task(path)
        plan = plan_scale(task, max_elements=1 << 14)
        assert plan.input_elements <= 1 << 15, (path, plan)
        module = import_source(path, rewrite_constants(task.source, plan.overrides),
                               "kernelpro_test_scaled")
        model = module.Model(*module.get_init_inputs())
        with torch.no_grad():
            out = model(*module.get_inputs())
        assert torch.isfinite(out.float()).all(), path

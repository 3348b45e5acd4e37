"""The AST guard: each rule fires on its pattern and honest kernel files pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernelpro.evaluate.guard import check_source
from tests.conftest import SOLUTIONS

HEADER = "import torch\nimport torch.nn as nn\n"
MODEL = "\nclass ModelNew(nn.Module):\n    def forward(self, x):\n        return x\n"


def rules(body: str) -> list[str]:
    return [f.rule for f in check_source(HEADER + body + MODEL)]


@pytest.mark.parametrize("path", sorted(SOLUTIONS.rglob("*.py")), ids=lambda p: p.stem)
def test_honest_solutions_pass_the_guard(path: Path):
    assert check_source(path.read_text()) == []


@pytest.mark.parametrize("body, rule", [
    ("import subprocess\n", "forbidden-import"),
    ("from socket import socket\n", "forbidden-import"),
    ("import ctypes\n", "forbidden-import"),
    ("import threading\n", "forbidden-import"),
    ("from concurrent.futures import ThreadPoolExecutor\n", "forbidden-import"),
    ("import os\nos.system('rm -rf /')\n", "forbidden-call"),
    ("import os as o\no._exit(0)\n", "forbidden-call"),
    ("from os import _exit\n", "forbidden-call"),
    ("import os\nos.execv('/bin/sh', [])\n", "forbidden-call"),
    ("import sys\nsys.modules['torch'] = None\n", "forbidden-call"),
    ("exec('print(1)')\n", "forbidden-builtin"),
    ("x = eval('1+1')\n", "forbidden-builtin"),
    ("f = open('/etc/passwd')\n", "forbidden-builtin"),
    ("__import__('subprocess')\n", "forbidden-builtin"),
    ("torch.allclose = lambda *a, **k: True\n", "monkeypatch"),
    ("torch.cuda.Event.elapsed_time = lambda self, other: 0.001\n", "monkeypatch"),
    ("import time\ntime.perf_counter = lambda: 0.0\n", "monkeypatch"),
    ("import torch.nn.functional as F\nF.relu = lambda x: x\n", "monkeypatch"),
])
def test_rule_fires_on_its_pattern(body: str, rule: str):
    assert rule in rules(body)


def test_legitimate_os_environ_use_passes():
    assert rules("import os\nos.environ['TORCH_CUDA_ARCH_LIST'] = '9.0'\n") == []


def test_attribute_assignment_on_self_is_not_monkeypatching():
    src = HEADER + "\nclass ModelNew(nn.Module):\n    def __init__(self):\n" \
                   "        super().__init__()\n        self.scale = 2.0\n" \
                   "    def forward(self, x):\n        return x * self.scale\n"
    assert check_source(src) == []


def test_missing_modelnew_and_syntax_error_are_reported():
    assert [f.rule for f in check_source(HEADER)] == ["no-modelnew"]
    finding = check_source("class ModelNew(:\n")[0]
    assert finding.rule == "syntax" and finding.line == 1


def test_findings_carry_line_numbers_for_the_prompt():
    finding = check_source(HEADER + "import subprocess\n" + MODEL)[0]
    assert finding.line == 3
    assert finding.render().startswith("forbidden-import at line 3:")

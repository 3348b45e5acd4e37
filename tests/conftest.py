"""Shared fixtures. GPU tests are marked `gpu` and skipped on machines without one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Triton 3.9's default, stated, so in-process ahead-of-time compiles do not warn.
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "tasks"
SOLUTIONS = ROOT / "examples" / "solutions"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CANDIDATES = FIXTURES / "candidates"


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Keep kept cubins and baseline caches out of the user's ~/.cache."""
    monkeypatch.setenv("KERNELPRO_CACHE", str(tmp_path_factory.mktemp("kernelpro-cache")))

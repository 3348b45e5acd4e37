"""The template proposer: recognition on every shipped task, and every template it emits
passes the correctness wall under the Triton interpreter."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernelpro.evaluate import EvalConfig, evaluate_candidate
from kernelpro.propose.base import ProposalRequest
from kernelpro.propose.templates import KNOBS, TemplateProposer, knob_moves
from kernelpro.task import load_task
from tests.conftest import TASKS

CLAIMED = {
    "level1/2_ReLU": "elementwise", "level1/3_GELU_tanh": "elementwise",
    "level1/4_Softmax": "row", "level1/11_Softmax_rand": "row", "level1/5_LayerNorm": "row",
    "level1/6_RMSNorm": "row", "level1/7_Sum_reduction_over_a_dimension": "row",
    "level1/9_Argmax_over_a_dimension": "row", "level1/8_CrossEntropyLoss": "loss",
    "level1/12_MSELoss": "loss", "level1/1_Square_matmul": "matmul",
    "level2/1_Gemm_Bias_GELU": "matmul", "level2/3_ResidualAdd_LayerNorm": "row",
}
UNSUPPORTED = ["level1/10_Masked_cumsum", "level2/2_Gemm_Sigmoid_RowSum", "level3/1_MLP",
               "level3/2_Causal_SelfAttention"]
SMALL = EvalConfig(max_elements=1 << 12, strict=True)
PROPOSER = TemplateProposer()


def task(rel: str):
    return load_task(TASKS / f"{rel}.py")


def test_every_shipped_task_is_claimed_or_refused_with_a_reason():
    shipped = {str(p.relative_to(TASKS).with_suffix("")) for p in TASKS.rglob("*.py")}
    assert set(CLAIMED) | set(UNSUPPORTED) == shipped
    for rel, kind in CLAIMED.items():
        tpl = PROPOSER.template(task(rel))
        assert not isinstance(tpl, str), (rel, tpl)
        assert tpl.kind == kind, rel
    for rel in UNSUPPORTED:
        (prop,) = PROPOSER.propose(ProposalRequest(task(rel)), 1)
        assert prop.source is None and "templates cannot handle" in prop.reason


@pytest.mark.parametrize("rel", sorted(CLAIMED))
def test_default_template_passes_the_wall(rel, tmp_path: Path):
    (prop,) = TemplateProposer().propose(ProposalRequest(task(rel)), 1)
    path = tmp_path / "candidate.py"
    path.write_text(prop.source)
    verdict = evaluate_candidate(task(rel), path, SMALL)
    assert verdict.status == "correct", (verdict.reason, prop.source)
    assert all(c.passed for c in verdict.checks)  # no delegation either (--strict)


@pytest.mark.parametrize("rel, knobs", [
    ("level1/6_RMSNorm", {"BLOCK": 256, "num_warps": 2}),
    ("level2/1_Gemm_Bias_GELU", {"BM": 32, "BN": 128, "BK": 16, "num_warps": 8,
                                 "num_stages": 2}),
])
def test_other_knob_settings_pass_too(rel, knobs, tmp_path: Path):
    tpl = PROPOSER.template(task(rel))
    path = tmp_path / "candidate.py"
    path.write_text(tpl.render(knobs))
    assert evaluate_candidate(task(rel), path, SMALL).status == "correct"


def test_proposals_are_distinct_knob_settings():
    fresh = TemplateProposer()
    props = fresh.propose(ProposalRequest(task("level1/4_Softmax")), 5)
    assert len({tuple(p.knobs.items()) for p in props}) == 5
    assert props[0].knobs == {k: v[0] for k, v in KNOBS["row"].items()}
    assert all(f"BLOCK={p.knobs['BLOCK']}" in p.source for p in props)
    again = fresh.propose(ProposalRequest(task("level1/4_Softmax")), 3)
    assert not {tuple(p.knobs.items()) for p in again} & {tuple(p.knobs.items()) for p in props}


def test_recommendations_map_to_knob_moves():
    moved = knob_moves("row", {"BLOCK": 1024, "num_warps": 4}, ("DramBandwidth",), 3)
    assert moved[0] == {"BLOCK": 2048, "num_warps": 8}
    spill = knob_moves("matmul", {"BM": 64, "BN": 64, "BK": 32, "num_warps": 4,
                                  "num_stages": 3}, ("RegisterSpill",), 1)
    assert spill == [{"BM": 32, "BN": 32, "BK": 32, "num_warps": 4, "num_stages": 2}]
    req = ProposalRequest(task("level1/2_ReLU"), parent_knobs={"BLOCK": 1024, "num_warps": 4},
                          recommendations=("SmallGrid",))
    assert TemplateProposer().propose(req, 1)[0].knobs == {"BLOCK": 512, "num_warps": 4}


def test_cuda_backends_get_cuda_templates_for_elementwise_chains_only():
    (prop,) = PROPOSER.propose(ProposalRequest(task("level1/2_ReLU"), backend="cuda"), 1)
    assert "load_inline" in prop.source and "fmaxf(v0, 0.0f)" in prop.source
    (prop,) = PROPOSER.propose(ProposalRequest(task("level1/5_LayerNorm"), backend="cuda"), 1)
    assert prop.source is None and "cannot handle" in prop.reason

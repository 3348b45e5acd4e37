"""Roofline classification, the Nsight Compute parser, the metric tools and the Diagnosis.

The metric tables in tests/fixtures/ncu/handmade_tables.csv are HAND-MADE (see
make_handmade.py there), in ncu's raw CSV format, until tables captured on a GPU replace them.
"""

from __future__ import annotations

import json

import pytest
import torch

from kernelpro.cli import main
from kernelpro.evaluate.device import SPECS
from kernelpro.profile import ncu
from kernelpro.profile.diagnosis import Diagnosis
from kernelpro.profile.roofline import (
    Work,
    measured_bound,
    roofline,
    task_work,
    timing_tier,
)
from kernelpro.profile.tools import ALL_TOOLS, METRIC_TOOLS, MetricContext, run_metric_tools
from kernelpro.profile.tools.base import Finding, Recommendation
from kernelpro.task import load_task
from tests.conftest import FIXTURES, SOLUTIONS, TASKS

H100 = SPECS["H100 SXM"]
TABLES = FIXTURES / "ncu" / "handmade_tables.csv"


def task_roofline(rel: str):
    task = load_task(TASKS / rel if not rel.startswith("/") else rel)
    work, _ = task_work(task)
    return roofline(work, H100, task.dtype)


# --- roofline ----------------------------------------------------------------------------------

def test_elementwise_is_memory_bound_and_matmul_compute_bound():
    relu = task_roofline("level1/2_ReLU.py")
    assert relu.bound == "memory" and relu.work.intensity < 1
    assert relu.floor_ms == pytest.approx(relu.work.bytes_min / H100.dram_bandwidth * 1e3)
    mm = task_roofline("level1/1_Square_matmul.py")
    assert mm.bound == "compute" and mm.work.intensity > mm.ridge
    assert mm.work.flops == 2 * 4096 ** 3 and mm.floor_ms == pytest.approx(mm.compute_ms)


def test_a_tiny_op_is_latency_bound():
    tiny = task_roofline(str(FIXTURES / "tasks" / "tiny_relu.py"))
    assert tiny.bound == "latency" and tiny.floor_ms < 0.01


def test_every_shipped_task_gets_a_class():
    bounds = {p.stem: task_roofline(str(p)).bound for p in sorted(TASKS.rglob("*.py"))}
    assert bounds["1_Gemm_Bias_GELU"] == "compute" and bounds["4_Softmax"] == "memory"
    assert set(bounds.values()) <= {"memory", "compute", "latency", "mixed"}


def test_data_dependent_reference_is_extrapolated_from_small_runs():
    task = load_task(FIXTURES / "tasks" / "masked_select_sum.py")
    work, how = task_work(task)
    assert "extrapolated" in how
    assert work.bytes_read == pytest.approx(512 * 1024 * 4, rel=0.05)


def test_measured_bound_and_timing_tier():
    assert measured_bound(90, 20) == "compute" and measured_bound(20, 90) == "memory"
    assert measured_bound(10, 20) == "latency" and measured_bound(70, 75) == "mixed"
    work = Work(flops=0, bytes_read=3.35e9, bytes_written=0)
    tier = timing_tier(work, 2.0, H100, "float32")
    assert tier["bandwidth_pct"] == pytest.approx(50.0)


# --- ncu output ----------------------------------------------------------------------------------

def tables() -> dict[str, ncu.KernelMetrics]:
    return {k.name: k for k in ncu.parse_raw_csv(TABLES.read_text())}


def test_handmade_tables_parse_with_units_and_thousands_separators():
    t = tables()
    assert len(t) == 12 and len(ncu.METRICS) >= 40
    healthy = t["healthy"]
    assert healthy.get("launch__grid_size") == 8448 and set(healthy.values) == set(ncu.METRICS)
    assert healthy.units["gpu__time_duration.sum"] == "nsecond"
    assert next(iter(t["memory_latency"].stalls())) == "long_scoreboard"


def test_counter_permission_errors_are_recognised():
    out = "==ERROR== ERR_NVGPUCTRPERM - The user does not have permission to access NVIDIA GPU"
    assert "ERR_NVGPUCTRPERM" in ncu.counter_error(out)
    assert "ncu failed" in ncu.counter_error("==ERROR== Failed to connect to process")
    assert ncu.counter_error("==PROF== Disconnected from process 1") is None


def test_ncu_command_profiles_the_marked_forward_with_the_metric_list():
    cmd = ncu.ncu_command("ncu", "python", "inputs.json", "cand.py")
    assert cmd[:5] == ["ncu", "--csv", "--page", "raw", "--metrics"]
    assert cmd[5].split(",") == list(ncu.METRICS)
    assert "kernelpro_profiled/" in cmd and cmd[-3:] == ["kernelpro.profile.ncu_target",
                                                          "inputs.json", "cand.py"]


def test_ncu_inputs_cross_as_data_the_target_can_rebuild():
    import base64

    from kernelpro.evaluate import channel
    from tests.conftest import FIXTURES

    data = ncu.ncu_inputs(FIXTURES / "tasks" / "tiny_relu.py")
    init, inputs = channel.unpack(data["tree"], channel.decode_tensors(
        base64.b64decode(data["tensors"])))
    assert init == [] and inputs[0].shape == (67, 97) and data["dtype"] == "float32"


def test_dominant_kernel_is_the_longest():
    a = ncu.KernelMetrics("a", {"gpu__time_duration.sum": 5.0})
    b = ncu.KernelMetrics("b", {"gpu__time_duration.sum": 9.0})
    assert ncu.dominant([a, b]).name == "b" and ncu.dominant([]) is None


# --- the tools ---------------------------------------------------------------------------------

MEMORY_WORK = Work(flops=1e8, bytes_read=100e6, bytes_written=100e6)
COMPUTE_WORK = Work(flops=1e13, bytes_read=100e6, bytes_written=100e6)
# tool -> (scenario that must trigger it, roofline class it is run under)
FIRES_ON = {
    "DramBandwidth": ("dram_underused", "memory"),
    "ExcessDramTraffic": ("excess_traffic", "memory"),
    "UncoalescedAccess": ("uncoalesced", "memory"),
    "AchievedOccupancy": ("low_achieved_occupancy", "memory"),
    "MemoryLatencyStall": ("memory_latency", "memory"),
    "BarrierStall": ("barrier", "compute"),
    "SharedMemoryPressure": ("shared_pressure", "compute"),
    "SharedBankConflicts": ("bank_conflicts", "compute"),
    "ComputeUnderused": ("compute_underused", "compute"),
    "SmallGrid": ("small_grid", "latency"),
    "BranchDivergence": ("divergent", "compute"),
}


def ctx_for(scenario: str, bound: str, **kw) -> MetricContext:
    work = COMPUTE_WORK if bound == "compute" else MEMORY_WORK
    roof = roofline(work, H100, "float32")
    return MetricContext(kernel=tables()[scenario], spec=H100, roofline=roof, bottleneck=bound,
                         **kw)


def test_there_are_at_least_fifteen_tools_each_declaring_classes_and_needs():
    assert len(ALL_TOOLS) >= 15
    assert len({t.name for t in ALL_TOOLS}) == len(ALL_TOOLS)
    for tool in ALL_TOOLS:
        assert tool.classes and tool.needs


@pytest.mark.parametrize("tool_name", sorted(FIRES_ON))
def test_metric_tool_fires_on_its_table_and_stays_quiet_on_the_healthy_one(tool_name):
    tool = next(t for t in METRIC_TOOLS if t.name == tool_name)
    scenario, bound = FIRES_ON[tool_name]
    finding = tool.run(ctx_for(scenario, bound))
    assert finding is not None and finding.tool == tool_name
    assert any(ch.isdigit() for ch in finding.message) and finding.recommendations
    assert tool.run(ctx_for("healthy", bound)) is None


def test_each_scenario_triggers_only_its_own_tool():
    for tool_name, (scenario, bound) in FIRES_ON.items():
        fired = {f.tool for f in run_metric_tools(ctx_for(scenario, bound))}
        assert fired == {tool_name}, (scenario, fired)


def test_tools_outside_the_class_do_not_run():
    # DRAM under-use says nothing about a compute-bound kernel (two-stage invocation).
    assert run_metric_tools(ctx_for("dram_underused", "compute")) == []


def test_timing_tier_tools_without_counters():
    roof = roofline(MEMORY_WORK, H100, "float32")
    slow = MetricContext(kernel=None, spec=H100, roofline=roof, bottleneck="memory",
                         runtime_ms=roof.floor_ms * 5)
    assert [f.tool for f in run_metric_tools(slow)] == ["LowAchievedBandwidth"]
    fast = MetricContext(kernel=None, spec=H100, roofline=roof, bottleneck="memory",
                         runtime_ms=roof.floor_ms * 1.2)
    assert run_metric_tools(fast) == []
    tiny = roofline(Work(1e3, 1e3, 1e3), H100, "float32")
    launches = MetricContext(kernel=None, spec=H100, roofline=tiny, bottleneck="latency",
                             runtime_ms=0.02, n_kernels=4)
    assert [f.tool for f in run_metric_tools(launches)] == ["LaunchOverhead"]
    one = MetricContext(kernel=None, spec=H100, roofline=tiny, bottleneck="latency",
                        runtime_ms=0.02, n_kernels=1)
    assert run_metric_tools(one) == []


# --- the diagnosis -------------------------------------------------------------------------------

def test_diagnosis_renders_severity_ordered_with_numbers_under_a_limit():
    roof = roofline(MEMORY_WORK, H100, "float32")
    findings = [Finding(f"Tool{i}", "info" if i % 2 else "critical", "k", f"value {i}.5 x" * 8,
                        recommendations=[Recommendation("do a thing", "1.2x")])
                for i in range(30)]
    diag = Diagnosis("t", "H100 SXM", roof, tiers=["analytic", "ncu"], findings=findings)
    text = diag.render(limit=800)
    assert len(text) <= 800 and "more finding(s) left out" in text
    lines = text.splitlines()
    assert lines[0].startswith("t: memory-bound on H100 SXM")
    assert lines[1].startswith("[critical]") and "-> do a thing (expected 1.2x)" in lines[1]
    data = diag.to_dict()
    assert data["roofline"]["bound"] == "memory" and len(data["findings"]) == 30
    assert data["findings"][0]["severity"] == "critical"


def test_profile_cli_reference_roofline(capsys):
    assert main(["profile", str(TASKS / "level1" / "2_ReLU.py"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["roofline"]["bound"] == "memory" and data["tiers"] == ["analytic"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU tiers")
def test_profile_cli_candidate_without_a_gpu_runs_analytic_and_static(capsys):
    assert main(["profile", str(TASKS / "level1" / "2_ReLU.py"),
                 str(SOLUTIONS / "level1" / "2_ReLU.py"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tiers"] == ["analytic", "static"]
    assert any("analytic and static tiers only" in n for n in data["notes"])
    assert data["measured"]["kernels"]


@pytest.mark.gpu
def test_profile_on_a_gpu_adds_timing_and_counters_or_says_why(capsys):
    assert main(["profile", str(TASKS / "level1" / "2_ReLU.py"),
                 str(SOLUTIONS / "level1" / "2_ReLU.py"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "timing" in data["tiers"] and data["measured"]["runtime_ms"] > 0
    assert "ncu" in data["tiers"] or any("ncu tier skipped" in n for n in data["notes"])


def test_ncu_unavailability_is_a_reason_not_a_crash(monkeypatch):
    from kernelpro import toolchain

    monkeypatch.setattr(ncu, "_PERMISSION_FAILURE", ["ncu has no permission (ERR_NVGPUCTRPERM)"])
    with pytest.raises(ncu.NcuUnavailable, match="detected earlier"):
        ncu.run_ncu("task.py", "cand.py")
    monkeypatch.setattr(ncu, "_PERMISSION_FAILURE", [])
    if toolchain.find_tool("ncu") is None:
        with pytest.raises(ncu.NcuUnavailable, match="not found"):
            ncu.run_ncu("task.py", "cand.py")

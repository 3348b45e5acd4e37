"""SASS parsing and the SASS rules on real compiler output (nvcc and Triton for sm_90).

Each rule must fire on its kernel and stay quiet on the clean twin. The CUDA kernels live in
cuda/sass_rules/; the Triton twins are one ReLU kernel compiled with and without the
divisibility-by-16 specialisation the JIT applies to aligned pointers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kernelpro.evaluate.compile import compile_cuda_to_cubin
from kernelpro.evaluate.device import ARCH_LIMITS
from kernelpro.profile.occupancy import occupancy
from kernelpro.profile.sass import analyze_cubin, parse_instruction, parse_sass, width_bits
from kernelpro.profile.static import is_matmul_like, profile_cubins
from kernelpro.profile.tools import STATIC_TOOLS
from kernelpro.profile.tools.base import StaticContext
from kernelpro.toolchain import find_tool
from tests.conftest import ROOT, SOLUTIONS, TASKS

RULES = ROOT / "cuda" / "sass_rules"
pytestmark = pytest.mark.skipif(find_tool("nvcc") is None or find_tool("cuobjdump") is None,
                                reason="needs nvcc and cuobjdump")
H100 = ARCH_LIMITS[(9, 0)]


@pytest.fixture(scope="module")
def cubins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("sass")
    built = {}
    for src in sorted(RULES.glob("*.cu")):
        built[src.stem] = compile_cuda_to_cubin(src.read_text(), out / f"{src.stem}.cubin")
    built["spill_capped"] = compile_cuda_to_cubin((RULES / "spill.cu").read_text(),
                                                  out / "spill_capped.cubin",
                                                  extra_flags=["--maxrregcount=32"])
    return built


def kernel(cubins: dict[str, Path], name: str):
    (k,) = analyze_cubin(cubins[name])
    return k


def fired(cubins, name: str, matmul_like: bool = False, dtype: str = "float32") -> set[str]:
    k = kernel(cubins, name)
    threads = k.max_threads or 256
    ctx = StaticContext(k, H100, occupancy(k.registers, threads, k.shared_bytes, H100),
                        threads, k.max_threads is None, "cuda", dtype, matmul_like)
    return {tool.name for tool in STATIC_TOOLS if tool.run(ctx) is not None}


def test_parse_instruction_splits_predicate_opcode_and_modifiers():
    instr = parse_instruction(0x120, "@!P0 LDG.E.128 R4, desc[UR4][R2.64]")
    assert (instr.predicate, instr.opcode, instr.modifiers) == ("@!P0", "LDG", ("E", "128"))
    assert width_bits(instr) == 128
    assert width_bits(parse_instruction(0, "LDG.E.U16 R4, desc[UR4][R2.64]")) == 16
    assert parse_instruction(0x140, "BRA 0xd0").branch_target == 0xD0


def test_parse_sass_groups_instructions_by_function():
    text = ("\t\tFunction : k1\n        /*0000*/  MOV R1, c[0x0][0x28] ;  /* 0x1 */\n"
            "\t\tFunction : k2\n        /*0000*/  EXIT ;  /* 0x2 */\n"
            "        /*0010*/  BRA 0x10;  /* 0x3 */\n")
    parsed = parse_sass(text)
    assert [i.opcode for i in parsed["k1"]] == ["MOV"]
    assert [i.opcode for i in parsed["k2"]] == ["EXIT", "BRA"]


def test_resources_and_histogram_of_real_kernels(cubins):
    spill = kernel(cubins, "spill_capped")
    assert spill.registers <= 32 and spill.count("stl") > 0 and spill.count("ldl") > 0
    assert spill.spill_bytes > 0 and spill.stack_bytes > 0
    assert kernel(cubins, "vector_loads").histogram.get("ldg_128") == 1
    assert kernel(cubins, "wmma_matmul").count("hmma") > 0
    assert kernel(cubins, "double_literal").count("fp64") > 0
    shared = kernel(cubins, "big_shared")
    assert (shared.shared_bytes, shared.max_threads) == (48 * 1024, 128)


@pytest.mark.parametrize("tool, kernel_name, twin, matmul_like", [
    ("RegisterSpill", "spill_capped", "spill", False),
    ("Vectorization", "scalar_loads", "vector_loads", False),
    ("TensorCore", "naive_matmul", "wmma_matmul", True),
    ("FP64InFP32", "double_literal", "float_literal", False),
    ("OccupancyLimiter", "big_shared", "scalar_loads", False),
    ("SpecialFunction", "mufu_heavy", "float_literal", False),
    ("AtomicsInLoop", "atomic_loop", "atomic_once", False),
])
def test_rule_fires_on_its_kernel_and_not_on_the_twin(cubins, tool, kernel_name, twin,
                                                      matmul_like):
    assert tool in fired(cubins, kernel_name, matmul_like)
    assert tool not in fired(cubins, twin, matmul_like)


def test_tensor_core_rule_needs_a_matmul_like_task(cubins):
    assert "TensorCore" not in fired(cubins, "naive_matmul", matmul_like=False)


def test_fp64_is_expected_in_an_fp64_task(cubins):
    assert "FP64InFP32" not in fired(cubins, "double_literal", dtype="float64")


def test_findings_carry_numbers_and_ranked_recommendations(cubins):
    profile = profile_cubins([cubins["big_shared"]], "sm_90", "cuda")
    (finding,) = [f for f in profile.findings if f.tool == "OccupancyLimiter"]
    assert "25% (16/64 warps, 4 blocks/SM), limited by shared memory" in finding.message
    assert finding.evidence["shared_bytes"] == 48 * 1024
    assert finding.recommendations and finding.recommendations[0].expected_gain


def test_unknown_block_size_is_assumed_and_said(cubins):
    profile = profile_cubins([cubins["scalar_loads"]], "sm_90", "cuda")
    assert profile.kernels[0].threads_assumed and profile.kernels[0].threads_per_block == 256


@pytest.fixture(scope="module")
def triton_relu_cubins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shipped ReLU kernel compiled for sm_90 with and without divisibility hints."""
    from kernelpro.evaluate.triton_aot import compile_launch
    from kernelpro.task import import_file

    module = import_file(SOLUTIONS / "level1" / "2_ReLU.py", "kernelpro_test_relu_aot")
    out = tmp_path_factory.mktemp("triton")
    launch = {"kernel": "relu_kernel", "signature": {"x_ptr": "*fp32", "out_ptr": "*fp32",
                                                     "n_elements": "i32",
                                                     "BLOCK_SIZE": "constexpr"},
              "constexprs": {"BLOCK_SIZE": 1024}, "num_warps": 4, "num_stages": 3}
    return {"hinted": compile_launch(module.relu_kernel, {**launch, "key": "hinted",
                                                          "divisible": [0, 1, 2]}, out, "sm_90"),
            "unhinted": compile_launch(module.relu_kernel, {**launch, "key": "unhinted",
                                                            "divisible": []}, out, "sm_90")}


def test_triton_vectorization_rule_follows_the_divisibility_hint(triton_relu_cubins):
    unhinted = profile_cubins([triton_relu_cubins["unhinted"]], "sm_90", "triton")
    hinted = profile_cubins([triton_relu_cubins["hinted"]], "sm_90", "triton")
    assert "Vectorization" in {f.tool for f in unhinted.findings}
    assert "Vectorization" not in {f.tool for f in hinted.findings}
    assert hinted.kernels[0].sass.histogram.get("ldg_128", 0) > 0
    assert hinted.kernels[0].threads_per_block == 128  # from the sidecar: 4 warps


def test_matmul_like_tasks_are_recognised():
    like = {p.stem: is_matmul_like(p.read_text()) for p in TASKS.rglob("*.py")}
    assert like["1_Square_matmul"] and like["1_Gemm_Bias_GELU"] and like["1_MLP"]
    assert like["2_Causal_SelfAttention"]
    assert not like["2_ReLU"] and not like["4_Softmax"] and not like["8_CrossEntropyLoss"]

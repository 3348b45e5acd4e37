"""The GPU spec table and driver-name matching."""

from __future__ import annotations

import pytest

from kernelpro.evaluate.device import (
    ARCH_LIMITS,
    SPECS,
    detect_gpu,
    parse_arch,
    spec_for_arch,
    spec_for_name,
)

REQUIRED = ["H100 SXM", "H100 PCIe", "H200", "A100 40GB", "A100 80GB", "L4", "L40S",
            "RTX 4090", "B200"]


def test_table_holds_every_required_gpu_with_positive_numbers():
    for name in REQUIRED:
        spec = SPECS[name]
        for value in (spec.sm_count, spec.fp32_flops, spec.tf32_flops, spec.fp16_flops,
                      spec.bf16_flops, spec.dram_bandwidth, spec.l2_bytes):
            assert value > 0, (name, spec)
        assert spec.cc in ARCH_LIMITS
        # tensor-core rates exceed the CUDA-core fp32 rate on every listed part
        assert spec.fp16_flops > spec.fp32_flops


@pytest.mark.parametrize("driver_name, key", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"),
    ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA H200", "H200"),
    ("NVIDIA A100-SXM4-40GB", "A100 40GB"),
    ("NVIDIA A100-SXM4-80GB", "A100 80GB"),
    ("NVIDIA A100 80GB PCIe", "A100 80GB"),
    ("NVIDIA L4", "L4"),
    ("NVIDIA L40S", "L40S"),
    ("NVIDIA GeForce RTX 4090", "RTX 4090"),
    ("NVIDIA B200", "B200"),
])
def test_driver_names_map_to_the_right_spec(driver_name: str, key: str):
    assert spec_for_name(driver_name).name == key


def test_unknown_gpu_has_no_spec_rather_than_a_wrong_one():
    assert spec_for_name("NVIDIA GeForce GTX 1080") is None
    assert spec_for_name("NVIDIA L40") is None  # not an L4, not an L40S


@pytest.mark.parametrize("text, cc", [("sm_90", (9, 0)), ("sm90", (9, 0)), ("9.0", (9, 0)),
                                      ("sm_100a", (10, 0)), ("sm_86", (8, 6)),
                                      ("compute_89", (8, 9))])
def test_parse_arch_accepts_common_spellings(text: str, cc):
    assert parse_arch(text) == cc


def test_parse_arch_error_says_how_to_write_it():
    with pytest.raises(ValueError, match="write it like sm_90"):
        parse_arch("hopper")


def test_reference_gpu_per_arch_and_ridge_points():
    h100 = spec_for_arch("sm_90")
    assert h100.cc == (9, 0)
    assert h100.ridge_point("float32") == pytest.approx(67e12 / 3.35e12)
    # with tensor cores the fp16 ridge is far to the right of the fp32 one
    assert h100.ridge_point("float16", tensor_cores=True) > 10 * h100.ridge_point("float32")
    with pytest.raises(ValueError, match="no GPU in the spec table has sm_75"):
        spec_for_arch("sm_75")


def test_arch_limits_match_the_programming_guide():
    assert ARCH_LIMITS[(9, 0)].max_shared_per_block == 227 * 1024
    assert ARCH_LIMITS[(8, 0)].shared_per_sm == 164 * 1024
    assert ARCH_LIMITS[(8, 6)].max_warps_per_sm == 48
    assert ARCH_LIMITS[(8, 9)].max_blocks_per_sm == 24


def test_detect_gpu_is_none_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert detect_gpu() is None


@pytest.mark.gpu
def test_detect_gpu_reads_the_driver():
    gpu = detect_gpu()
    assert gpu is not None and gpu.sm_count > 0 and gpu.l2_bytes > 0

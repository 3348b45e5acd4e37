"""GPU detection and the spec table: peaks, SM counts, caches and per-SM limits.

Peak numbers are NVIDIA datasheet figures for dense (non-sparse) math; they are the roofs for
the roofline stage, never measurements. When a GPU is present, the driver's own SM count and L2
size replace the table's. Per-SM limits come from the CUDA C Programming Guide, "Technical
Specifications per Compute Capability", and feed the occupancy calculator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

KIB = 1024
MIB = 1024 * 1024
TFLOPS = 1e12
GBPS = 1e9


@dataclass(frozen=True)
class ArchLimits:
    """Per-SM resource limits of one compute capability (CUDA Programming Guide, table 21)."""

    cc: tuple[int, int]
    max_threads_per_sm: int
    max_warps_per_sm: int
    max_blocks_per_sm: int
    max_threads_per_block: int = 1024
    registers_per_sm: int = 65536
    max_registers_per_thread: int = 255
    register_alloc_unit: int = 256  # registers, allocated per warp
    warp_alloc_granularity: int = 4
    shared_per_sm: int = 228 * KIB  # bytes, the largest carve-out
    max_shared_per_block: int = 227 * KIB  # bytes, with opt-in
    shared_alloc_unit: int = 128  # bytes
    reserved_shared_per_block: int = 1 * KIB  # bytes the system keeps per block (sm_80+)

    @property
    def sm(self) -> str:
        return f"sm_{self.cc[0]}{self.cc[1]}"


ARCH_LIMITS: dict[tuple[int, int], ArchLimits] = {
    (8, 0): ArchLimits((8, 0), 2048, 64, 32, shared_per_sm=164 * KIB,
                       max_shared_per_block=163 * KIB),
    (8, 6): ArchLimits((8, 6), 1536, 48, 16, shared_per_sm=100 * KIB,
                       max_shared_per_block=99 * KIB),
    (8, 9): ArchLimits((8, 9), 1536, 48, 24, shared_per_sm=100 * KIB,
                       max_shared_per_block=99 * KIB),
    (9, 0): ArchLimits((9, 0), 2048, 64, 32),
    (10, 0): ArchLimits((10, 0), 2048, 64, 32),
}


@dataclass(frozen=True)
class GPUSpec:
    """One GPU model: the roofs (FLOP/s, bytes/s) and the sizes the harness needs."""

    name: str
    cc: tuple[int, int]
    sm_count: int
    fp32_flops: float  # FLOP/s, CUDA cores (FMA counted as 2)
    tf32_flops: float  # FLOP/s, dense tensor cores
    fp16_flops: float  # FLOP/s, dense tensor cores, FP32 accumulate
    bf16_flops: float  # FLOP/s, dense tensor cores, FP32 accumulate
    dram_bandwidth: float  # bytes/s
    l2_bytes: int
    memory_bytes: int
    source: str = "NVIDIA datasheet"

    @property
    def limits(self) -> ArchLimits:
        return ARCH_LIMITS[self.cc]

    @property
    def arch(self) -> str:
        return f"sm_{self.cc[0]}{self.cc[1]}"

    def peak_flops(self, dtype: str, tensor_cores: bool = True) -> float:
        """The compute roof for a dtype; fp32 without TF32 is the CUDA-core rate."""
        if dtype in ("float16", "half"):
            return self.fp16_flops if tensor_cores else 2 * self.fp32_flops
        if dtype == "bfloat16":
            return self.bf16_flops if tensor_cores else 2 * self.fp32_flops
        if dtype == "tf32":
            return self.tf32_flops
        return self.fp32_flops

    def ridge_point(self, dtype: str = "float32", tensor_cores: bool = False) -> float:
        """Arithmetic intensity (FLOP/byte) where the compute and memory roofs meet."""
        return self.peak_flops(dtype, tensor_cores) / self.dram_bandwidth


SPECS: dict[str, GPUSpec] = {s.name: s for s in [
    # H100 SXM5 80GB: NVIDIA H100 Tensor Core GPU datasheet (dense = half the sparse figure).
    GPUSpec("H100 SXM", (9, 0), 132, 67 * TFLOPS, 494.7 * TFLOPS, 989.4 * TFLOPS,
            989.4 * TFLOPS, 3350 * GBPS, 50 * MIB, 80 * 1024 * MIB),
    GPUSpec("H100 PCIe", (9, 0), 114, 51 * TFLOPS, 378 * TFLOPS, 756 * TFLOPS,
            756 * TFLOPS, 2000 * GBPS, 50 * MIB, 80 * 1024 * MIB),
    # H200 SXM: same GH100 compute as H100 SXM, 141 GB HBM3e at 4.8 TB/s.
    GPUSpec("H200", (9, 0), 132, 67 * TFLOPS, 494.7 * TFLOPS, 989.4 * TFLOPS,
            989.4 * TFLOPS, 4800 * GBPS, 50 * MIB, 141 * 1024 * MIB),
    # A100 SXM4: NVIDIA A100 datasheet; 40 GB HBM2 1555 GB/s, 80 GB HBM2e 2039 GB/s.
    GPUSpec("A100 40GB", (8, 0), 108, 19.5 * TFLOPS, 156 * TFLOPS, 312 * TFLOPS,
            312 * TFLOPS, 1555 * GBPS, 40 * MIB, 40 * 1024 * MIB),
    GPUSpec("A100 80GB", (8, 0), 108, 19.5 * TFLOPS, 156 * TFLOPS, 312 * TFLOPS,
            312 * TFLOPS, 2039 * GBPS, 40 * MIB, 80 * 1024 * MIB),
    # L4 (AD104): NVIDIA L4 datasheet, 300 GB/s GDDR6.
    GPUSpec("L4", (8, 9), 58, 30.3 * TFLOPS, 60 * TFLOPS, 121 * TFLOPS, 121 * TFLOPS,
            300 * GBPS, 48 * MIB, 24 * 1024 * MIB),
    # L40S (AD102): NVIDIA L40S datasheet, 864 GB/s GDDR6.
    GPUSpec("L40S", (8, 9), 142, 91.6 * TFLOPS, 183 * TFLOPS, 362 * TFLOPS, 362 * TFLOPS,
            864 * GBPS, 96 * MIB, 48 * 1024 * MIB),
    # RTX 4090 (AD102): Ada whitepaper; FP16/BF16 tensor with FP32 accumulate 165.2 TFLOPS.
    GPUSpec("RTX 4090", (8, 9), 128, 82.6 * TFLOPS, 82.6 * TFLOPS, 165.2 * TFLOPS,
            165.2 * TFLOPS, 1008 * GBPS, 72 * MIB, 24 * 1024 * MIB, "NVIDIA Ada whitepaper"),
    # B200: NVIDIA HGX B200 per-GPU figures (1000 W); the driver's L2 size replaces this one.
    GPUSpec("B200", (10, 0), 148, 80 * TFLOPS, 1100 * TFLOPS, 2250 * TFLOPS, 2250 * TFLOPS,
            7700 * GBPS, 126 * MIB, 180 * 1024 * MIB, "NVIDIA HGX B200 datasheet"),
]}

# Name patterns as the driver reports them (torch.cuda.get_device_name / nvidia-smi).
_NAME_PATTERNS: list[tuple[str, str]] = [
    (r"H100.*PCIe", "H100 PCIe"),
    (r"H100", "H100 SXM"),  # "NVIDIA H100 80GB HBM3" is the SXM part
    (r"H200", "H200"),
    (r"A100.*(80GB|80 GB)", "A100 80GB"),
    (r"A100", "A100 40GB"),
    (r"L40S", "L40S"),
    (r"\bL4\b", "L4"),
    (r"4090", "RTX 4090"),
    (r"B200", "B200"),
]


def spec_for_name(device_name: str) -> GPUSpec | None:
    """Map a driver-reported name to a table entry; None for GPUs not in the table."""
    for pattern, key in _NAME_PATTERNS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return SPECS[key]
    return None


def spec_for_arch(arch: str) -> GPUSpec:
    """The reference GPU of an architecture, for offline analysis (`--arch sm_90` -> H100 SXM)."""
    cc = parse_arch(arch)
    for spec in SPECS.values():
        if spec.cc == cc:
            return spec
    raise ValueError(f"no GPU in the spec table has {arch}; known: "
                     + ", ".join(sorted({s.arch for s in SPECS.values()})))


def parse_arch(arch: str) -> tuple[int, int]:
    """'sm_90' / 'sm90' / '9.0' / 'sm_100a' -> (9, 0) / (10, 0)."""
    m = re.fullmatch(r"(?:sm_?|compute_?)?(\d+)\.?(\d)?a?", arch.strip().lower())
    if not m:
        raise ValueError(f"cannot read architecture {arch!r}; write it like sm_90")
    if m.group(2) is not None:
        return int(m.group(1)), int(m.group(2))
    digits = m.group(1)
    return int(digits[:-1]), int(digits[-1])


@dataclass(frozen=True)
class DetectedGPU:
    """What the driver says about the visible GPU, joined with the table."""

    index: int
    name: str
    cc: tuple[int, int]
    sm_count: int
    l2_bytes: int
    memory_bytes: int
    spec: GPUSpec | None  # None when the model is not in the table: roofs unknown


def detect_gpu(index: int = 0) -> DetectedGPU | None:
    """The GPU torch sees, or None on a machine without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(index)
    spec = spec_for_name(props.name)
    l2 = int(getattr(props, "L2_cache_size", 0)) or (spec.l2_bytes if spec else 0)
    if spec is not None:
        spec = replace(spec, sm_count=props.multi_processor_count, l2_bytes=l2,
                       memory_bytes=props.total_memory)
    return DetectedGPU(index, props.name, (props.major, props.minor),
                       props.multi_processor_count, l2, props.total_memory, spec)

"""The occupancy calculator against NVIDIA's own (cuda_occupancy.h compiled with g++)."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from kernelpro.evaluate.device import ARCH_LIMITS
from kernelpro.profile.occupancy import occupancy
from tests.conftest import ROOT

SOURCE = ROOT / "cuda" / "occupancy_reference.cpp"
FLAGS = {0x01: "warps", 0x02: "registers", 0x04: "shared memory", 0x08: "blocks"}


def _header_dirs() -> list[Path]:
    site = Path(sysconfig.get_paths()["purelib"])
    dirs = [Path("/usr/local/cuda/include"), *site.glob("nvidia/cu*/include"),
            site / "triton" / "backends" / "nvidia" / "include"]
    return [d for d in dirs if (d / "cuda_occupancy.h").is_file()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("g++") is None or not _header_dirs():
        pytest.skip("needs g++ and cuda_occupancy.h (CUDA toolkit or pip nvidia-cuda-runtime)")
    exe = tmp_path_factory.mktemp("occ") / "occupancy_reference"
    subprocess.run(["g++", "-O1", f"-I{_header_dirs()[0]}", str(SOURCE), "-o", str(exe)],
                   check=True)
    return exe


def nvidia(exe: Path, cc: tuple[int, int], regs: int, threads: int, shared: int,
           dynamic: int = 0) -> tuple[int, int, int, int, int, tuple[str, ...]]:
    out = subprocess.run([str(exe), str(cc[0]), str(cc[1]), str(regs), str(threads),
                          str(shared), str(dynamic)], capture_output=True, text=True,
                         check=True).stdout.split()
    blocks, by_regs, by_shared, by_warps, by_blocks, flags = map(int, out)
    return blocks, by_regs, by_shared, by_warps, by_blocks, tuple(
        name for bit, name in FLAGS.items() if flags & bit)


GRID = list(itertools.product(
    [(8, 0), (8, 6), (8, 9), (9, 0)],
    [16, 32, 40, 64, 72, 96, 128, 168, 200, 255],  # registers per thread
    [32, 64, 96, 128, 256, 384, 512, 1024],  # threads per block
    [0, 4096, 40_000, 49_152, 100_000],  # static shared bytes
))


def test_matches_nvidia_on_a_grid_of_configurations(reference: Path):
    mismatches = []
    for cc, regs, threads, shared in GRID:
        ours = occupancy(regs, threads, shared, ARCH_LIMITS[cc])
        order = ("warps", "registers", "shared memory", "blocks")
        got = (ours.blocks_per_sm, ours.limit_registers, ours.limit_shared, ours.limit_warps,
               ours.limit_blocks, tuple(sorted(ours.limiters, key=order.index)))
        want = nvidia(reference, cc, regs, threads, shared)
        if got != want:
            mismatches.append((cc, regs, threads, shared, got, want))
    assert not mismatches, mismatches[:5]


def test_dynamic_shared_memory_counts_like_static(reference: Path):
    ours = occupancy(32, 128, 1024, ARCH_LIMITS[(9, 0)], dynamic_shared_bytes=65_536)
    assert ours.blocks_per_sm == nvidia(reference, (9, 0), 32, 128, 1024, 65_536)[0]


def test_register_heavy_kernel_is_register_limited_on_h100():
    occ = occupancy(128, 256, 0, ARCH_LIMITS[(9, 0)])
    assert (occ.blocks_per_sm, occ.warps_per_sm, occ.limiters) == (2, 16, ("registers",))
    assert occ.occupancy == 0.25
    assert occ.describe().startswith("25% (16/64 warps, 2 blocks/SM), limited by registers")


def test_too_many_registers_or_threads():
    assert occupancy(255, 1024, 0, ARCH_LIMITS[(9, 0)]).blocks_per_sm == 0
    with pytest.raises(ValueError, match="threads per block"):
        occupancy(32, 2048, 0, ARCH_LIMITS[(9, 0)])

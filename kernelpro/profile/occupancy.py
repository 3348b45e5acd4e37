"""Theoretical occupancy and its limiting resource, as NVIDIA's calculator computes it.

A transcription of `cudaOccMaxActiveBlocksPerMultiprocessor` from the CUDA toolkit's
header-only `cuda_occupancy.h` (default cache/carve-out state, shared memory opted in), for
sm_80 and newer: registers are allocated per warp in units of 256 within each of 4 SM
sub-partitions; shared memory per block is rounded up to 128 bytes after adding the 1 KiB
the driver reserves per block. tests/test_occupancy.py checks it against that header.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernelpro.evaluate.device import ArchLimits

WARP_SIZE = 32
SUB_PARTITIONS = 4  # cudaOccSubPartitionsPerMultiprocessor for cc >= 7.0


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


@dataclass(frozen=True)
class Occupancy:
    """Resident blocks and warps per SM for one kernel launch configuration."""

    blocks_per_sm: int
    warps_per_sm: int
    max_warps_per_sm: int
    limit_registers: int  # blocks per SM each resource alone allows
    limit_shared: int
    limit_warps: int
    limit_blocks: int
    limiters: tuple[str, ...]  # every resource whose limit equals the result

    @property
    def occupancy(self) -> float:
        """Active warps / maximum warps per SM (0..1)."""
        return self.warps_per_sm / self.max_warps_per_sm

    def describe(self) -> str:
        return (f"{self.occupancy:.0%} ({self.warps_per_sm}/{self.max_warps_per_sm} warps, "
                f"{self.blocks_per_sm} blocks/SM), limited by {' and '.join(self.limiters)}")


def occupancy(registers_per_thread: int, threads_per_block: int, static_shared_bytes: int,
              limits: ArchLimits, dynamic_shared_bytes: int = 0) -> Occupancy:
    """Theoretical occupancy of a kernel on one SM of the given architecture."""
    if not 0 < threads_per_block <= limits.max_threads_per_block:
        raise ValueError(f"threads per block must be in 1..{limits.max_threads_per_block}, "
                         f"got {threads_per_block}")
    warps_per_block = -(-threads_per_block // WARP_SIZE)

    # Registers: cudaOccMaxBlocksPerSMRegsLimit.
    regs_per_warp = _round_up(registers_per_thread * WARP_SIZE, limits.register_alloc_unit)
    regs_assumed = regs_per_warp * _round_up(warps_per_block, SUB_PARTITIONS)
    if (registers_per_thread > limits.max_registers_per_thread
            or regs_assumed > limits.registers_per_sm
            or regs_per_warp * warps_per_block > limits.registers_per_sm):
        by_regs = 0
    elif regs_per_warp == 0:
        by_regs = limits.max_blocks_per_sm
    else:
        warps_per_partition = (limits.registers_per_sm // SUB_PARTITIONS) // regs_per_warp
        by_regs = warps_per_partition * SUB_PARTITIONS // warps_per_block

    # Shared memory: cudaOccMaxBlocksPerSMSmemLimit (default carve-out = the whole SM).
    shared_per_block = _round_up(static_shared_bytes + limits.reserved_shared_per_block
                                 + dynamic_shared_bytes, limits.shared_alloc_unit)
    max_shared_block = limits.max_shared_per_block + limits.reserved_shared_per_block
    if shared_per_block > max_shared_block:
        by_shared = 0
    else:
        by_shared = limits.shared_per_sm // shared_per_block

    by_warps = limits.max_warps_per_sm // warps_per_block
    by_blocks = limits.max_blocks_per_sm
    blocks = min(by_regs, by_shared, by_warps, by_blocks)
    named = {"registers": by_regs, "shared memory": by_shared, "warps": by_warps,
             "blocks": by_blocks}
    return Occupancy(blocks, blocks * warps_per_block, limits.max_warps_per_sm, by_regs,
                     by_shared, by_warps, by_blocks,
                     tuple(name for name, limit in named.items() if limit == blocks))

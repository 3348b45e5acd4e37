"""Disassemble cubins into per-kernel instruction records, histograms and resource usage.

Needs no GPU: cuobjdump (`-sass`, `-res-usage`, `-elf`) from the CUDA toolkit, the pip
`nvidia-cuda-cuobjdump` wheel or Triton's bundled copy. Parsing is pure: text in, records out.

Opcode families follow the SASS instruction set reference (CUDA Binary Utilities, "Instruction
Set Reference"): LDG/STG global, LDS/STS shared, LDL/STL local (spills and local arrays),
HMMA/IMMA/DMMA warp-level tensor-core MMA, HGMMA/IGMMA/QGMMA Hopper warpgroup MMA (wgmma),
MUFU special functions, BAR barriers, SHFL shuffles, ATOM/ATOMG/RED/REDG global atomics.
"""

from __future__ import annotations

import functools
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kernelpro.toolchain import require_tool

RESERVED_SHARED_BYTES = 1024  # the driver's per-block reservation (sm_80+)

_LINE = re.compile(r"/\*(?P<offset>[0-9a-f]{4,})\*/\s+(?P<body>[^;]*);")
_FUNCTION = re.compile(r"^\s*Function\s*:\s*(?P<name>\S+)")

_FP32 = {"FADD", "FMUL", "FFMA", "FMNMX", "FSETP", "FSEL", "FSET", "FCHK", "FADD2", "FMUL2",
         "FFMA2", "FSWZADD", "FRND"}
_FP64 = {"DADD", "DMUL", "DFMA", "DSETP", "DMNMX", "DSET"}
_FP16 = {"HADD2", "HMUL2", "HFMA2", "HMNMX2", "HSETP2", "HSET2"}
_MMA = {"HMMA": "hmma", "IMMA": "imma", "DMMA": "dmma", "BMMA": "bmma",
        "HGMMA": "wgmma", "IGMMA": "wgmma", "QGMMA": "wgmma", "BGMMA": "wgmma"}
_BRANCH = {"BRA", "BRX", "JMP", "JMX", "CALL", "RET", "EXIT", "BSSY", "BSYNC", "WARPSYNC"}
_INT = {"IMAD", "IADD3", "IADD", "LEA", "ISETP", "LOP3", "SHF", "SHL", "SHR", "IMNMX", "IABS",
        "IMUL", "SEL", "POPC", "FLO", "BREV", "PRMT", "VIMNMX", "IDP"}
GLOBAL_ATOMICS = {"ATOM", "ATOMG", "RED", "REDG", "REDUX"}
TENSOR_FAMILIES = frozenset({"hmma", "imma", "dmma", "bmma", "wgmma", "tcgen05_mma"})


@dataclass(frozen=True)
class Instruction:
    offset: int  # byte offset in the kernel's code
    opcode: str  # e.g. "LDG"
    modifiers: tuple[str, ...]  # e.g. ("E", "128")
    predicate: str  # e.g. "@!P0" or ""
    operands: str

    @property
    def branch_target(self) -> int | None:
        """Target offset of a direct branch (BRA 0xd0), else None."""
        if self.opcode not in ("BRA", "JMP"):
            return None
        m = re.search(r"0x([0-9a-f]+)", self.operands)
        return int(m.group(1), 16) if m else None


def width_bits(instr: Instruction) -> int:
    """Access width of a load/store: 128, 64, 32 (the default), 16 or 8 bits."""
    for mod in instr.modifiers:
        if mod in ("128", "64", "32"):
            return int(mod)
        if mod in ("U8", "S8"):
            return 8
        if mod in ("U16", "S16"):
            return 16
    return 32


def family(instr: Instruction) -> str:
    """The histogram bucket of one instruction."""
    op = instr.opcode
    if op == "LDG":
        return f"ldg_{width_bits(instr)}"
    if op == "STG":
        return f"stg_{width_bits(instr)}"
    if op in ("LDGSTS", "LDGDEPBAR"):
        return "ldgsts"
    if op in ("UTMALDG", "UTMASTG", "UBLKCP", "UTMAPF"):
        return "tma"
    if op in ("LDS", "LDSM"):
        return "lds"
    if op in ("STS", "STSM"):
        return "sts"
    if op == "LDL":
        return "ldl"
    if op == "STL":
        return "stl"
    if op in _MMA:
        return _MMA[op]
    if op.startswith("UTC") and "MMA" in op:
        return "tcgen05_mma"  # Blackwell tensor-core MMA
    if op in _FP32:
        return "fp32"
    if op in _FP64 or (op in ("F2F", "I2F", "F2I") and "F64" in instr.modifiers):
        return "fp64"
    if op in _FP16:
        # HFMA2.MMA with zero operands is how the compiler moves constants into registers
        return "other" if "MMA" in instr.modifiers else "fp16"
    if op == "MUFU":
        return "mufu"
    if op.startswith("BAR"):
        return "barrier"
    if op == "SHFL":
        return "shuffle"
    if op in GLOBAL_ATOMICS:
        return "atomic_global"
    if op == "ATOMS":
        return "atomic_shared"
    if op in _BRANCH:
        return "branch"
    if op in _INT:
        return "int"
    return "other"


def parse_instruction(offset: int, body: str) -> Instruction | None:
    body = body.strip()
    predicate = ""
    if body.startswith("@"):
        predicate, _, body = body.partition(" ")
    head, _, operands = body.strip().partition(" ")
    if not head:
        return None
    opcode, *mods = head.split(".")
    return Instruction(offset, opcode, tuple(mods), predicate, operands.strip())


def parse_sass(text: str) -> dict[str, list[Instruction]]:
    """`cuobjdump -sass` output -> kernel name -> instructions in order."""
    kernels: dict[str, list[Instruction]] = {}
    current: list[Instruction] | None = None
    for line in text.splitlines():
        fm = _FUNCTION.match(line)
        if fm:
            current = kernels.setdefault(fm.group("name"), [])
            continue
        lm = _LINE.search(line)
        if lm and current is not None:
            instr = parse_instruction(int(lm.group("offset"), 16), lm.group("body"))
            if instr is not None:
                current.append(instr)
    return kernels


def parse_resource_usage(text: str) -> dict[str, dict[str, int]]:
    """`cuobjdump -res-usage` output -> kernel name -> {REG, STACK, SHARED, LOCAL, ...}."""
    usage: dict[str, dict[str, int]] = {}
    name = None
    for line in text.splitlines():
        m = re.match(r"\s*Function\s+(\S+):", line)
        if m:
            name = m.group(1)
            continue
        if name and "REG:" in line:
            usage[name] = {k: int(v) for k, v in re.findall(r"(\w+(?:\[\d+\])?):(\d+)", line)}
            name = None
    return usage


def parse_elf_attributes(text: str) -> tuple[dict[str, int], set[str]]:
    """`cuobjdump -elf` -> ({kernel: max threads from __launch_bounds__}, {kernels whose shared
    section includes the driver's reserved 1 KiB})."""
    max_threads: dict[str, int] = {}
    reserved: set[str] = set()
    kernel = None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.search(r"\.nv\.info\.(\S+)", line)
        if m and "SECTION" not in line:
            kernel = m.group(1)
        if kernel and ("EIATTR_MAX_THREADS" in line or "EIATTR_REQNTID" in line):
            for follow in lines[i + 1:i + 4]:
                vm = re.search(r"Value:\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)", follow)
                if vm:
                    x, y, z = (int(v, 16) for v in vm.groups())
                    max_threads[kernel] = x * y * z
                    break
    if "__nv_reservedSMEM" in text or ".nv.shared.reserved" in text:
        reserved = set(re.findall(r"\.nv\.shared\.(?!reserved)(\S+)", text))
    return max_threads, reserved


@dataclass
class KernelSass:
    """One kernel's static picture: instructions, histogram, resources."""

    name: str
    instructions: list[Instruction]
    registers: int
    shared_bytes: int  # static shared memory, without the driver's reserved 1 KiB
    stack_bytes: int
    local_bytes: int
    max_threads: int | None = None  # from __launch_bounds__/reqntid, or the Triton launch
    histogram: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.histogram:
            self.histogram = dict(Counter(family(i) for i in self.instructions))

    def count(self, *families: str) -> int:
        return sum(self.histogram.get(f, 0) for f in families)

    @property
    def spill_bytes(self) -> int:
        """Bytes per thread written by STL instructions (each counted once, statically)."""
        return sum(width_bits(i) // 8 for i in self.instructions if i.opcode == "STL")

    @functools.cached_property
    def loops(self) -> tuple[tuple[int, int], ...]:
        """(start, end) offsets of backward branches: the loops of the kernel."""
        spans = []
        for instr in self.instructions:
            target = instr.branch_target
            if target is not None and target < instr.offset:
                spans.append((target, instr.offset))
        return tuple(spans)

    def in_loop(self, instr: Instruction) -> bool:
        return any(start <= instr.offset <= end for start, end in self.loops)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "registers": self.registers,
                "shared_bytes": self.shared_bytes, "stack_bytes": self.stack_bytes,
                "local_bytes": self.local_bytes, "spill_bytes": self.spill_bytes,
                "max_threads": self.max_threads, "instructions": len(self.instructions),
                "histogram": dict(sorted(self.histogram.items()))}


def _cuobjdump(*args: str) -> str:
    tool = require_tool("cuobjdump")
    proc = subprocess.run([str(tool.path), *args], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"cuobjdump {' '.join(args)} failed: {proc.stderr.strip()[:300]}")
    return proc.stdout


def analyze_cubin(cubin: Path) -> list[KernelSass]:
    """Every kernel of a cubin, with its SASS and resources (one cuobjdump call)."""
    dump = _cuobjdump("-elf", "-sass", "-res-usage", str(cubin))
    sass = parse_sass(dump)
    usage = parse_resource_usage(dump)
    max_threads, reserved = parse_elf_attributes(dump)
    kernels = []
    for name, instrs in sass.items():
        res = usage.get(name, {})
        shared = res.get("SHARED", 0)
        if name in reserved and shared >= RESERVED_SHARED_BYTES:
            shared -= RESERVED_SHARED_BYTES
        kernels.append(KernelSass(name, instrs, res.get("REG", 0), shared, res.get("STACK", 0),
                                  res.get("LOCAL", 0), max_threads.get(name)))
    return kernels

"""How long the static tier takes to analyse one compiled candidate (target: under 1 s).

Compiles the SASS-rule kernels in cuda/sass_rules/ with nvcc and two Triton kernels ahead of
time for sm_90, then times `profile_cubins` (three cuobjdump calls, parsing, occupancy and
every SASS rule) per cubin. Prints a table; `--out FILE` also writes it as Markdown.

    python bench/static_analysis.py [--repeats 5] [--out bench/results/static_analysis.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kernelpro.evaluate.compile import compile_cuda_to_cubin  # noqa: E402
from kernelpro.evaluate.triton_aot import compile_launch  # noqa: E402
from kernelpro.profile.static import profile_cubins  # noqa: E402
from kernelpro.task import import_file  # noqa: E402
from kernelpro.toolchain import find_tool  # noqa: E402


def build(out: Path) -> dict[str, tuple[Path, str]]:
    cubins = {}
    for src in sorted((ROOT / "cuda" / "sass_rules").glob("*.cu")):
        flags = ["--maxrregcount=32"] if src.stem == "spill" else []
        cubins[f"cuda/{src.stem}"] = (compile_cuda_to_cubin(src.read_text(),
                                                            out / f"{src.stem}.cubin",
                                                            extra_flags=flags), "cuda")
    sol = ROOT / "examples" / "solutions"
    relu = import_file(sol / "level1" / "2_ReLU.py", "bench_relu")
    mm = import_file(sol / "level1" / "1_Square_matmul.py", "bench_mm")
    cubins["triton/relu"] = (compile_launch(relu.relu_kernel, {
        "kernel": "relu_kernel", "key": "bench", "divisible": [0, 1, 2],
        "signature": {"x_ptr": "*fp32", "out_ptr": "*fp32", "n_elements": "i32",
                      "BLOCK_SIZE": "constexpr"},
        "constexprs": {"BLOCK_SIZE": 1024}, "num_warps": 4, "num_stages": 3}, out, "sm_90"),
        "triton")
    sig = {n: "i32" for n in ("M", "N", "K", "stride_am", "stride_bk", "stride_cm")}
    sig.update({"a_ptr": "*fp32", "b_ptr": "*fp32", "c_ptr": "*fp32"})
    const = {"stride_ak": 1, "stride_bn": 1, "stride_cn": 1, "BLOCK_M": 64, "BLOCK_N": 64,
             "BLOCK_K": 32}
    sig.update({k: "constexpr" for k in const})
    order = ["a_ptr", "b_ptr", "c_ptr", "M", "N", "K", "stride_am", "stride_ak", "stride_bk",
             "stride_bn", "stride_cm", "stride_cn", "BLOCK_M", "BLOCK_N", "BLOCK_K"]
    cubins["triton/matmul"] = (compile_launch(mm.matmul_kernel, {
        "kernel": "matmul_kernel", "key": "bench", "divisible": [0, 1, 2, 3, 4, 5, 6, 8, 10],
        "signature": {k: sig[k] for k in order}, "constexprs": const, "num_warps": 4,
        "num_stages": 3}, out, "sm_90"), "triton")
    return cubins


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if find_tool("nvcc") is None or find_tool("cuobjdump") is None:
        print("needs nvcc and cuobjdump", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        cubins = build(Path(tmp))
        rows = []
        for name, (cubin, backend) in cubins.items():
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                profile = profile_cubins([cubin], "sm_90", backend,
                                         matmul_like="matmul" in name)
                times.append(time.perf_counter() - t0)
            instructions = sum(len(k.sass.instructions) for k in profile.kernels)
            rows.append((name, instructions, len(profile.findings),
                         1e3 * statistics.median(times), 1e3 * max(times)))
    lines = ["| cubin | SASS instructions | findings | median ms | max ms |",
             "|---|---|---|---|---|"]
    lines += [f"| {n} | {i} | {f} | {med:.1f} | {mx:.1f} |" for n, i, f, med, mx in rows]
    worst = max(r[4] for r in rows)
    lines.append("")
    lines.append(f"Slowest analysis: {worst:.1f} ms (target: under 1000 ms). Machine: "
                 f"{platform.processor() or platform.machine()}, {platform.python_version()}, "
                 f"{args.repeats} repeats per cubin, CPU only (no GPU involved).")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"# Static analysis time per compiled candidate\n\n"
                            f"`python bench/static_analysis.py --repeats {args.repeats}`, "
                            f"{time.strftime('%Y-%m-%d')}.\n\n{table}\n")
    return 0 if worst < 1000 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Compile Triton kernels ahead of time for a GPU architecture on a machine without one.

Under the interpreter (TRITON_INTERPRET=1) nothing is compiled, so we record each launch —
argument types, constexpr values, launch options — and hand the same specialisation the JIT
would use (pointers and ints divisible by 16, ints equal to 1 as constants) to
`triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))`. The result is the cubin a
GPU run would have produced for those shapes. Runs inside the worker only.

The interpreter leaves `triton.language` unusable for the real compiler in its process, so
the compile step runs in a child process of the worker without TRITON_INTERPRET:
`python -m kernelpro.evaluate.triton_aot CANDIDATE LAUNCHES.json OUT_DIR ARCH`, or with
`--job-on-stdin` to start it before the launches are known (its imports overlap the calls).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernelpro.evaluate.device import parse_arch

# Launch options the interpreter accepts beside the kernel's own parameters.
LAUNCH_OPTIONS = {"num_warps": 4, "num_stages": 3}
AOT_TIMEOUT_S = 600
_DTYPE_CODES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64",
                "int64": "i64", "int32": "i32", "int16": "i16", "int8": "i8", "uint8": "u8",
                "bool": "i1", "float8_e4m3fn": "fp8e4nv", "float8_e5m2": "fp8e5"}


@dataclass(frozen=True)
class RecordedLaunch:
    fn: Any  # the kernel's Python function
    signature: tuple[tuple[str, str], ...]
    constexprs: tuple[tuple[str, Any], ...]
    divisible: tuple[int, ...]  # parameter indices known divisible by 16
    num_warps: int
    num_stages: int

    def to_json(self) -> dict[str, Any]:
        return {"kernel": self.fn.__name__, "signature": dict(self.signature),
                "constexprs": dict(self.constexprs), "divisible": list(self.divisible),
                "num_warps": self.num_warps, "num_stages": self.num_stages, "key": self.key}

    @property
    def key(self) -> str:
        blob = repr((self.fn.__qualname__, self.signature, self.constexprs, self.divisible,
                     self.num_warps, self.num_stages))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _is_constexpr(fn: Any) -> list[bool]:
    from triton.runtime.jit import JITFunction

    return [p.is_constexpr for p in JITFunction(fn).params]


def describe_launch(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> RecordedLaunch:
    """The JIT's specialisation of one launch, from the actual argument values."""
    import torch

    options = {k: kwargs.pop(k, v) for k, v in LAUNCH_OPTIONS.items()}
    for extra in ("num_ctas", "maxnreg", "enable_fp_fusion", "launch_cooperative_grid",
                  "debug", "warmup"):
        kwargs.pop(extra, None)
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    constexpr = _is_constexpr(fn)
    signature, constants, divisible = [], [], []
    for i, (name, value) in enumerate(bound.arguments.items()):
        if constexpr[i] and not isinstance(value, int | float | bool | str | None):
            raise TypeError(f"cannot compile ahead of time: constexpr {name} is a "
                            f"{type(value).__name__}")
        if constexpr[i] or value is None:
            signature.append((name, "constexpr"))
            constants.append((name, value))
        elif isinstance(value, torch.Tensor):
            signature.append((name, "*" + _DTYPE_CODES[str(value.dtype).removeprefix("torch.")]))
            if value.data_ptr() % 16 == 0:
                divisible.append(i)
        elif isinstance(value, bool):
            signature.append((name, "i1"))
        elif isinstance(value, int):
            if value == 1:  # the JIT turns ints equal to 1 into constants
                signature.append((name, "constexpr"))
                constants.append((name, 1))
                continue
            signature.append((name, "i32" if -2**31 <= value < 2**31 else "i64"))
            if value % 16 == 0:
                divisible.append(i)
        elif isinstance(value, float):
            signature.append((name, "fp32"))
        else:
            raise TypeError(f"cannot compile ahead of time: argument {name} is a "
                            f"{type(value).__name__}")
    return RecordedLaunch(fn, tuple(signature), tuple(constants), tuple(divisible),
                          int(options["num_warps"]), int(options["num_stages"]))


class LaunchRecorder:
    """Records every distinct Triton launch made under the interpreter."""

    def __init__(self) -> None:
        self.launches: dict[str, RecordedLaunch] = {}
        self.errors: list[str] = []
        self._early: Any = None  # (thread, keys, results) of a compile started early
        self._spare: subprocess.Popen[str] | None = None  # a compiler process, imports done

    def start_compiler(self) -> None:
        """Start the compiler process now, so its Python, torch and Triton imports overlap
        with the first calls instead of following them; it waits for its job on stdin."""
        if self._spare is None:
            self._spare = self._compiler()

    @staticmethod
    def _compiler() -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        return subprocess.Popen([sys.executable, "-m", "kernelpro.evaluate.triton_aot",
                                 "--job-on-stdin"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)

    def compile_early(self, candidate: Path, out_dir: Path, arch: str) -> None:
        """Start compiling the launches recorded so far in the background (the judge's next
        calls keep the interpreter busy meanwhile); `finish` waits for it."""
        import threading

        if self._early is not None or not self.launches:
            return
        keys = set(self.launches)
        results: list[Path] = []
        thread = threading.Thread(
            target=lambda: results.extend(self.compile_all(candidate, out_dir, arch, keys)),
            name="kernelpro-aot", daemon=True)
        self._early = (thread, keys, results)
        thread.start()

    def finish(self, candidate: Path, out_dir: Path, arch: str) -> list[Path]:
        """Every recorded launch compiled: the early batch, then any launch seen since."""
        if self._early is None:
            return self.compile_all(candidate, out_dir, arch)
        thread, keys, results = self._early
        thread.join()
        rest = set(self.launches) - keys
        return results + (self.compile_all(candidate, out_dir, arch, rest) if rest else [])

    def install(self) -> None:
        from triton.runtime.interpreter import InterpretedFunction

        original = InterpretedFunction.run
        recorder = self

        def run(self: Any, *args: Any, grid: Any, warmup: Any, **kwargs: Any) -> Any:
            try:
                launch = describe_launch(self.fn, args, dict(kwargs))
                recorder.launches.setdefault(launch.key, launch)
            except (TypeError, KeyError) as exc:
                recorder.errors.append(f"{self.fn.__name__}: {exc}")
            return original(self, *args, grid=grid, warmup=warmup, **kwargs)

        InterpretedFunction.run = run  # type: ignore[method-assign]

    def compile_all(self, candidate: Path, out_dir: Path, arch: str,
                    keys: set[str] | None = None) -> list[Path]:
        """Compile the recorded launches (those of `keys`, or all) in a fresh process; a cubin
        and a JSON sidecar each."""
        chosen = [launch for key, launch in self.launches.items() if keys is None or key in keys]
        if not chosen:
            return []
        out_dir.mkdir(parents=True, exist_ok=True)
        spec = out_dir / f"launches-{len(chosen)}-{os.getpid()}-{id(chosen)}.json"
        spec.write_text(json.dumps([launch.to_json() for launch in chosen]))
        proc, self._spare = self._spare or self._compiler(), None
        job = json.dumps([str(candidate), str(spec), str(out_dir), arch])
        try:
            stdout, stderr = proc.communicate(job + "\n", timeout=AOT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self.errors.append(f"timed out after {AOT_TIMEOUT_S} s")
            return []
        try:
            outcome = json.loads(stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            self.errors.append(f"compiler process exited {proc.returncode}: "
                               f"{stderr.strip()[-300:]}")
            return []
        self.errors += outcome["errors"]
        return [Path(p) for p in outcome["cubins"]]


def compile_launch(kernel: Any, launch: dict[str, Any], out_dir: Path, arch: str) -> Path:
    """Compile one recorded launch of a JITFunction for `arch`; write cubin and sidecar."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend

    major, minor = parse_arch(arch)
    target = GPUTarget("cuda", major * 10 + minor, 32)
    backend = make_backend(target)
    src = ASTSource(fn=kernel, signature=launch["signature"], constexprs=launch["constexprs"],
                    attrs={(i,): [["tt.divisibility", 16]] for i in launch["divisible"]})
    options = backend.parse_options({"num_warps": launch["num_warps"],
                                     "num_stages": launch["num_stages"]})
    compiled = triton.compile(src, target=target, options=options.__dict__)
    stem = f"{launch['kernel']}-{launch['key']}"
    cubin = out_dir / f"{stem}.cubin"
    cubin.write_bytes(compiled.asm["cubin"])
    (out_dir / f"{stem}.json").write_text(json.dumps({
        "kernel": launch["kernel"], "arch": arch, "num_warps": launch["num_warps"],
        "num_stages": launch["num_stages"], "threads_per_block": 32 * launch["num_warps"],
        "shared_bytes": int(compiled.metadata.shared), "signature": launch["signature"],
        "constexprs": launch["constexprs"], "divisible_by_16": launch["divisible"]},
        indent=1))
    return cubin


def main(argv: list[str]) -> int:
    """Child-process entry: import the candidate (no interpreter) and compile each launch."""
    from kernelpro.task import import_file

    if argv[1:] == ["--job-on-stdin"]:  # started early: the imports above are done already
        import triton.compiler  # noqa: F401

        argv = [argv[0], *json.loads(sys.stdin.readline())]
    candidate, spec, out_dir, arch = Path(argv[1]), Path(argv[2]), Path(argv[3]), argv[4]
    module = import_file(candidate, "kernelpro_aot_candidate")
    cubins, errors = [], []
    for launch in json.loads(spec.read_text()):
        kernel = getattr(module, launch["kernel"], None)
        if kernel is None or not hasattr(kernel, "arg_names"):
            errors.append(f"{launch['kernel']}: not a module-level @triton.jit function")
            continue
        try:
            cubins.append(str(compile_launch(kernel, launch, out_dir, arch)))
        except Exception as exc:  # Triton raises many types; report each and go on
            errors.append(f"{launch['kernel']}: {type(exc).__name__}: {exc}"[:400])
    print(json.dumps({"cubins": cubins, "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

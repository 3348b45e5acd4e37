"""Load KernelBench-format task files, hash them, make their inputs, and scale them down.

A task file is plain Python with `class Model(nn.Module)`, module-level shape constants,
`get_inputs()` and `get_init_inputs()` (../shared/reference/kernelbench.md). We import it in a
fresh module of its own, never in a namespace shared with a candidate.

Scaling: CPU correctness (Triton interpreter) cannot run a 6 GB ReLU, so a task can be run with
its module-level integer literals divided by 2**k. The new source is the old one with those
literals replaced, so derived constants (`total = batch * dim`) follow.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import re
import sys
import threading
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kernelpro.types import InputSpec, ScalePlan, Task, one_line

# Integer literals at least this large are treated as sizes; smaller ones (dim=1,
# kernel_size=3, num_classes=10) are left alone because they are indices or small factors.
MIN_SCALABLE = 32
# A scaled constant never drops below this, so shapes stay non-trivial.
MIN_SCALED_VALUE = 8
# Default budget for a scaled task: tensor elements of inputs plus parameters.
DEFAULT_MAX_ELEMENTS = 1 << 18

KERNELBENCH_SEED = 42  # KernelBench seeds model construction and trial seeds from 42
# CPython 3.11's AST builder keeps its recursion depth in interpreter-wide state: two threads
# parsing at once can fail with "AST constructor recursion depth mismatch". Parsers that may
# run beside another thread (evaluate_many's pool, the proposal prefetch) take this lock.
PARSE_LOCK = threading.Lock()


class TaskError(Exception):
    """A task file that cannot be used; the message is one line naming the file."""

    def __init__(self, path: Path | str, problem: str):
        self.path = Path(path)
        self.problem = one_line(problem)
        super().__init__(f"{self.path}: {self.problem}")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def load_task(path: str | Path) -> Task:
    """Read, validate and describe a task file; raise TaskError with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(path, "no such file")
    try:
        source = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(path, f"cannot read: {exc}") from None
    tree = _parse(path, source)
    _require_definitions(path, tree)
    module = import_source(path, source, f"kernelpro_task_{sha256_text(source)[:12]}")
    inputs = describe_inputs(path, module)
    return Task(
        name=path.stem,
        level=_level_of(path),
        problem_id=_problem_id(path.stem),
        path=path.resolve(),
        source=source,
        sha=sha256_text(source),
        dtype=_float_dtype(inputs),
        inputs=tuple(inputs),
        shape_constants=shape_constants(tree),
    )


def _parse(path: Path, source: str) -> ast.Module:
    try:
        return ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise TaskError(path, f"syntax error at line {exc.lineno}: {exc.msg}") from None


def _require_definitions(path: Path, tree: ast.Module) -> None:
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assigned = {t.id for n in tree.body if isinstance(n, ast.Assign)
                for t in n.targets if isinstance(t, ast.Name)}
    if "Model" not in classes and "Model" not in assigned:
        raise TaskError(path, "no `class Model` defined (a KernelBench task needs one)")
    for name in ("get_inputs", "get_init_inputs"):
        if name not in funcs and name not in assigned:
            raise TaskError(path, f"no `{name}()` defined (a KernelBench task needs one)")


def import_source(path: Path, source: str, module_name: str) -> types.ModuleType:
    """Execute `source` as a fresh module named `module_name`; errors become TaskError."""
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module  # torch.compile and pickling look modules up by name
    try:
        code = compile(source, str(path), "exec")
        exec(code, module.__dict__)
    except Exception as exc:  # a task's top level may raise anything; report it in one line
        sys.modules.pop(module_name, None)
        raise TaskError(path, f"importing the task raised {type(exc).__name__}: {exc}") from None
    return module


def import_file(path: Path, module_name: str) -> types.ModuleType:
    """Import a real file (Triton's @jit reads the source back from the file)."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None, f"cannot import {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def call_get_inputs(path: Path, module: types.ModuleType, name: str = "get_inputs") -> list[Any]:
    """Call get_inputs/get_init_inputs and check it returns a list or tuple."""
    fn = getattr(module, name, None)
    if not callable(fn):
        raise TaskError(path, f"`{name}` is not callable")
    try:
        values = fn()
    except Exception as exc:  # task code; any exception is the task's problem
        raise TaskError(path, f"{name}() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(values, list | tuple):
        raise TaskError(path, f"{name}() returned {type(values).__name__}, expected a list")
    return list(values)


def describe_inputs(path: Path, module: types.ModuleType) -> list[InputSpec]:
    """Shapes and dtypes of get_inputs() without allocating: factories run on the meta device."""
    import torch

    with torch.device("meta"):
        values = call_get_inputs(path, module)
        call_get_inputs(path, module, "get_init_inputs")
    return [_spec_of(v) for v in values]


def _spec_of(value: Any) -> InputSpec:
    import torch

    if isinstance(value, torch.Tensor):
        return InputSpec("tensor", tuple(value.shape), str(value.dtype).removeprefix("torch."))
    return InputSpec("scalar", (), type(value).__name__)


def _float_dtype(inputs: Sequence[InputSpec]) -> str:
    for spec in inputs:
        if spec.kind == "tensor" and spec.dtype in ("float32", "float16", "bfloat16", "float64"):
            return spec.dtype
    return "float32"


def _level_of(path: Path) -> int | None:
    for part in reversed(path.resolve().parts[:-1]):
        m = re.fullmatch(r"level_?(\d+)", part)
        if m:
            return int(m.group(1))
    return None


def _problem_id(stem: str) -> int | None:
    head = stem.split("_", 1)[0]
    return int(head) if head.isdigit() else None


# --- scaling -------------------------------------------------------------------------------

def shape_constants(tree: ast.Module) -> dict[str, int]:
    """Module-level `NAME = <int literal>` assignments (the KernelBench shape constants)."""
    found: dict[str, int] = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant)
                and type(node.value.value) is int):
            found[node.targets[0].id] = node.value.value
    return found


def rewrite_constants(source: str, overrides: dict[str, int]) -> str:
    """Return `source` with the module-level int literals in `overrides` replaced."""
    if not overrides:
        return source
    tree = ast.parse(source)
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in overrides):
            node.value = ast.Constant(overrides[node.targets[0].id])
    return ast.unparse(tree)


def scaled_values(constants: dict[str, int], k: int) -> dict[str, int]:
    """Divide every size-like constant by 2**k, never below MIN_SCALED_VALUE."""
    out = {}
    for name, value in constants.items():
        if value >= MIN_SCALABLE:
            new = max(value >> k, MIN_SCALED_VALUE)
            if new != value:
                out[name] = new
    return out


def footprint(path: Path, source: str) -> int:
    """Tensor elements of get_inputs() plus the Model's parameters, counted on the meta device."""
    import torch

    module = import_source(path, source, f"kernelpro_meta_{sha256_text(source)[:12]}")
    try:
        with torch.device("meta"):
            inputs = call_get_inputs(path, module)
            init = call_get_inputs(path, module, "get_init_inputs")
            try:
                model = module.Model(*init)
                params = sum(p.numel() for p in model.parameters())
                params += sum(b.numel() for b in model.buffers())
            except Exception:  # some models cannot be built on meta; count inputs only
                params = 0
    finally:
        sys.modules.pop(module.__name__, None)
    return params + sum(v.numel() for v in inputs if isinstance(v, torch.Tensor))


def plan_scale(task: Task, max_elements: int = DEFAULT_MAX_ELEMENTS,
               validate: Callable[[str], str | None] | None = None) -> ScalePlan:
    """Pick the smallest k so the task fits in `max_elements`, and check it still runs.

    `validate(source)` returns None when the scaled task runs, else a reason; by default the
    reference is run once on the CPU at the scaled size.
    """
    validate = validate or (lambda src: run_reference_once(task.path, src))
    full = footprint(task.path, task.source)
    if full <= max_elements:
        return ScalePlan({}, {}, full)
    tried = []
    for k in range(1, 40):
        overrides = scaled_values(task.shape_constants, k)
        source = rewrite_constants(task.source, overrides)
        size = footprint(task.path, source)
        if size > max_elements and any(v > MIN_SCALED_VALUE for v in overrides.values()):
            continue
        # Fits (or cannot shrink further). Validate, relaxing k until the task runs.
        for kk in range(k, max(k - 4, 0), -1):
            overrides = scaled_values(task.shape_constants, kk)
            source = rewrite_constants(task.source, overrides)
            problem = validate(source)
            if problem is None:
                original = {n: task.shape_constants[n] for n in overrides}
                return ScalePlan(overrides, original, footprint(task.path, source))
            tried.append(f"k={kk}: {problem}")
        break
    if not task.shape_constants:
        raise TaskError(task.path, f"has {full} elements and no module-level int constants "
                                   "to scale down")
    raise TaskError(task.path, "cannot be scaled down: " + "; ".join(tried[:2]))


def run_reference_once(path: Path, source: str) -> str | None:
    """Run Model(*get_init_inputs())(*get_inputs()) on the CPU; None if it worked."""
    import torch

    try:
        module = import_source(path, source, f"kernelpro_check_{sha256_text(source)[:12]}")
    except TaskError as exc:
        return exc.problem
    try:
        torch.manual_seed(KERNELBENCH_SEED)
        model = module.Model(*call_get_inputs(path, module, "get_init_inputs"))
        with torch.no_grad():
            model(*call_get_inputs(path, module))
        return None
    except TaskError as exc:
        return exc.problem
    except Exception as exc:  # the scaled task is broken; report why
        return f"{type(exc).__name__}: {one_line(str(exc), 120)}"
    finally:
        sys.modules.pop(module.__name__, None)

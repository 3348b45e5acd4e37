"""What a reference computes, for the template proposer: a Pattern, or why not.

Two ways in. Elementwise chains and matmul epilogues are read from a torch.fx trace of the
Model (each pointwise node becomes one Triton statement). Row operations and losses are
identified numerically: the reference runs on small inputs and is compared with each known
semantics (softmax, log-softmax, LayerNorm, RMSNorm, sum/mean/max/argmax over the last
dimension, with or without a residual add; cross-entropy, MSE). A numeric match is the
recognition, so a reference written in an unusual way is still found, and a near miss is not
taken for a match.
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from kernelpro.types import Task

SMALL_SIZE_SHIFT = 5  # size constants divided by 2^5 (at least 8) for recognition runs
MATCH_TOL = 1e-5


@dataclass
class Pattern:
    kind: str  # "elementwise" | "row" | "loss" | "matmul"
    op: str = ""  # row: softmax, log_softmax, layer_norm, rms_norm, sum, mean, amax, argmax;
    # loss: cross_entropy, mse; matmul: matmul (A @ B) or linear
    residual: bool = False  # row ops on x + y
    keepdim: bool = False
    statements: list[str] = field(default_factory=list)  # elementwise / epilogue Triton lines
    inputs: int = 1  # tensor inputs loaded by an elementwise kernel
    result: str = "v0"  # the variable holding the elementwise result
    module: str = ""  # attribute path of the LayerNorm / Linear submodule
    weight: str = ""  # attribute path of the RMSNorm weight
    eps: str = ""  # expression for eps in forward (e.g. "self.eps" or "1e-06")
    bias: bool = False
    describe: str = ""


class Unsupported(Exception):
    """The templates cannot express this reference; the message says why."""


# --- pointwise vocabulary -------------------------------------------------------------------

def _gelu(a: str, approximate: str) -> str:
    if approximate == "tanh":
        inner = f"0.7978845608028654 * ({a} + 0.044715 * {a} * {a} * {a})"
        return f"0.5 * {a} * (1.0 + (2.0 / (1.0 + tl.exp(-2.0 * ({inner}))) - 1.0))"
    return f"0.5 * {a} * (1.0 + tl.math.erf({a} * 0.7071067811865476))"


UNARY = {
    "relu": lambda a, kw: f"tl.maximum({a}, 0.0)",
    "sigmoid": lambda a, kw: f"1.0 / (1.0 + tl.exp(-{a}))",
    "tanh": lambda a, kw: f"2.0 / (1.0 + tl.exp(-2.0 * {a})) - 1.0",
    "exp": lambda a, kw: f"tl.exp({a})",
    "abs": lambda a, kw: f"tl.abs({a})",
    "neg": lambda a, kw: f"-{a}",
    "silu": lambda a, kw: f"{a} / (1.0 + tl.exp(-{a}))",
    "gelu": lambda a, kw: _gelu(a, kw.get("approximate", "none")),
    "square": lambda a, kw: f"{a} * {a}",
}
BINARY = {operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/",
          torch.add: "+", torch.sub: "-", torch.mul: "*", torch.div: "/", "add": "+",
          "sub": "-", "mul": "*", "div": "/", "truediv": "/"}
MODULE_UNARY = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.GELU: "gelu",
                nn.SiLU: "silu"}


def _unary_name(node: Any, model: nn.Module) -> str | None:
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        return name if name in UNARY else None
    if node.op == "call_method":
        return node.target if node.target in UNARY else None
    if node.op == "call_module":
        mod = model.get_submodule(node.target)
        return MODULE_UNARY.get(type(mod))
    return None


def _pointwise(node: Any, model: nn.Module, env: dict[str, str], lines: list[str]) -> bool:
    """Translate one pointwise fx node into a Triton statement; False if it is not one."""
    def arg(a: Any) -> str | None:
        if hasattr(a, "name") and a.name in env:
            return env[a.name]
        if isinstance(a, int | float) and not isinstance(a, bool):
            return repr(float(a))
        return None

    name = _unary_name(node, model)
    out = f"v{len(lines) + 10}"
    if name is not None:
        a = arg(node.args[0])
        kwargs = dict(node.kwargs)
        if name == "gelu" and node.op == "call_module":
            kwargs["approximate"] = model.get_submodule(node.target).approximate
        if a is None:
            return False
        lines.append(f"{out} = {UNARY[name](a, kwargs)}")
        env[node.name] = out
        return True
    key = node.target if node.op == "call_function" else (
        node.target if node.op == "call_method" else None)
    if key in BINARY and len(node.args) == 2 and not node.kwargs:
        a, b = arg(node.args[0]), arg(node.args[1])
        if a is None or b is None:
            return False
        lines.append(f"{out} = {a} {BINARY[key]} {b}")
        env[node.name] = out
        return True
    if key in (operator.pow, torch.pow, "pow") and isinstance(node.args[1], int) \
            and node.args[1] in (2, 3):
        a = arg(node.args[0])
        if a is None:
            return False
        lines.append(f"{out} = " + " * ".join([a] * node.args[1]))
        env[node.name] = out
        return True
    return False


# --- the model at a small size ----------------------------------------------------------------

@dataclass
class Probe:
    model: nn.Module
    inputs: list[Any]
    module: Any  # the task module at the small size


def small_probe(task: Task) -> Probe:
    from kernelpro.evaluate.correctness import set_seed
    from kernelpro.task import (
        KERNELBENCH_SEED,
        call_get_inputs,
        import_source,
        rewrite_constants,
        scaled_values,
    )

    source = rewrite_constants(task.source, scaled_values(task.shape_constants,
                                                          SMALL_SIZE_SHIFT))
    module = import_source(task.path, source, f"kernelpro_templates_{task.sha[:12]}")
    set_seed(KERNELBENCH_SEED)
    model = module.Model(*call_get_inputs(task.path, module, "get_init_inputs"))
    set_seed(KERNELBENCH_SEED + 1)
    inputs = call_get_inputs(task.path, module)
    return Probe(model, inputs, module)


def _tensor_inputs(probe: Probe) -> list[torch.Tensor]:
    return [v for v in probe.inputs if isinstance(v, torch.Tensor)]


# --- recognition ------------------------------------------------------------------------------

def recognise(task: Task) -> Pattern:
    """The Pattern of a task's reference, or Unsupported with the reason."""
    try:
        probe = small_probe(task)
    except Exception as exc:  # the task does not build at a small size
        raise Unsupported(f"the reference does not build at a small size ({exc})") from None
    if len(_tensor_inputs(probe)) != len(probe.inputs):
        raise Unsupported("forward takes non-tensor inputs")
    traced = _trace(probe.model)
    if traced is not None:
        found = _from_graph(traced, probe)
        if found is not None:
            return found
    found = _numeric(probe)
    if found is not None:
        return found
    raise Unsupported("no template matches: not an elementwise chain, a row operation "
                      "(softmax, norms, sum/mean/max/argmax), a loss (cross-entropy, MSE), or "
                      "one matmul with an elementwise epilogue")


def _trace(model: nn.Module) -> Any:
    try:
        return torch.fx.symbolic_trace(model)
    except Exception:  # data-dependent control flow: numeric recognition may still work
        return None


def _from_graph(traced: Any, probe: Probe) -> Pattern | None:
    nodes = [n for n in traced.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
    placeholders = [n for n in traced.graph.nodes if n.op == "placeholder"]
    env = {p.name: f"v{i}" for i, p in enumerate(placeholders)}
    lines: list[str] = []
    matmul = [n for n in nodes if _is_matmul(n, probe.model)]
    if len(matmul) > 1:
        return None
    if not matmul:
        if all(_pointwise(n, probe.model, env, lines) for n in nodes) and nodes:
            if len(placeholders) > 2:
                return None
            return Pattern("elementwise", statements=lines, inputs=len(placeholders),
                           result=env[nodes[-1].name],
                           describe=f"elementwise chain of {len(nodes)} op(s)")
        return None
    mm = matmul[0]
    if nodes[0] is not mm:
        return None
    env = {mm.name: "acc"}
    rest = nodes[1:]
    if not all(_pointwise(n, probe.model, env, lines) for n in rest):
        return None
    result = env[rest[-1].name] if rest else "acc"
    if mm.op == "call_module":
        lin = probe.model.get_submodule(mm.target)
        return Pattern("matmul", "linear", statements=lines, result=result, module=mm.target,
                       bias=lin.bias is not None,
                       describe=f"linear{' + bias' if lin.bias is not None else ''}"
                                f"{f' + {len(rest)} elementwise op(s)' if rest else ''}")
    if any(a.op != "placeholder" for a in mm.args[:2]):
        return None
    return Pattern("matmul", "matmul", statements=lines, result=result, inputs=2,
                   describe=f"A @ B{f' + {len(rest)} elementwise op(s)' if rest else ''}")


def _is_matmul(node: Any, model: nn.Module) -> bool:
    if node.op == "call_module":
        return isinstance(model.get_submodule(node.target), nn.Linear)
    if node.op == "call_function":
        return node.target in (torch.matmul, torch.mm, operator.matmul)
    return node.op == "call_method" and node.target in ("matmul", "mm")


def _close(a: Any, b: Any) -> bool:
    """`a` (a tensor, or a function computing one) matches `b`; a raising function does not."""
    if callable(a):
        try:
            a = a()
        except Exception:  # a semantics that does not apply to these inputs
            return False
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        return False
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b)
    return bool(torch.allclose(a, b, atol=MATCH_TOL, rtol=MATCH_TOL))


def _numeric(probe: Probe) -> Pattern | None:
    from kernelpro.evaluate.correctness import clone_all

    with torch.no_grad():
        ref = probe.model(*clone_all(probe.inputs))
    xs = _tensor_inputs(probe)
    floats = [x for x in xs if x.is_floating_point()]
    if len(xs) == 2 and xs[0].is_floating_point() and not xs[1].is_floating_point():
        pred, target = xs
        if pred.dim() == 2 and _close(lambda: F.cross_entropy(pred, target), ref):
            return Pattern("loss", "cross_entropy", describe="cross-entropy (mean)")
        return None
    if len(floats) == 2 and floats[0].shape == floats[1].shape:
        a, b = floats
        if _close(lambda: ((a - b) ** 2).mean(), ref):
            return Pattern("loss", "mse", describe="mean squared error")
        return _row(probe, a + b, ref, residual=True)
    if len(floats) == 1 and len(xs) == 1:
        return _row(probe, floats[0], ref, residual=False)
    return None


def _row(probe: Probe, x: torch.Tensor, ref: Any, residual: bool) -> Pattern | None:
    if x.dim() < 1:
        return None
    model = probe.model
    pre = "residual add + " if residual else ""
    simple = {"softmax": lambda: torch.softmax(x, -1),
              "log_softmax": lambda: torch.log_softmax(x, -1)}
    for op, fn in simple.items():
        if _close(fn, ref):
            return Pattern("row", op, residual=residual, describe=f"{pre}{op} over rows")
    lns = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.LayerNorm)]
    if len(lns) == 1:
        name, ln = lns[0]
        if tuple(ln.normalized_shape) == (x.shape[-1],) and ln.elementwise_affine and \
                _close(lambda: F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps),
                       ref):
            return Pattern("row", "layer_norm", residual=residual, module=name,
                           bias=ln.bias is not None, describe=f"{pre}LayerNorm over rows")
    weights = [(n, p) for n, p in model.named_parameters() if p.shape == (x.shape[-1],)]
    if len(weights) == 1:
        wname, w = weights[0]
        eps_attr = getattr(model, "eps", None)
        for eps in ([eps_attr] if isinstance(eps_attr, float) else []) + [1e-6, 1e-5, 1e-8]:
            rms = x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w
            if _close(rms, ref):
                expr = "self.eps" if eps == eps_attr else repr(eps)
                return Pattern("row", "rms_norm", residual=residual, weight=wname, eps=expr,
                               describe=f"{pre}RMSNorm over rows")
    if residual:
        return None
    for op in ("sum", "mean", "amax"):
        for keepdim in (True, False):
            if _close(lambda op=op, k=keepdim: getattr(torch, op)(x, -1, keepdim=k), ref):
                return Pattern("row", op, keepdim=keepdim, describe=f"row {op}")
    for keepdim in (False, True):
        if _close(lambda k=keepdim: torch.argmax(x, -1, keepdim=k), ref):
            return Pattern("row", "argmax", keepdim=keepdim, describe="row argmax")
    return None


def model_parts(task: Task) -> tuple[str, list[str]]:
    """The reference Model's __init__ source (to copy into ModelNew) and forward's arguments."""
    from kernelpro.task import PARSE_LOCK

    with PARSE_LOCK:  # the proposal prefetch thread parses beside the evaluation threads
        tree = ast.parse(task.source)
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Model"),
               None)
    if cls is None:
        raise Unsupported("no class Model")
    init = next((n for n in cls.body if isinstance(n, ast.FunctionDef)
                 and n.name == "__init__"), None)
    fwd = next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "forward"),
               None)
    if init is None or fwd is None:
        raise Unsupported("Model has no __init__ or forward")
    init_src = ast.get_source_segment(task.source, init) or ""
    init_src = init_src.replace("super(Model, self)", "super(ModelNew, self)")
    args = [a.arg for a in fwd.args.args[1:]]
    if fwd.args.vararg or fwd.args.kwonlyargs:
        raise Unsupported("forward takes *args or keyword-only arguments")
    return init_src, args

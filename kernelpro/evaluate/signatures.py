"""What a cheating candidate's output looks like: pure functions that name the exploit.

A plain "values outside tolerance" tells the model nothing and the user less. When a check
fails, these functions look for the fingerprint of a known cheat (reference/exploits.md) so
the verdict says which one: a constant or all-zero output, the answer to an earlier call's
inputs, the reference computed at a lower precision. They never decide pass/fail alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

# reference/exploits.md, numbered as there; verdicts quote the name in brackets.
EXPLOITS = {
    1: "side stream",
    2: "result caching",
    3: "reused memory",
    4: "input mutation",
    5: "trivial output",
    6: "distribution-specific answer",
    7: "shape specialisation",
    8: "delegation",
    9: "harness monkey-patching",
    10: "lazy output",
    11: "background thread",
    12: "precision downgrade",
    13: "memoised timed calls",
    14: "fallback to PyTorch",
    15: "context poisoning",
}


def tag(number: int) -> str:
    """The bracketed exploit name a rejection reason ends with, e.g. '[trivial output]'."""
    return f"[{EXPLOITS[number]}]"


def _floats(out: Any) -> list[torch.Tensor]:
    from kernelpro.evaluate.correctness import flatten_outputs

    try:
        return [t.detach().to("cpu").double() for t in flatten_outputs(out)
                if isinstance(t, torch.Tensor) and t.is_floating_point()]
    except TypeError:
        return []


def relative_l2(ref: Any, cand: Any) -> float:
    """||cand - ref|| / ||ref|| over all floating outputs (0 when the reference is all zero)."""
    refs, cands = _floats(ref), _floats(cand)
    if len(refs) != len(cands) or any(r.shape != c.shape for r, c in zip(refs, cands,
                                                                          strict=True)):
        return math.inf
    num = sum(float(((c - r) ** 2).sum()) for r, c in zip(refs, cands, strict=True))
    den = sum(float((r ** 2).sum()) for r in refs)
    return math.sqrt(num / den) if den > 0 else 0.0


def relative_l2_limit(tol: float) -> float:
    """Largest relative L2 error an honest kernel shows at this allclose tolerance.

    allclose bounds each element by atol + rtol*|ref|; when the outputs are far smaller than
    atol, that bound says nothing and all zeros pass. Honest fp32 kernels sit near 1e-6.
    """
    return min(10 * tol, 0.05)


def constant_value(out: Any) -> float | None:
    """The single value every floating output element holds, or None if they differ."""
    floats = [t for t in _floats(out) if t.numel()]
    if not floats:
        return None
    first = float(floats[0].flatten()[0])
    if all(bool((t == first).all()) for t in floats):
        return first
    return None


def same_values(a: Any, b: Any) -> bool:
    """Bit-identical floating outputs (used to see that an output ignores its inputs)."""
    fa, fb = _floats(a), _floats(b)
    return len(fa) == len(fb) and all(x.shape == y.shape and torch.equal(x, y)
                                      for x, y in zip(fa, fb, strict=True))


def _close(a: Any, b: Any, tol: float) -> bool:
    fa, fb = _floats(a), _floats(b)
    return bool(fa) and len(fa) == len(fb) and all(
        x.shape == y.shape and bool(torch.allclose(x, y, atol=tol, rtol=tol))
        for x, y in zip(fa, fb, strict=True))


def _max_abs(a: Any, b: Any) -> float:
    fa, fb = _floats(a), _floats(b)
    if not fa or len(fa) != len(fb) or any(x.shape != y.shape for x, y in zip(fa, fb,
                                                                             strict=True)):
        return math.inf
    return max(float((x - y).abs().max()) if x.numel() else 0.0
               for x, y in zip(fa, fb, strict=True))


def explain_mismatch(ref: Any, cand: Any, earlier_refs: Sequence[Any] = (),
                     lowered: dict[str, Any] | None = None) -> str | None:
    """Name the cheat behind a wrong output, or None if it looks like an ordinary bug.

    `earlier_refs` are reference outputs for earlier inputs (a cached or reused result equals
    one of them); `lowered` maps a precision name to the reference computed at it.
    """
    value = constant_value(cand)
    if value is not None and constant_value(ref) is None:
        what = "all zeros" if value == 0 else f"the constant {value:.6g}"
        return f"the output is {what} while the reference's varies {tag(5)}"
    for prev in earlier_refs:
        if not same_values(prev, ref) and _close(prev, cand, 1e-6):
            return (f"the output is the answer for an earlier call's inputs "
                    f"{tag(2)} or {tag(3)}")
    return precision_match(ref, cand, lowered or {})


def precision_match(ref: Any, cand: Any, lowered: dict[str, Any]) -> str | None:
    """A reason if the output is much closer to a lower-precision reference than to the real
    one: the work was done in tf32/fp16/bf16, whatever the tolerance let through."""
    for name, low in lowered.items():
        to_low, to_ref = _max_abs(cand, low), _max_abs(cand, ref)
        if math.isfinite(to_low) and to_ref > 0 and to_low <= 0.1 * to_ref:
            return (f"the output matches the reference computed with {name} (max abs error "
                    f"{to_low:.3g} to it vs {to_ref:.3g} to the reference) {tag(12)}")
    return None


def lowered_references(ref_model: Any) -> Any:
    """The reference at lower precisions, to recognise a precision downgrade (exploit 12):
    inputs and weights rounded to tf32/fp16/bf16 with fp32 math (what tensor cores do), and
    the whole model run in fp16/bf16."""
    import copy

    import torch

    from kernelpro.evaluate.correctness import flatten_outputs

    def as_float(out: Any) -> list[Any]:
        return [t.float() if t.is_floating_point() else t for t in flatten_outputs(out)]

    def rounded(model: Any, args: list[Any], to: Any) -> list[Any]:
        model = copy.deepcopy(model)
        with torch.no_grad():
            for p in [*model.parameters(), *model.buffers()]:
                if p.dtype == torch.float32:
                    p.copy_(to(p))
            return as_float(model(*[to(v) if isinstance(v, torch.Tensor) and
                                    v.dtype == torch.float32 else v for v in args]))

    def lowered(inputs: list[Any]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if not any(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in inputs):
            return found
        tries = {"tf32-rounded inputs": round_tf32}
        for low in (torch.bfloat16, torch.float16):
            tries[f"{str(low).removeprefix('torch.')}-rounded inputs"] = \
                lambda t, low=low: t.to(low).float()
        for name, to in tries.items():
            try:
                found[name] = rounded(ref_model, inputs, to)
            except Exception:  # an op the rounding does not fit: no explanation from it
                continue
        for low in (torch.bfloat16, torch.float16):
            try:
                model = copy.deepcopy(ref_model).to(low)
                args = [v.to(low) if isinstance(v, torch.Tensor) and v.is_floating_point()
                        else v for v in inputs]
                with torch.no_grad():
                    found[f"{str(low).removeprefix('torch.')} throughout"] = \
                        as_float(model(*args))
            except Exception:  # an op without a kernel at that precision: no explanation
                continue
        return found

    return lowered


def round_tf32(t: Any) -> Any:
    """fp32 rounded to TF32's 10-bit mantissa (round to nearest), still stored as fp32."""
    import torch

    bits = t.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32).view(t.shape)

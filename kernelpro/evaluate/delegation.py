"""Which aten ops a forward calls, and whether a candidate hands the task's core op to PyTorch.

A TorchDispatchMode sees every aten op, including those a C++ extension calls through ATen
(`at::matmul` inside a load_inline module), so a CUDA candidate that wraps cuBLAS through
ATen is caught the same way as one calling `torch.matmul`. Kernels a candidate launches itself
(Triton, raw CUDA) never reach the dispatcher. On a GPU, kernel names from the profiler also
catch vendor-library kernels called without ATen.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Bookkeeping ops: allocation, views, copies, dtype/device moves. Never "the work".
TRIVIAL_OPS = frozenset({
    "empty", "empty_like", "empty_strided", "zeros", "zeros_like", "ones", "ones_like", "full",
    "full_like", "new_empty", "new_empty_strided", "new_zeros", "new_ones", "new_full",
    "scalar_tensor", "arange", "copy_", "clone", "_to_copy", "to", "detach", "alias", "view",
    "_unsafe_view", "reshape", "as_strided", "t", "transpose", "permute", "contiguous",
    "expand", "select", "slice", "unsqueeze", "squeeze", "flatten", "unflatten", "split",
    "split_with_sizes", "chunk", "unbind", "narrow", "lift_fresh", "fill_", "zero_", "item",
    "_local_scalar_dense", "set_", "resize_", "is_same_size", "size", "stride", "numel",
    "sym_size", "sym_stride", "sym_numel", "dim", "_reshape_alias", "view_as", "expand_as",
    "index_select", "cat", "stack", "record_stream", "normal_", "uniform_", "random_",
    "_has_compatible_shallow_copy_type", "detach_", "resolve_conj", "resolve_neg",
})
# Ops that are one piece of work under different names.
FAMILIES = {
    "matmul": {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "addmv", "mv", "dot",
               "_scaled_mm", "einsum", "tensordot", "addbmm"},
    "convolution": {"convolution", "_convolution", "conv1d", "conv2d", "conv3d",
                    "cudnn_convolution", "mkldnn_convolution", "convolution_overrideable",
                    "_slow_conv2d_forward", "slow_conv3d_forward", "conv_transpose2d"},
    "softmax": {"_softmax", "softmax", "_log_softmax", "log_softmax", "_safe_softmax"},
    # One normalisation under another name (LayerNorm as GroupNorm(1), exploit 22).
    "normalization": {"native_layer_norm", "layer_norm", "native_group_norm", "group_norm",
                      "native_batch_norm", "batch_norm", "_native_batch_norm_legit",
                      "_native_batch_norm_legit_no_training", "instance_norm", "rms_norm",
                      "_fused_rms_norm"},
    "attention": {"_scaled_dot_product_flash_attention", "scaled_dot_product_attention",
                  "_scaled_dot_product_efficient_attention", "_flash_attention_forward",
                  "_scaled_dot_product_cudnn_attention", "_efficient_attention_forward",
                  "_scaled_dot_product_flash_attention_for_cpu"},
}
_FAMILY_OF = {op: fam for fam, ops in FAMILIES.items() for op in ops}
CORE_FLOP_SHARE = 0.25  # an op with this share of the reference's FLOPs is core
CORE_BYTES_SHARE = 0.5  # without FLOP-counted ops: outputs at least this share of the largest
# Kernel-name prefixes of vendor libraries (cuBLAS, cuBLASLt, CUTLASS, cuDNN).
LIBRARY_KERNEL = re.compile(r"^(void )?(cutlass|cublas|cudnn|nvjet|sm\d+_xmma|ampere_|volta_|"
                            r"turing_|hopper_|gemmSN_|gemmk1_|gemv2[NT]_|splitKreduce_)",
                            re.IGNORECASE)


def family(op: str) -> str:
    return _FAMILY_OF.get(op, op)


class AtenRecorder(TorchDispatchMode):
    """Counts aten ops (by overload packet) and the output elements each produced."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.out_elements: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        self.calls[name] += 1
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.out_elements[name] += t.numel()
        return out

    def work_ops(self) -> set[str]:
        return {op for op in self.calls if op not in TRIVIAL_OPS}


def record(fn: Callable[[], Any]) -> tuple[Any, AtenRecorder]:
    rec = AtenRecorder()
    with rec:
        out = fn()
    return out, rec


def flop_counts(fn: Callable[[], Any]) -> dict[str, int]:
    """FLOPs per aten op of one call, from torch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return {getattr(op, "__name__", str(op)): int(n)
            for op, n in counter.get_flop_counts().get("Global", {}).items()}


def core_families(flops: dict[str, int], rec: AtenRecorder) -> set[str]:
    """The families of the reference's core ops: most of its FLOPs, else its biggest outputs."""
    total = sum(flops.values())
    if total > 0:
        return {family(op) for op, n in flops.items() if n >= CORE_FLOP_SHARE * total}
    sizes = {op: n for op, n in rec.out_elements.items() if op not in TRIVIAL_OPS}
    if not sizes:
        return set()
    biggest = max(sizes.values())
    return {family(op) for op, n in sizes.items() if n >= CORE_BYTES_SHARE * biggest}


@dataclass
class Delegation:
    """What the candidate hands back to PyTorch."""

    core: set[str]  # families of the reference's core ops
    shared: list[str] = field(default_factory=list)  # reference work ops the candidate calls
    delegated_core: list[str] = field(default_factory=list)  # of those, the core ones
    library_kernels: list[str] = field(default_factory=list)  # vendor kernels seen on a GPU
    flop_share: float = 0.0  # FLOPs of the candidate's own aten ops / the reference's

    @property
    def flagged(self) -> bool:
        return bool(self.delegated_core or self.library_kernels) \
            or self.flop_share >= CORE_FLOP_SHARE

    def describe(self) -> str:
        parts = []
        if self.delegated_core:
            parts.append("calls " + ", ".join(f"aten::{op}" for op in self.delegated_core)
                         + " (the task's core op) instead of its own kernel")
        if self.library_kernels:
            parts.append("launches vendor-library kernels "
                         + ", ".join(sorted(set(self.library_kernels))[:3]))
        if self.flop_share >= CORE_FLOP_SHARE and not self.delegated_core:
            parts.append(f"does {100 * self.flop_share:.0f}% of the reference's FLOPs in "
                         "PyTorch ops (an equivalent op of another family does the core work)")
        return "; ".join(parts)


def judge(ref_flops: dict[str, int], ref_rec: AtenRecorder, cand_rec: AtenRecorder,
          kernel_names: Iterable[str] = (), cand_flops: int = 0) -> Delegation:
    """`cand_flops`: the most FLOPs the candidate's aten ops did in one call (torch's flop
    counter); a share of the reference's that large is the core work, whatever the op."""
    core = core_families(ref_flops, ref_rec)
    ref_fams = {family(op) for op in ref_rec.work_ops()}
    shared = sorted(op for op in cand_rec.work_ops() if family(op) in ref_fams)
    delegated = [op for op in shared if family(op) in core]
    # Matmul-like work the reference does is core even when the candidate uses another form.
    delegated += [op for op in cand_rec.work_ops()
                  if family(op) in core and op not in delegated]
    library = [k for k in kernel_names if LIBRARY_KERNEL.search(k)]
    total = sum(ref_flops.values())
    return Delegation(core=core, shared=shared, delegated_core=sorted(set(delegated)),
                      library_kernels=library, flop_share=cand_flops / total if total else 0.0)

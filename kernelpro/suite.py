"""Which task files a bench runs: a KernelBench checkout or a folder of task files, a level,
a problem-id list, and each task's op category for the per-category fast_p rows.

Pure functions over paths and text; nothing here imports a task.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Checked in order: the first category whose pattern matches the task's name (then its
# source) wins, so a matmul with a GELU epilogue is "matmul", not "activation".
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("attention", r"attention|scaled_dot_product|\battn\b"),
    ("convolution", r"conv"),
    ("matmul", r"matmul|gemm|\bmm\b|bmm|linear|einsum|mlp|dense|matrix|addmm"),
    ("loss", r"loss|cross_?entropy|nll|hinge|kl_?div|mse|huber|triplet|cosine_similarity"),
    ("normalization", r"norm"),
    ("pooling", r"pool"),
    ("reduction", r"\bsum\b|mean|\bmax\b|\bmin\b|argmax|argmin|prod|cumsum|cumprod|reduc"),
    ("activation", r"relu|gelu|sigmoid|tanh|softmax|softplus|softsign|elu|swish|silu|mish|"
                   r"hardtanh|hardsigmoid|leaky|selu|activation"),
)


@dataclass(frozen=True)
class SuiteTask:
    path: Path
    level: int | None
    problem_id: int | None
    name: str  # file stem

    @property
    def key(self) -> str:
        """Unique within a bench: `level1/19_ReLU`, or the stem for a flat folder."""
        return f"level{self.level}/{self.name}" if self.level is not None else self.name


def parse_ids(spec: str | None) -> set[int] | None:
    """`1-20,36` -> {1..20, 36}; None -> every task. ValueError names the bad part."""
    if spec is None or not spec.strip():
        return None
    ids: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"--tasks: {part!r} is not a number or a range like 1-20")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"--tasks: range {part!r} runs backwards")
        ids.update(range(lo, hi + 1))
    return ids


def level_dirs(suite: Path) -> dict[int, Path]:
    """`levelN` folders of a suite: the suite itself, `KernelBench/` inside a KernelBench
    checkout, or nothing for a flat folder of task files."""
    for root in (suite / "KernelBench", suite):
        found = {int(m.group(1)): p for p in sorted(root.glob("level*")) if p.is_dir()
                 and (m := re.fullmatch(r"level_?(\d+)", p.name))}
        if found:
            return found
    return {}


def discover(suite: Path, level: int | None = None, ids: set[int] | None = None
             ) -> list[SuiteTask]:
    """The selected task files, by level then problem id then name."""
    if not suite.exists():
        raise ValueError(f"{suite}: no such suite (a KernelBench checkout or a folder of tasks)")
    if suite.is_file():
        raise ValueError(f"{suite} is a file; give a folder (use `kernelpro optimize` for one "
                         "task)")
    levels = level_dirs(suite)
    if level is not None and levels and level not in levels:
        raise ValueError(f"{suite} has no level{level} folder (it has "
                         + ", ".join(f"level{n}" for n in sorted(levels)) + ")")
    if levels:
        folders = [(n, p) for n, p in sorted(levels.items()) if level is None or n == level]
    else:
        folders = [(level, suite)]
    found = []
    for lvl, folder in folders:
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            head = path.stem.split("_", 1)[0]
            pid = int(head) if head.isdigit() else None
            if ids is not None and pid not in ids:
                continue
            found.append(SuiteTask(path, lvl, pid, path.stem))
    found.sort(key=lambda t: (t.level or 0, t.problem_id if t.problem_id is not None else 1 << 30,
                              t.name))
    if not found:
        raise ValueError(f"no task files selected in {suite}"
                         + (f" at level {level}" if level is not None else "")
                         + (" with those --tasks ids" if ids is not None else ""))
    return found


def op_category(name: str, source: str = "") -> str:
    """The dominant op of a task, from its file name first and then its forward code."""
    stem = re.sub(r"^\d+_", "", name).replace("_", " ").lower()
    code = _forward_text(source).lower()
    for text in (stem, code):
        for category, pattern in CATEGORIES:
            if re.search(pattern, text):
                return category
    return "other"


def _forward_text(source: str) -> str:
    """The code of Model (its __init__ and forward), without comments and docstrings' noise."""
    m = re.search(r"class Model\b.*?(?=\n(?:def |class |[A-Za-z_]+\s*=)|\Z)", source, re.S)
    body = m.group(0) if m else source
    return "\n".join(line.split("#", 1)[0] for line in body.splitlines())

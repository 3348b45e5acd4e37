"""Find the ModelNew file in a model's completion: fenced or not, with a reason when absent."""

from __future__ import annotations

import re
from dataclasses import dataclass

FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+\-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
IMPORT_LINE = re.compile(r"^(import |from \S+ import )", re.MULTILINE)


@dataclass(frozen=True)
class Extraction:
    code: str | None
    start: int = 0  # character span of the code in the completion (for its logprobs)
    end: int = 0
    reason: str | None = None


def extract_code(completion: str) -> Extraction:
    """The code block defining `class ModelNew`; the last one if several do."""
    blocks = [(m.group(2), m.start(2), m.start(2) + len(m.group(2)))
              for m in FENCE.finditer(completion)]
    with_model = [b for b in blocks if "class ModelNew" in b[0]]
    if with_model:
        code, start, end = with_model[-1]
        return Extraction(code.strip("\n") + "\n", start, end)
    if blocks and "class ModelNew" not in completion:
        return Extraction(None, reason=f"{len(blocks)} code block(s) but none defines "
                                       "`class ModelNew`")
    if "class ModelNew" in completion:
        # Unfenced: from the first import (or the class) to the end.
        where = completion.index("class ModelNew")
        first_import = IMPORT_LINE.search(completion, 0, where)
        start = first_import.start() if first_import else where
        return Extraction(completion[start:].strip("\n") + "\n", start, len(completion))
    if not completion.strip():
        return Extraction(None, reason="the completion is empty")
    return Extraction(None, reason="no code in the completion (no `class ModelNew`)")

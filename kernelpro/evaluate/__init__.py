"""What a candidate is worth: the only stage that touches the GPU, always in worker processes.

Imports are lazy: the candidate runner imports modules of this package inside its sandbox and
must not pull in the evaluator (and everything it imports) to do so.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EvalConfig", "evaluate_candidate", "evaluate_many"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kernelpro.evaluate import evaluator

        return getattr(evaluator, name)
    raise AttributeError(f"module 'kernelpro.evaluate' has no attribute {name!r}")

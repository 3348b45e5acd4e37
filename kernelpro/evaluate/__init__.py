"""What a candidate is worth: the only stage that touches the GPU, always in a worker process."""

from kernelpro.evaluate.evaluator import EvalConfig, evaluate_candidate, evaluate_many

__all__ = ["EvalConfig", "evaluate_candidate", "evaluate_many"]

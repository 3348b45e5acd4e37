"""What every proposer takes and returns (DESIGN §9).

A ProposalRequest is everything a proposer may use: the task, the backend, the parent kernel
and its rendered diagnosis, the search memory. A Proposal is one candidate file (or the reason
there is none), with the completion it came from and, for an LLM, its token logprobs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from kernelpro.types import Task

Backend = Literal["triton", "cuda", "cuda-nvrtc"]


@dataclass(frozen=True)
class ProposalRequest:
    task: Task
    backend: Backend = "triton"
    parent_source: str | None = None  # the kernel to improve; None at the root
    diagnosis: str = ""  # Diagnosis.render() of the parent
    memory: tuple[str, ...] = ()  # search-memory lessons, most important first
    parent_knobs: dict[str, int] | None = None  # template proposals: the parent's knob values
    recommendations: tuple[str, ...] = ()  # tool names whose recommendations to follow


@dataclass
class TokenLogprobs:
    """Per-token log probabilities of one completion."""

    tokens: list[str]
    logprobs: list[float]

    @property
    def surprisal(self) -> float:
        return -sum(self.logprobs)

    def span(self, start: int, end: int) -> TokenLogprobs:
        """The tokens overlapping characters [start, end) of the completion text."""
        out_t, out_l, pos = [], [], 0
        for tok, lp in zip(self.tokens, self.logprobs, strict=True):
            nxt = pos + len(tok)
            if nxt > start and pos < end:
                out_t.append(tok)
                out_l.append(lp)
            pos = nxt
        return TokenLogprobs(out_t, out_l)


@dataclass
class Surprisal:
    """-sum(log p) and its per-token mean, over a token sequence."""

    total: float
    mean: float
    tokens: int

    @classmethod
    def of(cls, lp: TokenLogprobs) -> Surprisal:
        n = len(lp.logprobs)
        total = lp.surprisal
        return cls(total, total / n if n else math.nan, n)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    requests: int = 0
    cached: int = 0  # completions served from the cache (no request, no cost)

    def add(self, other: Usage) -> None:
        for name in ("prompt_tokens", "completion_tokens", "cost_usd", "requests", "cached"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Proposal:
    proposer: str  # "llm:<model>", "templates", "replay"
    source: str | None  # the candidate file, or None when the completion had no usable code
    reason: str | None = None  # why there is no source
    completion: str = ""
    prompt_hash: str = ""
    logprobs: TokenLogprobs | None = None
    surprisal: Surprisal | None = None  # over the whole completion
    code_surprisal: Surprisal | None = None  # over the extracted code only
    knobs: dict[str, int] = field(default_factory=dict)  # template knob values
    notes: list[str] = field(default_factory=list)
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Proposer(Protocol):
    name: str

    def propose(self, request: ProposalRequest, n: int) -> list[Proposal]:
        """Up to n proposals; never raises for model or network trouble (reasons instead)."""
        ...

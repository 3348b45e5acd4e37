"""The replay proposer: re-serves the completions (with logprobs) an earlier run recorded.

The LLM proposer appends every completion to a JSONL log (`LLMConfig.log_path`): prompt hash,
sample index, text, tokens and logprobs. Replay answers a request from that log: first the
completions recorded for the same prompt, in order; with `strict=False`, a prompt it never saw
gets the next unused completions of the log (for studies where prompts drift). Nothing is
sent anywhere.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from kernelpro.propose.base import Proposal, ProposalRequest, Surprisal, TokenLogprobs
from kernelpro.propose.extract import extract_code
from kernelpro.propose.prompts import DEFAULT_BUDGET_TOKENS, build_messages, prompt_hash


class ReplayError(Exception):
    pass


class ReplayProposer:
    def __init__(self, log: Path, model: str, temperature: float = 1.0,
                 max_tokens: int = 4096, strict: bool = True,
                 budget_tokens: int = DEFAULT_BUDGET_TOKENS) -> None:
        self.name = "replay"
        self.model, self.temperature, self.max_tokens = model, temperature, max_tokens
        self.strict, self.budget_tokens = strict, budget_tokens
        self.by_prompt: dict[str, list[dict]] = defaultdict(list)
        self.order: list[dict] = []
        try:
            lines = Path(log).read_text().splitlines()
        except OSError as exc:
            raise ReplayError(f"{log}: cannot read the completion log ({exc})") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = rec["prompt_hash"]
                rec["text"]
            except (ValueError, KeyError, TypeError):
                raise ReplayError(f"{log}:{n}: not a completion record") from None
            self.by_prompt[key].append(rec)
            self.order.append(rec)
        self._served: set[int] = set()

    def propose(self, request: ProposalRequest, n: int) -> list[Proposal]:
        messages = build_messages(request, self.budget_tokens)
        key = prompt_hash(messages, model=self.model, temperature=self.temperature,
                          max_tokens=self.max_tokens)
        pool = [r for r in self.by_prompt.get(key, []) if id(r) not in self._served]
        if len(pool) < n and not self.strict:
            pool += [r for r in self.order if id(r) not in self._served and r not in pool]
        out = []
        for rec in pool[:n]:
            self._served.add(id(rec))
            out.append(self._proposal(rec, key))
        while len(out) < n:
            out.append(Proposal(self.name, None, prompt_hash=key,
                                reason="the replay log has no (more) completions for this "
                                       "prompt"))
        return out

    def _proposal(self, rec: dict, key: str) -> Proposal:
        found = extract_code(rec["text"])
        prop = Proposal(self.name, found.code, found.reason, rec["text"], key, cached=True)
        if rec.get("tokens") is not None and rec.get("logprobs") is not None:
            lp = TokenLogprobs(rec["tokens"], rec["logprobs"])
            prop.logprobs, prop.surprisal = lp, Surprisal.of(lp)
            if found.code is not None:
                prop.code_surprisal = Surprisal.of(lp.span(found.start, found.end))
        else:
            prop.notes.append("no logprobs in the replay log")
        return prop

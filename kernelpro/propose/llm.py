"""The LLM proposer: any OpenAI-compatible chat endpoint, with token logprobs.

Configured by OPENAI_BASE_URL / OPENAI_API_KEY and a model name. Each completion's token
logprobs are kept (surprisal over the whole completion and over the extracted code, for
selection). Endpoints without logprobs still work: the proposals say so. n samples per request
where the endpoint honours `n`, else parallel single requests under a concurrency limit.
Retries back off on 429 (honouring Retry-After), 5xx, timeouts and dropped connections.
Completions are cached on disk by prompt hash and sample index, so a rerun costs nothing, and
optionally appended to a JSONL log that the replay proposer re-serves. The API key lives only
in this process: never in a prompt, a log, the cache, or a worker's environment.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelpro.propose.base import (
    Proposal,
    ProposalRequest,
    Surprisal,
    TokenLogprobs,
    Usage,
)
from kernelpro.propose.extract import extract_code
from kernelpro.propose.prompts import DEFAULT_BUDGET_TOKENS, build_messages, prompt_hash

BACKOFF_BASE_S, BACKOFF_CAP_S = 1.0, 60.0


@dataclass(frozen=True)
class LLMConfig:
    model: str
    base_url: str | None = None  # default: OPENAI_BASE_URL, else the openai package's default
    api_key: str | None = field(default=None, repr=False)  # default: OPENAI_API_KEY
    temperature: float = 1.0
    max_tokens: int = 4096
    timeout_s: float = 180.0
    max_retries: int = 5
    concurrency: int = 4
    logprobs: bool = True
    price_in_per_mtok: float | None = None  # USD per million prompt tokens
    price_out_per_mtok: float | None = None  # USD per million completion tokens
    budget_tokens: int = DEFAULT_BUDGET_TOKENS  # prompt budget
    cache_dir: Path | None = None  # default: <kernelpro cache>/completions
    log_path: Path | None = None  # JSONL of every completion, for replay


@dataclass
class Completion:
    text: str
    tokens: list[str] | None = None
    logprobs: list[float] | None = None
    finish_reason: str | None = None


class RetriesExhausted(Exception):
    pass


class LLMProposer:
    def __init__(self, cfg: LLMConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        self.cfg = cfg
        self.name = f"llm:{cfg.model}"
        self.usage = Usage()
        self.notes: list[str] = []  # things worth telling the user once (no logprobs, no n)
        self._sleep = sleep
        self._client: Any = None
        self._n_supported: bool | None = None
        self._logprobs_ok = cfg.logprobs
        self._lock = threading.Lock()

    # --- public -----------------------------------------------------------------------------

    def propose(self, request: ProposalRequest, n: int) -> list[Proposal]:
        messages = build_messages(request, self.cfg.budget_tokens)
        key = prompt_hash(messages, model=self.cfg.model, temperature=self.cfg.temperature,
                          max_tokens=self.cfg.max_tokens)
        completions: dict[int, Completion | str] = {}
        for i in range(n):
            hit = self._cache_get(key, i)
            if hit is not None:
                completions[i] = hit
        cached = set(completions)
        missing = [i for i in range(n) if i not in completions]
        if missing:
            for i, got in zip(missing, self._fetch(messages, len(missing)), strict=True):
                completions[i] = got
                if isinstance(got, Completion):
                    self._cache_put(key, i, got)
                    self._log(key, i, got)
        with self._lock:
            self.usage.cached += len(cached)
        return [self._proposal(key, completions[i], i in cached) for i in range(n)]

    # --- requests ---------------------------------------------------------------------------

    def _client_or_make(self) -> Any:
        if self._client is None:
            try:
                import openai
            except ImportError as exc:
                raise RuntimeError("the LLM proposer needs the openai package: pip install "
                                   "'kernelpro[llm]'") from exc
            base_url = self.cfg.base_url or os.environ.get("OPENAI_BASE_URL")
            api_key = self.cfg.api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"
            self._client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0,
                                         timeout=self.cfg.timeout_s)
        return self._client

    def _fetch(self, messages: list[dict[str, str]], n: int) -> list[Completion | str]:
        """n completions (or a one-line reason each); n per request when the endpoint allows."""
        results: list[Completion | str] = []
        if n > 1 and self._n_supported is not False:
            try:
                results = self._request(messages, n)
            except RetriesExhausted as exc:
                return [str(exc)] * n
            if len(results) < n and self._n_supported is None:
                self._n_supported = False
                self._note(f"the endpoint returned {len(results)} of {n} samples for n={n}: "
                           "sampling with parallel requests instead")
            elif len(results) >= n:
                self._n_supported = True
            if len(results) >= n:
                return results[:n]
        rest = n - len(results)
        with ThreadPoolExecutor(max_workers=max(1, self.cfg.concurrency)) as pool:
            singles = list(pool.map(lambda _: self._single(messages), range(rest)))
        return results + singles

    def _single(self, messages: list[dict[str, str]]) -> Completion | str:
        try:
            got = self._request(messages, 1)
        except RetriesExhausted as exc:
            return str(exc)
        return got[0] if got else "the endpoint returned no choices"

    def _request(self, messages: list[dict[str, str]], n: int) -> list[Completion]:
        import openai

        client = self._client_or_make()
        last = ""
        for attempt in range(self.cfg.max_retries + 1):
            params: dict[str, Any] = dict(model=self.cfg.model, messages=messages,
                                          temperature=self.cfg.temperature,
                                          max_tokens=self.cfg.max_tokens)
            if n > 1:
                params["n"] = n
            if self._logprobs_ok:
                params["logprobs"] = True
            try:
                response = client.chat.completions.create(**params)
            except openai.RateLimitError as exc:
                last = f"429 rate limited: {_short(exc)}"
                self._sleep(_retry_after(exc) or _backoff(attempt))
                continue
            except openai.BadRequestError as exc:
                if self._logprobs_ok and "logprob" in str(exc).lower():
                    self._logprobs_ok = False
                    self._note("the endpoint rejects logprobs: continuing without them "
                               "(surprisal selection will fall back)")
                    continue
                raise RetriesExhausted(f"API error 400: {_short(exc)}") from None
            except openai.APIStatusError as exc:
                if exc.status_code < 500 and exc.status_code != 408:
                    raise RetriesExhausted(f"API error {exc.status_code}: {_short(exc)}") \
                        from None
                last = f"API error {exc.status_code}: {_short(exc)}"
                self._sleep(_retry_after(exc) or _backoff(attempt))
                continue
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                last = f"{type(exc).__name__}: {_short(exc)}"
                self._sleep(_backoff(attempt))
                continue
            self._account(response)
            return [self._completion(c) for c in response.choices]
        raise RetriesExhausted(f"gave up after {self.cfg.max_retries + 1} attempts: {last}")

    def _completion(self, choice: Any) -> Completion:
        text = choice.message.content or ""
        tokens = logprobs = None
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        if content:
            tokens = [t.token for t in content]
            logprobs = [float(t.logprob) for t in content]
        elif self._logprobs_ok:
            self._note("the endpoint returned no logprobs: surprisal selection will fall back")
        return Completion(text, tokens, logprobs, getattr(choice, "finish_reason", None))

    def _account(self, response: Any) -> None:
        usage = getattr(response, "usage", None)
        p = int(getattr(usage, "prompt_tokens", 0) or 0)
        c = int(getattr(usage, "completion_tokens", 0) or 0)
        cost = (p * (self.cfg.price_in_per_mtok or 0.0)
                + c * (self.cfg.price_out_per_mtok or 0.0)) / 1e6
        with self._lock:
            self.usage.add(Usage(p, c, cost, requests=1))

    def _note(self, text: str) -> None:
        with self._lock:
            if text not in self.notes:
                self.notes.append(text)

    # --- proposals, cache, log --------------------------------------------------------------

    def _proposal(self, key: str, got: Completion | str, cached: bool) -> Proposal:
        if isinstance(got, str):
            return Proposal(self.name, None, reason=got, prompt_hash=key)
        found = extract_code(got.text)
        prop = Proposal(self.name, found.code, found.reason, got.text, key, cached=cached)
        if got.tokens is not None and got.logprobs is not None:
            lp = TokenLogprobs(got.tokens, got.logprobs)
            prop.logprobs = lp
            prop.surprisal = Surprisal.of(lp)
            if found.code is not None:
                prop.code_surprisal = Surprisal.of(lp.span(found.start, found.end))
        else:
            prop.notes.append("no logprobs from the endpoint")
        if got.finish_reason == "length":
            prop.notes.append("the completion hit max_tokens")
        return prop

    def _cache_file(self, key: str, index: int) -> Path:
        from kernelpro.evaluate.evaluator import cache_root

        base = self.cfg.cache_dir or cache_root() / "completions"
        return base / key[:2] / f"{key}-{index}.json"

    def _cache_get(self, key: str, index: int) -> Completion | None:
        try:
            data = json.loads(self._cache_file(key, index).read_text())
        except (OSError, ValueError):
            return None
        return Completion(**data)

    def _cache_put(self, key: str, index: int, got: Completion) -> None:
        path = self._cache_file(key, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(got.__dict__))
        os.replace(tmp, path)

    def _log(self, key: str, index: int, got: Completion) -> None:
        if self.cfg.log_path is None:
            return
        record = {"prompt_hash": key, "index": index, "model": self.cfg.model, **got.__dict__}
        with self._lock:
            self.cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.cfg.log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:160]


def _retry_after(exc: Any) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form), if the server sent one."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _backoff(attempt: int) -> float:
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** attempt) * (0.5 + random.random() / 2)

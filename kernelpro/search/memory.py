"""Search memory: short lessons fed into prompts, bounded in size (DESIGN §7).

Three kinds: repeated errors (the same failure reason again and again), what a diagnosis'
recommendation did when a child tried it (speedup ratio to the parent), and wins (a new best).
Repeats are merged with a count; the oldest and least repeated lessons go first when full.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_LESSONS = 12
MAX_CHARS = 1200


def _key(text: str) -> str:
    """A failure reason without its numbers, so repeats of one error merge."""
    return re.sub(r"[0-9.e+-]+", "#", text)[:120]


@dataclass
class Memory:
    lessons: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # key->(n,t,text)
    clock: int = 0

    def _add(self, key: str, text: str) -> None:
        self.clock += 1
        n = self.lessons.get(key, (0, 0, ""))[0]
        self.lessons[key] = (n + 1, self.clock, text)
        while len(self.lessons) > MAX_LESSONS:
            drop = min(self.lessons, key=lambda k: (self.lessons[k][0], self.lessons[k][1]))
            del self.lessons[drop]

    def failure(self, stage: str, reason: str) -> None:
        self._add("fail:" + _key(reason), f"failed at {stage}: {reason[:160]}")

    def tried(self, recommendation: str, ratio: float) -> None:
        verdict = "helped" if ratio > 1.02 else ("hurt" if ratio < 0.98 else "did nothing")
        self._add(f"try:{recommendation}:{verdict}",
                  f"{recommendation} {verdict} ({ratio:.2f}x the parent)")

    def win(self, speedup: float, what: str) -> None:
        self._add(f"win:{what}", f"new best {speedup:.2f}x: {what[:120]}")

    def render(self) -> tuple[str, ...]:
        """Most repeated first, within the size limit."""
        ordered = sorted(self.lessons.values(), key=lambda v: (-v[0], -v[1]))
        out, used = [], 0
        for n, _, text in ordered:
            line = f"{text} (x{n})" if n > 1 else text
            if used + len(line) > MAX_CHARS:
                break
            out.append(line)
            used += len(line)
        return tuple(out)

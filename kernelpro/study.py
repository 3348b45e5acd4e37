"""`kernelpro study`: how well each way of choosing among correct samples does (DESIGN §8).

A group is one (task, seed): the samples a model gave for a task in one repeat. Strategies pick
among a group's correct, timed samples: oracle (fastest), random (its expectation over them),
confidence (lowest surprisal), surprisal (highest) and surprisal-top-k (fastest of the k most
surprising). fast_1 counts a group as a success when the pick is faster than the reference; a
group with no correct sample is a failure for every strategy. Ties are broken by the lower
sample id. Statistics come from scipy; only Cohen's h (a one-line formula) and the rank partial
correlation's formula are written out here.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

STRATEGIES = ("oracle", "random", "confidence", "surprisal", "surprisal-top-k")
REQUIRED = ("task", "seed", "sample", "correct", "speedup", "logprob_sum", "token_count")
TIE_BREAK = "ties are broken by the lower sample id"


@dataclass(frozen=True)
class Sample:
    task: str
    seed: str
    sample: int
    correct: bool
    speedup: float | None
    logprob_sum: float | None
    token_count: int | None
    logprob_mean: float | None = None

    def surprisal(self, measure: str = "sum") -> float | None:
        """-sum(log p) over the tokens, or its per-token mean."""
        if measure == "mean":
            if self.logprob_mean is not None:
                return -self.logprob_mean
            if self.logprob_sum is not None and self.token_count:
                return -self.logprob_sum / self.token_count
            return None
        return None if self.logprob_sum is None else -self.logprob_sum

    @property
    def usable(self) -> bool:
        """Correct and timed: a strategy may pick it."""
        return self.correct and self.speedup is not None and self.speedup > 0


@dataclass(frozen=True)
class Pick:
    """A strategy's outcome on one group: success indicator (an expectation for random)."""

    fast_1: float
    speedup: float | None = None
    log_speedup: float | None = None


# --- loading ---------------------------------------------------------------------------------

def load_samples(inputs: Sequence[Path]) -> tuple[list[Sample], list[str]]:
    """Samples from JSONL files, run directories/stores and bench directories."""
    samples: list[Sample] = []
    notes: list[str] = []
    repeats: dict[str, int] = defaultdict(int)  # run stores per task: their seed numbers
    for path in inputs:
        if path.is_file() and path.suffix in (".jsonl", ".json"):
            samples += read_jsonl(path)
        elif path.is_dir() and (path / "bench.sqlite").is_file():
            stores = sorted((path / "runs").rglob("store.sqlite"))
            for store in stores:
                samples += read_store(store, repeats)
            notes.append(f"{path}: bench with {len(stores)} run store(s)")
        elif path.is_dir() and (path / "store.sqlite").is_file():
            samples += read_store(path / "store.sqlite", repeats)
        elif path.is_file() and path.suffix in (".sqlite", ".db"):
            samples += read_store(path, repeats)
        else:
            raise ValueError(f"{path}: not a JSONL file, a run directory (store.sqlite) or a "
                             "bench directory (bench.sqlite)")
    if not samples:
        raise ValueError("no samples in " + ", ".join(map(str, inputs)))
    return samples, notes


def read_jsonl(path: Path) -> list[Sample]:
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{where}: expected an object")
        missing = [k for k in REQUIRED if k not in rec]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        try:
            out.append(Sample(
                task=str(rec["task"]), seed=str(rec["seed"]), sample=int(rec["sample"]),
                correct=_bool(rec["correct"]), speedup=_num(rec["speedup"]),
                logprob_sum=_num(rec["logprob_sum"]),
                token_count=None if rec["token_count"] is None else int(rec["token_count"]),
                logprob_mean=_num(rec.get("logprob_mean"))))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    return out


def _bool(value: Any) -> bool:
    if value in (True, False, 0, 1):
        return bool(value)
    raise ValueError(f"correct must be true/false, got {value!r}")


def _num(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number or null, got {value!r}")
    return float(value)


def read_store(path: Path, repeats: dict[str, int]) -> list[Sample]:
    """A run store's candidates (not the reference); the seed numbers repeats of a task."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'task'").fetchone()
        task = json.loads(row[0])["name"] if row else path.parent.name
        nodes = db.execute("SELECT id, correct, speedup, surprisal, token_count FROM nodes "
                           "WHERE id != 0 ORDER BY id").fetchall()
    finally:
        db.close()
    seed = str(repeats[task])
    repeats[task] += 1
    return [Sample(task, seed, nid, bool(ok), speedup,
                   None if surprisal is None else -surprisal, tokens)
            for nid, ok, speedup, surprisal, tokens in nodes]


# --- strategies ------------------------------------------------------------------------------

def groups_of(samples: Sequence[Sample]) -> dict[tuple[str, str], list[Sample]]:
    out: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for s in samples:
        out[(s.task, s.seed)].append(s)
    return {k: sorted(v, key=lambda s: s.sample) for k, v in sorted(out.items())}


def _chosen(s: Sample | None) -> Pick:
    if s is None or s.speedup is None:
        return Pick(0.0)
    return Pick(float(s.speedup > 1), s.speedup, math.log(s.speedup))


def pick(group: Sequence[Sample], strategy: str, k: int = 3, measure: str = "sum") -> Pick:
    """One strategy on one group (samples sorted by id, so max/min keep the lower id)."""
    usable = sorted((s for s in group if s.usable), key=lambda s: s.sample)
    if not usable:
        return Pick(0.0)
    if strategy == "oracle":
        return _chosen(max(usable, key=lambda s: (s.speedup, -s.sample)))
    if strategy == "random":
        speeds = np.array([s.speedup for s in usable], dtype=float)
        return Pick(float(np.mean(speeds > 1)), float(np.mean(speeds)),
                    float(np.mean(np.log(speeds))))
    scored = [s for s in usable if s.surprisal(measure) is not None]
    if not scored:
        return Pick(0.0)
    if strategy == "confidence":
        return _chosen(min(scored, key=lambda s: (s.surprisal(measure), s.sample)))
    if strategy == "surprisal":
        return _chosen(max(scored, key=lambda s: (s.surprisal(measure), -s.sample)))
    if strategy == "surprisal-top-k":
        top = sorted(scored, key=lambda s: (-s.surprisal(measure), s.sample))[:k]
        return _chosen(max(top, key=lambda s: (s.speedup, -s.sample)))
    raise ValueError(f"unknown strategy {strategy!r}")


def strategy_rows(groups: dict[tuple[str, str], list[Sample]], k: int, measure: str
                  ) -> tuple[list[dict[str, Any]], dict[str, list[Pick]]]:
    picks = {name: [pick(g, name, k, measure) for g in groups.values()] for name in STRATEGIES}
    seeds = sorted({seed for _, seed in groups})
    rows = []
    for name in STRATEGIES:
        by_seed = {seed: float(np.mean([p.fast_1 for (_, sd), p in zip(groups, picks[name],
                                                                      strict=True) if sd == seed]))
                   for seed in seeds}
        per_seed = list(by_seed.values())
        chosen = [p for p in picks[name] if p.speedup is not None]
        rows.append({
            "strategy": name if name != "surprisal-top-k" else f"surprisal-top-{k}",
            "fast_1": float(np.mean(per_seed)),
            "fast_1_std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None,
            "fast_1_by_seed": by_seed, "groups_with_pick": len(chosen),
            "mean_speedup": float(np.mean([p.speedup for p in chosen])) if chosen else None,
            "geomean_speedup": float(math.exp(np.mean([p.log_speedup for p in chosen])))
            if chosen else None})
    return rows, picks


def cohens_h(p1: float, p2: float) -> float:
    """Effect size between two proportions: 2 asin(sqrt p1) - 2 asin(sqrt p2)."""
    return 2 * math.asin(math.sqrt(p1)) - 2 * math.asin(math.sqrt(p2))


def paired_tests(picks: dict[str, list[Pick]]) -> dict[str, Any]:
    """Surprisal vs confidence on the groups where both picked: sign test and Wilcoxon on the
    log-speedup differences (zero differences dropped, as the sign test drops ties)."""
    pairs = [(s.log_speedup, c.log_speedup) for s, c in zip(picks["surprisal"],
                                                            picks["confidence"], strict=True)
             if s.log_speedup is not None and c.log_speedup is not None]
    diffs = np.array([a - b for a, b in pairs], dtype=float)
    nonzero = diffs[np.abs(diffs) > 1e-12]
    wins, losses = int((nonzero > 0).sum()), int((nonzero < 0).sum())
    sign: dict[str, Any] = {"pairs": len(pairs), "wins": wins, "losses": losses,
                            "ties": len(pairs) - wins - losses, "p": None}
    if wins + losses:
        sign["p"] = float(stats.binomtest(wins, wins + losses, 0.5).pvalue)
    wil: dict[str, Any] = {"n": len(nonzero), "statistic": None, "p": None}
    if len(nonzero):
        res = stats.wilcoxon(nonzero)
        wil.update(statistic=float(res.statistic), p=float(res.pvalue))
    else:
        wil["why"] = "no pair differs"
    return {"sign_test": sign, "wilcoxon": wil}


def quartiles(groups: dict[tuple[str, str], list[Sample]], measure: str) -> list[dict[str, Any]]:
    """Within each group, correct timed samples ranked by surprisal (ascending, ties by id)
    and cut into quarters: Q1 the least surprising, Q4 the most; pooled over groups."""
    bins: list[list[float]] = [[], [], [], []]
    for group in groups.values():
        ranked = sorted((s for s in group if s.usable and s.surprisal(measure) is not None),
                        key=lambda s: (s.surprisal(measure), s.sample))
        for i, s in enumerate(ranked):
            bins[min(3, 4 * i // len(ranked))].append(float(s.speedup))  # type: ignore[arg-type]
    rows = []
    for q, speeds in enumerate(bins, 1):
        arr = np.array(speeds, dtype=float)
        rows.append({"quartile": f"Q{q}", "n": len(speeds),
                     "mean_speedup": float(arr.mean()) if len(arr) else None,
                     "geomean_speedup": float(stats.gmean(arr)) if len(arr) else None,
                     "fast_1": float((arr > 1).mean()) if len(arr) else None})
    return rows


def spearman(samples: Sequence[Sample], measure: str) -> dict[str, Any]:
    """Surprisal vs speedup over all correct timed samples: plain, partial on token count
    (rank partial correlation, t test with n-3 degrees of freedom), and per-token mean."""
    pts = [s for s in samples if s.usable and s.surprisal(measure) is not None]
    out: dict[str, Any] = {"n": len(pts), "rho": None, "p": None, "partial_rho": None,
                           "partial_p": None, "per_token_rho": None, "per_token_p": None}
    if len(pts) < 3:
        out["why"] = "fewer than 3 correct timed samples with logprobs"
        return out
    x = np.array([s.surprisal(measure) for s in pts], dtype=float)
    y = np.array([s.speedup for s in pts], dtype=float)
    res = stats.spearmanr(x, y)
    out["rho"], out["p"] = _finite(res.statistic), _finite(res.pvalue)
    per_token = [(s.surprisal("mean"), s.speedup) for s in pts if s.surprisal("mean") is not None]
    if len(per_token) >= 3:
        a, b = zip(*per_token, strict=True)
        res = stats.spearmanr(a, b)
        out["per_token_rho"], out["per_token_p"] = _finite(res.statistic), _finite(res.pvalue)
    z = np.array([s.token_count or 0 for s in pts], dtype=float)
    if any(s.token_count is None for s in pts) or len(pts) <= 3:
        out["partial_why"] = "needs token counts for more than 3 samples"
    elif min(np.ptp(x), np.ptp(y), np.ptp(z)) == 0:
        out["partial_why"] = "surprisal, speedup or token count is constant"
    else:
        rx, ry, rz = (stats.rankdata(v) for v in (x, y, z))
        r_xy, r_xz, r_yz = (stats.pearsonr(a, b).statistic for a, b in
                            ((rx, ry), (rx, rz), (ry, rz)))
        denom = math.sqrt(max(0.0, (1 - r_xz ** 2) * (1 - r_yz ** 2)))
        if denom > 1e-12:
            r = float(np.clip((r_xy - r_xz * r_yz) / denom, -1.0, 1.0))
            dof = len(pts) - 3
            t = r * math.sqrt(dof / max(1e-300, 1 - r * r))
            out["partial_rho"], out["partial_p"] = r, float(2 * stats.t.sf(abs(t), dof))
    return out


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _order(group: Sequence[Sample], measure: str, sign: float) -> list[int]:
    """Indices by surprisal (sign -1: most surprising first), no-logprob samples last,
    ties by sample id."""
    def key(i: int) -> tuple[bool, float, int]:
        v = group[i].surprisal(measure)
        return (v is None, sign * (v or 0.0), group[i].sample)
    return sorted(range(len(group)), key=key)


def budget_curve(groups: dict[tuple[str, str], list[Sample]], measure: str
                 ) -> list[dict[str, Any]]:
    """Rank every sample by surprisal BEFORE knowing correctness, evaluate the first m, keep
    the fastest correct: fast_1 per m for surprisal-first, confidence-first and a random
    order (its exact expectation: 1 - hypergeometric P(no fast sample among m))."""
    largest = max(len(g) for g in groups.values())
    ms = sorted({m for m in (1, 2, 4, 8, 16, 32, 64, 128, 256) if m < largest} | {largest})
    rows = []
    for m in ms:
        sur, con, rnd = [], [], []
        for group in groups.values():
            fast = [s.usable and s.speedup > 1 for s in group]  # type: ignore[operator]
            sur.append(float(any(fast[i] for i in _order(group, measure, -1.0)[:m])))
            con.append(float(any(fast[i] for i in _order(group, measure, 1.0)[:m])))
            n, f = len(group), sum(fast)
            rnd.append(1.0 - float(stats.hypergeom(n, f, min(m, n)).pmf(0)))
        rows.append({"m": m, "surprisal_first": float(np.mean(sur)),
                     "confidence_first": float(np.mean(con)), "random": float(np.mean(rnd))})
    return rows


def run_study(samples: Sequence[Sample], k: int = 3, measure: str = "sum") -> dict[str, Any]:
    if measure not in ("sum", "mean"):
        raise ValueError("--measure is sum or mean")
    groups = groups_of(samples)
    rows, picks = strategy_rows(groups, k, measure)
    fast = {r["strategy"]: float(np.mean([p.fast_1 for p in picks[r["strategy"]]]))
            for r in rows if r["strategy"] in ("surprisal", "confidence")}
    notes = [f"{TIE_BREAK}",
             f"surprisal = {'sum' if measure == 'sum' else 'per-token mean'} of -log p over "
             "the completion's tokens; a group is one (task, seed); a group without a correct "
             "timed sample counts as a failure for every strategy"]
    untimed = sum(1 for s in samples if s.correct and s.speedup is None)
    if untimed:
        notes.append(f"{untimed} correct sample(s) have no speedup (not timed) and were left "
                     "out")
    no_lp = sum(1 for s in samples if s.surprisal(measure) is None)
    if no_lp:
        notes.append(f"{no_lp} sample(s) have no logprobs: the surprisal strategies cannot "
                     "pick them")
    return {
        "samples": len(samples), "tasks": len({t for t, _ in groups}),
        "seeds": len({sd for _, sd in groups}), "groups": len(groups), "k": k,
        "measure": measure, "tie_break": TIE_BREAK,
        "strategies": rows,
        "cohens_h": {"surprisal_fast_1": fast["surprisal"],
                     "confidence_fast_1": fast["confidence"],
                     "h": cohens_h(fast["surprisal"], fast["confidence"])},
        **paired_tests(picks),
        "quartiles": quartiles(groups, measure),
        "spearman": spearman(samples, measure),
        "budget_curve": budget_curve(groups, measure),
        "notes": notes,
    }

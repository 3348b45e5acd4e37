"""`kernelpro optimize`: the search on a real task, with a run directory that survives a kill.

Each iteration: the strategy picks a parent; the proposer returns candidates for it (the
parent's kernel, its rendered diagnosis, the memory); every candidate goes through the
correctness wall; `--select` picks which correct siblings become nodes and are timed and
profiled; each result is written to the run store before the next. Without a GPU this is the
dry run of DESIGN §10: proposals, compilation, correctness under the Triton interpreter and
the static tier run; nothing is timed, every correct node counts as speedup 1, and the summary
says so.

Run directory: store.sqlite, candidates/NODE.py, best.py (a KernelBench ModelNew file),
summary.json, tree.json and, for an LLM, completions.jsonl.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelpro.propose.base import Proposal, ProposalRequest, Usage
from kernelpro.search.mcts import ROOT, MCTSConfig, Tree
from kernelpro.search.memory import Memory
from kernelpro.search.selection import Scored, to_time
from kernelpro.search.strategies import make
from kernelpro.store import RunStore
from kernelpro.types import Task

ENERGY_TIE = 0.02  # speedups within 2% are a tie the energy objective breaks


@dataclass(frozen=True)
class OptimizeConfig:
    backend: str = "triton"
    proposer: str = "auto"  # auto | llm | templates | replay
    budget: int = 20  # candidates evaluated (the reference not counted)
    time_limit_s: float | None = None
    strategy: str = "mcts"
    per_expansion: int = 2
    select: str = "surprisal-top-m"
    select_m: int = 2
    model: str | None = None
    replay_log: str | None = None
    objective: str = "speed"  # speed | energy
    arch: str = "sm_90"
    max_elements: int = 1 << 14  # dry-run shapes
    mcts: MCTSConfig = field(default_factory=MCTSConfig)
    jobs: int = 2  # candidates evaluated at once (compiles overlap; the GPU is taken in turn)
    prefetch: bool = True  # ask the proposer for the next expansion during this one's eval
    require_sandbox: bool = False  # refuse to evaluate where no OS sandbox works


@dataclass
class Progress:
    evaluated: int = 0
    best_speedup: float | None = None
    failures: Counter[str] = field(default_factory=Counter)
    tokens: int = 0
    last: str = ""


def make_proposer(cfg: OptimizeConfig, run_dir: Path) -> tuple[Any, str]:
    """The proposer and a line saying which and why."""
    choice = cfg.proposer
    if choice == "auto":
        has_endpoint = bool(os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY"))
        choice = "llm" if cfg.model and has_endpoint else "templates"
    if choice == "llm":
        if not cfg.model:
            raise ValueError("--proposer llm needs --model (and OPENAI_BASE_URL/OPENAI_API_KEY)")
        from kernelpro.propose.llm import LLMConfig, LLMProposer

        return (LLMProposer(LLMConfig(model=cfg.model, log_path=run_dir / "completions.jsonl")),
                f"LLM {cfg.model} at {os.environ.get('OPENAI_BASE_URL', 'the OpenAI API')}")
    if choice == "replay":
        if not cfg.replay_log or not cfg.model:
            raise ValueError("--proposer replay needs --replay LOG.jsonl and --model")
        from kernelpro.propose.replay import ReplayProposer

        return ReplayProposer(Path(cfg.replay_log), cfg.model), f"replay of {cfg.replay_log}"
    if choice == "templates":
        from kernelpro.propose.templates import TemplateProposer

        return TemplateProposer(), "built-in templates (no model configured)"
    raise ValueError(f"unknown proposer {cfg.proposer!r}: auto, llm, templates or replay")


class Optimizer:
    def __init__(self, task: Task, cfg: OptimizeConfig, run_dir: Path, resume: bool = False,
                 eval_config: Any = None) -> None:
        from kernelpro.evaluate import EvalConfig
        from kernelpro.evaluate.device import detect_gpu

        self.task, self.cfg, self.run_dir = task, cfg, Path(run_dir)
        self.gpu = detect_gpu()
        self.eval_cfg = eval_config or EvalConfig(arch=cfg.arch, max_elements=cfg.max_elements,
                                                  energy=cfg.objective == "energy",
                                                  require_sandbox=cfg.require_sandbox)
        (self.run_dir / "candidates").mkdir(parents=True, exist_ok=True)
        self.store = RunStore(self.run_dir / "store.sqlite")
        self.tree = Tree(cfg.mcts)
        self.memory = Memory()
        self.progress = Progress()
        self.notes: list[str] = []
        self.proposer, self.proposer_line = make_proposer(cfg, self.run_dir)
        self._next_id = 1
        self._roofline = None
        if resume:
            self._resume()
        else:
            if self.store.count():
                raise ValueError(f"{self.run_dir} already holds a run; use --resume to go on")
            self.store.put("config", _plain(dataclasses.asdict(cfg)))
            self.store.put("task", {"path": str(task.path), "sha": task.sha, "name": task.name,
                                    "source": task.source})
            self.store.add_node(id=ROOT, parent=None, in_tree=1, proposer="reference",
                                source=task.source, status="reference", correct=1,
                                speedup=1.0)

    # --- resume -----------------------------------------------------------------------------

    def _resume(self) -> None:
        stored = self.store.get("task") or {}
        if stored.get("sha") and stored["sha"] != self.task.sha:
            raise ValueError(f"{self.run_dir} was a run on another version of {self.task.name} "
                             "(task file changed)")
        rows = self.store.nodes()
        for rec in rows:
            self._next_id = max(self._next_id, rec["id"] + 1)
            if rec["id"] == ROOT or not rec["in_tree"]:
                continue
            speedup = rec["speedup"] if rec["correct"] else None
            self.tree.add(rec["parent"], bool(rec["correct"]),
                          speedup if speedup is not None else (1.0 if rec["correct"] else None),
                          self._node_data(rec), nid=rec["id"])
            self._learn(rec)
        self.progress.evaluated = sum(1 for r in rows if r["id"] != ROOT)
        self.notes.append(f"resumed with {self.progress.evaluated} evaluated candidate(s)")

    @staticmethod
    def _node_data(rec: dict[str, Any]) -> dict[str, Any]:
        return {"source": rec["source"], "knobs": rec["knobs"] or {},
                "diagnosis": rec["diagnosis"] or "",
                "recommendations": tuple(rec["recommendations"] or ())}

    def _learn(self, rec: dict[str, Any]) -> None:
        if rec["status"] == "unverified":  # compiled, but this machine cannot run it
            self.progress.failures["unverified (no GPU)"] += 1
        elif not rec["correct"]:
            self.memory.failure(rec["stage"] or "?", rec["reason"] or "")
            self.progress.failures[rec["stage"] or "?"] += 1
        elif rec["speedup"] and (self.progress.best_speedup is None
                                 or rec["speedup"] > self.progress.best_speedup):
            self.progress.best_speedup = rec["speedup"]

    # --- the loop ---------------------------------------------------------------------------

    def run(self, on_progress: Callable[[Progress], None] = lambda p: None) -> dict[str, Any]:
        """Expand until the budget is spent. With prefetch, the next expansion's proposals are
        requested (parent chosen under virtual loss) while this one's candidates are evaluated,
        so model calls overlap compilation and the GPU."""
        from concurrent.futures import ThreadPoolExecutor

        strategy = make(self.cfg.strategy)
        started = time.time()
        interrupted = False
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kernelpro-propose")
        pending: tuple[int, int, Any] | None = None
        try:
            while self.progress.evaluated < self.cfg.budget:
                if self.cfg.time_limit_s and time.time() - started > self.cfg.time_limit_s:
                    self.notes.append(f"stopped at the time limit ({self.cfg.time_limit_s:.0f} s)")
                    break
                if pending is None:
                    pending = self._submit(pool, strategy,
                                           self.cfg.budget - self.progress.evaluated)
                    if pending is None:
                        self.notes.append("stopped: every branch is a dead end")
                        break
                parent, n, future = pending
                pending = None
                try:
                    proposals = future.result()
                finally:
                    self.tree.end(parent, n)
                if not any(p.source for p in proposals) and all(
                        "cannot handle" in (p.reason or "") or "Triton only" in (p.reason or "")
                        for p in proposals):
                    self.notes.append(proposals[0].reason or "the proposer has nothing")
                    break
                left = self.cfg.budget - self.progress.evaluated - len(proposals)
                if self.cfg.prefetch and left > 0:
                    pending = self._submit(pool, strategy, left)
                self._expand(parent, proposals, on_progress)
        except KeyboardInterrupt:
            interrupted = True
            self.notes.append("interrupted (Ctrl-C): everything evaluated so far is saved")
        finally:
            if pending is not None:
                self.tree.end(pending[0], pending[1])
            pool.shutdown(wait=False, cancel_futures=True)
        return self._finish(interrupted)

    def _submit(self, pool: Any, strategy: Any, left: int) -> tuple[int, int, Any] | None:
        """Choose a parent (virtual loss marks it busy) and ask for its proposals in `pool`."""
        parent = strategy.select(self.tree)
        if parent is None:
            return None
        n = min(self.cfg.per_expansion, left)
        data = self.tree.node(parent)["data"]
        request = ProposalRequest(
            task=self.task, backend=self.cfg.backend,  # type: ignore[arg-type]
            parent_source=data.get("source") if parent != ROOT else None,
            diagnosis=data.get("diagnosis", ""), memory=self.memory.render(),
            parent_knobs=data.get("knobs") or None,
            recommendations=tuple(data.get("recommendations", ())))
        self.tree.begin(parent, n)
        return parent, n, pool.submit(self.proposer.propose, request, n)

    def _expand(self, parent: int, proposals: list[Proposal],
                on_progress: Callable[[Progress], None]) -> None:
        from kernelpro.evaluate import evaluate_many

        numbered: list[tuple[int, Proposal, Path | None]] = []
        for prop in proposals:
            nid = self._next_id
            self._next_id += 1
            path = None
            if prop.source is not None:
                path = self.run_dir / "candidates" / f"{nid}.py"
                path.write_text(prop.source)
            numbered.append((nid, prop, path))
        paths = [p for _, _, p in numbered if p is not None]
        verdicts = dict(zip(paths, evaluate_many(
            self.task, paths, dataclasses.replace(self.eval_cfg, timing=False),
            jobs=self.cfg.jobs), strict=True))
        screened = [(nid, prop, verdicts.get(path) if path else None, path)
                    for nid, prop, path in numbered]
        correct = [Scored(nid, None, p.surprisal.total if p.surprisal else None)
                   for nid, p, r, _ in screened if r is not None and r.status == "correct"]
        chosen, note = to_time(correct, self.cfg.select, self.cfg.select_m)
        if note and note not in self.notes:
            self.notes.append(note)
        chosen_ids = {c.id for c in chosen}
        if self.gpu is not None and self.eval_cfg.timing:
            to_time_paths = [path for nid, _, _, path in screened if nid in chosen_ids]
            timed = dict(zip(to_time_paths, evaluate_many(self.task, to_time_paths,
                                                          self.eval_cfg, jobs=self.cfg.jobs),
                             strict=True))
            screened = [(nid, prop, timed.get(path, result), path)
                        for nid, prop, result, path in screened]
        for nid, prop, result, _path in screened:
            self._record(parent, nid, prop, result, in_tree=result is None
                         or result.status != "correct" or nid in chosen_ids)
            self.progress.evaluated += 1
            on_progress(self.progress)

    def _record(self, parent: int, nid: int, prop: Proposal, result: Any,
                in_tree: bool) -> None:
        from kernelpro.types import failure

        if result is None:
            result = failure("guard", "NoCode", prop.reason or "no code")
            result.stage = "propose"  # type: ignore[assignment]
        correct = result.status == "correct"
        speedup = result.speedup_eager if result.timed else None
        diagnosis, recs = self._diagnose(result) if correct and in_tree else ("", ())
        rec = dict(id=nid, parent=parent, in_tree=int(in_tree), proposer=prop.proposer,
                   source=prop.source, knobs=prop.knobs, completion=prop.completion or None,
                   prompt_hash=prop.prompt_hash or None,
                   tokens=prop.logprobs.tokens if prop.logprobs else None,
                   logprobs=prop.logprobs.logprobs if prop.logprobs else None,
                   surprisal=prop.surprisal.total if prop.surprisal else None,
                   code_surprisal=prop.code_surprisal.total if prop.code_surprisal else None,
                   token_count=prop.surprisal.tokens if prop.surprisal else None,
                   status=result.status, stage=result.stage, reason=result.reason,
                   correct=int(correct), speedup=speedup, runtime_ms=result.runtime_ms,
                   energy_j=result.energy_j, result=result.to_dict(),
                   diagnosis=diagnosis, recommendations=list(recs))
        self.store.add_node(**rec)
        self._learn(rec)
        if in_tree:
            before = self.tree.node(self.tree.best())["speedup"] if len(self.tree) > 1 else 1.0
            self.tree.add(parent, correct, (speedup or 1.0) if correct else None,
                          self._node_data(rec), nid=nid)
            if correct and speedup and speedup > (before or 0):
                self.memory.win(speedup, f"node {nid} {prop.knobs or ''}".strip())
            parent_data = self.tree.node(parent)["data"]
            parent_speedup = self.tree.node(parent)["speedup"]
            if correct and speedup and parent_speedup and parent_data.get("recommendations"):
                self.memory.tried(parent_data["recommendations"][0], speedup / parent_speedup)
        usage = getattr(self.proposer, "usage", None)
        if isinstance(usage, Usage):
            self.progress.tokens = usage.prompt_tokens + usage.completion_tokens
            self.store.put("usage", dataclasses.asdict(usage))
        self.progress.last = f"node {nid}: {result.status}" + (
            f" {speedup:.2f}x" if speedup else "") + (
            f" ({result.reason[:60]})" if not correct and result.reason else "")

    def _diagnose(self, result: Any) -> tuple[str, tuple[str, ...]]:
        """Static (and timing) tier diagnosis of a correct node, for its children's prompts."""
        from kernelpro.evaluate.device import spec_for_arch
        from kernelpro.profile.diagnosis import Diagnosis
        from kernelpro.profile.roofline import roofline, task_work
        from kernelpro.profile.static import is_matmul_like, profile_cubins

        try:
            if self._roofline is None:
                spec = self.gpu.spec if self.gpu and self.gpu.spec else spec_for_arch(
                    self.cfg.arch)
                work, _ = task_work(self.task)
                self._roofline = roofline(work, spec, self.task.dtype)
                self.store.put("roofline", _plain(dataclasses.asdict(self._roofline)))
            roof = self._roofline
            findings = []
            if result.cubins:
                static = profile_cubins([Path(c) for c in result.cubins],
                                        self.gpu.spec.arch if self.gpu and self.gpu.spec
                                        else self.cfg.arch, result.backend or "triton",
                                        self.task.dtype, is_matmul_like(self.task.source),
                                        roof.bound)
                findings = static.findings
            diag = Diagnosis(self.task.name, roof.gpu, roof, tiers=["analytic", "static"],
                             findings=findings)
            if result.timed and result.runtime_ms:
                from kernelpro.profile.roofline import timing_tier
                from kernelpro.profile.tools import MetricContext, run_metric_tools

                spec = self.gpu.spec if self.gpu else None
                if spec is not None:
                    diag.measured.update(timing_tier(roof.work, result.runtime_ms, spec,
                                                     self.task.dtype))
                    diag.findings += run_metric_tools(MetricContext(
                        kernel=None, spec=spec, roofline=roof, bottleneck=roof.bound,
                        runtime_ms=result.runtime_ms))
                    diag.tiers.append("timing")
            return diag.render(), tuple(dict.fromkeys(f.tool for f in diag.ordered()))
        except Exception as exc:  # a diagnosis is advice; its failure must not stop the run
            return f"(no diagnosis: {type(exc).__name__}: {exc})"[:200], ()

    # --- results ----------------------------------------------------------------------------

    def _environment(self) -> dict[str, Any]:
        """What a bench table must state: the GPU, torch, the tolerance and the protocol."""
        import torch

        from kernelpro.evaluate.correctness import tolerance_for

        wall = self.eval_cfg.wall
        return {"gpu": self.gpu.name if self.gpu else None, "torch": torch.__version__,
                "dtype": self.task.dtype,
                "tolerance": tolerance_for(self.task.dtype, wall.tol),
                "protocol": ("kernelbench-compat" if self.eval_cfg.kernelbench_compat
                             else f"kernelpro wall ({wall.trials} trials"
                                  + (", robust" if wall.robust else "") + ")")}

    def _best(self) -> dict[str, Any] | None:
        return pick_best(self.store.nodes(), self.cfg.objective)

    def interrupted(self) -> dict[str, Any]:
        """The summary of a search stopped by Ctrl-C outside its own loop."""
        self.notes.append("interrupted (Ctrl-C): everything evaluated so far is saved")
        return self._finish(True)

    def _finish(self, interrupted: bool) -> dict[str, Any]:
        best = self._best()
        dry = self.gpu is None
        if best is not None:
            (self.run_dir / "best.py").write_text(best["source"])
        self.tree.export(self.run_dir / "tree.json")
        usage = getattr(self.proposer, "usage", None)
        summary = {
            "task": self.task.name, "run_dir": str(self.run_dir), "proposer": self.proposer_line,
            "strategy": self.cfg.strategy, "evaluated": self.progress.evaluated,
            "budget": self.cfg.budget, "failures": dict(self.progress.failures),
            "best_node": best["id"] if best else None,
            "best_speedup": best["speedup"] if best else None,
            "dry_run": dry, "interrupted": interrupted, **self._environment(),
            "usage": dataclasses.asdict(usage) if isinstance(usage, Usage) else None,
            "notes": self.notes + list(getattr(self.proposer, "notes", [])),
        }
        if dry:
            summary["notes"].insert(0, "dry run (no GPU): proposals, compilation, correctness "
                                       "under the Triton interpreter and static analysis ran; "
                                       "nothing was timed, so best.py is the first correct "
                                       "kernel, not the fastest")
        if self.cfg.objective == "energy":
            summary["best_energy_j"] = best["energy_j"] if best else None
            if dry:
                summary["notes"].append("--objective energy needs a GPU: no energy measured")
        self.store.export_jsonl(self.run_dir / "nodes.jsonl")
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        self.store.put("summary", summary)
        return summary


def pick_best(rows: list[dict[str, Any]], objective: str = "speed") -> dict[str, Any] | None:
    """The run's best node: fastest; with the energy objective (lexicographic, KernelPro),
    the lowest energy per call among those within ENERGY_TIE of the fastest. Untimed (dry
    run): the first correct node."""
    rows = [r for r in rows if r["id"] != ROOT and r["correct"] and r["in_tree"]]
    if not rows:
        return None
    timed = [r for r in rows if r["speedup"]]
    if not timed:
        return rows[0]
    top = max(r["speedup"] for r in timed)
    near = [r for r in timed if r["speedup"] >= top * (1 - ENERGY_TIE)]
    if objective == "energy" and all(r["energy_j"] for r in near):
        return min(near, key=lambda r: (r["energy_j"], r["id"]))
    return max(timed, key=lambda r: (r["speedup"], -r["id"]))


def parse_mcts(text: str | None) -> MCTSConfig:
    """`c_uct=0.3,widen_k=2,band=-0.5:3` -> MCTSConfig (ValueError names a bad key)."""
    cfg = MCTSConfig()
    if not text:
        return cfg
    known = {f.name: f.type for f in dataclasses.fields(MCTSConfig)}
    changes: dict[str, Any] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in known or not value:
            raise ValueError(f"--mcts: {part!r}; keys are {', '.join(known)}")
        if key == "band":
            lo, _, hi = value.partition(":")
            changes[key] = (float(lo), float(hi))
        elif key in ("win_slots", "dead_after"):
            changes[key] = int(value)
        else:
            changes[key] = float(value)
    return dataclasses.replace(cfg, **changes)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))

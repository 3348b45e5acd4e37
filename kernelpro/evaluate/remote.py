"""The judge's side of the candidate runner: start it in the sandbox, talk to it, watch it.

`RunnerProcess` owns the runner: its sandboxed command, its pipes, a thread draining its
stdout/stderr into a bounded tail, its memory limit (a cgroup, else the resident memory of its
whole process tree) and its death (a signal, an exit, the OOM killer), each turned into a
`RunnerFailure` with a one-line reason. Every request has a deadline on the judge's clock.

`RemoteModel` makes a ModelNew in the runner look like a callable to the correctness wall:
inputs go out, outputs come back as plain tensors, and the runner's report of each call is
kept for the probes.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelpro.evaluate import channel
from kernelpro.evaluate.cgroup import Cgroup
from kernelpro.evaluate.process import (
    NPROC_LIMIT,
    cap_limit,
    die_with_parent,
    limit_address_space,
    runner_env,
    tree_rss,
)
from kernelpro.evaluate.sandbox import SCRATCH, Layout, Mechanism, wrap

LOG_TAIL_BYTES = 64 * 1024
PROFILER_NOISE = re.compile(r"^(USDT|STAGE):\S+ \S+ \d+:\d+ \w+\.cpp:\d+\]")


class RunnerFailure(Exception):
    """The runner died, hung, broke the protocol or outgrew its memory: `what` happened,
    `why` it probably did (the stage it happened in goes between them)."""

    def __init__(self, error_class: str, what: str, why: str = "") -> None:
        super().__init__(what)
        self.error_class, self.what, self.why = error_class, what, why

    @property
    def reason(self) -> str:
        return f"{self.what} {self.why}".strip()

    def during(self, stage: str) -> str:
        return f"{self.what} during {stage} {self.why}".strip()


class CandidateError(Exception):
    """Candidate code raised inside the runner; `error` is the runner's account of it."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.error = {k: error.get(k) for k in ("class", "message", "line", "compile",
                                                "gpu_required", "memory", "traceback")}
        self.error["class"] = str(self.error["class"] or "Error")[:80]
        self.error["message"] = str(self.error["message"] or "")[:2000]
        super().__init__(f"{self.error['class']}: {self.error['message']}")


@dataclass
class RunnerSpec:
    """How to start one runner."""

    mechanism: Mechanism
    layout: Layout
    work_dir: Path  # the judge's; a sandboxed runner never sees it
    gpu: bool
    memory_bytes: int
    start_timeout_s: float = 120.0
    shared_builds: str | None = None


class RunnerProcess:
    def __init__(self, spec: RunnerSpec) -> None:
        import kernelpro

        self.spec = spec
        spec.work_dir.mkdir(parents=True, exist_ok=True)
        self.deadline_cap: float | None = None  # the judge's total cap (monotonic)
        sandboxed = spec.mechanism.sandboxed
        self.scratch = SCRATCH if sandboxed else str(spec.work_dir / "scratch")
        if not sandboxed:
            Path(self.scratch).mkdir(parents=True, exist_ok=True)
        self.cgroup = Cgroup.create(f"kernelpro-{os.getpid()}-{secrets.token_hex(4)}",
                                    spec.memory_bytes)
        req_r, self.req_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        channel.widen(self.req_w, self.resp_r)
        log_r, log_w = os.pipe()
        parent = str(Path(kernelpro.__file__).resolve().parents[1])
        argv = [sys.executable, "-s", "-B", "-m", "kernelpro.evaluate.runner", str(req_r),
                str(resp_w)]
        env = runner_env(self.scratch, spec.gpu, parent, spec.shared_builds)
        address_space = 0 if spec.gpu else spec.memory_bytes + (2 << 30)
        cgroup = self.cgroup
        nproc = NPROC_LIMIT if spec.mechanism.drops_uid else 0  # counts the uid 65534 only

        def preexec() -> None:
            die_with_parent()
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if address_space:
                limit_address_space(address_space)
            if cgroup is not None:
                cgroup.enter()
            elif nproc:  # no pids.max: a cap on uid 65534 (enforced once the runner drops root)
                cap_limit(resource.RLIMIT_NPROC, nproc)

        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            wrap(spec.mechanism, spec.layout, argv, spec.work_dir / "sandbox-root"),
            env=env, stdin=subprocess.DEVNULL, stdout=log_w, stderr=log_w,
            pass_fds=(req_r, resp_w), start_new_session=True, preexec_fn=preexec,
            cwd=self.scratch if not sandboxed else spec.work_dir)
        for fd in (req_r, resp_w, log_w):
            os.close(fd)
        self._tail = bytearray()
        self.log_bytes = 0
        self._drain = threading.Thread(target=self._drain_log, args=(log_r,), daemon=True)
        self._drain.start()
        self.killed_for: RunnerFailure | None = None
        self.peak_rss = 0
        self._calls = 0
        # Seconds and bytes per request kind on the judge's clock (the overhead bench).
        self.seconds: dict[str, float] = {}
        self.bytes_moved = 0
        self.ready_s = 0.0  # from start until its first reply (interpreter, torch, sandbox)
        self.round_trip_ms = 0.0  # a synchronising no-op request, before the candidate loaded

    def next_call(self) -> int:
        """A call id unique in this runner (its kept outputs and inputs are keyed by it)."""
        self._calls += 1
        return self._calls

    # --- output and death -------------------------------------------------------------------
    def _drain_log(self, fd: int) -> None:
        with contextlib.suppress(OSError):
            while chunk := os.read(fd, 65536):
                self.log_bytes += len(chunk)
                self._tail += chunk
                if len(self._tail) > 2 * LOG_TAIL_BYTES:
                    del self._tail[:-LOG_TAIL_BYTES]
        os.close(fd)

    def log_tail(self, chars: int = 2000) -> str:
        """The end of what the runner printed, without the profiler's own status lines."""
        self._drain.join(timeout=0.5)
        text = bytes(self._tail).decode(errors="replace")
        return "\n".join(line for line in text.splitlines()
                         if not PROFILER_NOISE.match(line))[-chars:]

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()
        if self.cgroup is not None:
            self.cgroup.destroy()

    def close(self) -> None:
        """Ask the runner to exit, then make sure it and everything it started are gone."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, channel.ChannelError, RunnerFailure):
                channel.write_frame(self.req_w, {"op": "exit"})
                channel.read_frame(self.resp_r, 1 << 10, time.monotonic() + 2.0)
        self.kill()
        for fd in (self.req_w, self.resp_r):
            with contextlib.suppress(OSError):
                os.close(fd)

    def death(self) -> RunnerFailure:
        """What ended the runner, in one line (after it ended)."""
        if self.killed_for is not None:
            return self.killed_for
        rc = self.proc.wait()
        if self.cgroup is not None and self.cgroup.oom_killed():
            return RunnerFailure("OutOfMemory", f"the runner went over its memory limit "
                                 f"({self.spec.memory_bytes / 2**30:.1f} GiB, all its "
                                 "processes together)", "and was killed")
        sig = -rc if rc < 0 else rc - 128 if rc > 128 and self.spec.mechanism.sandboxed else 0
        if sig:
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = f"signal {sig}"
            return RunnerFailure("Signal", f"the runner died with {name}", "(a crash in "
                                 "candidate code or a kernel it launched)")
        return RunnerFailure("Exited", f"the runner exited with code {rc}", "without replying "
                             "(the candidate ended the process: os._exit, sys.exit or similar)")

    def _watch(self) -> None:
        """Called while waiting for a reply: a dead or oversized runner ends the wait."""
        if self.proc.poll() is not None:
            raise self.death()
        if self.cgroup is None:
            rss = tree_rss(self.proc.pid)
            self.peak_rss = max(self.peak_rss, rss)
            if rss > self.spec.memory_bytes:
                self.killed_for = RunnerFailure(
                    "OutOfMemory", f"the runner's processes used {rss / 2**30:.1f} GiB of host "
                    f"memory (limit {self.spec.memory_bytes / 2**30:.1f} GiB)", "and were killed")
                self.kill()
                raise self.killed_for

    # --- requests ---------------------------------------------------------------------------
    def request(self, header: dict[str, Any], value: Any = None, timeout_s: float = 60.0,
                max_payload: int = 64 << 20, what: str = "") -> tuple[dict[str, Any], Any]:
        """Send one request and wait for its reply; CandidateError if candidate code raised,
        RunnerFailure for everything else that went wrong."""
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        if self.deadline_cap is not None:
            deadline = min(deadline, self.deadline_cap)
        try:
            if value is None:
                channel.write_frame(self.req_w, header)
            else:
                self.bytes_moved += channel.send_value(self.req_w, header, value)
            reply, payload = channel.read_frame(self.resp_r, max_payload, deadline, self._watch)
            self.bytes_moved += len(payload)
            op = str(header.get("op"))
            self.seconds[op] = self.seconds.get(op, 0.0) + time.monotonic() - t0
            decoded = channel.unpack(reply["value"], channel.decode_tensors(payload)) \
                if "value" in reply else None
        except BrokenPipeError:
            raise self.death() from None
        except channel.ChannelClosed:
            raise self.death() from None
        except channel.ChannelTimeout:
            self.kill()
            capped = self.deadline_cap is not None and deadline >= self.deadline_cap
            limit = "the evaluation's total time limit" if capped else \
                f"the time limit of {timeout_s:g} s"
            raise RunnerFailure("Timeout", f"{what or header.get('op')} exceeded {limit}",
                                "(hung or very slow); the runner was killed") from None
        except channel.ChannelError as exc:
            self.kill()
            raise RunnerFailure("ProtocolError", f"the runner broke the protocol ({exc})") \
                from None
        if reply.get("ok") is not True:
            error = reply.get("error")
            raise CandidateError(error if isinstance(error, dict) else {"class": "Error",
                                                                          "message": str(error)})
        return reply, decoded


@dataclass
class RemoteModel:
    """A ModelNew living in the runner, callable like a module by the correctness wall.

    Each call sends fresh inputs and a seed to set before forward, and copies the inputs as
    the runner left them back into the caller's tensors (so the wall sees input mutation).
    """

    runner: RunnerProcess
    model: int
    timeout_s: float
    max_payload: int
    record: bool = True  # aten ops on every call: no sampled recorder to detect
    inputs_back: bool = True
    reports: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0

    def __call__(self, *args: Any) -> Any:
        return self.seeded_call(list(args), secrets.randbits(31))

    def seeded_call(self, args: list[Any], seed: int, **options: Any) -> Any:
        out, _ = self.call(args, seed, **options)
        return out

    def call(self, args: list[Any], seed: int, reuse: int | None = None, keep: bool = False,
             settle: bool = False) -> tuple[Any, int]:
        import torch

        call_id = self.runner.next_call()
        header = {"op": "call", "model": self.model, "call": call_id, "seed": seed,
                  "record": self.record, "keep": keep, "settle": settle,
                  "return_inputs": self.inputs_back or self.calls == 0}
        if reuse is not None:
            header["reuse"] = reuse
        reply, value = self.runner.request(header, args, self.timeout_s, self.max_payload,
                                           "a call of forward")
        self.calls += 1
        report = reply.get("report") if isinstance(reply.get("report"), dict) else {}
        self.reports.append(report)
        if not isinstance(value, list) or len(value) != 2:
            raise RunnerFailure("ProtocolError", "the runner's reply to a call was malformed")
        out, after = value
        if isinstance(after, list) and len(after) == len(args):
            for mine, theirs in zip(args, after, strict=True):
                if isinstance(mine, torch.Tensor) and isinstance(theirs, torch.Tensor) \
                        and theirs.shape == mine.shape and theirs.dtype == mine.dtype:
                    mine.copy_(theirs)
        return out, call_id

    def reread(self, call_id: int) -> Any:
        _, value = self.runner.request({"op": "reread", "call": call_id}, None, self.timeout_s,
                                       self.max_payload, "re-reading an output")
        return value


def start_runner(req: dict[str, Any], work_dir: Path, candidate: str | None = None
                 ) -> tuple[RunnerProcess, str]:
    """A runner for this request, in the best sandbox here; (runner, the candidate file's
    path as the runner sees it). Without `candidate` it gets no candidate file at all."""
    from kernelpro.evaluate import sandbox

    mech = sandbox.detect()
    gpu = req["mode"] == "gpu"
    if candidate is None:
        inside = ""
        files: tuple[tuple[str, str], ...] = ()
    elif mech.sandboxed:
        inside = f"{sandbox.SCRATCH}/candidate.py"
        files = ((candidate, inside),)
    else:
        scratch = work_dir / "scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        inside = str(scratch / "candidate.py")
        Path(inside).write_text(Path(candidate).read_text())
        files = ()
    shared = req.get("shared_builds")
    extra = [shared] if shared and os.path.isdir(shared) else []
    layout = sandbox.Layout(tuple(sandbox.default_ro_paths(extra)), files=files, gpu=gpu,
                            hidden=(req["task_path"], str(work_dir)))
    spec = sandbox_spec(req, mech, layout, work_dir, shared if extra else None)
    return RunnerProcess(spec), inside


def sandbox_spec(req: dict[str, Any], mech: Mechanism, layout: Layout, work_dir: Path,
                 shared: str | None) -> RunnerSpec:
    limits = req["limits"]
    return RunnerSpec(mech, layout, work_dir, req["mode"] == "gpu", int(limits["memory_bytes"]),
                      float(limits.get("start_timeout_s", 120.0)), shared)

"""A memory and process-count limit over a runner and every process it starts: a cgroup.

RLIMIT_AS counts one process at a time and cannot be used with CUDA; a cgroup counts the
runner, the compilers it starts and anything the candidate forks, together, and the kernel's
OOM killer enforces it. cgroup v2 is used where its memory controller is enabled for us, else
the v1 `memory` and `pids` hierarchies. Where neither is writable (an unprivileged user, a
read-only /sys/fs/cgroup) `create` returns None and the caller falls back to the judge's
resident-memory watchdog over the runner's process tree, and says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
DEFAULT_PIDS = 1024  # threads count too: torch and Triton start one per core


def _own_paths() -> dict[str, str]:
    """controller (or '' for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    return out


def _v2_root() -> Path | None:
    for candidate in (ROOT, ROOT / "unified"):
        if (candidate / "cgroup.controllers").is_file():
            return candidate
    return None


@dataclass
class Cgroup:
    """One runner's cgroup directories (one per controller on v1, one on v2)."""

    dirs: tuple[Path, ...]
    version: int
    memory_bytes: int

    @classmethod
    def create(cls, name: str, memory_bytes: int, pids: int = DEFAULT_PIDS) -> Cgroup | None:
        """A fresh cgroup below ours with both limits set, or None where we may not."""
        own = _own_paths()
        v2 = _v2_root()
        if v2 is not None and "" in own:
            base = v2 / own[""].lstrip("/")
            enabled = _read(base / "cgroup.subtree_control").split()
            if "memory" in enabled:
                made = _make([base / name])
                if made and _write(made[0] / "memory.max", memory_bytes) \
                        and _write(made[0] / "memory.swap.max", 0, required=False) \
                        and _write(made[0] / "pids.max", pids, required="pids" in enabled):
                    return cls(tuple(made), 2, memory_bytes)
                _remove(made)
        if "memory" in own and (ROOT / "memory").is_dir():
            dirs = [ROOT / "memory" / own["memory"].lstrip("/") / name]
            if "pids" in own and (ROOT / "pids").is_dir():
                dirs.append(ROOT / "pids" / own["pids"].lstrip("/") / name)
            made = _make(dirs)
            ok = bool(made) and _write(made[0] / "memory.limit_in_bytes", memory_bytes)
            if ok:
                _write(made[0] / "memory.memsw.limit_in_bytes", memory_bytes, required=False)
                if len(made) > 1:
                    ok = _write(made[1] / "pids.max", pids)
            if ok:
                return cls(tuple(made), 1, memory_bytes)
            _remove(made)
        return None

    def enter(self) -> None:
        """Move the calling process into the cgroup (a preexec_fn: before exec, so every
        process the runner ever starts is born inside)."""
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process here for going over the memory limit."""
        events = _read(self.dirs[0] / ("memory.events" if self.version == 2
                                       else "memory.oom_control"))
        for line in events.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit() and int(value) > 0:
                return True
        return self.version == 1 and _read(self.dirs[0] / "memory.failcnt").strip() not in (
            "", "0")

    def destroy(self) -> None:
        """Kill whatever is still inside, then remove the directories."""
        for _ in range(50):
            pids = self._pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)
        _remove(list(self.dirs))

    def _pids(self) -> list[int]:
        return [int(p) for d in self.dirs for p in _read(d / "cgroup.procs").split()
                if p.isdigit()]

    def describe(self) -> str:
        return f"cgroup v{self.version} ({self.memory_bytes / 2**30:.1f} GiB, all processes)"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: int, required: bool = True) -> bool:
    try:
        path.write_text(str(value))
        return True
    except OSError:
        return not required


def _make(dirs: list[Path]) -> list[Path]:
    made: list[Path] = []
    for d in dirs:
        try:
            d.mkdir()
        except OSError:
            _remove(made)
            return []
        made.append(d)
    return made


def _remove(dirs: list[Path]) -> None:
    for d in dirs:
        with contextlib.suppress(OSError):
            d.rmdir()

"""A content-addressed build cache shared by every run on a machine.

The key is the SHA-256 of everything that decides the binary: the source, the compiler flags,
the target architecture and the toolchain's version. A hit returns the cubin without compiling;
a compile error is cached too (a re-proposed broken kernel fails at once with the same
message). Entries are written to a temporary file and renamed, so concurrent compiles of the
same kernel by a pool or by two runs cannot leave a torn file.

Candidates never write the shared cache: their sandbox sees it read-only
($KERNELPRO_BUILD_SHARED) and their own builds go to a private root in their scratch, each with
a recipe (what was compiled, for which key). The judge rebuilds from those recipes in a
process that runs no candidate code and inserts only what it built itself (a candidate could
otherwise plant a cubin under another source's key).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """kernelpro's cache: $KERNELPRO_CACHE, else kernelpro/ under $XDG_CACHE_HOME or ~/.cache."""
    base = os.environ.get("KERNELPRO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "kernelpro")
    return Path(base)


def default_root() -> Path:
    """$KERNELPRO_BUILD_CACHE (a runner's private builds), else builds/ in the cache."""
    explicit = os.environ.get("KERNELPRO_BUILD_CACHE")
    return Path(explicit) if explicit else cache_root() / "builds"


def shared_root() -> Path | None:
    """$KERNELPRO_BUILD_SHARED: the machine's cache, read-only, seen from inside a sandbox."""
    explicit = os.environ.get("KERNELPRO_BUILD_SHARED")
    return Path(explicit) if explicit else None


def build_key(kind: str, source: str, flags: Sequence[str], arch: str, toolchain: str) -> str:
    blob = json.dumps([kind, source, list(flags), arch, toolchain])
    return hashlib.sha256(blob.encode()).hexdigest()


class CachedCompileError(Exception):
    """A compile that failed before with this exact key; the message is the compiler's."""


class BuildCache:
    """Cubins by key under `root` (written) and `shared` (read only); counts hits and misses
    for the throughput bench."""

    def __init__(self, root: Path | None = None, shared: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.shared = shared if shared is not None or root is not None else shared_root()
        self.hits = self.misses = 0

    def _path(self, key: str, suffix: str, root: Path | None = None) -> Path:
        return (root or self.root) / key[:2] / f"{key}{suffix}"

    def lookup(self, key: str) -> Path | None:
        """The cached binary's path; CachedCompileError if this key failed before."""
        for root in [r for r in (self.shared, self.root) if r is not None]:
            err = self._path(key, ".err", root)
            if err.is_file() and os.access(err, os.R_OK):
                self.hits += 1
                raise CachedCompileError(err.read_text())
            path = self._path(key, ".cubin", root)
            if path.is_file() and os.access(path, os.R_OK):  # an older entry may be 0600
                self.hits += 1
                return path
        return None

    def store(self, key: str, data: bytes, suffix: str = ".cubin") -> Path:
        path = self._path(key, suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), 0o644)  # sandboxed runners read the shared cache as uid 65534
        os.replace(tmp, path)
        return path

    def get_or_build(self, key: str, build: Callable[[], bytes],
                     is_compile_error: Callable[[BaseException], bool] = lambda e: False,
                     recipe: dict[str, Any] | None = None) -> tuple[Path, bool]:
        """(path of the cubin, whether it was a hit). Compile errors are remembered; a
        `recipe` (what to compile to get this key) is kept beside a new entry."""
        found = self.lookup(key)
        if found is not None:
            return found, True
        self.misses += 1
        if recipe is not None:
            self.store(key, json.dumps(recipe).encode(), ".recipe.json")
        try:
            data = build()
        except Exception as exc:
            if is_compile_error(exc):
                self.store(key, str(exc).encode(), ".err")
            raise
        return self.store(key, data), False

    def recipes(self) -> list[dict[str, Any]]:
        """The recipes of the entries built under `root` (a runner's private builds)."""
        out = []
        for path in sorted(self.root.glob("*/*.recipe.json")):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return out

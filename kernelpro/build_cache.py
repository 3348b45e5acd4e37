"""A content-addressed build cache shared by every run on a machine.

The key is the SHA-256 of everything that decides the binary: the source, the compiler flags,
the target architecture and the toolchain's version. A hit returns the cubin without compiling;
a compile error is cached too (a re-proposed broken kernel fails at once with the same
message). Entries are written to a temporary file and renamed, so concurrent compiles of the
same kernel by a pool or by two runs cannot leave a torn file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path


def cache_root() -> Path:
    """kernelpro's cache: $KERNELPRO_CACHE, else kernelpro/ under $XDG_CACHE_HOME or ~/.cache."""
    base = os.environ.get("KERNELPRO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "kernelpro")
    return Path(base)


def default_root() -> Path:
    """$KERNELPRO_BUILD_CACHE (set for the scrubbed workers), else builds/ in the cache."""
    explicit = os.environ.get("KERNELPRO_BUILD_CACHE")
    return Path(explicit) if explicit else cache_root() / "builds"


def build_key(kind: str, source: str, flags: Sequence[str], arch: str, toolchain: str) -> str:
    blob = json.dumps([kind, source, list(flags), arch, toolchain])
    return hashlib.sha256(blob.encode()).hexdigest()


class CachedCompileError(Exception):
    """A compile that failed before with this exact key; the message is the compiler's."""


class BuildCache:
    """Cubins by key under `root`; counts hits and misses for the throughput bench."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.hits = self.misses = 0

    def _path(self, key: str, suffix: str) -> Path:
        return self.root / key[:2] / f"{key}{suffix}"

    def lookup(self, key: str) -> Path | None:
        """The cached binary's path; CachedCompileError if this key failed before."""
        err = self._path(key, ".err")
        if err.is_file():
            self.hits += 1
            raise CachedCompileError(err.read_text())
        path = self._path(key, ".cubin")
        if path.is_file():
            self.hits += 1
            return path
        return None

    def store(self, key: str, data: bytes, suffix: str = ".cubin") -> Path:
        path = self._path(key, suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return path

    def get_or_build(self, key: str, build: Callable[[], bytes],
                     is_compile_error: Callable[[BaseException], bool] = lambda e: False
                     ) -> tuple[Path, bool]:
        """(path of the cubin, whether it was a hit). Compile errors are remembered."""
        found = self.lookup(key)
        if found is not None:
            return found, True
        self.misses += 1
        try:
            data = build()
        except Exception as exc:
            if is_compile_error(exc):
                self.store(key, str(exc).encode(), ".err")
            raise
        return self.store(key, data), False

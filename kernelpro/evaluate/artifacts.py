"""Device binaries a candidate produced: gathered by the runner, checked and kept by the judge.

Runner side (`collect`, inside the sandbox): cubins of captured `load_inline` builds (no GPU),
Triton's ahead-of-time compiles of the recorded launches (no GPU), Triton's cache and
`load_inline`'s objects (GPU), kernelpro.nvrtc's builds, and the NVRTC recipes the judge
rebuilds the shared cache from. Judge side (`keep`): every file is a claim for the static
tier only (never for the verdict); names are reduced to a safe basename, sizes and counts are
capped, and a cubin must be an ELF image.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

MAX_FILES = 64
MAX_FILE_BYTES = 64 << 20
ELF_MAGIC = b"\x7fELF"
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def collect(runner: Any, scratch: Path, arch: str) -> tuple[dict[str, bytes], list[str]]:
    """{file name: bytes} of every binary this runner's candidate built, and notes."""
    from kernelpro.evaluate.compile import collect_extension_cubins, collect_triton_cubins

    files: dict[str, bytes] = {}
    notes: list[str] = []
    paths: list[Path] = []
    if runner.capture is not None:
        paths += [e.cubin for e in runner.capture.extensions if e.cubin]
    if runner.recorder is not None and runner.candidate:
        aot = scratch / "aot"
        paths += runner.recorder.finish(Path(runner.candidate), aot, arch)
        paths += [p for p in sorted(aot.glob("*.json")) if not p.name.startswith("launches-")]
        notes += [f"ahead-of-time compile for {arch} failed: {e}" for e in runner.recorder.errors]
    if runner.device.type == "cuda":
        out = scratch / "collected"
        paths += collect_triton_cubins(Path(os.environ.get("TRITON_CACHE_DIR", scratch)), out)
        paths += collect_extension_cubins(Path(os.environ.get("TORCH_EXTENSIONS_DIR", scratch)),
                                          out)
    nvrtc = sys.modules.get("kernelpro.nvrtc")
    if nvrtc is not None:
        paths += [Path(p) for p in dict.fromkeys(nvrtc.BUILT)]
    for p in paths:
        name = ("nvrtc-" if nvrtc is not None and p in nvrtc.BUILT else "") + p.name
        try:
            files[name] = p.read_bytes()
        except OSError as exc:
            notes.append(f"{p.name}: {exc}")
    return files, notes


def recipes() -> list[dict[str, Any]]:
    """What this runner's kernelpro.nvrtc compiled into its private build cache."""
    if "kernelpro.nvrtc" not in sys.modules:
        return []
    from kernelpro.build_cache import BuildCache

    return BuildCache().recipes()


def safe_name(name: str) -> str:
    base = SAFE_NAME.sub("_", os.path.basename(str(name)))[:120].lstrip(".")
    return base or "unnamed"


def keep(files: dict[str, bytes], out_dir: Path) -> tuple[list[str], list[str]]:
    """Write the runner's files into `out_dir` after checking them; (cubin paths, notes)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    kept, notes = [], []
    for i, (name, data) in enumerate(sorted(files.items())):
        if i >= MAX_FILES:
            notes.append(f"{len(files) - MAX_FILES} more binaries ignored (limit {MAX_FILES})")
            break
        clean = safe_name(name)
        if len(data) > MAX_FILE_BYTES:
            notes.append(f"{clean}: {len(data)} bytes, over the {MAX_FILE_BYTES} limit; ignored")
            continue
        if clean.endswith(".cubin") and not data.startswith(ELF_MAGIC):
            notes.append(f"{clean}: not an ELF image; ignored")
            continue
        if not clean.endswith((".cubin", ".json")):
            continue
        dest = out_dir / clean
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
        if clean.endswith(".cubin"):
            kept.append(str(dest))
    return kept, notes


def valid_recipe(recipe: Any) -> bool:
    """A recipe the judge will compile: plain fields of sane sizes whose key is what the
    fields hash to (a runner cannot file a binary under another source's key)."""
    from kernelpro.build_cache import build_key

    if not isinstance(recipe, dict) or recipe.get("kind") != "nvrtc":
        return False
    fields = ("source", "name", "arch", "toolchain", "key")
    if not all(isinstance(recipe.get(f), str) for f in fields):
        return False
    options = recipe.get("options")
    if not isinstance(options, list) or len(options) > 32 or \
            not all(isinstance(o, str) and len(o) < 256 for o in options):
        return False
    if len(recipe["source"]) > (1 << 20) or not re.fullmatch(r"sm_\d{2,3}a?", recipe["arch"]) \
            or not re.fullmatch(r"[A-Za-z_]\w{0,127}", recipe["name"]):
        return False
    return recipe["key"] == build_key("nvrtc", recipe["source"], options, recipe["arch"],
                                      recipe["toolchain"])


def rebuild_shared(req: dict[str, Any]) -> list[str]:
    """Compile the runner's NVRTC recipes in a fresh runner that loads no candidate, and put
    what it built into the shared build cache; notes for the verdict."""
    from kernelpro.build_cache import BuildCache, CachedCompileError
    from kernelpro.evaluate.remote import RunnerFailure, start_runner

    shared = req.get("shared_builds")
    if not shared:
        return []
    cache = BuildCache(Path(shared))
    todo = []
    for recipe in req.get("_recipes") or []:
        if not valid_recipe(recipe):
            continue
        try:
            found = cache.lookup(recipe["key"])
        except CachedCompileError:
            continue
        if found is None:
            todo.append(recipe)
        elif found.stat().st_mode & 0o004 == 0:  # written private by an older kernelpro
            found.chmod(0o644)
    if not todo:
        return []
    work = Path(req["candidate_file"]).parent / "rebuild"
    work.mkdir(exist_ok=True)
    runner, _ = start_runner(req, work)
    try:
        reply, built = runner.request({"op": "rebuild", "recipes": todo},
                                      timeout_s=float(req["limits"]["compile_timeout_s"]),
                                      max_payload=1 << 30, what="rebuilding NVRTC kernels")
    except RunnerFailure as exc:
        return [f"build cache not updated: {exc.reason}"]
    finally:
        runner.close()
    version = reply.get("toolchain")
    by_key = {r["key"]: r for r in todo}
    stored = 0
    for key, tensor in zip(reply.get("names") or [], built or [], strict=False):
        if key in by_key and by_key[key]["toolchain"] == version:
            data = bytes(tensor.numpy().tobytes())
            if data.startswith(ELF_MAGIC):
                cache.store(key, data)
                stored += 1
    for key, message in (reply.get("failed") or {}).items():
        if key in by_key and by_key[key]["toolchain"] == version:
            cache.store(key, str(message).encode(), ".err")
    return [f"build cache: {stored} kernel(s) rebuilt by the judge and shared"] if stored else []

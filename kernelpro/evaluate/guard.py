"""Static (AST) checks on untrusted candidate code, before anything runs.

The guard is the first, cheap wall: it gives a clear one-line reason for code that tries to
escape the sandbox or tamper with the harness. It is not the security boundary (the worker
process is); a determined candidate can hide a call from any static check, and the worker
must survive it anyway.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

# Modules whose import has no place in a kernel file: processes, network, FFI, threads.
FORBIDDEN_MODULES = frozenset({
    "subprocess", "socket", "ctypes", "cffi", "multiprocessing", "threading", "_thread",
    "concurrent", "signal", "shutil", "requests", "urllib", "http", "httpx", "asyncio",
    "pickle", "marshal", "importlib", "builtins", "pty", "resource", "gc", "inspect",
})
# The one kernelpro module a candidate may import: the NVRTC launch helper.
ALLOWED_KERNELPRO = frozenset({"kernelpro.nvrtc"})
THREAD_MODULES = frozenset({"threading", "_thread", "multiprocessing", "concurrent", "asyncio"})
# Builtins that run code from strings, open files or reach the interpreter's internals.
FORBIDDEN_BUILTINS = frozenset({
    "exec", "eval", "compile", "__import__", "open", "globals", "breakpoint", "input",
    "setattr", "delattr", "vars",
})
# Dotted names that act on the process or harness (matched on the attribute chain).
FORBIDDEN_ATTRIBUTES = frozenset({
    "os.system", "os.popen", "os._exit", "os.kill", "os.killpg", "os.fork", "os.forkpty",
    "os.remove", "os.unlink", "os.rmdir", "os.removedirs", "os.rename", "os.replace",
    "os.putenv", "os.abort", "os.execv", "os.execve", "os.execl", "os.execvp", "os.spawnv",
    "os.spawnl", "os.posix_spawn", "os.setsid", "sys.exit", "sys.modules", "sys.settrace",
    "sys.setprofile", "sys._getframe", "torch.cuda.set_sync_debug_mode",
})
FORBIDDEN_ATTR_PREFIXES = ("os.exec", "os.spawn")


@dataclass(frozen=True)
class GuardFinding:
    rule: str  # e.g. "forbidden-import", "monkeypatch"
    line: int
    message: str

    def render(self) -> str:
        return f"{self.rule} at line {self.line}: {self.message}"


def check_source(source: str) -> list[GuardFinding]:
    """All guard findings for a candidate file; empty means it may run."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [GuardFinding("syntax", exc.lineno or 0, exc.msg)]
    findings = _structure(tree)
    aliases = _module_aliases(tree)
    for node in ast.walk(tree):
        findings.extend(_check_node(node, aliases))
    return sorted(findings, key=lambda f: f.line)


def _structure(tree: ast.Module) -> list[GuardFinding]:
    names = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    if "ModelNew" not in names:
        return [GuardFinding("no-modelnew", 1, "the file defines no `class ModelNew`")]
    return []


def _module_aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted module/attribute it was imported as (`F` -> torch.nn.functional)."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                local = a.asname or a.name.split(".")[0]
                aliases[local] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """`a.b.c` with the root resolved through import aliases, or None if not a name chain."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    root = aliases.get(node.id, node.id)
    return ".".join([root, *reversed(parts)])


def _forbidden_attribute(dotted: str) -> bool:
    return dotted in FORBIDDEN_ATTRIBUTES or dotted.startswith(FORBIDDEN_ATTR_PREFIXES)


def _check_node(node: ast.AST, aliases: dict[str, str]) -> list[GuardFinding]:
    line = getattr(node, "lineno", 0)
    out: list[GuardFinding] = []
    if isinstance(node, ast.Import | ast.ImportFrom):
        modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                   else [node.module or ""])
        for mod in modules:
            if mod.split(".")[0] == "kernelpro" and mod not in ALLOWED_KERNELPRO:
                out.append(GuardFinding("forbidden-import", line,
                                        f"imports `{mod}`: candidates may use only "
                                        "kernelpro.nvrtc, not the harness"))
            if mod.split(".")[0] in FORBIDDEN_MODULES:
                why = (" [background thread]" if mod.split(".")[0] in THREAD_MODULES
                       else "")
                out.append(GuardFinding("forbidden-import", line,
                                        f"imports `{mod}`, which a kernel file does not need"
                                        + why))
        if isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if _forbidden_attribute(full):
                    out.append(GuardFinding("forbidden-call", line, f"imports `{full}`"))
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id in FORBIDDEN_BUILTINS and node.func.id not in aliases:
            out.append(GuardFinding("forbidden-builtin", line,
                                    f"calls `{node.func.id}()`, which can run arbitrary code "
                                    "or reach the harness"))
    elif isinstance(node, ast.Attribute):
        dotted = _dotted(node, aliases)
        if dotted and _forbidden_attribute(dotted):
            out.append(GuardFinding("forbidden-call", line,
                                    f"uses `{dotted}`, which acts on the process or harness"))
    elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
        targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
        for target in targets:
            dotted = _dotted(target, aliases) if isinstance(target, ast.Attribute) else None
            if dotted and dotted.split(".")[0] in _imported_roots(aliases):
                out.append(GuardFinding("monkeypatch", line,
                                        f"assigns to `{dotted}`, replacing library or harness "
                                        "code [harness monkey-patching]"))
    return out


def _imported_roots(aliases: dict[str, str]) -> set[str]:
    return {v.split(".")[0] for v in aliases.values()}

"""The OS sandbox around the candidate runner (DESIGN §12): namespaces, read-only mounts, a uid.

Two established mechanisms, tried in this order, each probed once per process by really
starting `true` in it:

- **bwrap** (bubblewrap, Debian's `bubblewrap`): new PID, network, IPC, UTS and cgroup
  namespaces, a root file system of read-only binds (/usr, /etc, the Python installation, its
  site-packages, the kernelpro package, the shared build cache) with a size-limited tmpfs as
  the only writable place (/scratch), a fresh /proc and a minimal /dev (plus the NVIDIA device
  nodes on a GPU), `--die-with-parent`. As root it runs without a user namespace and the
  runner drops to uid 65534 with every capability gone (util-linux `setpriv`); as another
  user it uses an unprivileged user namespace.
- **unshare** (util-linux, root only): the same namespaces and the same mounts built by a short
  shell script inside the new mount namespace, then `chroot` and `setpriv` to uid 65534.

Where neither works the runner is started as a plain child process (own session, scrubbed
environment, scratch directory) and every verdict says `unsandboxed`; `--require-sandbox`
turns that into an error. `KERNELPRO_SANDBOX=bwrap|unshare|none` forces one (tests).

What is never visible inside: the home directory, the project tree beyond the kernelpro
package, the task file, the judge's directory, kernelpro's caches other than the build cache
(read-only), other workers' directories, the network, other processes.
"""

from __future__ import annotations

import functools
import glob
import os
import shlex
import shutil
import site
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SCRATCH = "/scratch"  # the runner's only writable directory, inside the sandbox
NOBODY = 65534
DEFAULT_SCRATCH_BYTES = 4 << 30  # Triton caches and load_inline builds fit in far less
SMALL_TMPFS_BYTES = 1 << 30  # /tmp and /dev/shm: memory-backed, so capped too
TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
PROBE_TIMEOUT_S = 20.0
Kind = Literal["bwrap", "unshare", "none"]


@dataclass(frozen=True)
class Mechanism:
    """Which sandbox runs the candidate, and in words why (or why none does)."""

    kind: Kind
    tool: str = ""  # the executable (bwrap or unshare)
    why: str = ""  # for `none`: what was tried and failed

    @property
    def sandboxed(self) -> bool:
        return self.kind != "none"

    @property
    def drops_uid(self) -> bool:
        return self.kind == "unshare" or (self.kind == "bwrap" and os.geteuid() == 0)

    def describe(self) -> str:
        if self.kind == "none":
            return f"unsandboxed: {self.why}"
        who = f"uid {NOBODY}, no capabilities" if self.drops_uid else "a user namespace"
        return (f"sandboxed with {self.kind}: own PID, network, IPC and mount namespaces, "
                f"read-only file system but {SCRATCH}, {who}")


@dataclass(frozen=True)
class Layout:
    """What the runner sees: read-only host paths, files placed inside, devices, scratch."""

    ro_paths: tuple[str, ...]  # host directories bound read-only at the same path
    files: tuple[tuple[str, str], ...] = ()  # (host file, path inside), read-only
    gpu: bool = False
    scratch_bytes: int = DEFAULT_SCRATCH_BYTES
    hidden: tuple[str, ...] = field(default=())  # host paths masked inside bound directories


def default_ro_paths(extra: Sequence[str | Path] = ()) -> list[str]:
    """The host directories a runner needs: system, Python, site-packages, kernelpro, CUDA."""
    import kernelpro

    paths = ["/usr", "/etc", "/sys"]
    paths += [sys.prefix, sys.base_prefix, sys.exec_prefix,
              str(Path(os.path.realpath(sys.executable)).parents[1])]
    paths += [p for p in [*site.getsitepackages(), site.getusersitepackages(), *sys.path]
              if p and ("site-packages" in p or "dist-packages" in p)]
    paths.append(str(Path(kernelpro.__file__).resolve().parent))
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            paths.append(os.environ[var])
    paths += [str(p) for p in extra]
    return _outermost([p for p in paths if os.path.isdir(p)])


def _outermost(paths: Sequence[str]) -> list[str]:
    real = sorted({os.path.realpath(p) for p in paths} | {os.path.abspath(p) for p in paths})
    kept: list[str] = []
    for p in real:
        if p == "/" or any(p == k or p.startswith(k.rstrip("/") + "/") for k in kept):
            continue
        kept.append(p)
    return kept


def _inside(path: str, dirs: Sequence[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def gpu_device_nodes() -> list[str]:
    return sorted(glob.glob("/dev/nvidia*") + glob.glob("/dev/nvidia-caps/*"))


# --- bwrap --------------------------------------------------------------------------------------

def _parents(path: str, bound: Sequence[str]) -> list[str]:
    """Ancestors of a bind target that no other bind provides: bwrap would create them 0700,
    which the unprivileged runner could not traverse."""
    out = []
    p = Path(path).parent
    while str(p) != "/":
        if not _inside(str(p), bound):
            out.append(str(p))
        p = p.parent
    return list(reversed(out))


def bwrap_argv(tool: str, layout: Layout, argv: Sequence[str]) -> list[str]:
    cmd = [tool, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
           "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    if os.geteuid() != 0:
        cmd += ["--unshare-user", "--disable-userns"]
    bound = [p for p in layout.ro_paths if p not in TOP_LEVEL]
    made: set[str] = set()
    for top in TOP_LEVEL:
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top) and top not in bound:
            bound.append(top)
    for path in sorted(bound, key=lambda p: p.count("/")):
        for parent in _parents(path, [b for b in bound if b != path]):
            if parent not in made:
                made.add(parent)
                cmd += ["--perms", "0755", "--dir", parent]
        cmd += ["--ro-bind", path, path]
    for hidden in layout.hidden:
        if _inside(hidden, bound):
            cmd += ["--ro-bind", "/dev/null", hidden] if os.path.isfile(hidden) \
                else ["--tmpfs", hidden]
    small = str(SMALL_TMPFS_BYTES)
    cmd += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", small, "--tmpfs",
            "/dev/shm", "--perms", "1777", "--size", small, "--tmpfs", "/tmp",
            "--perms", "0777", "--size", str(layout.scratch_bytes), "--tmpfs", SCRATCH]
    if layout.gpu:
        for node in gpu_device_nodes():
            cmd += ["--dev-bind-try", node, node]
    for host, inside in layout.files:
        cmd += ["--ro-bind", host, inside]
    cmd += ["--chdir", SCRATCH, "--"]
    if os.geteuid() == 0:
        cmd += _setpriv()
    return cmd + list(argv)


def _system_tool(name: str) -> str:
    return shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin") or name


def _setpriv() -> list[str]:
    tool = _system_tool("setpriv")
    return [tool, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]


# --- util-linux unshare -------------------------------------------------------------------------

_UNSHARE_SCRIPT = r"""
set -e
R="$1"; shift
mount -t tmpfs -o mode=0755 kernelpro-root "$R"
robind() { mkdir -p "$R$1"; mount --rbind "$1" "$R$1"; mount -o remount,bind,ro "$R$1"; }
{binds}
mkdir -p "$R/proc" "$R/dev" "$R/tmp" "$R{scratch}"
mount -t proc proc "$R/proc"
mount -t tmpfs -o mode=1777,size={small} tmp "$R/tmp"
mount -t tmpfs -o mode=0777,size={scratch_bytes} scratch "$R{scratch}"
mount -t tmpfs -o mode=0755 dev "$R/dev"
mkdir -p "$R/dev/shm"; mount -t tmpfs -o mode=1777,size={small} shm "$R/dev/shm"
for d in null zero full random urandom tty {devices}; do
  if [ -e "/dev/$d" ]; then
    mkdir -p "$(dirname "$R/dev/$d")"; touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"
  fi
done
{files}
exec {chroot} "$R" {setpriv} /bin/sh -c 'cd {scratch} && "$@"' sh "$@"
"""


def unshare_argv(tool: str, layout: Layout, argv: Sequence[str], root_dir: str) -> list[str]:
    q = shlex.quote
    binds = []
    for top in TOP_LEVEL:
        if os.path.islink(top):
            binds.append(f'ln -s {q(os.readlink(top))} "$R"{q(top)}')
    bound = [p for p in layout.ro_paths if not os.path.islink(p)]
    for top in TOP_LEVEL:
        if os.path.isdir(top) and not os.path.islink(top) and top not in bound:
            bound.append(top)
    for path in sorted(bound, key=lambda p: p.count("/")):
        binds.append(f"robind {q(path)}")
    for hidden in layout.hidden:
        if _inside(hidden, bound):
            binds.append(f'mount --bind /dev/null "$R"{q(hidden)}' if os.path.isfile(hidden)
                         else f'mount -t tmpfs hidden "$R"{q(hidden)}')
    files = [f'touch "$R"{q(inside)}; mount --bind {q(host)} "$R"{q(inside)}; '
             f'mount -o remount,bind,ro "$R"{q(inside)}' for host, inside in layout.files]
    devices = " ".join(q(n.removeprefix("/dev/")) for n in gpu_device_nodes()) \
        if layout.gpu else ""
    script = (_UNSHARE_SCRIPT.replace("{binds}", "\n".join(binds))
              .replace("{files}", "\n".join(files)).replace("{devices}", devices)
              .replace("{scratch_bytes}", str(layout.scratch_bytes))
              .replace("{small}", str(SMALL_TMPFS_BYTES))
              .replace("{scratch}", SCRATCH)
              .replace("{chroot}", q(_system_tool("chroot")))
              .replace("{setpriv}", " ".join(q(a) for a in _setpriv())))
    return [tool, "--pid", "--fork", "--kill-child", "--mount", "--net", "--ipc", "--uts",
            "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", root_dir,
            *argv]


# --- choosing one -------------------------------------------------------------------------------

def wrap(mech: Mechanism, layout: Layout, argv: Sequence[str], root_dir: Path) -> list[str]:
    """The command line that starts `argv` inside the sandbox (argv itself for `none`)."""
    if mech.kind == "bwrap":
        return bwrap_argv(mech.tool, layout, argv)
    if mech.kind == "unshare":
        root_dir.mkdir(parents=True, exist_ok=True)
        return unshare_argv(mech.tool, layout, argv, str(root_dir))
    return list(argv)


def _probe(kind: Kind, tool: str) -> str | None:
    """None if `true` runs inside this mechanism, else a one-line reason."""
    import tempfile

    mech = Mechanism(kind, tool)
    with tempfile.TemporaryDirectory(prefix="kernelpro-probe-") as tmp:
        layout = Layout(tuple(_outermost(["/usr", "/etc"])), scratch_bytes=1 << 20)
        argv = wrap(mech, layout, ["/bin/sh", "-c", "test $(id -u) != 0"], Path(tmp) / "root")
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{kind}: {type(exc).__name__}: {exc}"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return f"{kind}: {tail[0][:160]}"
    return None


@functools.cache
def detect() -> Mechanism:
    """The best mechanism that really works here (cached for the process)."""
    forced = os.environ.get("KERNELPRO_SANDBOX")
    order: list[Kind] = ["bwrap", "unshare"]
    if forced == "none":
        return Mechanism("none", why="KERNELPRO_SANDBOX=none")
    if forced in order:
        order = [forced]  # type: ignore[list-item]
    tried: list[str] = []
    for kind in order:
        tool = shutil.which(kind)
        if tool is None:
            tried.append(f"{kind}: not installed" + (" (apt-get install bubblewrap)"
                                                     if kind == "bwrap" else ""))
            continue
        if kind == "unshare" and os.geteuid() != 0:
            tried.append("unshare: needs root")
            continue
        problem = _probe(kind, tool)
        if problem is None:
            return Mechanism(kind, tool)
        tried.append(problem)
    return Mechanism("none", why="no OS sandbox works here (" + "; ".join(tried) + ")")

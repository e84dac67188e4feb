"""The python tool: the model's code runs in a separate, fenced-in interpreter, never in lmstack's.

Every run gets a new empty temporary working directory, a cleared environment, an isolated
interpreter (`python -I`: no user site-packages, no PYTHON* variables, the script's folder not on
the path), a wall-clock timeout after which its whole process group is killed, and stdout and
stderr that go to files capped by the file-size limit, so no output can fill memory. Inside,
`sandbox_boot.py` adds the fences the platform allows (see its docstring): on Linux PID and
network namespaces, Landlock, a cgroup process limit; rlimits everywhere. The result names the
fences that were applied, and docs/tools.md says what is and is not isolated where.

A PNG the code writes in its working directory (a matplotlib figure) comes back as an image.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lmstack.errors import LmstackError
from lmstack.tools import Tool, ToolResult

BOOT = Path(__file__).with_name("sandbox_boot.py")
MAX_OUTPUT_CHARS = 4_000
MAX_IMAGES, MAX_IMAGE_BYTES = 4, 2 << 20
_CGROUP_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))


@dataclass
class SandboxLimits:
    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_mb: int = 1024  # address space; numpy and matplotlib need a few hundred MB of it
    file_mb: int = 16  # any file written, stdout and stderr included
    max_files: int = 64  # open at once
    max_procs: int = 32
    max_code_chars: int = 20_000

    def check(self) -> None:
        for name, v in vars(self).items():
            if not (v > 0):
                raise LmstackError(f"sandbox limit {name} must be positive, got {v}")


@dataclass
class SandboxResult:
    stdout: str
    stderr: str
    exit_status: int
    timed_out: bool
    isolation: list[str]
    images: list[bytes] = field(default_factory=list)
    seconds: float = 0.0


def _read_paths() -> list[str]:
    """What the interpreter must read to start and import installed packages, and nothing else."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sysconfig.get_paths()["stdlib"],
             "/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/share/fonts", "/usr/share/zoneinfo",
             "/sys/devices/system/cpu", "/proc/cpuinfo", os.path.realpath(sys.executable)}
    paths |= {p for p in sys.path if p and os.path.isdir(p) and "site-packages" in p}
    return sorted(p for p in paths if os.path.exists(p))


def _make_cgroup(max_procs: int) -> Path | None:
    """A pids cgroup for one run, when the cgroup filesystem (v1's pids hierarchy, or v2 with the pids
    controller delegated) lets this process make one; None otherwise."""
    for root in _CGROUP_ROOTS:
        if not ((root / "cgroup.procs").exists() and os.access(root, os.W_OK)):
            continue
        group = root / f"lmstack-{os.getpid()}-{time.monotonic_ns()}"
        try:
            group.mkdir()
        except OSError:
            continue
        try:
            (group / "pids.max").write_text(str(max_procs))
            return group
        except OSError:
            group.rmdir()
    return None


def _drop_cgroup(group: Path | None) -> None:
    if group is None:
        return
    for _ in range(50):  # kill what is left, then remove the empty group
        pids = [int(p) for p in (group / "cgroup.procs").read_text().split()] if group.exists() else []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            group.rmdir()
            return
        except OSError:
            time.sleep(0.02)


def _read_capped(path: Path, limit: int = MAX_OUTPUT_CHARS) -> str:
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        data = f.read(limit * 4 + 1)
    text = data.decode("utf-8", errors="replace")
    size = path.stat().st_size
    if len(text) > limit or size > len(data):
        return text[:limit] + f"\n[... output cut: {size:,} bytes in all]"
    return text


def _images(workdir: Path) -> list[bytes]:
    out = []
    for p in sorted(workdir.rglob("*.png"))[:MAX_IMAGES]:
        data = p.read_bytes()[: MAX_IMAGE_BYTES + 1]
        if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) <= MAX_IMAGE_BYTES:
            out.append(data)
    return out


def run_python(code: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run `code` as a script in a fresh sandbox and collect what it printed and drew."""
    limits = limits or SandboxLimits()
    limits.check()
    if not isinstance(code, str) or not code.strip():
        raise LmstackError("python: give some code to run")
    if len(code) > limits.max_code_chars:
        raise LmstackError(f"python: code longer than {limits.max_code_chars:,} characters")
    work = Path(tempfile.mkdtemp(prefix="lmstack-py-")).resolve()
    group = _make_cgroup(limits.max_procs)
    cfg = {"workdir": str(work), "read_paths": _read_paths(), "cgroup": str(group) if group else None,
           "cpu_seconds": limits.cpu_seconds, "memory_mb": limits.memory_mb, "file_mb": limits.file_mb,
           "max_files": limits.max_files, "max_procs": limits.max_procs}
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8",
           "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(work / ".matplotlib"), "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    (work / "main.py").write_text(code, encoding="utf-8")
    t0 = time.perf_counter()
    try:
        with open(work / ".stdout", "wb") as out, open(work / ".stderr", "wb") as err:
            proc = subprocess.Popen([sys.executable, "-I", str(BOOT), json.dumps(cfg)], cwd=work, env=env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
            timed_out = False
            try:
                status = proc.wait(timeout=limits.wall_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                status = proc.wait()
        _drop_cgroup(group)
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything of the group that outlived its leader
        except ProcessLookupError:
            pass
        iso = work / ".isolation"
        isolation = iso.read_text().split(",") if iso.exists() else []
        return SandboxResult(_read_capped(work / ".stdout"), _read_capped(work / ".stderr"),
                             status if status >= 0 else 128 - status, timed_out, isolation, _images(work),
                             time.perf_counter() - t0)
    finally:
        _drop_cgroup(group)
        shutil.rmtree(work, ignore_errors=True)


def _signal_name(status: int) -> str:
    try:
        return signal.Signals(status - 128).name if status > 128 else ""
    except ValueError:
        return ""


def format_result(r: SandboxResult, limits: SandboxLimits) -> str:
    parts = []
    if r.stdout:
        parts.append(f"stdout:\n{r.stdout}")
    if r.stderr:
        parts.append(f"stderr:\n{r.stderr}")
    if r.timed_out:
        parts.append(f"stopped: ran past the {limits.wall_seconds:g} s time limit")
    elif (name := _signal_name(r.exit_status)) == "SIGXCPU":
        parts.append(f"stopped: used more than {limits.cpu_seconds} s of CPU time")
    elif name:
        parts.append(f"stopped by {name}")
    parts.append(f"exit status {r.exit_status}")
    if r.images:
        parts.append(f"{len(r.images)} image(s) returned")
    return "\n".join(parts)


def python_tool(limits: SandboxLimits | None = None) -> Tool:
    limits = limits or SandboxLimits()
    limits.check()

    def run(code: str) -> ToolResult:
        r = run_python(code, limits)
        return ToolResult(format_result(r, limits), is_error=r.exit_status != 0, images=r.images)

    return Tool(
        name="python",
        description="Run a Python script in a sandbox (no network, no files outside its empty working "
                    f"directory, {limits.wall_seconds:g} s) and get what it prints. numpy and matplotlib are "
                    "available; a figure saved as .png in the working directory is returned as an image.",
        parameters={"type": "object",
                    "properties": {"code": {"type": "string", "description": "a complete Python script"}},
                    "required": ["code"]},
        fn=run)

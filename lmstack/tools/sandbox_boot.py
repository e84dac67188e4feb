"""Started by lmstack's python tool as `python -I sandbox_boot.py CONFIG_JSON`: fence this process in,
then run the model's code (main.py in the working directory) inside the fence.

Standalone on purpose (standard library only, nothing from lmstack): it runs in a fresh, isolated
interpreter before any user code, and everything it does must happen before that code starts.
Each fence is applied where the platform allows it, and the list of what was applied is written
to `.isolation` so the tool can report it:
- `pid+net namespaces` (Linux, root or user namespaces): the code runs as PID 1 of a new PID
  namespace (when it ends, or is killed, every process it started dies with it) in a new network
  namespace with no interface but a loopback that is down;
- `landlock` (Linux >= 5.13): files can be read only under the Python installation and the working
  directory, written only in the working directory; TCP bind/connect refused (Landlock ABI >= 4);
- `cgroup pids` (the tool creates the group when the cgroup filesystem is writable): at most
  `max_procs` processes and threads;
- `rlimits` (every POSIX system): CPU seconds, address space, file size, open files, processes
  (not enforced for root; the PID namespace and cgroup are what hold a fork bomb there), no core dumps.
"""

import ctypes
import json
import os
import resource
import runpy
import signal
import sys

CLONE_NEWNET, CLONE_NEWPID, CLONE_NEWUSER = 0x40000000, 0x20000000, 0x10000000
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SYS_LANDLOCK = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
FS_FILE = 1 | 2 | 4  # execute, write_file, read_file
FS_READ = 1 | 4 | 8  # execute, read_file, read_dir


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _landlock(libc, read_paths: list[str], write_paths: list[str]) -> bool:
    nums = SYS_LANDLOCK.get(os.uname().machine)
    if nums is None:
        return False
    create, add, restrict = nums
    abi = libc.syscall(create, None, 0, 1)
    if abi < 1:
        return False
    all_fs = (1 << 13) - 1 | (1 << 13 if abi >= 2 else 0) | (1 << 14 if abi >= 3 else 0) | (1 << 15 if abi >= 5 else 0)
    attr = _RulesetAttr(all_fs, 3 if abi >= 4 else 0)  # net: bind_tcp | connect_tcp, with no rule allowing any
    fd = libc.syscall(create, ctypes.byref(attr), ctypes.sizeof(attr) if abi >= 4 else 8, 0)
    if fd < 0:
        return False
    for paths, rights in ((read_paths, FS_READ), (write_paths, all_fs)):
        for p in paths:
            try:
                pfd = os.open(p, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            allowed = rights if os.path.isdir(p) else rights & FS_FILE
            rule = _PathBeneath(allowed & all_fs, pfd)
            libc.syscall(add, fd, 1, ctypes.byref(rule), 0)
            os.close(pfd)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    ok = libc.syscall(restrict, fd, 0) == 0
    os.close(fd)
    return ok


def _limits(cfg: dict) -> None:
    mb = 1 << 20
    for res, value in ((resource.RLIMIT_CPU, cfg["cpu_seconds"]), (resource.RLIMIT_AS, cfg["memory_mb"] * mb),
                       (resource.RLIMIT_FSIZE, cfg["file_mb"] * mb), (resource.RLIMIT_NOFILE, cfg["max_files"]),
                       (resource.RLIMIT_NPROC, cfg["max_procs"]), (resource.RLIMIT_CORE, 0)):
        try:
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):
            pass


def _run_code(cfg: dict, libc, applied: list[str]) -> None:
    """In the (new PID namespace's) first process: last fences, then the code."""
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # if the boot process dies, so does the code
    if _landlock(libc, cfg["read_paths"], [cfg["workdir"], os.devnull]):
        applied.append("landlock")
    _limits(cfg)
    applied.append("rlimits")
    with open(os.path.join(cfg["workdir"], ".isolation"), "w") as f:
        f.write(",".join(applied))
    sys.argv = ["main.py"]
    sys.path.insert(0, cfg["workdir"])
    runpy.run_path(os.path.join(cfg["workdir"], "main.py"), run_name="__main__")


def main() -> None:
    cfg = json.loads(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    applied = []
    if cfg.get("cgroup"):
        try:
            with open(os.path.join(cfg["cgroup"], "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            applied.append("cgroup pids")
        except OSError:
            pass
    flags = CLONE_NEWNET | CLONE_NEWPID | (0 if os.geteuid() == 0 else CLONE_NEWUSER)
    if libc.unshare(flags) == 0:
        applied.append("pid+net namespaces")
    pid = os.fork()
    if pid == 0:
        try:
            _run_code(cfg, libc, applied)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int | type(None)):
                print(e.code, file=sys.stderr)
            sys.stdout.flush()
            os._exit(code)
        except BaseException:  # noqa: BLE001 - the code's own error, shown as Python shows it
            import traceback

            traceback.print_exc()
            sys.stdout.flush()
            os._exit(1)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


if __name__ == "__main__":
    main()

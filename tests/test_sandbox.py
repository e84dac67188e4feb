"""The python tool's sandbox, attacked: each attack is stopped or refused within its limits, and the
next run works. Where the platform cannot apply a fence, the test says so instead of passing."""

import os
import sys
import time

import pytest

from lmstack.errors import LmstackError
from lmstack.tools.sandbox import SandboxLimits, python_tool, run_python

FAST = SandboxLimits(wall_seconds=5, cpu_seconds=3, memory_mb=512, file_mb=2, max_procs=16)
LINUX = sys.platform.startswith("linux")


def _run(code: str, limits: SandboxLimits = FAST):
    return run_python(code, limits)


def test_runs_code_in_an_empty_directory_with_a_clean_environment():
    r = _run("import os, sys\nprint(sorted(os.listdir('.')))\nprint(sorted(os.environ))\nprint(6 * 7)")
    assert r.exit_status == 0 and not r.timed_out, r.stderr
    files, env, answer = r.stdout.splitlines()
    assert "main.py" in files and answer == "42"
    assert "LMSTACK" not in env and "VIRTUAL_ENV" not in env and "HOME" in env
    assert "rlimits" in r.isolation


def test_errors_come_back_as_python_shows_them():
    r = _run("def f():\n    return 1 / 0\nf()")
    assert r.exit_status == 1 and "ZeroDivisionError" in r.stderr
    assert _run("import sys; sys.exit(3)").exit_status == 3


def test_infinite_loop_is_stopped():
    t0 = time.perf_counter()
    r = _run("while True:\n    pass", SandboxLimits(wall_seconds=1.5, cpu_seconds=30))
    assert r.timed_out and time.perf_counter() - t0 < 10
    r = _run("while True:\n    pass", SandboxLimits(wall_seconds=30, cpu_seconds=1))
    assert not r.timed_out and r.exit_status != 0  # SIGXCPU


def test_memory_bomb_is_refused():
    r = _run("x = bytearray(2 * 1024**3)\nprint('allocated')")
    assert r.exit_status != 0 and "allocated" not in r.stdout and "MemoryError" in r.stderr


def test_huge_write_and_huge_output_are_capped():
    r = _run("with open('big', 'wb') as f:\n    f.write(b'x' * 50_000_000)")
    assert r.exit_status != 0 and "File too large" in r.stderr
    r = _run("import sys\nfor _ in range(10**6):\n    sys.stdout.write('spam ' * 100 + '\\n')")
    assert len(r.stdout) < 5_000 and "output cut" in r.stdout


def test_fork_bomb_is_contained():
    t0 = time.perf_counter()
    r = _run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
             SandboxLimits(wall_seconds=3, cpu_seconds=3, max_procs=16))
    assert r.exit_status != 0 and time.perf_counter() - t0 < 15
    assert _run("print('still here')").stdout == "still here\n"  # and the machine is usable


@pytest.mark.skipif(not LINUX, reason="file and network fences need Linux (see docs/tools.md)")
def test_files_outside_the_working_directory_cannot_be_read():
    r = _run("print(open('/etc/passwd').read())")
    if "landlock" not in r.isolation:
        pytest.fail(f"this Linux kernel applied no Landlock fence (applied: {r.isolation})")
    assert r.exit_status != 0 and "root:" not in r.stdout and "PermissionError" in r.stderr
    home = os.path.expanduser("~")
    r = _run(f"import os\nprint(os.listdir({home!r}))")
    assert r.exit_status != 0 and "PermissionError" in r.stderr
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = _run(f"print(open({os.path.join(repo, 'README.md')!r}).read()[:20])")
    assert r.exit_status != 0 and "lmstack" not in r.stdout


@pytest.mark.skipif(not LINUX, reason="file and network fences need Linux (see docs/tools.md)")
def test_no_network():
    code = ("import socket\ns = socket.socket()\ns.settimeout(2)\n"
            "try:\n    s.connect(('127.0.0.1', 22)); print('connected')\nexcept OSError as e:\n    print('refused', e)")
    r = _run(code)
    assert "connected" not in r.stdout and "refused" in r.stdout


def test_figures_come_back_as_images():
    code = ("import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.savefig('plot.png')\nprint('drawn')")
    r = run_python(code, SandboxLimits(wall_seconds=60, cpu_seconds=60))
    assert r.exit_status == 0, r.stderr
    assert len(r.images) == 1 and r.images[0].startswith(b"\x89PNG")


def test_the_tool_reports_failures_as_results():
    tool = python_tool(FAST)
    ok = tool({"code": "print(sum(range(101)))"})
    assert not ok.is_error and "5050" in ok.content and "exit status 0" in ok.content
    bad = tool({"code": "raise ValueError('nope')"})
    assert bad.is_error and "ValueError: nope" in bad.content
    assert tool({"code": ""}).is_error
    with pytest.raises(LmstackError):
        SandboxLimits(wall_seconds=0).check()

"""``geovec serve --parent-pid``: the server stops by itself once the process that started it is gone."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from geovec.backend.server.lifecycle import process_alive
from tests.backend.serverproc import ServerProc


def test_process_alive_sees_running_exited_and_zombie_processes():
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert process_alive(proc.pid)
        proc.kill()
        time.sleep(0.2)  # exited, not yet reaped: a zombie is gone too
        assert not process_alive(proc.pid)
    finally:
        proc.wait(5)
    assert not process_alive(proc.pid) and not process_alive(0)


def test_server_exits_within_seconds_after_its_parent_pid_dies(tmp_path: Path):
    parent = subprocess.Popen(["sleep", "300"])
    server = ServerProc(tmp_path, model=None, roots=[tmp_path], extra_args=["--parent-pid", str(parent.pid)])
    try:
        server.start()
        time.sleep(1.0)
        assert server.proc is not None and server.proc.poll() is None  # parent alive: keeps running
        parent.kill()
        parent.wait(5)
        t0 = time.monotonic()
        code = server.proc.wait(15)
        took = time.monotonic() - t0
    finally:
        parent.kill()
        server.kill()
    assert code == 0 and took < 5.0, (code, took, server.console[-2000:])
    assert not server.token_file.exists()  # a clean shutdown: no stale token file left behind
    assert "parent process" in server.log_text

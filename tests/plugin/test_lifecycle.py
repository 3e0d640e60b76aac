"""A backend that cannot leak: kill -9 the QGIS that started it (plugin installed from the zip) and
the backend is gone within seconds; the next session restarts it, a concurrent one reuses it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

SESSION = ROOT / "tests" / "plugin" / "qgis_session.py"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Session:
    """One QGIS process (qgis_session.py) sharing the token file with the others."""

    def __init__(self, root: Path, name: str, backend_python: str, pkgs: Path | None = None) -> None:
        self.out = root / f"{name}.json"
        env = {**os.environ, "GEOVEC_TOKEN_FILE": str(root / "server.json"), "QT_QPA_PLATFORM": "offscreen"}
        self.log = open(root / f"{name}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, str(SESSION), str(pkgs or root.parent / "pkgs"), str(root / name),
                                      backend_python, str(self.out)], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env)
        self.info: dict = {}

    def connected(self, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.out.exists():
                self.info = json.loads(self.out.read_text())
                assert "error" not in self.info, self.info
                return self.info
            assert self.proc.poll() is None, Path(self.log.name).read_text()[-3000:]
            time.sleep(0.2)
        pytest.fail("the QGIS session did not connect: " + Path(self.log.name).read_text()[-3000:])

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()


@pytest.mark.slow
def test_kill_9_of_qgis_takes_its_backend_down_and_the_next_session_restarts_or_reuses(tmp_root, backend_python):
    root = tmp_root / "lifecycle"
    root.mkdir()
    # the first QGIS runs the plugin installed from the zip, as a user would have it
    zip_path = root / "geovec.zip"
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_package.py"), "--out", str(zip_path)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    plugins = root / "profile-plugins"
    zipfile.ZipFile(zip_path).extractall(plugins)
    sessions: list[Session] = []
    try:
        first = Session(root, "first", backend_python, plugins)
        sessions.append(first)
        info = first.connected()
        assert info["plugin"].startswith(str(plugins))
        backend = info["backend_pid"]
        assert info["owned"] and alive(backend)
        first.kill9()
        t0 = time.monotonic()
        while alive(backend) and time.monotonic() - t0 < 10:
            time.sleep(0.1)
        took = time.monotonic() - t0
        assert not alive(backend), "the backend outlived its QGIS by 10 s"
        assert took < 5.0, f"the backend took {took:.1f} s to go after its QGIS died"
        assert not (root / "server.json").exists()  # gracefully stopped: no stale token file
        # the next session starts a fresh backend
        second = Session(root, "second", backend_python)
        sessions.append(second)
        info2 = second.connected()
        assert info2["owned"] and info2["backend_pid"] != backend and alive(info2["backend_pid"])
        # a concurrent session reuses it instead of starting another
        third = Session(root, "third", backend_python)
        sessions.append(third)
        info3 = third.connected(60)
        assert not info3["owned"] and info3["backend_pid"] == info2["backend_pid"] and info3["url"] == info2["url"]
    finally:
        for s in sessions:
            s.kill9()
    t0 = time.monotonic()
    while alive(info2["backend_pid"]) and time.monotonic() - t0 < 10:
        time.sleep(0.1)
    assert not alive(info2["backend_pid"])

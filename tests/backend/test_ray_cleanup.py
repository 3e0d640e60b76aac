"""A local Ray started by ``geovec index --engine ray`` leaves no process behind when the driver is
SIGKILLed (real Ray, real SIGKILL: nothing in the driver runs; the watchdog stops Ray's processes)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from geovec.backend.demo import write_scene

pytestmark = pytest.mark.slow


def _count(index: Path) -> int:
    try:
        with sqlite3.connect(f"file:{index / 'meta.sqlite'}?mode=ro", uri=True, timeout=5) as con:
            return int(con.execute("SELECT COUNT(*) FROM tiles").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_sigkill_of_the_driver_leaves_no_ray_process(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = tmp_path / "rasters"
    for i, kind in enumerate(("water", "forest", "urban")):
        write_scene(folder / f"s{i}.tif", kind, size=512, seed=i)
    idx = tmp_path / "idx"
    cmd = [sys.executable, "-m", "geovec.backend", "index", str(folder), "--index", str(idx), "--model",
           str(tiny_model_dir), "--engine", "ray", "--tile-size", "64", "--batch-size", "2", "--no-progress"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # a local Ray of its own
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    driver = psutil.Process(proc.pid)
    seen: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 300
    try:
        while _count(idx) < 4:  # Ray is up and its workers embed
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "no tiles written in 300 s"
            for p in driver.children(recursive=True):
                seen.setdefault(p.pid, p)
            time.sleep(0.2)
        for p in driver.children(recursive=True):
            seen.setdefault(p.pid, p)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    names = {p.pid: p.name() for p in seen.values() if p.is_running()}
    assert any("raylet" in n or "gcs_server" in n for n in names.values()), names  # a local Ray was running
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = {pid: n for pid, n in names.items() if seen[pid].is_running() and seen[pid].status() != "zombie"}
        if not left:
            break
        time.sleep(0.5)
    assert not left, f"Ray processes left behind after the driver was killed: {left}"

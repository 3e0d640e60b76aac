"""Windows and macOS: the writer lock without fcntl, path rules with drive letters and backslashes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest

from geovec.backend.paths import is_absolute, one_line, shown, within

NO_FCNTL = """
import sys, time
sys.modules["fcntl"] = None  # as on Windows: no fcntl module at all
from pathlib import Path
from geovec.backend.errors import BusyError
from geovec.backend.index.locking import WriterLock
d, mode = Path(sys.argv[1]), sys.argv[2]
if mode == "hold":
    lock = WriterLock.acquire(d)
    print("held", flush=True)
    sys.stdin.readline()
    lock.release()
else:
    try:
        WriterLock.acquire(d).release()
        print("acquired")
    except BusyError as e:
        print("busy:", e)
"""


def _py(*args: str, **kw) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-W", "ignore", "-c", NO_FCNTL, *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_writer_lock_refuses_a_second_writer_without_fcntl(tmp_path: Path) -> None:
    holder = _py(str(tmp_path), "hold", stdin=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held", holder.stderr
        second = _py(str(tmp_path), "try")
        out, err = second.communicate(timeout=60)
        assert out.startswith("busy:") and f"pid {holder.pid}" in out, (out, err)
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    out, err = _py(str(tmp_path), "try").communicate(timeout=60)
    assert out.strip() == "acquired", (out, err)


@pytest.mark.parametrize(("value", "absolute"), [
    ("C:\\data\\scene.tif", True), ("c:/data/scene.tif", True), ("\\\\server\\share\\x.tif", True),
    ("\\data\\scene.tif", False), ("C:data\\scene.tif", False), ("data\\scene.tif", False),
])
def test_windows_absolute_paths(value: str, absolute: bool) -> None:
    assert is_absolute(value, PureWindowsPath) is absolute


def test_windows_roots_compare_case_insensitively_by_component() -> None:
    roots = [PureWindowsPath("C:/Data/Rasters")]
    assert within(PureWindowsPath("c:\\data\\rasters\\2024\\x.tif"), roots)
    assert within(PureWindowsPath("C:\\DATA\\RASTERS"), roots)
    assert not within(PureWindowsPath("C:\\Data\\Rasters2\\x.tif"), roots)  # a sibling with the same prefix
    assert not within(PureWindowsPath("D:\\Data\\Rasters\\x.tif"), roots)  # another drive
    assert not within(PureWindowsPath("C:\\Data\\x.tif"), roots)
    assert within(PureWindowsPath("\\\\nas\\geo\\tiles\\a.tif"), [PureWindowsPath("\\\\NAS\\geo")])


def test_posix_roots_are_case_sensitive() -> None:
    roots = [PurePosixPath("/data/rasters")]
    assert within(PurePosixPath("/data/rasters/a.tif"), roots)
    assert not within(PurePosixPath("/Data/rasters/a.tif"), roots)
    assert not within(PurePosixPath("/data/rasters2/a.tif"), roots)


def test_names_show_losslessly_on_one_line() -> None:
    name = os.fsdecode(b"/data/caf\xe9\n.tif")
    assert shown(name) == "/data/caf\\xe9\n.tif" and one_line(name) == "/data/caf\\xe9\\n.tif"
    assert shown("/data/café.tif") == "/data/café.tif"


def test_lock_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    """The kernel drops the lock of a SIGKILLed writer (the platform lock, not a stale file)."""
    code = ("import sys, time\nfrom pathlib import Path\nfrom geovec.backend.index.locking import WriterLock\n"
            "lock = WriterLock.acquire(Path(sys.argv[1])); print('held', flush=True); time.sleep(600)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        from geovec.backend.errors import BusyError
        from geovec.backend.index.locking import WriterLock

        with pytest.raises(BusyError):
            WriterLock.acquire(tmp_path)
    finally:
        p.kill()
        p.wait(30)
    t0 = time.monotonic()
    WriterLock.acquire(tmp_path).release()
    assert time.monotonic() - t0 < 5

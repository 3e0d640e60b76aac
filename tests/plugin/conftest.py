"""Headless QGIS for the plugin tests (run with /usr/bin/python3 -m pytest, Debian's QGIS).

The repository is importable as the package ``geovec`` through a symlink in a temp
folder, exactly as QGIS imports an installed plugin. A real ``geovec serve`` runs
from GEOVEC_BACKEND_PYTHON (default: the repo's .venv) with the tiny model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_TMP = Path(tempfile.mkdtemp(prefix="geovec-plugin-tests-"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("GEOVEC_CPU_DTYPE", "fp32")  # the backends these tests start: fp32 on every CPU
os.environ["GEOVEC_TOKEN_FILE"] = str(_TMP / "no-server.json")  # never the user's own server
# every backend these tests start keeps its jobs file and logs here: never resumes another run's jobs
os.environ["GEOVEC_DATA_DIR"] = str(_TMP / "backend-data")
os.environ["GEOVEC_LOG_DIR"] = str(_TMP / "backend-log")
(_TMP / "pkgs").mkdir()
(_TMP / "pkgs" / "geovec").symlink_to(ROOT, target_is_directory=True)
sys.path.insert(0, str(_TMP / "pkgs"))
sys.path.append("/usr/share/qgis/python/plugins")
ARTIFACTS = ROOT / "tests" / "artifacts"
BACKEND_PYTHON = os.environ.get("GEOVEC_BACKEND_PYTHON", str(ROOT / ".venv" / "bin" / "python"))

from qgis.core import QgsApplication  # noqa: E402
from qgis.PyQt.QtCore import QCoreApplication, QEvent, QSettings  # noqa: E402

# settings of this run only (by default QSettings writes ~/.config/<org>/<app>.conf, which every
# concurrent test run on the machine would share: one run's backend URL would leak into another)
for _fmt in (QSettings.NativeFormat, QSettings.IniFormat):
    QSettings.setPath(_fmt, QSettings.UserScope, str(_TMP / "settings"))
QCoreApplication.setOrganizationName("GeoVecTests")
QCoreApplication.setApplicationName("GeoVecTests")
QgsApplication.setPrefixPath("/usr", True)
_APP = QgsApplication([], True, str(_TMP / "profile"))
_APP.initQgis()


def _init_processing() -> None:
    from processing.core.Processing import Processing
    from qgis.analysis import QgsNativeAlgorithms

    Processing.initialize()
    if QgsApplication.processingRegistry().providerById("native") is None:
        QgsApplication.processingRegistry().addProvider(QgsNativeAlgorithms())


_init_processing()


def wait_until(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    """Process Qt events until ``predicate()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        QCoreApplication.processEvents()
        QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
        time.sleep(0.005)


@pytest.fixture(scope="session")
def qgis_app() -> QgsApplication:
    return _APP


@pytest.fixture(scope="session")
def tmp_root() -> Path:
    return _TMP


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real rasters in ../shared/data: required in CI, skipped with a message elsewhere."""
    path = Path(os.environ.get("GEOVEC_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if not (path / "README.md").exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the real sample rasters at {path}; none found")
        pytest.skip(f"real sample rasters not found at {path} (set GEOVEC_SHARED_DATA)")
    return path


@pytest.fixture
def iface(qgis_app):
    """A fresh stand-in interface with an empty project."""
    from qgis.core import QgsProject
    from qgis_iface import StandInInterface

    QgsProject.instance().clear()
    stand_in = StandInInterface()
    stand_in.window.show()
    yield stand_in
    QgsProject.instance().clear()
    stand_in.close()
    QCoreApplication.processEvents()
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)


@pytest.fixture
def clean_settings(qgis_app):
    """Every GeoVec setting back to its default before and after the test."""
    from qgis.core import QgsSettings

    QgsSettings().remove("geovec")
    yield
    QgsSettings().remove("geovec")


@pytest.fixture(scope="session")
def backend_python(tmp_root: Path) -> str:
    """GEOVEC_BACKEND_PYTHON behind a wrapper that imports ``geovec`` from this checkout.

    The plugin strips PYTHONPATH from the backend's environment; the wrapper sets it
    again, so the backend under test is always this checkout's, never an installed one.
    """
    if not Path(BACKEND_PYTHON).is_file():
        pytest.fail(f"GEOVEC_BACKEND_PYTHON={BACKEND_PYTHON} does not exist; run `make setup`")
    wrapper = tmp_root / "python3-checkout"  # a name starting with "python": the plugin runs it with -m
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{tmp_root / "pkgs"}" exec "{BACKEND_PYTHON}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture(scope="session")
def tiny_model(backend_python: str, tmp_root: Path) -> Path:
    """The tiny random model written by the backend CLI once per session."""
    out = tmp_root / "tiny-model"
    subprocess.run([backend_python, "-m", "geovec.backend", "model", "tiny", str(out)], check=True,
                   capture_output=True, timeout=300)
    return out


@pytest.fixture(scope="session")
def server(backend_python: str, tiny_model: Path, tmp_root: Path):
    """A real ``geovec serve`` on a random port; yields its token-file dict (url, token, pid)."""
    token_file = tmp_root / "server.json"
    log = open(tmp_root / "server.log", "wb")  # noqa: SIM115
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QT_QPA_PLATFORM")}
    env["PYTHONPATH"] = str(_TMP / "pkgs")  # the backend runs the checkout under test, as the plugin does
    proc = subprocess.Popen([backend_python, "-m", "geovec.backend", "serve", "--port", "0", "--device", "cpu",
                             "--model", str(tiny_model), "--token-file", str(token_file),
                             "--parent-pid", str(os.getpid())],  # gone with this test run, even after a crash
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    info = None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            info = json.loads(token_file.read_text())
            if info.get("pid") == proc.pid:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    if proc.poll() is not None or not info:
        proc.kill()
        pytest.fail("geovec serve did not start: " + (tmp_root / "server.log").read_text()[-2000:])
    info["token_file"] = str(token_file)
    info["model"] = str(tiny_model)
    yield info
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def use_server(server, clean_settings):
    """Point the plugin's settings at the session server (the plugin does not own it)."""
    from geovec.plugin.settings import Setting

    Setting.TOKEN_FILE.set(server["token_file"])
    Setting.MODEL.set(server["model"])
    Setting.AUTO_START.set(False)
    return server


@pytest.fixture
def plugin(iface):
    """The plugin loaded the way QGIS loads it: classFactory then initGui; unloaded after."""
    import geovec

    instance = geovec.classFactory(iface)
    instance.initGui()
    yield instance
    instance.unload()
    QCoreApplication.processEvents()


@pytest.fixture(scope="session")
def built_index(server, shared_data, tmp_root, qgis_app):
    """Index ../shared/data through the dock's controller (IndexJobTask), probing UI stalls meanwhile."""
    from helpers import StallProbe, wait_backend
    from qgis.core import QgsProject, QgsSettings
    from qgis_iface import StandInInterface

    import geovec
    from geovec.plugin.params import IndexParams
    from geovec.plugin.settings import Setting

    QgsSettings().remove("geovec")
    Setting.TOKEN_FILE.set(server["token_file"])
    Setting.AUTO_START.set(False)
    iface = StandInInterface()
    plugin = geovec.classFactory(iface)
    plugin.initGui()
    plugin.open_dock()
    wait_backend(plugin)
    index = tmp_root / "index"
    ctl = plugin.controller
    probe = StallProbe().start()
    ctl.start_index(IndexParams(str(shared_data), str(index), model=server["model"], tile_size=128))
    wait_until(lambda: ctl.index_task is not None, 10, "the index task")
    task = ctl.index_task
    progress: list[int] = []
    ctl.dock.progress.valueChanged.connect(progress.append)
    wait_until(lambda: ctl.index_task is None, 600, "the indexing job")
    probe.stop()
    out = {"path": str(index), "outcome": task.outcome, "result": task.result, "message": task.message,
           "max_gap": probe.max_gap, "ticks": probe.ticks, "progress": progress,
           "label": ctl.dock.job_label.text(), "recent": Setting.RECENT_INDEXES.get(),
           "messages": iface.messages(), "file_errors": task.file_errors}
    plugin.unload()
    QgsProject.instance().clear()
    iface.close()
    QgsSettings().remove("geovec")
    return out


@pytest.fixture
def dock_on_index(plugin, iface, use_server, built_index):
    """The dock connected to the session server, on the index built from ../shared/data."""
    from helpers import wait_backend

    plugin.open_dock()
    wait_backend(plugin)
    plugin.dock.index_combo.setEditText(built_index["path"])
    return plugin


@pytest.fixture(scope="session")
def region_search() -> None:
    """Region-level search (level, rerank, within, scenes, box/point with text) in this backend's contract."""
    spec = json.loads((ROOT / "backend" / "openapi.json").read_text())
    props = spec["components"]["schemas"]["SearchRequest"]["properties"]
    if "level" not in props:
        pytest.skip("region-level search is not in this backend yet (openapi.json SearchRequest has no 'level')")


_EXIT_STATUS = {"code": 0}


def pytest_sessionfinish(session, exitstatus) -> None:
    _EXIT_STATUS["code"] = int(exitstatus)


def pytest_unconfigure(config) -> None:
    """Leave with pytest's status once everything is reported and every fixture torn down.

    Every backend this session started is stopped by then. What remains is the
    interpreter's own teardown, where Python may destroy wrapped QGIS/Qt objects in an
    order that segfaults now and then (a crash after "N passed", seen on CI); skipping
    that teardown keeps the exit status the tests earned.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS["code"])

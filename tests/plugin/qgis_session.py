"""A QGIS session in its own process for the lifecycle tests: loads the plugin, opens the dock, waits.

Usage: python3 qgis_session.py PKGS_DIR PROFILE_DIR BACKEND_PYTHON OUT_JSON

PKGS_DIR holds the ``geovec`` package (the checkout, or a plugin folder unzipped from the
package). Writes ``{"pid", "plugin", "backend_pid", "owned", "url"}`` to OUT_JSON once the dock is connected
(``backend_pid`` from the token file), then runs the Qt event loop until killed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

pkgs, profile, backend_python, out = sys.argv[1:5]
sys.path.insert(0, pkgs)
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import QgsApplication, QgsSettings  # noqa: E402
from qgis.PyQt.QtCore import QCoreApplication, QSettings, QTimer  # noqa: E402

for _fmt in (QSettings.NativeFormat, QSettings.IniFormat):  # this session's settings only
    QSettings.setPath(_fmt, QSettings.UserScope, str(Path(profile) / "settings"))
QCoreApplication.setOrganizationName("GeoVecLifecycle")
QCoreApplication.setApplicationName("GeoVecLifecycle")
QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], True, profile)
app.initQgis()

from qgis_iface import StandInInterface  # noqa: E402

import geovec  # noqa: E402
from geovec.plugin.client import read_token_file  # noqa: E402
from geovec.plugin.settings import Setting  # noqa: E402

QgsSettings().remove("geovec")
Setting.BACKEND_COMMAND.set(backend_python)
Setting.DEVICE.set("cpu")
iface = StandInInterface()
plugin = geovec.classFactory(iface)
plugin.initGui()
plugin.open_dock()


def report() -> None:
    backend = plugin.controller.backend
    if backend.connection is None:
        if iface.messages():
            Path(out).write_text(json.dumps({"error": iface.messages()}))
            app.exit(1)
        return
    data = read_token_file(backend.token_path) or {}
    Path(out).write_text(json.dumps({"pid": os.getpid(), "plugin": geovec.__file__, "backend_pid": data.get("pid"), "owned": backend.owned,
                                     "url": backend.connection.url}))
    timer.stop()


timer = QTimer()
timer.timeout.connect(report)
timer.start(100)
app.exec_()

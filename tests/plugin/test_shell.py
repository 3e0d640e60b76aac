"""Plugin shell: imports, classFactory/initGui/unload, settings, backend absent or misconfigured."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT, wait_until
from qgis.core import Qgis, QgsApplication, QgsProject

PLUGIN = ROOT / "plugin"
STDLIB = set(sys.stdlib_module_names)


def test_plugin_imports_only_qgis_pyqt_and_stdlib():
    bad = []
    for path in PLUGIN.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in STDLIB and top not in ("qgis", "processing") or name.startswith("PyQt"):
                    bad.append(f"{path.relative_to(ROOT)}: {name}")
                if top == "qgis" and name.startswith("qgis.") and name.split(".")[1] not in (
                        "core", "gui", "analysis", "PyQt"):
                    bad.append(f"{path.relative_to(ROOT)}: {name}")
    assert not bad, bad


def test_plugin_loads_with_heavy_packages_unimportable(tmp_root):
    code = (
        "import sys, os, pkgutil, importlib\n"
        "for m in ('torch', 'rasterio', 'hnswlib', 'numpy', 'pydantic', 'transformers', 'fastapi'):\n"
        "    sys.modules[m] = None\n"
        f"sys.path.insert(0, {str(tmp_root / 'pkgs')!r})\n"
        "from qgis.core import QgsApplication\n"
        "app = QgsApplication([], False)\n"
        "import geovec, geovec.plugin\n"
        "names = [m.name for m in pkgutil.walk_packages(geovec.plugin.__path__, 'geovec.plugin.')]\n"
        "for n in names: importlib.import_module(n)\n"
        "assert callable(geovec.classFactory)\n"
        "print(len(names), 'modules')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(tmp_root)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout.split()[0]) >= 15


def test_load_open_dock_unload_leaves_nothing(iface, clean_settings, tmp_root):
    import geovec
    from geovec.plugin.settings import Setting

    Setting.BACKEND_COMMAND.set(str(tmp_root / "no-such-env"))  # no backend: the dock must still open
    providers_before = {p.id() for p in QgsApplication.processingRegistry().providers()}
    plugin = geovec.classFactory(iface)
    plugin.initGui()
    assert QgsApplication.processingRegistry().providerById("geovec") is not None
    assert {a.text() for a in iface.plugin_actions()} >= {"GeoVec search", "Set up backend…", "Settings…"}
    assert plugin.toolbar is not None and plugin.toolbar.actions()
    dock = plugin.open_dock()
    assert dock.isVisible() and plugin.dock_action.isChecked()
    wait_until(lambda: iface.messages(), 20, "the backend error in the message bar")
    level, text = iface.messages()[0]
    assert level == Qgis.Critical and "No GeoVec backend found" in text and "Set up backend" in text
    # a query with no index selected: a warning, no task
    plugin.controller.search_text("water")
    dock.box_button.setChecked(True)
    assert iface.canvas.mapTool() is plugin.controller.box_tool
    plugin.unload()
    wait_until(lambda: not iface.window.findChildren(type(dock)), 5, "the dock to be deleted")
    assert iface.canvas.mapTool() is None
    assert iface.plugin_actions() == [] and not iface.submenus
    from qgis.PyQt.QtWidgets import QToolBar

    wait_until(lambda: not [t for t in iface.window.findChildren(QToolBar) if t.objectName() == "GeoVecToolbar"],
               5, "the toolbar to go")
    assert QgsApplication.processingRegistry().providerById("geovec") is None
    assert {p.id() for p in QgsApplication.processingRegistry().providers()} == providers_before - {"geovec"}
    assert QgsProject.instance().mapLayers() == {}


def test_backend_exiting_at_start_is_a_message_bar_error(plugin, iface, clean_settings, tmp_root):
    from geovec.plugin.settings import Setting

    fake = tmp_root / "geovec-broken"
    fake.write_text("#!/bin/sh\necho 'broken backend: no module named torch' >&2\nexit 3\n")
    fake.chmod(0o755)
    Setting.BACKEND_COMMAND.set(str(fake))
    plugin.open_dock()
    wait_until(lambda: iface.messages(), 30, "the backend error")
    level, text = iface.messages()[0]
    assert level == Qgis.Critical
    assert "exited at start (code 3)" in text and "no module named torch" in text


def test_unreachable_url_without_autostart_is_a_message_bar_error(plugin, iface, clean_settings):
    from geovec.plugin.settings import Setting

    Setting.BACKEND_URL.set("http://127.0.0.1:9")  # discard port: nothing listens
    Setting.AUTO_START.set(False)
    plugin.open_dock()
    wait_until(lambda: iface.messages(), 30, "the backend error")
    level, text = iface.messages()[0]
    assert level == Qgis.Critical and "not reachable at http://127.0.0.1:9" in text


def test_settings_enum_and_dialog_round_trip(iface, clean_settings):
    from geovec.plugin.gui.settings_dialog import SettingsDialog
    from geovec.plugin.settings import Setting

    assert Setting.K.get() == 10 and Setting.AUTO_START.get() is True
    Setting.K.set("25")
    assert Setting.K.get() == 25
    Setting.K.set("not a number")
    assert Setting.K.get() == 10
    dialog = SettingsDialog(iface.window)
    dialog.edits[Setting.MODEL].setText("  /models/tiny  ")
    dialog.device.setCurrentText("cpu")
    dialog.auto_start.setChecked(False)
    dialog.accept()
    assert Setting.MODEL.get() == "/models/tiny" and Setting.DEVICE.get() == "cpu"
    assert Setting.AUTO_START.get() is False
    assert len({s.key for s in Setting}) == len(Setting)

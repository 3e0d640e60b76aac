"""The installable zip, and "Set up backend" failing with the exact command to fix it."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from conftest import ROOT, wait_until
from qgis.core import Qgis


def test_zip_holds_only_the_plugin_and_installs_into_a_fresh_profile(tmp_path):
    out = tmp_path / "dist" / "geovec.zip"
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_package.py"), "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    names = zipfile.ZipFile(out).namelist()
    assert all(n.startswith("geovec/") for n in names)
    for needed in ("geovec/__init__.py", "geovec/metadata.txt", "geovec/plugin/main.py",
                   "geovec/resources/icon.png", "geovec/pyproject.toml"):
        assert needed in names
    assert not [n for n in names if "__pycache__" in n or "/tests/" in n or ".venv" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith("geovec/training/")]  # QGIS never runs the training code
    # install as QGIS does: unzip into <profile>/python/plugins and start it through qgis.utils
    plugins = tmp_path / "profile" / "python" / "plugins"
    zipfile.ZipFile(out).extractall(plugins)
    code = (
        "import sys\n"
        "from qgis.core import QgsApplication\n"
        "app = QgsApplication([], True); app.initQgis()\n"
        f"sys.path.insert(0, {str(ROOT / 'tests' / 'plugin')!r})\n"
        f"sys.path.insert(0, {str(plugins)!r})\n"
        "import qgis.utils\n"
        "from qgis_iface import StandInInterface\n"
        "qgis.utils.iface = StandInInterface()\n"
        f"qgis.utils.plugin_paths = [{str(plugins)!r}]\n"
        "qgis.utils.updateAvailablePlugins()\n"
        "assert 'geovec' in qgis.utils.available_plugins, qgis.utils.available_plugins\n"
        "assert qgis.utils.loadPlugin('geovec') and qgis.utils.startPlugin('geovec')\n"
        "import geovec\n"
        f"assert geovec.__file__.startswith({str(plugins)!r}), geovec.__file__\n"
        "assert qgis.utils.pluginMetadata('geovec', 'qgisMinimumVersion') == '3.22'\n"
        "from qgis.PyQt.QtCore import QCoreApplication\n"
        "qgis.utils.plugins['geovec'].open_dock(); QCoreApplication.processEvents()\n"
        "assert qgis.utils.unloadPlugin('geovec')\n"
        "del geovec\n"
        "left = [m for m in sys.modules if m == 'geovec' or m.startswith('geovec.')]\n"
        "assert not left, left\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert res.stdout.strip().endswith("ok"), res.stderr[-3000:]


def test_setup_backend_without_python_is_a_message_bar_error(plugin, iface, clean_settings, tmp_path):
    from geovec.plugin.settings import Setting

    Setting.SETUP_PYTHON.set(str(tmp_path / "no" / "python3"))
    Setting.MANAGED_ENV.set(str(tmp_path / "env"))
    task = plugin.setup_backend()
    wait_until(lambda: plugin.setup_task is None, 60, "the setup task")
    assert task is not None
    level, text = iface.messages()[0]
    assert level == Qgis.Critical and "No Python found" in text and "Python for setup" in text


def test_setup_backend_step_failure_names_the_command(plugin, iface, clean_settings, tmp_path, monkeypatch):
    """A real venv is created; the torch install then fails offline: the error names the command."""
    from geovec.plugin.settings import Setting

    monkeypatch.setenv("PIP_NO_INDEX", "1")  # offline: pip finds nothing to install
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    Setting.SETUP_PYTHON.set(sys.executable)
    Setting.MANAGED_ENV.set(str(tmp_path / "env"))
    task = plugin.setup_backend()
    wait_until(lambda: plugin.setup_task is None, 240, "the setup task")
    assert (tmp_path / "env" / "bin" / "python").exists()  # step 1 really ran
    level, text = iface.messages()[0]
    assert level == Qgis.Critical
    assert "could not install torch" in text
    env_py = str(tmp_path / "env" / "bin" / "python")
    # the versions the backend pins, not whatever is newest
    assert f"{env_py} -m pip install 'torch>=2.2,<3' 'torchvision>=0.17' --index-url https://download.pytorch.org/whl/" \
        in text
    log = task.log_path.read_text()
    assert "-> torch build:" in log and "[3/5] install torch" in log

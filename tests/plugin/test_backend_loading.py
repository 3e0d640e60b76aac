"""The dock shows the model loading: a real ``geovec serve --preload`` reports the step it is on in
/v1/health, the dock's backend line says so while it lasts, and drops the note once the model is in."""

from __future__ import annotations

import json
import os
import subprocess
import time

from conftest import wait_until
from helpers import wait_backend
from qgis.PyQt.QtCore import QCoreApplication


def test_dock_shows_the_model_loading_then_ready(plugin, clean_settings, backend_python, tiny_model, tmp_root):
    from geovec.plugin.settings import Setting

    home = tmp_root / "loading"
    home.mkdir()
    token_file = home / "server.json"
    Setting.TOKEN_FILE.set(str(token_file))
    Setting.AUTO_START.set(False)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QT_QPA_PLATFORM")}
    with open(home / "server.log", "wb") as log:
        proc = subprocess.Popen([backend_python, "-m", "geovec.backend", "serve", "--port", "0", "--device", "cpu",
                                 "--model", str(tiny_model), "--preload", "--token-file", str(token_file),
                                 "--parent-pid", str(os.getpid())], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        def started() -> bool:
            try:
                return json.loads(token_file.read_text()).get("pid") == proc.pid
            except (OSError, ValueError):
                return False

        wait_until(started, 120, "geovec serve's token file")
        plugin.open_dock()
        label = plugin.dock.backend_label
        texts: list[str] = []
        plugin.controller.backend.ready.connect(lambda _c: texts.append(label.text()))
        wait_backend(plugin)
        QCoreApplication.processEvents()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not texts or "loading" in texts[-1]):
            QCoreApplication.processEvents()
            time.sleep(0.02)
        assert texts and "loading, step " in texts[0] and "/2: " in texts[0], texts
        assert "loading" not in texts[-1] and str(tiny_model) in texts[-1], texts
        assert plugin.controller.backend.health["model_state"] == "ready"
    finally:
        proc.terminate()
        proc.wait(30)

"""The plugin's backend log is private (0600 in a 0700 folder) and never holds the token."""

from __future__ import annotations

import os
import stat

from conftest import wait_until
from helpers import wait_backend


def test_autostarted_backend_log_is_private_and_holds_no_token(iface, clean_settings, backend_python, tmp_root):
    import geovec
    from geovec.plugin.backend_manager import data_dir
    from geovec.plugin.settings import Setting

    log = data_dir() / "backend.log"
    log.unlink(missing_ok=True)
    os.chmod(data_dir(), 0o755)  # as an older version left it
    # this checkout's backend (the plugin drops PYTHONPATH from the child's environment)
    launcher = tmp_root / "geovec-this-checkout"
    launcher.write_text(f'#!/bin/sh\nPYTHONPATH="{tmp_root / "pkgs"}" exec "{backend_python}" -m geovec.backend "$@"\n')
    launcher.chmod(0o755)
    Setting.BACKEND_COMMAND.set(str(launcher))
    Setting.DEVICE.set("cpu")
    plugin = geovec.classFactory(iface)
    plugin.initGui()
    plugin.open_dock()
    try:
        wait_backend(plugin, 120)
        token = plugin.controller.backend.connection.token
        wait_until(lambda: log.exists() and "listening on" in log.read_text(), 30, "the start-up lines")
        assert stat.S_IMODE(os.stat(data_dir()).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
        assert token and token not in log.read_text()
    finally:
        plugin.unload()

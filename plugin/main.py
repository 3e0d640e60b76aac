"""GeoVecPlugin: wires actions, toolbar, menu, dock and Processing provider; nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .backend_manager import data_dir, managed_env_dir, stop_started
from .controller import Controller
from .gui.dock import GeoVecDock
from .gui.settings_dialog import SettingsDialog
from .messages import notify
from .processing.provider import GeoVecProvider
from .settings import Setting
from .tasks import GeoVecTask, Outcome, SetupBackendTask

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
MENU = "&GeoVec"


class GeoVecPlugin:
    """The object QGIS gets from ``classFactory``."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.actions: list[QAction] = []
        self.toolbar = None
        self.dock: GeoVecDock | None = None
        self.controller: Controller | None = None
        self.provider: GeoVecProvider | None = None
        self.setup_task: SetupBackendTask | None = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS API)
        self.provider = GeoVecProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 (QGIS API)
        self.initProcessing()
        icon = QIcon(str(RESOURCES / "icon.svg"))
        self.toolbar = self.iface.addToolBar("GeoVec")
        self.toolbar.setObjectName("GeoVecToolbar")
        self.dock_action = self._action(icon, "GeoVec search", self.toggle_dock, checkable=True, toolbar=True)
        self._action(QIcon(), "Compare dates…", self.compare_dates)
        self._action(QIcon(), "Set up backend…", self.setup_backend)
        self._action(QIcon(), "Settings…", self.show_settings)
        if Setting.DOCK_OPEN.get():  # it was open when QGIS last closed
            QTimer.singleShot(0, self._reopen_dock)

    def compare_dates(self) -> None:
        """The 'Compare dates (change)' Processing dialog, with the dock's index as the default."""
        import processing

        processing.execAlgorithmDialog("geovec:change", {})

    def _reopen_dock(self) -> None:
        if self.actions and self.dock is None:
            self.open_dock()

    def _action(self, icon: QIcon, text: str, slot, *, checkable: bool = False, toolbar: bool = False) -> QAction:
        action = QAction(icon, text, self.iface.mainWindow())
        action.setObjectName("GeoVec " + text)
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        self.iface.addPluginToMenu(MENU, action)
        if toolbar:
            self.toolbar.addAction(action)
        self.actions.append(action)
        return action

    # --- dock -----------------------------------------------------------------------------
    def open_dock(self) -> GeoVecDock:
        if self.dock is None:
            self.dock = GeoVecDock(self.iface.mainWindow())
            self.controller = Controller(self.iface, self.dock,
                                         fixes={"settings": self.show_settings, "setup": self.setup_backend})
            self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
            self.dock.visibilityChanged.connect(self.dock_action.setChecked)
            self.dock.closed.connect(self._dock_closed)
            self.controller.connect_backend()
        Setting.DOCK_OPEN.set(True)
        self.dock.show()
        self.dock.raise_()
        return self.dock

    def _dock_closed(self) -> None:
        """The user closed the dock: do not reopen it at the next start."""
        Setting.DOCK_OPEN.set(False)

    def toggle_dock(self, checked: bool = True) -> None:
        if checked:
            self.open_dock()
        elif self.dock is not None:
            self.dock.hide()
            Setting.DOCK_OPEN.set(False)

    # --- backend setup and settings -------------------------------------------------------
    def show_settings(self) -> SettingsDialog:
        """Open the settings (window-modal, without blocking); OK reconnects the dock's backend."""
        dialog = SettingsDialog(self.iface.mainWindow())
        dialog.setAttribute(Qt.WA_DeleteOnClose)
        if self.controller is not None:
            dialog.accepted.connect(self.controller.connect_backend)
        dialog.open()
        return dialog

    def setup_backend(self) -> SetupBackendTask | None:
        if self.setup_task is not None:
            notify(self.iface, "Backend setup is already running", Qgis.Warning, duration=5)
            return None
        env = managed_env_dir()
        task = SetupBackendTask(env, data_dir() / "setup.log", python=Setting.SETUP_PYTHON.get() or None,
                                on_done=self._setup_done)
        self.setup_task = task
        notify(self.iface, f"Setting up the backend in {env}…", Qgis.Info, details=f"setup log: {task.log_path}",
               duration=5)
        QgsApplication.taskManager().addTask(task)
        return task

    def _setup_done(self, task: GeoVecTask) -> None:
        self.setup_task = None
        if self.iface is None:
            return
        text = task.message if task.outcome is not Outcome.SUCCESS else f"Backend installed in {task.result}"
        notify(self.iface, text, task.outcome.level, details=f"setup log: {task.log_path}")
        if task.outcome is Outcome.SUCCESS and self.controller is not None:
            self.controller.connect_backend()

    # --- teardown -------------------------------------------------------------------------
    def unload(self) -> None:
        """Remove every action, the toolbar, dock, map tools and provider; stop the backend started here.

        Never blocks the UI thread: tasks are cancelled and detached, not waited for; the
        backend gets SIGTERM and is reaped in the background. Hit layers stay in the project.
        """
        if self.setup_task is not None:
            self.setup_task.detach()
            self.setup_task.cancel()
            self.setup_task = None
        if self.controller is not None:
            self.controller.shutdown()
            self.controller.deleteLater()
            self.controller = None
        if self.dock is not None:
            for signal, slot in ((self.dock.visibilityChanged, self.dock_action.setChecked),
                                 (self.dock.closed, self._dock_closed)):
                try:
                    signal.disconnect(slot)
                except TypeError:
                    pass
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
            action.deleteLater()
        self.actions = []
        if self.toolbar is not None:
            self.toolbar.deleteLater()
            self.toolbar = None
        if self.provider is not None:
            try:
                QgsApplication.processingRegistry().removeProvider(self.provider)
            except RuntimeError:  # QGIS already deleted it (a duplicate it refused to add)
                pass
            self.provider = None
        stop_started()  # backends Processing started in this session
        forget_subpackages()


def forget_subpackages() -> None:
    """Drop the plugin's modules and sub-packages (gui, tasks, ...) from ``sys.modules``.

    QGIS's plugin unloader removes every module it saw imported, but a package that
    only came in as the parent of a relative import (``from .gui.dock import …``) is
    never recorded, so it would stay imported after unload. The modules under such a
    package go with it: a module left behind under a re-imported package would not be
    an attribute of the new one, and its state would outlive the plugin.
    """
    root = __name__.split(".")[0]
    for name in list(sys.modules):
        if name.startswith(root + "."):
            del sys.modules[name]

"""A small real QgisInterface stand-in: main window, map canvas, message bar, menus, docks.

Everything is a real Qt/QGIS object; only what the plugin calls is implemented.
"""

from __future__ import annotations

from qgis.core import QgsProject, QgsRasterLayer
from qgis.gui import QgsLayerTreeMapCanvasBridge, QgsMapCanvas, QgsMessageBar
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QMainWindow, QMenu, QToolBar, QVBoxLayout, QWidget


class StandInInterface:
    """What GeoVecPlugin uses of ``QgisInterface``, backed by real widgets."""

    def __init__(self) -> None:
        self.window = QMainWindow()
        self.window.setObjectName("QgisApp")
        self.window.setWindowTitle("QGIS (GeoVec test)")
        central = QWidget(self.window)
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        self.bar = QgsMessageBar(central)
        self.canvas = QgsMapCanvas(central)
        self.canvas.setObjectName("theMapCanvas")
        self.canvas.setCanvasColor(Qt.white)
        lay.addWidget(self.bar)
        lay.addWidget(self.canvas, 1)
        self.window.setCentralWidget(central)
        self.plugin_menu = self.window.menuBar().addMenu("&Plugins")
        self.submenus: dict[str, QMenu] = {}
        project = QgsProject.instance()
        self.bridge = QgsLayerTreeMapCanvasBridge(project.layerTreeRoot(), self.canvas, self.canvas)
        self.bridge.setAutoSetupOnFirstLayer(False)  # QgsProject sets its CRS from the first layer itself
        project.crsChanged.connect(self._follow_project_crs)
        self.window.resize(1200, 800)

    def _follow_project_crs(self) -> None:
        self.canvas.setDestinationCrs(QgsProject.instance().crs())

    def close(self) -> None:
        """Disconnect from the project and delete the window (the canvas and bridge go with it)."""
        QgsProject.instance().crsChanged.disconnect(self._follow_project_crs)
        self.window.close()
        self.window.deleteLater()

    # --- QgisInterface API -----------------------------------------------------------------
    def mainWindow(self) -> QMainWindow:  # noqa: N802
        return self.window

    def mapCanvas(self) -> QgsMapCanvas:  # noqa: N802
        return self.canvas

    def messageBar(self) -> QgsMessageBar:  # noqa: N802
        return self.bar

    def addToolBar(self, name: str) -> QToolBar:  # noqa: N802
        return self.window.addToolBar(name)

    def addDockWidget(self, area, dock) -> None:  # noqa: N802
        self.window.addDockWidget(area, dock)

    def removeDockWidget(self, dock) -> None:  # noqa: N802
        self.window.removeDockWidget(dock)

    def addPluginToMenu(self, name: str, action) -> None:  # noqa: N802
        menu = self.submenus.get(name)
        if menu is None:
            menu = self.submenus[name] = self.plugin_menu.addMenu(name)
        menu.addAction(action)

    def removePluginMenu(self, name: str, action) -> None:  # noqa: N802
        menu = self.submenus.get(name)
        if menu is None:
            return
        menu.removeAction(action)
        if not menu.actions():
            self.plugin_menu.removeAction(menu.menuAction())
            del self.submenus[name]
            menu.deleteLater()

    def activeLayer(self):  # noqa: N802
        return self.canvas.currentLayer()

    def addRasterLayer(self, path: str, name: str = "") -> QgsRasterLayer:  # noqa: N802
        layer = QgsRasterLayer(path, name or path)
        QgsProject.instance().addMapLayer(layer)
        return layer

    # --- for tests ------------------------------------------------------------------------
    def messages(self) -> list[tuple[int, str]]:
        """(level, text) of every message-bar item, newest first."""
        return [(int(item.level()), f"{item.title()} {item.text()}") for item in self.bar.items()]

    def plugin_actions(self) -> list:
        return [a for m in self.submenus.values() for a in m.actions()]

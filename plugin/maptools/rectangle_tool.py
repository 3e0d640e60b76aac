"""RectangleMapTool: drag a box on the canvas; emits it in the canvas CRS."""

from __future__ import annotations

from qgis.core import QgsPointXY, QgsRectangle, QgsWkbTypes
from qgis.gui import QgsMapCanvas, QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor


class RectangleMapTool(QgsMapTool):
    """Press, drag, release: ``boxDrawn(QgsRectangle, QgsCoordinateReferenceSystem)``."""

    boxDrawn = pyqtSignal(QgsRectangle, object)  # noqa: N815 (Qt signal naming)

    def __init__(self, canvas: QgsMapCanvas) -> None:
        super().__init__(canvas)
        self.rubber = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
        self.rubber.setColor(QColor(255, 120, 0, 200))
        self.rubber.setFillColor(QColor(255, 120, 0, 40))
        self.rubber.setWidth(2)
        self.start: QgsPointXY | None = None
        self.setCursor(Qt.CrossCursor)

    def canvasPressEvent(self, e) -> None:  # noqa: N802 (QGIS API)
        if e.button() != Qt.LeftButton:
            return
        self.start = self.toMapCoordinates(e.pos())
        self._show(self.start, self.start)

    def canvasMoveEvent(self, e) -> None:  # noqa: N802
        if self.start is not None:
            self._show(self.start, self.toMapCoordinates(e.pos()))

    def canvasReleaseEvent(self, e) -> None:  # noqa: N802
        if self.start is None or e.button() != Qt.LeftButton:
            return
        end = self.toMapCoordinates(e.pos())
        rect = QgsRectangle(self.start, end)
        self.start = None
        self._show(QgsPointXY(rect.xMinimum(), rect.yMinimum()), QgsPointXY(rect.xMaximum(), rect.yMaximum()))
        if rect.width() > 0 and rect.height() > 0:
            self.boxDrawn.emit(rect, self.canvas().mapSettings().destinationCrs())

    def _show(self, a: QgsPointXY, b: QgsPointXY) -> None:
        self.rubber.reset(QgsWkbTypes.PolygonGeometry)
        for x, y in ((a.x(), a.y()), (b.x(), a.y()), (b.x(), b.y()), (a.x(), b.y())):
            self.rubber.addPoint(QgsPointXY(x, y), False)
        self.rubber.addPoint(QgsPointXY(a.x(), a.y()), True)
        self.rubber.show()

    def clear(self) -> None:
        self.rubber.reset(QgsWkbTypes.PolygonGeometry)

    def deactivate(self) -> None:
        self.start = None
        super().deactivate()

    def remove(self) -> None:
        """Take the rubber band off the canvas (on unload)."""
        self.clear()
        self.canvas().scene().removeItem(self.rubber)

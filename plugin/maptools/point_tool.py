"""PointMapTool: click a point on the canvas; emits it in the canvas CRS."""

from __future__ import annotations

from qgis.core import QgsPointXY, QgsWkbTypes
from qgis.gui import QgsMapCanvas, QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor


class PointMapTool(QgsMapTool):
    """Left click: ``pointClicked(QgsPointXY, QgsCoordinateReferenceSystem)``."""

    pointClicked = pyqtSignal(QgsPointXY, object)  # noqa: N815 (Qt signal naming)

    def __init__(self, canvas: QgsMapCanvas) -> None:
        super().__init__(canvas)
        self.marker = QgsRubberBand(canvas, QgsWkbTypes.PointGeometry)
        self.marker.setColor(QColor(255, 120, 0, 220))
        self.marker.setIconSize(12)
        self.marker.setWidth(3)
        self.setCursor(Qt.CrossCursor)

    def canvasReleaseEvent(self, e) -> None:  # noqa: N802 (QGIS API)
        if e.button() != Qt.LeftButton:
            return
        point = self.toMapCoordinates(e.pos())
        self.marker.reset(QgsWkbTypes.PointGeometry)
        self.marker.addPoint(point, True)
        self.marker.show()
        self.pointClicked.emit(point, self.canvas().mapSettings().destinationCrs())

    def clear(self) -> None:
        self.marker.reset(QgsWkbTypes.PointGeometry)

    def remove(self) -> None:
        """Take the marker off the canvas (on unload)."""
        self.clear()
        self.canvas().scene().removeItem(self.marker)

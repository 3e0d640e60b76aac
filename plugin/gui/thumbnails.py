"""Small PNG renders of a hit's imagery for the results table's tooltip (made on first hover)."""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsMapRendererCustomPainterJob,
    QgsMapSettings,
    QgsProject,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor, QImage, QPainter

log = logging.getLogger(__name__)
SIZE = 160


class Thumbnails:
    """One PNG per (raster, extent) in a private temp folder, removed by :meth:`clear`."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.rasters: dict[str, QgsRasterLayer] = {}

    def _raster(self, source: str) -> QgsRasterLayer | None:
        path = source.split(",")[0].strip()
        if path not in self.rasters:
            layer = QgsRasterLayer(path, Path(path).name)
            self.rasters[path] = layer
        layer = self.rasters[path]
        return layer if layer.isValid() else None

    def get(self, source: str, geom: QgsGeometry, crs: QgsCoordinateReferenceSystem) -> Path | None:
        """A thumbnail of ``source`` under ``geom`` (in ``crs``), or None when it cannot be rendered."""
        raster = self._raster(source)
        if raster is None or geom.isEmpty():
            return None
        extent = geom.boundingBox()
        if crs != raster.crs():
            extent = QgsCoordinateTransform(crs, raster.crs(), QgsProject.instance()).transformBoundingBox(extent)
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="geovec-thumbs-"))
        key = hashlib.sha1(f"{source}|{extent.toString(6)}".encode()).hexdigest()[:16]
        path = self.folder / f"{key}.png"
        if path.exists():
            return path
        settings = QgsMapSettings()
        settings.setLayers([raster])
        settings.setDestinationCrs(raster.crs())
        settings.setExtent(extent)
        settings.setOutputSize(QSize(SIZE, SIZE))
        settings.setBackgroundColor(QColor(0, 0, 0, 0))
        image = QImage(SIZE, SIZE, QImage.Format_ARGB32_Premultiplied)
        image.fill(0)
        painter = QPainter(image)
        job = QgsMapRendererCustomPainterJob(settings, painter)
        job.start()
        job.waitForFinished()
        painter.end()
        if not image.save(str(path), "PNG"):
            log.warning("could not write the thumbnail %s", path)
            return None
        return path

    def clear(self) -> None:
        self.rasters.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

"""ResultsView: the results table kept in sync with the memory layer of hit footprints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProject,
    QgsVectorFileWriter,
    QgsVectorLayer,
)
from qgis.gui import QgsMapCanvas
from qgis.PyQt.QtWidgets import QTableWidget, QTableWidgetItem

from ..hits import features_from_response, memory_layer

STYLE = Path(__file__).resolve().parents[2] / "resources" / "hits.qml"
LAYER_NAME = "GeoVec hits"


class ResultsView:
    """Owns the result layer; fills the table; selecting a row zooms to and flashes the hit."""

    def __init__(self, table: QTableWidget, canvas: QgsMapCanvas) -> None:
        self.table = table
        self.canvas = canvas
        self.layer_id: str | None = None
        self.table.itemSelectionChanged.connect(self._row_selected)

    @property
    def layer(self) -> QgsVectorLayer | None:
        return QgsProject.instance().mapLayer(self.layer_id) if self.layer_id else None

    def _layer_for(self, crs: QgsCoordinateReferenceSystem) -> QgsVectorLayer:
        layer = self.layer
        if layer is not None and layer.crs() == crs:
            return layer
        if layer is not None:
            QgsProject.instance().removeMapLayer(layer.id())
        layer = memory_layer(LAYER_NAME, crs)
        if STYLE.is_file():
            layer.loadNamedStyle(str(STYLE))
        QgsProject.instance().addMapLayer(layer)
        self.layer_id = layer.id()
        return layer

    def show(self, resp: dict[str, Any], query: str, crs: QgsCoordinateReferenceSystem) -> int:
        """Replace the hits with ``resp``'s (in ``crs``, the project CRS); returns how many."""
        layer = self._layer_for(crs)
        feats = features_from_response(resp, crs, query)
        provider = layer.dataProvider()
        provider.truncate()
        provider.addFeatures(feats)
        layer.updateExtents()
        layer.triggerRepaint()
        self.table.setRowCount(0)
        for f in sorted(layer.getFeatures(), key=lambda f: f["rank"]):
            row = self.table.rowCount()
            self.table.insertRow(row)
            name = Path(f["source"].split(",")[0].strip()).name or f["source"]
            for col, value in enumerate((str(f["rank"]), f"{f['score']:.4f}", name)):
                item = QTableWidgetItem(value)
                item.setData(0x0100, f.id())  # Qt.UserRole: feature id
                item.setToolTip(f["source"])
                self.table.setItem(row, col, item)
        return len(feats)

    def _row_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        layer = self.layer
        if not rows or layer is None:
            return
        fid = self.table.item(rows[0].row(), 0).data(0x0100)
        feat = layer.getFeature(fid)
        geom = feat.geometry()
        if geom.isEmpty():
            return
        layer.selectByIds([fid])
        dst = self.canvas.mapSettings().destinationCrs()
        box = geom.boundingBox()
        if layer.crs() != dst:
            box = QgsCoordinateTransform(layer.crs(), dst, QgsProject.instance()).transformBoundingBox(box)
        box.scale(2.0)
        self.canvas.setExtent(box)
        self.canvas.refresh()
        self.canvas.flashGeometries([geom], layer.crs())

    def save_gpkg(self, path: str) -> QgsVectorLayer:
        """Write the hits to a GeoPackage and add it to the project; raises OSError on failure."""
        layer = self.layer
        if layer is None:
            raise OSError("no results to save yet: run a search first")
        opts = QgsVectorFileWriter.SaveVectorOptions()
        opts.driverName = "GPKG"
        opts.layerName = "geovec_hits"
        err, msg = QgsVectorFileWriter.writeAsVectorFormatV2(layer, path, QgsProject.instance().transformContext(),
                                                             opts)[:2]
        if err != QgsVectorFileWriter.NoError:
            raise OSError(f"could not write {path}: {msg}")
        saved = QgsVectorLayer(f"{path}|layername=geovec_hits", Path(path).stem, "ogr")
        if STYLE.is_file():
            saved.loadNamedStyle(str(STYLE))
        QgsProject.instance().addMapLayer(saved)
        return saved

    def remove(self) -> None:
        """Remove the result layer from the project (on unload)."""
        self.table.setRowCount(0)
        if self.layer is not None:
            QgsProject.instance().removeMapLayer(self.layer_id)
        self.layer_id = None

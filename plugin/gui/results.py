"""ResultsView: the hits table kept in sync with two memory layers, tile hits and region highlights.

Regions are drawn above the tiles as outlines with rank labels, coloured over the
current result set's scores; the best region (else the best tile) is zoomed to and
flashed. Selecting a row outlines that hit with a rubber band: no selection fill, so
the imagery under it stays visible.
"""

from __future__ import annotations

from html import escape as html_escape
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.gui import QgsMapCanvas, QgsRubberBand
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import QTableWidgetItem

from ..hits import features_from_response, memory_layer, regions_from_response, response_level
from ..style import style_hits
from .results_panel import HitsTable
from .thumbnails import Thumbnails

LAYER_NAME = "GeoVec hits"
REGION_LAYER_NAME = "GeoVec regions"
FID_ROLE = Qt.UserRole
LAYER_ROLE = Qt.UserRole + 1
#: the tooltip's strip of other dates: at most this many, thumbnails this wide
OTHER_DATES_SHOWN = 4
OTHER_DATES_PX = 96
FLASHES, FLASH_MS = 2, 250


def centred_in(feats: list[QgsFeature], crs: QgsCoordinateReferenceSystem, area: QgsGeometry,
               area_crs: QgsCoordinateReferenceSystem) -> list[QgsFeature]:
    """The features (in ``crs``) whose bounding-box centre lies in ``area`` (in ``area_crs``)."""
    area = QgsGeometry(area)
    if area_crs != crs:
        try:
            area.transform(QgsCoordinateTransform(area_crs, crs, QgsProject.instance()))
        except Exception:  # noqa: BLE001 - QgsCsException: cannot compare, keep every feature
            return feats
    return [f for f in feats if area.intersects(QgsGeometry.fromPointXY(f.geometry().boundingBox().center()))]


class NumericItem(QTableWidgetItem):
    """A table cell that sorts by its number, not its text."""

    def __init__(self, text: str, value: float) -> None:
        super().__init__(text)
        self.value = value

    def __lt__(self, other) -> bool:
        return self.value < getattr(other, "value", 0)


class ResultsView:
    """Owns the two result layers; fills the table; selecting a row zooms to and outlines the hit."""

    def __init__(self, table: HitsTable, canvas: QgsMapCanvas) -> None:
        self.table = table
        self.canvas = canvas
        self.layer_id: str | None = None
        self.region_layer_id: str | None = None
        self.saved = False  # the current hits were saved (nothing to ask about on unload)
        self.other_dates: dict[str, list[dict[str, Any]]] = {}  # tile id -> its place on the other dates
        self.highlight = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
        self.highlight.setColor(QColor(0, 255, 255, 255))
        self.highlight.setFillColor(QColor(0, 0, 0, 0))
        self.highlight.setWidth(3)
        self.thumbnails = Thumbnails()
        self.table.tooltip_for = self._tooltip
        self.table.itemSelectionChanged.connect(self._row_selected)

    # --- layers ---------------------------------------------------------------------------
    @property
    def layer(self) -> QgsVectorLayer | None:
        return QgsProject.instance().mapLayer(self.layer_id) if self.layer_id else None

    @property
    def region_layer(self) -> QgsVectorLayer | None:
        return QgsProject.instance().mapLayer(self.region_layer_id) if self.region_layer_id else None

    def layers(self) -> list[QgsVectorLayer]:
        return [lyr for lyr in (self.layer, self.region_layer) if lyr is not None]

    def _fresh_layer(self, current: QgsVectorLayer | None, name: str,
                     crs: QgsCoordinateReferenceSystem) -> QgsVectorLayer:
        """``current`` emptied, or a new layer on top of the layer tree when the CRS changed."""
        if current is not None and current.crs() == crs:
            current.dataProvider().truncate()
            return current
        if current is not None:
            QgsProject.instance().removeMapLayer(current.id())
        layer = memory_layer(name, crs)
        QgsProject.instance().addMapLayer(layer, False)
        QgsProject.instance().layerTreeRoot().insertLayer(0, layer)
        return layer

    def _fill(self, layer: QgsVectorLayer, feats: list[QgsFeature], level: str) -> None:
        layer.dataProvider().addFeatures(feats)
        layer.updateExtents()
        style_hits(layer, level)

    def show(self, resp: dict[str, Any], query: str, crs: QgsCoordinateReferenceSystem,
             within: tuple[QgsGeometry, QgsCoordinateReferenceSystem] | None = None) -> int:
        """Replace the hits with ``resp``'s (in ``crs``, the project CRS); returns how many rows the table got.

        Tiles go to "GeoVec hits", regions (each hit's ``regions``, or the features of a
        region-level response) to "GeoVec regions" above them. ``within`` (the area the
        search was confined to, with its CRS): a region whose centre lies outside it is not
        drawn (the centre rule the search used).
        """
        self.highlight.reset(QgsWkbTypes.PolygonGeometry)
        self.other_dates = {str(f["properties"].get("tile_id")): f["properties"]["other_dates"]
                            for f in resp.get("features") or [] if (f.get("properties") or {}).get("other_dates")}
        level = response_level(resp)
        regions = regions_from_response(resp, crs, query)
        if within is not None:
            regions = centred_in(regions, crs, *within)
        tiles = [] if level == "region" else features_from_response(resp, crs, query)
        tile_layer = self._fresh_layer(self.layer, LAYER_NAME, crs)
        self.layer_id = tile_layer.id()
        self._fill(tile_layer, tiles, "tile")
        region_layer = self._fresh_layer(self.region_layer, REGION_LAYER_NAME, crs)
        self.region_layer_id = region_layer.id()
        self._fill(region_layer, regions, "region")
        self.saved = False
        rows_layer = region_layer if level == "region" else tile_layer
        self._fill_table(rows_layer)
        self.focus_best()
        return rows_layer.featureCount()

    def clear(self) -> None:
        """Empty both hit layers and the table (a failed search leaves no stale answer on the map)."""
        self.highlight.reset(QgsWkbTypes.PolygonGeometry)
        for layer in self.layers():
            layer.dataProvider().truncate()
            layer.triggerRepaint()
        self.table.setRowCount(0)
        self.other_dates = {}
        self.saved = False

    def _fill_table(self, layer: QgsVectorLayer) -> None:
        self.table.setSortingEnabled(False)
        self.table.setRowCount(0)
        for f in sorted(layer.getFeatures(), key=lambda f: f["rank"]):
            row = self.table.rowCount()
            self.table.insertRow(row)
            source = str(f["source"])
            name = Path(source.split(",")[0].strip()).name or source
            cells = (NumericItem(str(f["rank"]), f["rank"]), NumericItem(f"{f['score']:.4f}", f["score"]),
                     QTableWidgetItem(str(f["level"])), QTableWidgetItem(name))
            for col, item in enumerate(cells):
                item.setData(FID_ROLE, f.id())
                item.setData(LAYER_ROLE, layer.id())
                item.setToolTip(source)
                self.table.setItem(row, col, item)
        self.table.setSortingEnabled(True)
        self.table.sortItems(0, Qt.AscendingOrder)

    # --- navigation -----------------------------------------------------------------------
    def _to_canvas(self, box: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> QgsRectangle:
        dst = self.canvas.mapSettings().destinationCrs()
        if crs != dst:
            box = QgsCoordinateTransform(crs, dst, QgsProject.instance()).transformBoundingBox(box)
        return box

    def focus_best(self) -> QgsGeometry | None:
        """Zoom to the best region (else the best tile) and flash it; returns its geometry."""
        for layer in (self.region_layer, self.layer):
            if layer is None or not layer.featureCount():
                continue
            best = min(layer.getFeatures(), key=lambda f: f["rank"])
            geom = best.geometry()
            box = self._to_canvas(geom.boundingBox(), layer.crs())
            box.scale(3.0)
            self.canvas.setExtent(box)
            self.canvas.refresh()
            self.flash(geom, layer.crs())
            return geom
        return None

    def flash(self, geom: QgsGeometry, crs: QgsCoordinateReferenceSystem) -> None:
        """Two short flashes (about 1 s in all): draws the eye, then gives the imagery back."""
        self.canvas.flashGeometries([geom], crs, QColor(255, 0, 0, 255), QColor(255, 0, 0, 0), FLASHES, FLASH_MS)

    def zoom_all(self) -> bool:
        """Zoom to every hit (tiles and regions); False when there are none."""
        box = QgsRectangle()
        for layer in self.layers():
            if layer.featureCount():
                layer.updateExtents()
                box.combineExtentWith(self._to_canvas(layer.extent(), layer.crs()))
        if box.isEmpty():
            return False
        box.scale(1.1)
        self.canvas.setExtent(box)
        self.canvas.refresh()
        return True

    def _feature(self, row: int) -> tuple[QgsVectorLayer | None, QgsFeature | None]:
        item = self.table.item(row, 0)
        if item is None:
            return None, None
        layer = QgsProject.instance().mapLayer(item.data(LAYER_ROLE))
        if layer is None:
            return None, None
        return layer, layer.getFeature(item.data(FID_ROLE))

    def _row_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        layer, feat = self._feature(rows[0].row())
        if feat is None or feat.geometry().isEmpty():
            return
        geom = feat.geometry()
        box = self._to_canvas(geom.boundingBox(), layer.crs())
        box.scale(2.0)
        self.canvas.setExtent(box)
        self.highlight.setToGeometry(geom, layer.crs())
        self.highlight.show()
        self.canvas.refresh()
        self.flash(geom, layer.crs())

    def selected_geometry(self) -> QgsGeometry | None:
        """The outlined hit's geometry in the canvas CRS (None when no row is selected)."""
        geom = self.highlight.asGeometry()
        return None if geom.isEmpty() else geom

    def _tooltip(self, row: int) -> str:
        layer, feat = self._feature(row)
        if feat is None:
            return ""
        path = self.thumbnails.get(str(feat["source"]), feat.geometry(), layer.crs())
        text = f"#{feat['rank']} · score {feat['score']:.4f} · {feat['level']}<br>{feat['source']}"
        html = f'<img src="{path.as_uri()}" width="160"><br>{text}' if path else text
        return html + self._other_dates_strip(feat, layer.crs())

    def _other_dates_strip(self, feat: QgsFeature, crs: QgsCoordinateReferenceSystem) -> str:
        """The hit's place on the other dates of the index: a thumbnail, the date and the score of each."""
        others = self.other_dates.get(str(feat["tile_id"])) or []
        cells = []
        for o in others[:OTHER_DATES_SHOWN]:
            thumb = self.thumbnails.get(str(o.get("source") or ""), feat.geometry(), crs) if o.get("source") else None
            img = f'<img src="{thumb.as_uri()}" width="{OTHER_DATES_PX}"><br>' if thumb else ""
            cells.append(f"<td>{img}{html_escape(str(o.get('acquired') or 'undated'))}<br>"
                         f"score {float(o.get('score', float('nan'))):.4f}</td>")
        if not cells:
            return ""
        more = f" (first {OTHER_DATES_SHOWN} of {len(others)})" if len(others) > OTHER_DATES_SHOWN else ""
        return f"<br><b>Same place, other dates{more}</b><table><tr>{''.join(cells)}</tr></table>"

    # --- teardown -------------------------------------------------------------------------
    def release(self) -> list[QgsVectorLayer]:
        """On unload: drop the table, rubber band and thumbnails; the hit layers stay in the project
        (they are the user's results) and are returned."""
        self.table.tooltip_for = None
        try:
            self.table.itemSelectionChanged.disconnect(self._row_selected)
        except TypeError:
            pass
        self.table.setRowCount(0)
        self.highlight.reset(QgsWkbTypes.PolygonGeometry)
        self.canvas.scene().removeItem(self.highlight)
        self.thumbnails.clear()
        kept = self.layers()
        self.layer_id = self.region_layer_id = None
        return kept

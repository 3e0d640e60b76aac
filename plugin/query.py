"""Turn what the user drew, typed and ticked into :class:`SearchParams` (CRS, raster, spatial filter)."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.gui import QgsMapCanvas

from . import heatmap
from .hits import crs_to_text
from .params import VIEW_WITHIN_MODE, SearchParams

WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")


class QueryBuilder:
    """Knows the canvas and the active layer; builds the parameters of one search."""

    def __init__(self, canvas: QgsMapCanvas, active_layer=lambda: None) -> None:
        self.canvas = canvas
        self.active_layer = active_layer

    def canvas_crs(self) -> QgsCoordinateReferenceSystem:
        return self.canvas.mapSettings().destinationCrs()

    def out_crs(self) -> QgsCoordinateReferenceSystem:
        project_crs = QgsProject.instance().crs()
        return project_crs if project_crs.isValid() else self.canvas_crs()

    def latlon(self, point: QgsPointXY, crs: QgsCoordinateReferenceSystem) -> tuple[float, float]:
        p = QgsCoordinateTransform(crs, WGS84, QgsProject.instance()).transform(point)
        return (p.y(), p.x())

    def raster_under(self, point: QgsPointXY, crs: QgsCoordinateReferenceSystem) -> str | None:
        """The file of the topmost visible GDAL raster under ``point`` (what the query was drawn on)."""
        for layer in self.canvas.layers():
            if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
                continue
            try:
                extent = QgsCoordinateTransform(layer.crs(), crs, QgsProject.instance()).transformBoundingBox(
                    layer.extent())
            except Exception:  # noqa: BLE001 - QgsCsException: not comparable, try the next
                continue
            if extent.contains(point):
                return layer.source().split("|")[0]
        return None

    def within(self) -> tuple[str, str, str]:
        """The spatial filter of "Search in view": (GeoJSON geometry text, its CRS, what it is).

        The selected polygons of the active vector layer when there are any, else the map view;
        a hit counts when its tile (region) centre lies in it (``VIEW_WITHIN_MODE``).
        """
        layer = self.active_layer()
        if isinstance(layer, QgsVectorLayer) and layer.geometryType() == QgsWkbTypes.PolygonGeometry \
                and layer.selectedFeatureCount():
            geom = QgsGeometry.unaryUnion([f.geometry() for f in layer.selectedFeatures()])
            if not geom.isEmpty():
                return geom.asJson(17), crs_to_text(layer.crs()), f"the selected polygon of {layer.name()}"
        return QgsGeometry.fromRect(self.canvas.extent()).asJson(17), crs_to_text(self.canvas_crs()), "the map view"

    def build(self, index: str, mode: str, opts: dict, crs: QgsCoordinateReferenceSystem | None = None,
              center: QgsPointXY | None = None, **kw) -> SearchParams:
        """SearchParams for ``mode`` with the dock options ``opts`` (see QueryPanel.options)."""
        if center is None:
            center, crs_c = self.canvas.extent().center(), self.canvas_crs()
        else:
            crs_c = crs
        extra: dict = {}
        if opts.get("in_view"):
            wkt, wcrs, _ = self.within()
            extra = {"within": wkt, "within_crs": wcrs, "within_mode": VIEW_WITHIN_MODE}
        if opts.get("heat_map"):
            kw["extra"] = {**kw.get("extra", {}), "score_map": heatmap.new_folder()}
        text = kw.pop("text", None) or (opts.get("text") if mode != "text" else None)
        return SearchParams(
            index=index, mode=mode, crs=crs_to_text(crs) if crs else "EPSG:4326",
            raster=self.raster_under(center, crs_c) if mode != "text" else None,
            latlon=self.latlon(center, crs_c) if opts.get("condition_location") else None,
            k=opts["k"], min_score=opts["min_score"], exclude_own=opts["exclude_own"],
            out_crs=crs_to_text(self.out_crs()), level=opts.get("level") or "tile", rerank=opts.get("rerank"),
            text=text, **extra, **kw)

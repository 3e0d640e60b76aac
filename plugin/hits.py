"""Turn a SearchResponse (GeoJSON FeatureCollection) into QGIS features and layers."""

from __future__ import annotations

import json
from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProject,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QVariant


def hit_fields() -> QgsFields:
    """Attributes of every hit layer: rank, score, source, query, tile_id, scene_id."""
    fields = QgsFields()
    fields.append(QgsField("rank", QVariant.Int))
    fields.append(QgsField("score", QVariant.Double))
    fields.append(QgsField("source", QVariant.String))
    fields.append(QgsField("query", QVariant.String))
    fields.append(QgsField("tile_id", QVariant.String))
    fields.append(QgsField("scene_id", QVariant.String))
    return fields


def crs_from_text(text: str) -> QgsCoordinateReferenceSystem:
    """An authid (``EPSG:32617``), a WKT or a PROJ string as a QGIS CRS (invalid when unreadable)."""
    crs = QgsCoordinateReferenceSystem(text)
    if not crs.isValid():
        crs = QgsCoordinateReferenceSystem.fromWkt(text)
    if not crs.isValid():
        crs = QgsCoordinateReferenceSystem.fromProj(text)
    return crs


def crs_to_text(crs: QgsCoordinateReferenceSystem) -> str:
    """What the backend gets for a CRS: its authid when it has one, else WKT."""
    return crs.authid() if crs.authid() else crs.toWkt()


def geometry_from_geojson(geom: dict[str, Any]) -> QgsGeometry:
    """A GeoJSON geometry dict as a QgsGeometry (empty when it cannot be read)."""
    layer_json = json.dumps({"type": "FeatureCollection",
                             "features": [{"type": "Feature", "geometry": geom, "properties": {}}]})
    from qgis.core import QgsJsonUtils

    feats = QgsJsonUtils.stringToFeatureList(layer_json, QgsFields())
    return QgsGeometry(feats[0].geometry()) if feats else QgsGeometry()


def source_of(props: dict[str, Any]) -> str:
    src = props.get("source")
    if not src and props.get("sources"):
        src = ", ".join(props["sources"])
    return str(src or "")


def features_from_response(resp: dict[str, Any], dst_crs: QgsCoordinateReferenceSystem,
                           query: str) -> list[QgsFeature]:
    """Hits as features in ``dst_crs`` (reprojected when the response is in another CRS)."""
    src_crs = crs_from_text(str(resp.get("crs") or "EPSG:4326"))
    xform = None
    if src_crs.isValid() and dst_crs.isValid() and src_crs != dst_crs:
        xform = QgsCoordinateTransform(src_crs, dst_crs, QgsProject.instance())
    fields = hit_fields()
    out: list[QgsFeature] = []
    for i, feat in enumerate(resp.get("features") or []):
        props = feat.get("properties") or {}
        geom = geometry_from_geojson(feat.get("geometry") or {})
        if xform is not None and not geom.isEmpty():
            geom.transform(xform)
        f = QgsFeature(fields)
        f.setGeometry(geom)
        f.setAttributes([int(props.get("rank", i + 1)), float(props.get("score", 0.0)), source_of(props),
                         query, str(props.get("tile_id", "")), str(props.get("scene_id", ""))])
        out.append(f)
    return out


def memory_layer(name: str, crs: QgsCoordinateReferenceSystem) -> QgsVectorLayer:
    """An empty polygon memory layer with :func:`hit_fields`, in ``crs``."""
    layer = QgsVectorLayer("Polygon?crs=" + (crs.authid() or "EPSG:4326"), name, "memory")
    if not crs.authid():
        layer.setCrs(crs)
    layer.dataProvider().addAttributes(hit_fields().toList())
    layer.updateFields()
    return layer

"""Fields and features of the workflow algorithms' outputs (classified tiles, candidate locations)."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsProject,
)
from qgis.PyQt.QtCore import QVariant

from ..hits import crs_from_text, geometry_from_geojson

CLASS_FIELDS = (("class", QVariant.String), ("class_id", QVariant.Int), ("score", QVariant.Double),
                ("margin", QVariant.Double), ("tile_id", QVariant.String), ("scene_id", QVariant.String))
#: Classification levels (LEVEL parameter): tiles, or the regions an index built with --regions stores.
LEVELS = ["tile", "region"]
LOCATION_FIELDS = (("rank", QVariant.Int), ("score", QVariant.Double), ("best_score", QVariant.Double),
                   ("hits", QVariant.Int), ("lat", QVariant.Double), ("lon", QVariant.Double))


def fields_of(spec: tuple[tuple[str, Any], ...]) -> QgsFields:
    fields = QgsFields()
    for name, kind in spec:
        fields.append(QgsField(name, kind))
    return fields


def features(resp: dict[str, Any], spec: tuple[tuple[str, Any], ...],
             dst_crs: QgsCoordinateReferenceSystem) -> list[QgsFeature]:
    """The response's GeoJSON features with the attributes named in ``spec``, in ``dst_crs``."""
    src = crs_from_text(str(resp.get("crs") or "EPSG:4326"))
    xform = QgsCoordinateTransform(src, dst_crs, QgsProject.instance()) \
        if src.isValid() and dst_crs.isValid() and src != dst_crs else None
    fields = fields_of(spec)
    out = []
    for feat in resp.get("features") or []:
        props = feat.get("properties") or {}
        geom = geometry_from_geojson(feat.get("geometry") or {})
        if xform is not None and not geom.isEmpty():
            geom.transform(xform)
        f = QgsFeature(fields)
        f.setGeometry(geom)
        f.setAttributes([props.get(name) for name, _ in spec])
        out.append(f)
    return out

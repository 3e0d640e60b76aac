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
    """Attributes of every hit layer: rank, score, source, query, tile_id, scene_id, level, hit_rank, bbox_image.

    ``level`` is "tile" or "region"; ``hit_rank`` is the rank of the tile a region lies in
    (a tile's own rank for tiles); ``bbox_image`` a region's box in tile-image pixels
    ("x0,y0,x1,y1"; empty for tiles): with ``tile_id`` it names the region to the backend.
    """
    fields = QgsFields()
    fields.append(QgsField("rank", QVariant.Int))
    fields.append(QgsField("score", QVariant.Double))
    fields.append(QgsField("source", QVariant.String))
    fields.append(QgsField("query", QVariant.String))
    fields.append(QgsField("tile_id", QVariant.String))
    fields.append(QgsField("scene_id", QVariant.String))
    fields.append(QgsField("level", QVariant.String))
    fields.append(QgsField("hit_rank", QVariant.Int))
    fields.append(QgsField("bbox_image", QVariant.String))
    return fields


def bbox_text(box: Any) -> str:
    """A region's ``bbox_image`` as "x0,y0,x1,y1" ('' when there is none)."""
    if not isinstance(box, list | tuple) or len(box) != 4:
        return ""
    return ",".join(repr(float(v)) for v in box)


def parse_bbox(text: str) -> list[float] | None:
    """"x0,y0,x1,y1" -> four floats (None when ``text`` is not one)."""
    try:
        box = [float(v) for v in str(text or "").split(",")]
    except ValueError:
        return None
    return box if len(box) == 4 else None


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


def _transform(resp: dict[str, Any], dst_crs: QgsCoordinateReferenceSystem) -> QgsCoordinateTransform | None:
    src_crs = crs_from_text(str(resp.get("crs") or "EPSG:4326"))
    if src_crs.isValid() and dst_crs.isValid() and src_crs != dst_crs:
        return QgsCoordinateTransform(src_crs, dst_crs, QgsProject.instance())
    return None


def _feature(geom_json: dict[str, Any], xform: QgsCoordinateTransform | None, attrs: list[Any]) -> QgsFeature:
    geom = geometry_from_geojson(geom_json or {})
    if xform is not None and not geom.isEmpty():
        geom.transform(xform)
    f = QgsFeature(hit_fields())
    f.setGeometry(geom)
    f.setAttributes(attrs)
    return f


def response_level(resp: dict[str, Any]) -> str:
    """``"region"`` when the response's features are region boxes, else ``"tile"``."""
    feats = resp.get("features") or []
    return "region" if feats and (feats[0].get("properties") or {}).get("level") == "region" else "tile"


def features_from_response(resp: dict[str, Any], dst_crs: QgsCoordinateReferenceSystem,
                           query: str) -> list[QgsFeature]:
    """The response's own features (tiles, or regions at level=region) in ``dst_crs``."""
    xform = _transform(resp, dst_crs)
    out: list[QgsFeature] = []
    for i, feat in enumerate(resp.get("features") or []):
        props = feat.get("properties") or {}
        rank = int(props.get("rank", i + 1))
        out.append(_feature(feat.get("geometry") or {}, xform, [
            rank, float(props.get("score", 0.0)), source_of(props), query, str(props.get("tile_id", "")),
            str(props.get("scene_id", "")), str(props.get("level") or "tile"), int(props.get("hit_rank", rank)),
            bbox_text(props.get("bbox_image"))]))
    return out


def regions_from_response(resp: dict[str, Any], dst_crs: QgsCoordinateReferenceSystem,
                          query: str) -> list[QgsFeature]:
    """Every region box of the response in ``dst_crs``, ranked by score over the whole result set.

    At level=region the features are the regions; at level=tile each hit's
    ``properties.regions`` (``rank``, ``score``, ``bbox_image``, ``geometry``) are collected.
    """
    if response_level(resp) == "region":
        return features_from_response(resp, dst_crs, query)
    xform = _transform(resp, dst_crs)
    found: list[tuple[float, int, dict[str, Any], dict[str, Any]]] = []
    for i, feat in enumerate(resp.get("features") or []):
        props = feat.get("properties") or {}
        for region in props.get("regions") or []:
            if isinstance(region, dict) and region.get("geometry"):
                found.append((float(region.get("score", 0.0)), int(props.get("rank", i + 1)), region, props))
    found.sort(key=lambda r: (-r[0], r[1]))
    return [_feature(region["geometry"], xform, [
        rank, score, source_of(props), query, str(props.get("tile_id", "")), str(props.get("scene_id", "")),
        "region", hit_rank, bbox_text(region.get("bbox_image"))]) for rank, (score, hit_rank, region, props) in enumerate(found, start=1)]


def memory_layer(name: str, crs: QgsCoordinateReferenceSystem) -> QgsVectorLayer:
    """An empty polygon memory layer with :func:`hit_fields`, in ``crs``."""
    layer = QgsVectorLayer("Polygon?crs=" + (crs.authid() or "EPSG:4326"), name, "memory")
    if not crs.authid():
        layer.setCrs(crs)
    layer.dataProvider().addAttributes(hit_fields().toList())
    layer.updateFields()
    return layer

"""Write hit layers to GeoPackage, GeoJSON or CSV, then read the file back before calling it saved."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsProject,
    QgsVectorFileWriter,
    QgsVectorLayer,
)

from .hits import hit_fields, memory_layer
from .style import style_hits

#: format -> (OGR driver, file suffix, layer options)
FORMATS: dict[str, tuple[str, str, list[str]]] = {
    "gpkg": ("GPKG", ".gpkg", []),
    "geojson": ("GeoJSON", ".geojson", ["RFC7946=NO", "COORDINATE_PRECISION=15"]),
    # CREATE_CSVT: GDAL also writes .prj (the CRS) and .csvt (field types) beside it, so the file opens in
    # place with its numbers as numbers in QGIS, ogr2ogr and pandas+pyproj alike
    "csv": ("CSV", ".csv", ["GEOMETRY=AS_WKT", "CREATE_CSVT=YES"]),
}


class ExportError(OSError):
    """The file could not be written, or what was written does not read back as the hits."""


def with_suffix(path: str, fmt: str) -> str:
    """``path`` with the format's suffix added when it has another (or none)."""
    suffix = FORMATS[fmt][1]
    return path if path.lower().endswith(suffix) else path + suffix


def merged(layers: list[QgsVectorLayer]) -> QgsVectorLayer:
    """Tiles and regions in one memory layer (the ``level`` attribute tells them apart)."""
    crs = layers[0].crs()
    out = memory_layer("geovec_hits", crs)
    feats = []
    for layer in layers:
        for f in layer.getFeatures():
            g = QgsFeature(hit_fields())
            g.setGeometry(f.geometry())
            g.setAttributes(f.attributes())
            feats.append(g)
    out.dataProvider().addFeatures(feats)
    out.updateExtents()
    return out


def _read_back(path: str, fmt: str, layer_name: str) -> QgsVectorLayer:
    uri = f"{path}|layername={layer_name}" if fmt == "gpkg" else path
    return QgsVectorLayer(uri, Path(path).stem, "ogr")


def export_hits(layers: list[QgsVectorLayer], path: str, fmt: str,
                context: QgsCoordinateTransformContext | None = None) -> tuple[str, QgsVectorLayer]:
    """Write every hit of ``layers`` to ``path`` (suffix added); returns the path and the layer read back.

    Raises :class:`ExportError` when nothing is there to write, the writer fails, or the
    file does not read back as a valid layer holding every hit.
    """
    layers = [lyr for lyr in layers if lyr is not None and lyr.featureCount()]
    if not layers:
        raise ExportError("No hits to save yet: run a search first")
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    driver, _, layer_options = FORMATS[fmt]
    path = with_suffix(path, fmt)
    source = merged(layers)
    opts = QgsVectorFileWriter.SaveVectorOptions()
    opts.driverName = driver
    opts.layerName = "geovec_hits"
    opts.layerOptions = layer_options
    opts.fileEncoding = "UTF-8"
    ctx = context or QgsProject.instance().transformContext()
    err, msg = QgsVectorFileWriter.writeAsVectorFormatV2(source, path, ctx, opts)[:2]
    if err != QgsVectorFileWriter.NoError:
        raise ExportError(f"Could not write {path}: {msg or 'the writer failed'}")
    saved = _read_back(path, fmt, "geovec_hits")
    if not saved.isValid() or saved.featureCount() != source.featureCount():
        got = saved.featureCount() if saved.isValid() else "an unreadable layer"
        raise ExportError(f"{path} was written but reads back as {got} instead of {source.featureCount()} hits: "
                          "choose another folder or name")
    if not saved.crs().isValid() or saved.crs() != source.crs():
        raise ExportError(f"{path} was written but reads back in {saved.crs().authid() or 'no CRS'} instead of "
                          f"{source.crs().authid()}: choose another format")
    # outlines, never an opaque fill over the imagery, whatever the format
    style_hits(saved, "region" if all(f["level"] == "region" for f in source.getFeatures()) else "tile")
    return path, saved

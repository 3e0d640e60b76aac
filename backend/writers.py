"""Files GeoVec writes for GIS tools: GeoJSON and CSV that open in the right place, class-map legends.

* **GeoJSON** is RFC 7946 (lon/lat, no ``crs`` member) when the output CRS is WGS84. Any other
  output CRS travels as a GeoJSON 2008 ``crs`` member, which GDAL (so QGIS, fiona, ogr2ogr) honours:
  ``urn:ogc:def:crs:AUTH::CODE`` when the CRS has an authority code (EPSG, ESRI), else its WKT.
* **CSV** has a ``WKT`` geometry column, a ``.prj`` sidecar with the CRS (GDAL's CSV driver reads it)
  and a ``.csvt`` sidecar with the column types.
* **Class maps** carry a colour table and category names in the GeoTIFF (GDAL reads both; names in
  the ``.aux.xml`` beside it) and a ``.qml`` style that QGIS loads with the layer as its legend.
  Common class names get fixed colours (water blue, trees green, ...); others a fixed cycle.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from .errors import InputError
from .paths import output_file

log = logging.getLogger(__name__)

#: Colours of common class names (RGB); a name matches when one of its words starts with a key.
NAMED_COLOURS: dict[str, tuple[int, int, int]] = {
    "water": (31, 120, 200), "lake": (31, 120, 200), "river": (31, 120, 200), "sea": (20, 70, 160),
    "ocean": (20, 70, 160), "tree": (34, 139, 34), "forest": (34, 139, 34), "wood": (34, 139, 34),
    "grass": (150, 210, 90), "herbaceous": (150, 210, 90), "meadow": (150, 210, 90), "pasture": (190, 225, 110),
    "shrub": (120, 150, 60), "crop": (240, 210, 60), "agri": (240, 210, 60), "field": (240, 210, 60),
    "urban": (200, 40, 40), "town": (200, 40, 40), "city": (200, 40, 40), "built": (200, 40, 40),
    "developed": (200, 40, 40), "building": (170, 30, 30), "road": (110, 110, 110), "bare": (190, 160, 120),
    "sand": (230, 210, 150), "sediment": (190, 160, 120), "soil": (160, 120, 80), "rock": (150, 140, 130),
    "snow": (250, 250, 250), "ice": (220, 240, 255), "cloud": (210, 210, 210), "shadow": (50, 50, 60),
    "wetland": (60, 170, 160), "marsh": (60, 170, 160), "mangrove": (0, 110, 90),
}
#: Colours of other classes, in class order (cycled).
CYCLE = [(255, 127, 14), (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34),
         (23, 190, 207), (174, 199, 232), (255, 187, 120), (152, 223, 138), (197, 176, 213), (196, 156, 148)]
#: Output CRS names that mean RFC 7946's lon/lat.
_WGS84 = ("EPSG:4326", "OGC:CRS84", "CRS84", "WGS84")


def class_colours(classes: Sequence[str]) -> list[tuple[int, int, int]]:
    """One RGB colour per class: the fixed colour of a common name, else the next colour of :data:`CYCLE`."""
    out: list[tuple[int, int, int]] = []
    k = 0
    for name in classes:
        words = re.findall(r"[a-z]+", name.casefold())
        hit = next((c for w in words for key, c in NAMED_COLOURS.items() if w.startswith(key)), None)
        if hit is None:
            hit = CYCLE[k % len(CYCLE)]
            k += 1
        out.append(hit)
    return out


# ---- vectors --------------------------------------------------------------------------------------
def is_wgs84(crs: str) -> bool:
    """Whether ``crs`` is WGS84 lon/lat (the RFC 7946 GeoJSON CRS)."""
    from .raster import geometry

    if crs.strip().upper() in _WGS84:
        return True
    parsed = geometry.parse_crs(crs)
    return parsed.to_authority(min_confidence=95) in (("EPSG", "4326"), ("OGC", "CRS84"))


def crs_member(crs: str) -> dict[str, Any] | None:
    """The GeoJSON ``crs`` member GDAL honours for ``crs``; None for WGS84 (RFC 7946 has none)."""
    from .raster import geometry

    if is_wgs84(crs):
        return None
    parsed = geometry.parse_crs(crs)
    auth = parsed.to_authority(min_confidence=95)
    name = f"urn:ogc:def:crs:{auth[0]}::{auth[1]}" if auth else parsed.to_wkt()
    return {"type": "name", "properties": {"name": name}}


def geojson_for_file(body: dict[str, Any], crs: str) -> dict[str, Any]:
    """``body`` (a FeatureCollection whose geometries are in ``crs``) with the ``crs`` member a file needs."""
    out = {k: v for k, v in body.items() if k != "crs"}
    member = crs_member(crs)
    if member is not None:
        out = {"type": out.pop("type", "FeatureCollection"), "crs": member, **out}
    return out


def write_geojson(path: str | Path, body: dict[str, Any], crs: str, *, indent: int | None = None,
                  what: str = "GeoJSON layer") -> Path:
    """Write ``body`` (geometries in ``crs``) as a GeoJSON file GDAL and QGIS place correctly.

    Written through :func:`~geovec.backend.paths.output_file` (a temporary file renamed into place).
    """
    p = Path(path).expanduser()
    text = json.dumps(geojson_for_file(body, crs), indent=indent)
    with output_file(p, what) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return p


def _write_text(path: Path, text: str, what: str) -> None:
    with output_file(path, what) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _prj_text(crs: str) -> str:
    from .raster import geometry

    parsed = geometry.parse_crs(crs)
    for version in ("WKT1_ESRI", "WKT1_GDAL"):
        try:
            text = parsed.to_wkt(version)
        except Exception:  # noqa: BLE001 - pyproj refuses a CRS the WKT1 flavour cannot express
            text = None
        if text:
            return text
    return parsed.to_wkt()


def write_csv(path: str | Path, features: Sequence[dict[str, Any]], crs: str) -> Path:
    """Features as CSV: a ``WKT`` column, the scalar properties (lists/dicts as JSON), ``.prj`` and ``.csvt``.

    GDAL's CSV driver (so QGIS' "Add vector layer") reads the geometry from ``WKT`` and the CRS from
    the ``.prj``; QGIS' delimited-text reader takes ``WKT`` as its geometry field.
    """
    from shapely.geometry import shape

    p = Path(path).expanduser()
    if p.suffix.lower() != ".csv":
        raise InputError(f"CSV output {str(path)!r} does not end in .csv", "name the file e.g. hits.csv")
    cols: list[str] = []
    for f in features:
        for k in (f.get("properties") or {}):
            if k not in cols and k.upper() != "WKT":
                cols.append(k)
    kinds: dict[str, set[str]] = {c: set() for c in cols}
    rows = []
    for f in features:
        props = f.get("properties") or {}
        row = [shape(f["geometry"]).wkt if f.get("geometry") else ""]
        for c in cols:
            v = props.get(c)
            if v is not None:
                kinds[c].add("Integer" if isinstance(v, int) and not isinstance(v, bool) else
                              "Real" if isinstance(v, float) else "String")
            row.append(json.dumps(v) if isinstance(v, (list, dict)) else "" if v is None else v)
        rows.append(row)
    types = ["Integer" if k == {"Integer"} else "Real" if k and k <= {"Integer", "Real"} else "String"
             for k in (kinds[c] for c in cols)]
    with output_file(p, "CSV layer") as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["WKT", *cols])
        w.writerows(rows)
    _write_text(p.with_suffix(".csvt"), ",".join(['"WKT"', *(f'"{t}"' for t in types)]) + "\n", "CSV types")
    _write_text(p.with_suffix(".prj"), _prj_text(crs), "CSV CRS")
    return p


def write_vector(path: str | Path, body: dict[str, Any], crs: str) -> Path:
    """``body`` as GeoJSON, or as CSV when ``path`` ends in .csv (see the module docstring)."""
    if str(path).lower().endswith(".csv"):
        return write_csv(path, body.get("features") or [], crs)
    return write_geojson(path, body, crs, indent=1)


# ---- rasters --------------------------------------------------------------------------------------
def _aux_xml(classes: Sequence[str]) -> str:
    cats = "".join(f"<Category>{escape(c)}</Category>" for c in ["not classified", *classes])
    return (f"<PAMDataset>\n  <PAMRasterBand band=\"1\">\n    <CategoryNames>{cats}</CategoryNames>\n"
            "  </PAMRasterBand>\n</PAMDataset>\n")


def paletted_qml(classes: Sequence[str], colours: Sequence[tuple[int, int, int]], *, first: int = 1) -> str:
    """A QGIS style: a paletted renderer, value ``first + i`` = ``classes[i]`` in ``colours[i]``."""
    entries = "\n".join(
        f'        <paletteEntry value="{first + i}" label="{escape(c, {chr(34): "&quot;"})}" alpha="255" '
        f'color="#{r:02x}{g:02x}{b:02x}"/>' for i, (c, (r, g, b)) in enumerate(zip(classes, colours, strict=True)))
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="Symbology">
  <pipe>
    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0"/>
    <rasterresampler maxOversampling="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def write_class_colours(dst: Any, classes: Sequence[str]) -> None:
    """Colour table and class tags of a class map open for writing (``dst``): 0 = not classified
    (transparent), value i = ``classes[i-1]`` in its :func:`class_colours` colour."""
    colours = class_colours(classes)
    dst.write_colormap(1, {0: (0, 0, 0, 0), **{i + 1: (*c, 255) for i, c in enumerate(colours)}})
    dst.update_tags(classes=json.dumps(list(classes)))
    dst.update_tags(1, **{f"class_{i + 1}": c for i, c in enumerate(classes)})


def write_class_sidecars(tif: str | Path, classes: Sequence[str]) -> None:
    """Beside a closed class map: category names for GDAL (``.aux.xml``) and a ``.qml`` legend for QGIS."""
    colours = class_colours(classes)
    p = Path(tif)
    _write_text(p.with_suffix(".qml"), paletted_qml(classes, colours), "class-map style")
    _write_text(Path(f"{p}.aux.xml"), _aux_xml(classes), "class-map category names")

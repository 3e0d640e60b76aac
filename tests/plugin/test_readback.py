"""Every file the backend writes opens in the right place in QGIS: GeoJSON (lon/lat, or the CRS it was asked
for), CSV (with its CRS) and class maps (on the scene's grid, with the class names and colours as a legend),
read back through QgsVectorLayer / QgsRasterLayer exactly as an analyst adds them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")
#: Florida East State Plane in US survey feet: the NEON orthophoto lies in it, far from lon/lat numbers
STATE_PLANE_FEET = "EPSG:2236"


def _geovec(backend_python: str, tiny_model: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    res = subprocess.run([backend_python, "-m", "geovec.backend", *args, "--model", str(tiny_model), "--device",
                          "cpu"], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-2000:]


def _search(backend_python, tiny_model, index: str, out: Path, *extra: str) -> QgsVectorLayer:
    _geovec(backend_python, tiny_model, "search", "--index", index, "--text", "trees", "--k", "8", "--local",
            "--dtype", "fp32",
            "--geojson", str(out), *extra)
    layer = QgsVectorLayer(str(out), out.stem, "ogr")
    assert layer.isValid(), out
    return layer


def _placed_right(layer: QgsVectorLayer) -> int:
    """Each tile hit, taken from the layer's own CRS to WGS84, covers its own center_lat / center_lon."""
    xform = QgsCoordinateTransform(layer.crs(), WGS84, QgsProject.instance())
    n = 0
    for f in layer.getFeatures():
        if f["level"] not in (None, "tile") or f["center_lat"] in (None, ""):
            continue
        geom = QgsGeometry(f.geometry())
        geom.transform(xform)
        centre = QgsGeometry.fromPointXY(QgsPointXY(float(f["center_lon"]), float(f["center_lat"])))
        assert geom.contains(centre), (layer.crs().authid(), geom.boundingBox().toString(6), centre.asWkt(6))
        n += 1
    return n


def test_search_geojson_opens_in_qgis_in_lon_lat_and_in_a_projected_crs_asked_for(built_index, backend_python,
                                                                                 tiny_model, tmp_path):
    plain = _search(backend_python, tiny_model, built_index["path"], tmp_path / "hits.geojson")
    assert plain.crs().authid() == "EPSG:4326" and _placed_right(plain) == plain.featureCount() > 0
    feet = _search(backend_python, tiny_model, built_index["path"], tmp_path / "feet.geojson",
                   "--out-crs", STATE_PLANE_FEET)
    assert feet.crs().authid() == STATE_PLANE_FEET, feet.crs().toWkt()[:120]  # not read as WGS84
    assert _placed_right(feet) == feet.featureCount() > 0
    assert feet.extent().xMinimum() > 1000  # feet, not degrees


def test_search_csv_opens_in_qgis_with_its_crs(built_index, backend_python, tiny_model, tmp_path):
    layer = _search(backend_python, tiny_model, built_index["path"], tmp_path / "hits.csv", "--out-crs", "EPSG:32617")
    assert layer.crs().authid() == "EPSG:32617" and layer.geometryType() == 2  # polygons from the WKT column
    assert _placed_right(layer) == layer.featureCount() > 0
    assert layer.fields().field("score").isNumeric()  # typed columns (.csvt), not text


def test_class_maps_open_on_the_scene_grid_with_a_legend_of_the_class_names(built_index, backend_python,
                                                                            tiny_model, tmp_path, shared_data):
    out = tmp_path / "maps"
    _geovec(backend_python, tiny_model, "classify", "--index", built_index["path"], "--classes", "water", "trees",
            "urban", "--out", str(out), "--out-crs", "EPSG:32617")
    tiles = QgsVectorLayer(str(out / "tiles.geojson"), "tiles", "ogr")
    assert tiles.isValid() and tiles.crs().authid() == "EPSG:32617" and tiles.featureCount() > 0
    maps = sorted(out.glob("*.tif"))
    assert maps
    neon = [m for m in maps if "OSBS_029" in m.name]
    assert neon, [m.name for m in maps]
    source = QgsRasterLayer(str(shared_data / "neon_osbs" / "OSBS_029.tif"), "neon")
    for path in maps:
        layer = QgsRasterLayer(str(path), path.stem)  # loads the .qml beside it, as QGIS does
        assert layer.isValid() and layer.crs().isValid()
        renderer = layer.renderer()
        assert renderer.type() == "paletted", (path.name, renderer.type())
        classes = {c.label: c.color for c in renderer.classes()}
        assert {"water", "trees", "urban"} <= set(classes), classes
        water, trees = classes["water"], classes["trees"]
        assert water.blue() > max(water.red(), water.green())  # water blue
        assert trees.green() > max(trees.red(), trees.blue())  # trees green
    layer = QgsRasterLayer(str(neon[0]), "map")
    assert layer.crs() == source.crs()
    e, s = layer.extent(), source.extent()
    assert abs(e.xMinimum() - s.xMinimum()) < 1 and abs(e.yMaximum() - s.yMaximum()) < 1  # on the scene's grid


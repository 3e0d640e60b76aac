"""Map tools driven by real mouse events, query parameters, and the result layer/table (no backend)."""

from __future__ import annotations

import pytest
from conftest import ARTIFACTS
from helpers import add_raster, click, drag_box, render_canvas, to_pixel
from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsPointXY, QgsProject
from qgis.PyQt.QtCore import QCoreApplication


def _neon(iface, shared_data, crs: str):
    raster = add_raster(str(shared_data / "neon_osbs" / "OSBS_029.tif"))  # first layer sets the project CRS
    QgsProject.instance().setCrs(QgsCoordinateReferenceSystem(crs))
    xform = QgsCoordinateTransform(raster.crs(), iface.canvas.mapSettings().destinationCrs(), QgsProject.instance())
    iface.canvas.setExtent(xform.transformBoundingBox(raster.extent()))
    render_canvas(iface.canvas)
    return raster, xform


@pytest.mark.parametrize("crs", ["EPSG:32617", "EPSG:3857"])
def test_box_tool_emits_the_dragged_box_in_the_canvas_crs(plugin, iface, shared_data, clean_settings, crs):
    raster, xform = _neon(iface, shared_data, crs)
    plugin.open_dock()
    ctl = plugin.controller
    got = []
    ctl.box_tool.boxDrawn.connect(lambda rect, c: got.append((rect, c)))
    sent = []
    ctl.search = sent.append  # keep the drawn query local: this test has no backend
    plugin.dock.box_button.click()
    e = raster.extent()
    p1 = xform.transform(QgsPointXY(e.xMinimum() + 0.2 * e.width(), e.yMaximum() - 0.2 * e.height()))
    p2 = xform.transform(QgsPointXY(e.xMinimum() + 0.6 * e.width(), e.yMaximum() - 0.5 * e.height()))
    drag_box(iface.canvas, to_pixel(iface.canvas, p1), to_pixel(iface.canvas, p2))
    assert len(got) == 1
    rect, rect_crs = got[0]
    assert rect_crs.authid() == crs
    px = iface.canvas.mapUnitsPerPixel()
    assert abs(rect.xMinimum() - p1.x()) < 1.5 * px and abs(rect.yMaximum() - p1.y()) < 1.5 * px
    assert abs(rect.xMaximum() - p2.x()) < 1.5 * px and abs(rect.yMinimum() - p2.y()) < 1.5 * px
    assert ctl.box_tool.rubber.numberOfVertices() >= 4


def test_query_parameters_carry_canvas_crs_raster_and_location(plugin, iface, shared_data, clean_settings):
    raster, xform = _neon(iface, shared_data, "EPSG:3857")
    plugin.open_dock()
    ctl = plugin.controller
    plugin.dock.index_combo.setEditText("/some/index")
    plugin.dock.location_check.setChecked(True)
    plugin.dock.exclude_check.setChecked(False)
    plugin.dock.k_spin.setValue(7)
    centre = xform.transform(raster.extent().center())
    params = ctl._params("point", iface.canvas.mapSettings().destinationCrs(), centre, point=(centre.x(), centre.y()))
    body = params.to_request()
    assert body["crs"] == "EPSG:3857" and body["out_crs"] == "EPSG:3857"
    assert body["raster"].endswith("neon_osbs/OSBS_029.tif")
    lat, lon = body["latlon"]
    assert 29.0 < lat < 30.5 and -83.0 < lon < -81.0  # OSBS, Florida
    assert body["k"] == 7 and body["exclude_overlapping"] is False and body["point"] == [centre.x(), centre.y()]
    # the query attribute of every hit keeps the coordinates at full precision
    assert f"point: {centre.x()!r}, {centre.y()!r} (EPSG:3857)" == params.label


def test_point_tool_emits_the_clicked_point(plugin, iface, shared_data, clean_settings):
    raster, xform = _neon(iface, shared_data, "EPSG:3857")
    plugin.open_dock()
    ctl = plugin.controller
    got = []
    ctl.point_tool.pointClicked.connect(lambda p, c: got.append((p, c)))
    ctl.search = lambda params: None
    plugin.dock.point_button.click()
    assert not plugin.dock.box_button.isChecked()
    centre = xform.transform(raster.extent().center())
    click(iface.canvas, to_pixel(iface.canvas, centre))
    assert len(got) == 1 and got[0][1].authid() == "EPSG:3857"
    assert got[0][0].distance(centre) < 1.5 * iface.canvas.mapUnitsPerPixel()


def _collection(raster) -> dict:
    """A SearchResponse as the backend schema describes it: polygons in EPSG:4326."""
    xform = QgsCoordinateTransform(raster.crs(), QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance())
    e = raster.extent()
    feats = []
    for i, (fx, fy) in enumerate([(0.0, 0.0), (0.5, 0.0), (0.0, 0.5)]):
        ring = []
        for dx, dy in ((0, 0), (0.5, 0), (0.5, 0.5), (0, 0.5), (0, 0)):
            p = xform.transform(QgsPointXY(e.xMinimum() + (fx + dx) * e.width(), e.yMinimum() + (fy + dy) * e.height()))
            ring.append([p.x(), p.y()])
        feats.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                      "properties": {"rank": i + 1, "score": 0.9 - 0.1 * i, "tile_id": f"t{i}", "scene_id": "s",
                                     "source": raster.source(), "sources": [raster.source()],
                                     "window": [0, 0, 200, 200], "regions": []}})
    return {"type": "FeatureCollection", "features": feats, "crs": "EPSG:4326", "query": {}, "took_ms": 3.0}


def test_results_layer_table_zoom_and_geopackage(plugin, iface, shared_data, clean_settings, tmp_path):
    raster, _ = _neon(iface, shared_data, "EPSG:32617")
    plugin.open_dock()
    results = plugin.controller.results
    n = results.show(_collection(raster), "box: test", QgsProject.instance().crs())
    layer = results.layer
    assert n == 3 and layer.crs().authid() == "EPSG:32617" and layer.featureCount() == 3
    assert layer.renderer().type() == "graduatedSymbol" and layer.renderer().classAttribute() == "score"
    feats = sorted(layer.getFeatures(), key=lambda f: f["rank"])
    assert [f["query"] for f in feats] == ["box: test"] * 3
    assert raster.extent().buffered(1).contains(feats[0].geometry().boundingBox())  # reprojected to 32617
    table = plugin.dock.table
    assert [table.item(r, 1).text() for r in range(3)] == ["0.9000", "0.8000", "0.7000"]
    table.selectRow(2)
    QCoreApplication.processEvents()
    assert iface.canvas.extent().contains(feats[2].geometry().boundingBox())
    path = plugin.controller.save(str(tmp_path / "hits.gpkg"))
    saved = QgsProject.instance().mapLayersByName("hits")[0]
    assert path.endswith("hits.gpkg") and saved.featureCount() == 3 and saved.crs().authid() == "EPSG:32617"
    # a new project CRS: the next results come in a new layer in that CRS, the old one is gone
    QgsProject.instance().setCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    results.show(_collection(raster), "box: again", QgsProject.instance().crs())
    hit_layers = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.name() == "GeoVec hits"]
    assert len(hit_layers) == 1 and hit_layers[0].crs().authid() == "EPSG:3857"
    render_canvas(iface.canvas)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert iface.window.grab().save(str(ARTIFACTS / "results_layer_offline.png"))

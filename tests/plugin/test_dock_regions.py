"""The dock without a backend: region highlights, table, saving and exports, messages, the index dialog.

The responses are SearchResponses as backend/schemas.py describes them (tile hits with
``properties.regions``, or region-level features), over the real NEON orthophoto.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import wait_until
from helpers import add_raster, drag_box, render_canvas, to_pixel
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
    QgsRenderContext,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QCoreApplication, QPoint, Qt
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QPushButton, QScrollArea

WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")


def _neon(iface, shared_data, crs: str = "EPSG:32617"):
    raster = add_raster(str(shared_data / "neon_osbs" / "OSBS_029.tif"))
    QgsProject.instance().setCrs(QgsCoordinateReferenceSystem(crs))
    xform = QgsCoordinateTransform(raster.crs(), iface.canvas.mapSettings().destinationCrs(), QgsProject.instance())
    iface.canvas.setExtent(xform.transformBoundingBox(raster.extent()))
    render_canvas(iface.canvas)
    return raster


def _ring(raster, fx: float, fy: float, fw: float, fh: float) -> list[list[float]]:
    """A polygon ring over a fraction of the raster, in EPSG:4326 (the response CRS)."""
    xform = QgsCoordinateTransform(raster.crs(), WGS84, QgsProject.instance())
    e = raster.extent()
    ring = []
    for dx, dy in ((0, 0), (fw, 0), (fw, fh), (0, fh), (0, 0)):
        p = xform.transform(QgsPointXY(e.xMinimum() + (fx + dx) * e.width(), e.yMinimum() + (fy + dy) * e.height()))
        ring.append([p.x(), p.y()])
    return ring


def tile_response(raster) -> dict:
    """Three tile hits (scores 0.31, 0.29, 0.27), each with two regions inside it."""
    feats = []
    for i, (fx, fy) in enumerate([(0.0, 0.0), (0.5, 0.0), (0.0, 0.5)]):
        regions = [{"rank": r + 1, "score": 0.30 - 0.02 * i - 0.05 * r, "bbox_image": [10, 10, 60, 60],
                    "geometry": {"type": "Polygon", "coordinates": [_ring(raster, fx + 0.05 + 0.2 * r, fy + 0.05,
                                                                          0.1, 0.1)]}} for r in range(2)]
        feats.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_ring(raster, fx, fy, .5, .5)]},
                      "properties": {"rank": i + 1, "score": 0.31 - 0.02 * i, "tile_id": f"t{i}", "scene_id": "s",
                                     "source": raster.source(), "sources": [raster.source()], "level": "tile",
                                     "window": [0, 0, 200, 200], "regions": regions}})
    return {"type": "FeatureCollection", "features": feats, "crs": "EPSG:4326", "query": {}, "took_ms": 3.0}


def region_response(raster) -> dict:
    """A level=region response: the features are region boxes."""
    feats = []
    for i in range(4):
        box = {"type": "Polygon", "coordinates": [_ring(raster, 0.1 + 0.2 * i, 0.4, 0.08, 0.08)]}
        feats.append({"type": "Feature", "geometry": box,
                      "properties": {"rank": i + 1, "score": 0.5 - 0.1 * i, "tile_id": f"t{i}", "scene_id": "s",
                                     "source": raster.source(), "level": "region",
                                     "regions": [{"rank": 1, "score": 0.5 - 0.1 * i, "bbox_image": [0, 0, 9, 9],
                                                  "geometry": box}]}})
    return {"type": "FeatureCollection", "features": feats, "crs": "EPSG:4326", "query": {}, "took_ms": 2.0}


@pytest.fixture
def dock(plugin, iface, clean_settings, tmp_root):
    from geovec.plugin.settings import Setting

    Setting.BACKEND_COMMAND.set(str(tmp_root / "no-such-env"))  # no backend in these tests
    plugin.open_dock()
    wait_until(lambda: iface.messages(), 20, "the backend error")
    iface.bar.clearWidgets()
    return plugin


def test_regions_drawn_as_outlines_with_rank_labels_and_scores_scaled_to_the_results(dock, iface, shared_data):
    raster = _neon(iface, shared_data)
    results = dock.controller.results
    n = results.show(tile_response(raster), "text: tanks", QgsProject.instance().crs())
    assert n == 3
    regions, tiles = results.region_layer, results.layer
    assert regions.name() == "GeoVec regions" and regions.featureCount() == 6 and tiles.featureCount() == 3
    order = [node.layerId() for node in QgsProject.instance().layerTreeRoot().findLayers()]
    assert order.index(regions.id()) < order.index(tiles.id())  # regions drawn above the tiles
    feats = sorted(regions.getFeatures(), key=lambda f: f["rank"])
    assert [f["rank"] for f in feats] == list(range(1, 7))
    assert [round(f["score"], 4) for f in feats] == sorted((round(f["score"], 4) for f in feats), reverse=True)
    assert {f["hit_rank"] for f in feats} == {1, 2, 3} and {f["level"] for f in feats} == {"region"}
    for layer in (regions, tiles):
        renderer = layer.renderer()
        assert renderer.type() == "graduatedSymbol" and renderer.classAttribute() == "score"
        ranges = renderer.ranges()
        scores = [f["score"] for f in layer.getFeatures()]
        # colour classes span this result set, not -1..1
        assert abs(ranges[0].lowerValue() - min(scores)) < 1e-6 and abs(ranges[-1].upperValue() - max(scores)) < 1e-6
        for r in ranges:  # outlines only: the imagery stays visible
            sl = r.symbol().symbolLayer(0)
            assert sl.brushStyle() == Qt.NoBrush and sl.strokeStyle() == Qt.SolidLine
        assert layer.labelsEnabled() and layer.labeling().settings().fieldName == "rank"
    # the best region is zoomed to
    best = QgsGeometry(feats[0].geometry())
    assert iface.canvas.extent().contains(best.boundingBox())
    assert iface.canvas.extent().width() < raster.extent().width() / 2


def test_region_level_response_fills_the_table_with_regions(dock, iface, shared_data):
    raster = _neon(iface, shared_data)
    results = dock.controller.results
    n = results.show(region_response(raster), "text: a tree crown", QgsProject.instance().crs())
    table = dock.dock.table
    assert n == 4 and table.rowCount() == 4 and results.layer.featureCount() == 0
    assert {table.item(r, 2).text() for r in range(4)} == {"region"}
    assert table.item(0, 3).text() == "OSBS_029.tif"  # the source name, readable


def settle(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)


def _row_centre(table, row: int) -> QPoint:
    return table.visualItemRect(table.item(row, 0)).center()


def test_table_sorts_by_clicking_headers_and_a_clicked_row_keeps_the_imagery_visible(dock, iface, shared_data):
    raster = _neon(iface, shared_data)
    results = dock.controller.results
    results.show(tile_response(raster), "text: tanks", QgsProject.instance().crs())
    table = dock.dock.table
    dock.dock.resize(420, 900)
    header = table.horizontalHeader()
    x = header.sectionViewportPosition(1) + header.sectionSize(1) // 2
    QTest.mouseClick(header.viewport(), Qt.LeftButton, Qt.NoModifier, QPoint(x, header.height() // 2))
    first = [float(table.item(r, 1).text()) for r in range(3)]
    QTest.mouseClick(header.viewport(), Qt.LeftButton, Qt.NoModifier, QPoint(x, header.height() // 2))
    second = [float(table.item(r, 1).text()) for r in range(3)]
    assert first == sorted(first) and second == sorted(second, reverse=True) and first != second
    # click the row of tile rank 2 with the mouse
    row = [table.item(r, 0).text() for r in range(3)].index("2")
    QTest.mouseClick(table.viewport(), Qt.LeftButton, Qt.NoModifier, _row_centre(table, row))
    QCoreApplication.processEvents()
    feat = next(f for f in results.layer.getFeatures() if f["rank"] == 2)
    assert iface.canvas.extent().contains(feat.geometry().boundingBox())
    assert results.layer.selectedFeatureIds() == []  # no selection fill over the imagery
    assert results.selected_geometry() is not None
    # the imagery inside the hit is what the raster alone shows there (outlines only, no fill)
    e = raster.extent()  # inside hit 2, away from its regions and its label
    inside = QgsPointXY(e.xMinimum() + 0.6 * e.width(), e.yMinimum() + 0.4 * e.height())
    assert feat.geometry().contains(QgsGeometry.fromPointXY(inside))
    settle(1.3)  # the selection flash is over
    render_canvas(iface.canvas)
    with_hits = iface.canvas.grab().toImage()
    root = QgsProject.instance().layerTreeRoot()
    for layer in results.layers():
        root.findLayer(layer.id()).setItemVisibilityChecked(False)
    render_canvas(iface.canvas)
    without = iface.canvas.grab().toImage()
    p = to_pixel(iface.canvas, inside)
    assert with_hits.pixel(p.x(), p.y()) == without.pixel(p.x(), p.y())


def test_zoom_to_all_hits_and_thumbnail_tooltips(dock, iface, shared_data):
    raster = _neon(iface, shared_data)
    results = dock.controller.results
    results.show(tile_response(raster), "text: tanks", QgsProject.instance().crs())
    iface.canvas.setExtent(QgsRectangle(0, 0, 10, 10))
    dock.dock.zoom_all_button.click()
    extent = iface.canvas.extent()
    assert all(extent.contains(f.geometry().boundingBox()) for f in results.layer.getFeatures())
    html = results._tooltip(0)
    src = html.split('src="', 1)[1].split('"', 1)[0]
    from qgis.PyQt.QtCore import QUrl
    from qgis.PyQt.QtGui import QImage

    image = QImage(QUrl(src).toLocalFile())
    assert not image.isNull() and image.width() == 160
    colours = {image.pixel(x, y) for x in range(0, 160, 8) for y in range(0, 160, 8)}
    assert len(colours) > 20  # a piece of the orthophoto, not a blank square


def test_save_adds_the_suffix_verifies_and_exports_geojson_and_csv_at_full_precision(dock, iface, shared_data,
                                                                                     tmp_path):
    raster = _neon(iface, shared_data)
    ctl = dock.controller
    ctl.results.show(tile_response(raster), "box: 403012.123456789, 3283000.5 (EPSG:32617)",
                     QgsProject.instance().crs())
    path = ctl.save(str(tmp_path / "mine"))
    assert path == str(tmp_path / "mine.gpkg") and Path(path).is_file()
    level, text = iface.messages()[0]
    assert level == Qgis.Success and "Saved 9 hits" in text
    gj = ctl.save(str(tmp_path / "hits.geojson"), "geojson")
    data = json.loads(Path(gj).read_text())
    assert len(data["features"]) == 9
    assert data["features"][0]["properties"]["query"] == "box: 403012.123456789, 3283000.5 (EPSG:32617)"
    xs = [c[0] for f in data["features"] for c in f["geometry"]["coordinates"][0]]
    layer_x = [v.x() for f in ctl.results.layer.getFeatures() for v in f.geometry().vertices()]
    assert any(abs(x - lx) < 1e-6 for x in xs for lx in layer_x)
    csv = ctl.save(str(tmp_path / "hits"), "csv")
    lines = Path(csv).read_text().splitlines()
    assert csv.endswith(".csv") and lines[0].startswith("WKT,rank,score") and len(lines) == 10
    # the CSV opens in place through GDAL (its .prj) with numeric fields, drawn as outlines over the imagery
    back = QgsVectorLayer(csv, "back", "ogr")
    assert back.isValid() and back.crs() == ctl.results.layer.crs() and back.featureCount() == 9
    assert back.fields().field("score").isNumeric() and back.fields().field("rank").isNumeric()
    assert back.extent().contains(ctl.results.layer.extent().center())
    (added,) = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.source() == csv]
    symbols = added.renderer().symbols(QgsRenderContext())
    assert symbols and all(s.symbolLayer(0).brushStyle() == Qt.NoBrush for s in symbols)  # outlines only
    # a file that cannot be written: an error, never "Saved"
    iface.bar.clearWidgets()
    assert ctl.save(str(tmp_path / "no-such-dir" / "x.gpkg")) is None
    level, text = iface.messages()[0]
    assert level == Qgis.Critical and "Saved" not in text


def test_the_dock_scrolls_reopens_after_restart_and_unload_keeps_hits(iface, clean_settings, tmp_root, shared_data):
    import geovec
    from geovec.plugin.settings import Setting

    Setting.BACKEND_COMMAND.set(str(tmp_root / "no-such-env"))
    plugin = geovec.classFactory(iface)
    plugin.initGui()
    plugin.open_dock()
    assert isinstance(plugin.dock.widget(), QScrollArea) and plugin.dock.table.minimumHeight() >= 160
    raster = _neon(iface, shared_data)
    plugin.controller.results.show(tile_response(raster), "text: x", QgsProject.instance().crs())
    t0 = time.perf_counter()
    plugin.unload()
    assert time.perf_counter() - t0 < 0.5
    names = {lyr.name() for lyr in QgsProject.instance().mapLayers().values()}
    assert {"GeoVec hits", "GeoVec regions"} <= names  # the user's results are not deleted
    # next start: the dock that was open comes back by itself
    again = geovec.classFactory(iface)
    again.initGui()
    wait_until(lambda: again.dock is not None and again.dock.isVisible(), 5, "the dock to reopen")
    again.dock.close()  # closed by the user: stays closed next time
    assert Setting.DOCK_OPEN.get() is False
    again.unload()


def test_errors_offer_the_fix_once_and_go_to_the_log_panel(plugin, iface, clean_settings):
    from geovec.plugin.gui.settings_dialog import SettingsDialog
    from geovec.plugin.settings import Setting

    logged = []
    QgsApplication.messageLog().messageReceived.connect(lambda msg, tag, lvl: logged.append((tag, msg)))
    Setting.BACKEND_URL.set("http://127.0.0.1:9")
    Setting.AUTO_START.set(False)
    plugin.open_dock()
    wait_until(lambda: iface.messages(), 30, "the backend error")
    QCoreApplication.processEvents()
    assert len(iface.messages()) == 1  # one copy
    level, text = iface.messages()[0]
    assert level == Qgis.Critical and "`" not in text and "--" not in text and "geovec serve" not in text
    assert plugin.dock.status_label.text() != text.removeprefix("GeoVec ")
    assert any(tag == "GeoVec" and "not reachable" in msg for tag, msg in logged)
    button = [b for b in iface.bar.findChildren(QPushButton) if b.text() == "Open settings"]
    assert button
    QTest.mouseClick(button[0], Qt.LeftButton)
    wait_until(lambda: [d for d in iface.window.findChildren(SettingsDialog) if d.isVisible()], 5, "the settings")
    dialog = [d for d in iface.window.findChildren(SettingsDialog) if d.isVisible()][0]
    dialog.reject()


def test_index_dialog_picks_folders_and_refuses_an_empty_one(dock, iface, tmp_path, shared_data):
    from qgis.gui import QgsFileWidget

    from geovec.plugin.gui.index_dialog import IndexDialog

    got = []
    dock.dock.newIndexRequested.disconnect()
    dock.dock.newIndexRequested.connect(got.append)
    QTest.mouseClick(dock.dock.new_index_button, Qt.LeftButton)
    dialog = dock.dock.index_panel.dialog
    assert isinstance(dialog, IndexDialog) and dialog.isVisible()
    assert dialog.index.storageMode() == QgsFileWidget.GetDirectory  # a folder picker
    empty = tmp_path / "empty"
    empty.mkdir()
    dialog.folder.setFilePath(str(empty))
    assert dialog.index.filePath() == str(empty) + "_geovec"
    QTest.mouseClick(dialog.buttons.buttons()[0], Qt.LeftButton)
    assert dialog.isVisible() and "no GeoTIFF" in dialog.error.text() and not got
    dialog.folder.setFilePath(str(shared_data / "neon_osbs"))
    dialog.index.setFilePath(str(tmp_path / "idx"))
    QTest.keyClicks(dialog.bands, "3,2,x")
    dialog.accept()
    assert dialog.isVisible() and "bands" in dialog.error.text()
    dialog.bands.setText("3,2,1")
    dialog.tile_size.setValue(128)
    dialog.regions.setChecked(True)
    dialog.accept()
    assert not dialog.isVisible() and len(got) == 1
    body = got[0].to_request()
    assert body["tiling"]["tile_size"] == 128 and body["tiling"]["bands"] == [3, 2, 1] and body["regions"] == ""


def test_search_in_view_and_compositional_parameters(dock, iface, shared_data):
    raster = _neon(iface, shared_data, "EPSG:3857")
    ctl = dock.controller
    sent = []
    ctl.search = sent.append
    d = dock.dock
    d.index_combo.setEditText("/some/index")
    d.level_combo.setCurrentIndex(1)
    QTest.mouseClick(d.in_view_check, Qt.LeftButton)
    QTest.keyClicks(d.text_edit, "next to water")
    d.box_button.click()
    e = QgsCoordinateTransform(raster.crs(), iface.canvas.mapSettings().destinationCrs(),
                               QgsProject.instance()).transformBoundingBox(raster.extent())
    a = to_pixel(iface.canvas, QgsPointXY(e.xMinimum() + 0.2 * e.width(), e.yMaximum() - 0.2 * e.height()))
    b = to_pixel(iface.canvas, QgsPointXY(e.xMinimum() + 0.4 * e.width(), e.yMaximum() - 0.4 * e.height()))
    drag_box(iface.canvas, a, b)
    assert len(sent) == 1
    body = sent[0].to_request()
    assert body["text"] == "next to water" and len(body["box"]) == 4  # one compositional query
    assert body["level"] == "region" and body["within_crs"] == "EPSG:3857" and body["within_mode"] == "centre"
    assert "rerank" not in body  # auto: the search task asks the index whether it stores regions
    view = QgsGeometry.fromWkt(QgsGeometry.fromPolygonXY([[QgsPointXY(x, y) for x, y in json.loads(
        body["within"])["coordinates"][0]]]).asWkt())
    assert view.boundingBox().toString(2) == iface.canvas.extent().toString(2)
    # a selected polygon confines the search instead of the view
    poly = QgsVectorLayer("Polygon?crs=EPSG:32617", "area", "memory")
    QgsProject.instance().addMapLayer(poly)
    from qgis.core import QgsFeature

    f = QgsFeature()
    r = raster.extent()
    f.setGeometry(QgsGeometry.fromRect(QgsRectangle(r.xMinimum(), r.yMinimum(), r.center().x(), r.center().y())))
    poly.dataProvider().addFeatures([f])
    poly.selectAll()
    iface.canvas.setCurrentLayer(poly)
    d.text_edit.clear()
    QTest.keyClicks(d.text_edit, "water")
    QTest.keyClick(d.text_edit, Qt.Key_Return)
    body = sent[-1].to_request()
    assert body["within_crs"] == "EPSG:32617" and "box" not in body and body["text"] == "water"
    ring = json.loads(body["within"])["coordinates"][0]
    assert QgsGeometry.fromPolygonXY([[QgsPointXY(x, y) for x, y in ring]]).area() == pytest.approx(r.area() / 4)


def test_index_dialog_says_first_when_the_model_is_missing_and_offers_the_tiny_model(dock, iface, tmp_path,
                                                                                     monkeypatch, backend_python):
    from geovec.plugin.gui.model_choice import TINY_WARNING
    from geovec.plugin.settings import Setting

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty model cache: the offline first run
    Setting.BACKEND_COMMAND.set(backend_python)
    dock.dock.index_panel.models = [{"name": "vlm2vec-qwen2vl-2b", "kind": "preset",
                                     "description": "Qwen/Qwen2-VL-2B-Instruct + some/adapter"}]
    QTest.mouseClick(dock.dock.new_index_button, Qt.LeftButton)
    dialog = dock.dock.index_panel.dialog
    form = dialog.layout()
    assert form.itemAt(0, form.FieldRole).widget() is dialog.model  # asked before any folder
    assert "not on this computer" in dialog.model.warning.text() and "tiny test model" in dialog.model.warning.text()
    (tmp_path / "hf" / "hub" / "models--Qwen--Qwen2-VL-2B-Instruct").mkdir(parents=True)
    dialog.model.edit.clear()
    QTest.keyClicks(dialog.model.edit, "vlm2vec-qwen2vl-2b")
    assert dialog.model.warning.text() == ""
    QTest.mouseClick(dialog.model.tiny_button, Qt.LeftButton)
    proc = dialog.model.process
    wait_until(lambda: proc.state() == proc.NotRunning, 180, "the tiny model to be written")
    QCoreApplication.processEvents()
    assert dialog.model.text().endswith("tiny-model") and (Path(dialog.model.text()) / "config.json").is_file()
    assert dialog.model.warning.text() == TINY_WARNING
    dialog.reject()

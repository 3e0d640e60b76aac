"""The plugin against a real ``geovec serve`` (tiny model) over the real rasters in ../shared/data."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import ARTIFACTS, wait_until
from helpers import (
    StallProbe,
    add_raster,
    click,
    drag_box,
    render_canvas,
    to_pixel,
    wait_backend,
    wait_search,
)
from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QCoreApplication, Qt
from qgis.PyQt.QtTest import QTest

MAX_STALL_S = 0.200


def test_index_job_runs_to_completion_with_a_responsive_ui(built_index):
    # by value: unloading the plugin drops its modules, so a later import makes a new Outcome enum
    assert built_index["outcome"].value == "success", built_index["message"]
    job = built_index["result"]
    assert job["state"] == "done" and job["tiles_done"] > 0 and job["tiles_done"] == job["tiles_total"]
    assert built_index["progress"] and built_index["progress"][-1] == 100
    assert "Indexed" in built_index["label"] and built_index["path"] in built_index["recent"]
    level, text = built_index["messages"][0]
    assert level in (Qgis.Success, Qgis.Warning) and "Indexed" in text
    assert built_index["ticks"] > 10
    assert built_index["max_gap"] < MAX_STALL_S, f"UI stalled {built_index['max_gap'] * 1000:.0f} ms"


def _box_query(plugin, iface, shared_data, project_crs: str) -> tuple[QgsVectorLayer, QgsGeometry]:
    raster = add_raster(str(shared_data / "neon_osbs" / "OSBS_029.tif"))  # first layer sets the project CRS
    QgsProject.instance().setCrs(QgsCoordinateReferenceSystem(project_crs))
    canvas = iface.canvas
    xform = QgsCoordinateTransform(raster.crs(), canvas.mapSettings().destinationCrs(), QgsProject.instance())
    canvas.setExtent(xform.transformBoundingBox(raster.extent()))
    render_canvas(canvas)
    e = raster.extent()  # a box over the upper-left quarter of the orthophoto, drawn in canvas pixels
    a = to_pixel(canvas, xform.transform(QgsPointXY(e.xMinimum() + 0.1 * e.width(), e.yMaximum() - 0.1 * e.height())))
    b = to_pixel(canvas, xform.transform(QgsPointXY(e.xMinimum() + 0.4 * e.width(), e.yMaximum() - 0.4 * e.height())))
    plugin.dock.k_spin.setValue(8)
    plugin.dock.box_button.click()
    assert canvas.mapTool() is plugin.controller.box_tool
    ta, tb = canvas.getCoordinateTransform().toMapCoordinates(a), canvas.getCoordinateTransform().toMapCoordinates(b)
    probe = StallProbe().start()
    drag_box(canvas, a, b)
    wait_search(plugin)
    probe.stop()
    assert probe.max_gap < MAX_STALL_S, f"UI stalled {probe.max_gap * 1000:.0f} ms during a search"
    return plugin.controller.results.layer, QgsGeometry.fromRect(QgsRectangle(ta, tb))


def _check_hits(layer: QgsVectorLayer, crs: str, query_prefix: str, k: int) -> list:
    assert layer is not None and layer.crs().authid() == crs
    feats = sorted(layer.getFeatures(), key=lambda f: f["rank"])
    assert 0 < len(feats) <= k
    assert [f["rank"] for f in feats] == list(range(1, len(feats) + 1))
    scores = [f["score"] for f in feats]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    assert all(f["source"].endswith(".tif") and f["query"].startswith(query_prefix) for f in feats)
    assert all(f.geometry().isGeosValid() and f.geometry().area() > 0 for f in feats)
    return feats


@pytest.mark.parametrize("project_crs", ["EPSG:32617", "EPSG:3857"])
def test_box_tool_on_the_orthophoto(dock_on_index, iface, shared_data, project_crs):
    plugin = dock_on_index
    layer, query_box = _box_query(plugin, iface, shared_data, project_crs)
    feats = _check_hits(layer, project_crs, "box:", 8)
    # "exclude the query's own tiles": no hit overlaps the drawn box
    assert not [f["rank"] for f in feats if f.geometry().intersection(query_box).area() > 1e-6 * query_box.area()]
    # the NEON hits lie on the orthophoto, whatever the project CRS
    neon = [f for f in feats if f["source"].endswith("OSBS_029.tif")]
    raster_extent = QgsGeometry.fromRect(QgsCoordinateTransform(
        QgsCoordinateReferenceSystem("EPSG:32617"), layer.crs(), QgsProject.instance()).transformBoundingBox(
        QgsProject.instance().mapLayersByName("NEON OSBS_029")[0].extent()))
    assert all(raster_extent.buffer(1.0, 4).contains(f.geometry()) for f in neon)
    # the table mirrors the layer; selecting a row zooms to that hit
    table = plugin.dock.table
    assert table.rowCount() == len(feats)
    assert [table.item(r, 0).text() for r in range(table.rowCount())] == [str(f["rank"]) for f in feats]
    table.selectRow(1)
    QCoreApplication.processEvents()
    assert iface.canvas.extent().contains(feats[1].geometry().boundingBox())
    outlined = plugin.controller.results.selected_geometry()  # an outline, not a selection fill
    assert layer.selectedFeatureIds() == [] and outlined is not None
    assert outlined.boundingBox().toString(1) == QgsCoordinateTransform(
        layer.crs(), iface.canvas.mapSettings().destinationCrs(), QgsProject.instance()).transformBoundingBox(
        feats[1].geometry().boundingBox()).toString(1)


def test_point_tool_with_location_conditioning_in_another_crs(dock_on_index, iface, shared_data):
    plugin = dock_on_index
    raster = add_raster(str(shared_data / "neon_osbs" / "OSBS_029.tif"))
    QgsProject.instance().setCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    canvas = iface.canvas
    xform = QgsCoordinateTransform(raster.crs(), canvas.mapSettings().destinationCrs(), QgsProject.instance())
    canvas.setExtent(xform.transformBoundingBox(raster.extent()))
    render_canvas(canvas)
    plugin.dock.location_check.setChecked(True)
    plugin.dock.k_spin.setValue(5)
    plugin.dock.point_button.click()
    assert canvas.mapTool() is plugin.controller.point_tool
    centre = xform.transform(raster.extent().center())
    click(canvas, to_pixel(canvas, centre))
    wait_search(plugin)
    feats = _check_hits(plugin.controller.results.layer, "EPSG:3857", "point:", 5)
    clicked = QgsGeometry.fromPointXY(canvas.getCoordinateTransform().toMapCoordinates(to_pixel(canvas, centre)))
    assert not [f["rank"] for f in feats if f.geometry().contains(clicked)]


def test_text_search_and_save_to_geopackage(dock_on_index, iface, tmp_path):
    plugin = dock_on_index
    QgsProject.instance().setCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    plugin.dock.text_edit.setText("water")
    plugin.dock.k_spin.setValue(6)
    plugin.dock.text_button.click()
    wait_search(plugin)
    feats = _check_hits(plugin.controller.results.layer, "EPSG:4326", "text: water", 6)
    path = plugin.controller.save(str(tmp_path / "hits"))  # no suffix typed: .gpkg is added
    assert path == str(tmp_path / "hits.gpkg")
    saved = QgsVectorLayer(path + "|layername=geovec_hits", "saved", "ogr")
    assert saved.isValid() and saved.crs().authid() == "EPSG:4326"
    assert sorted(f["rank"] for f in saved.getFeatures() if f["level"] == "tile") == [f["rank"] for f in feats]
    assert iface.messages()[0][0] == Qgis.Success and "Saved" in iface.messages()[0][1]


def test_show_as_heat_map_paints_every_scene_and_is_replaced_by_the_next_search(dock_on_index, iface):
    from geovec.plugin import heatmap

    plugin = dock_on_index
    project = QgsProject.instance()
    project.setCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    plugin.dock.text_edit.setText("water")
    plugin.dock.heat_check.setChecked(True)
    try:
        plugin.dock.text_button.click()
        wait_search(plugin)
        group = project.layerTreeRoot().findGroup(heatmap.GROUP)
        assert group is not None and "heat map of" in plugin.dock.status_label.text()
        layers = [node.layer() for node in group.findLayers()]
        scenes = {lyr.source() for lyr in layers}
        assert len(layers) >= 4 and len(scenes) == len(layers)  # one per indexed scene of ../shared/data
        for lyr in layers:
            assert lyr.isValid() and lyr.crs().isValid() and lyr.bandCount() == 1
            assert lyr.renderer().type() == "singlebandpseudocolor"  # the legend the backend wrote, loaded
            stats = lyr.dataProvider().bandStatistics(1)
            assert -1.0 <= stats.minimumValue <= stats.maximumValue <= 1.0  # cosine similarities
        neon = [lyr for lyr in layers if "OSBS_029" in lyr.name()]
        assert neon and neon[0].crs().authid() == "EPSG:32617"  # on the scene's own grid
        plugin.dock.heat_check.setChecked(False)
        plugin.dock.text_button.click()
        wait_search(plugin)
        assert not any(Path(s).exists() for s in scenes)  # the replaced maps' files are gone too
        assert not [lyr for lyr in project.mapLayers().values() if lyr.customProperty(heatmap.MARK)]
        assert project.layerTreeRoot().findGroup(heatmap.GROUP) is None
    finally:
        plugin.dock.heat_check.setChecked(False)
        heatmap.clear()


def test_processing_run_both_algorithms(use_server, shared_data, tmp_path, plugin):
    import processing

    res = processing.run("geovec:index_folder", {"FOLDER": str(shared_data / "neon_osbs"), "TILE_SIZE": 200,
                                                 "OVERLAP": 0.0, "MODEL": use_server["model"],
                                                 "INDEX": str(tmp_path / "neon_index")})
    assert res["TILES"] >= 4 and res["SCENES"] == 1 and Path(res["INDEX"]).is_dir()
    out = processing.run("geovec:search_text", {"INDEX": res["INDEX"], "TEXT": "trees", "K": 3,
                                                "CRS": "EPSG:3857", "OUTPUT": "memory:"})
    layer = out["OUTPUT"]
    layer = layer if isinstance(layer, QgsVectorLayer) else QgsProject.instance().mapLayer(layer)
    feats = _check_hits(layer, "EPSG:3857", "text: trees", 3)
    assert len(feats) == 3 and {f.fields().names()[0] for f in feats} == {"rank"}


def test_processing_without_backend_is_a_processing_error(clean_settings, plugin, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    from geovec.plugin.settings import Setting

    Setting.BACKEND_COMMAND.set(str(tmp_path / "no-such-env"))  # auto-start on, but nothing to start

    with pytest.raises(QgsProcessingException, match="No GeoVec backend is running"):
        processing.run("geovec:search_text", {"INDEX": "/nonexistent", "TEXT": "x", "OUTPUT": "memory:"})
    Setting.AUTO_START.set(False)
    with pytest.raises(QgsProcessingException, match="Start the backend when none answers"):
        processing.run("geovec:search_text", {"INDEX": "/nonexistent", "TEXT": "x", "OUTPUT": "memory:"})


def test_search_errors_from_the_backend_reach_the_message_bar(dock_on_index, iface, tmp_path):
    plugin = dock_on_index
    plugin.dock.index_combo.setEditText(str(tmp_path / "not-an-index"))
    plugin.dock.text_edit.setText("water")
    plugin.dock.text_button.click()
    wait_until(lambda: iface.messages(), 60, "the error")
    level, text = iface.messages()[0]
    assert level == Qgis.Critical and "failed" in text and "not-an-index" in text
    assert "geovec index" not in text and "New index from folder" in text  # dock words, not a command line


def test_autostart_then_unload_stops_the_backend(iface, clean_settings, backend_python):
    import geovec
    from geovec.plugin.settings import Setting

    Setting.BACKEND_COMMAND.set(backend_python)
    Setting.DEVICE.set("cpu")
    plugin = geovec.classFactory(iface)
    plugin.initGui()
    plugin.open_dock()
    wait_backend(plugin, 120)
    proc = plugin.controller.backend.process
    assert proc is not None and proc.poll() is None
    wait_until(lambda: "device: cpu" in plugin.dock.backend_label.text(), 10, "the status line")
    assert "Backend " in plugin.dock.backend_label.text() and "model:" in plugin.dock.backend_label.text()
    assert f"--parent-pid {os.getpid()}" in " ".join(proc.args)  # it dies with this QGIS
    log = plugin.controller.backend.log_path  # private: 0600 in a 0700 folder
    assert log.stat().st_mode & 0o777 == 0o600 and log.parent.stat().st_mode & 0o777 == 0o700
    # a backend that dies is shown as lost; Connect starts a new one
    proc.kill()
    wait_until(lambda: "lost" in plugin.dock.backend_label.text(), 20, "the status line to show a lost backend")
    plugin.dock.reconnect_button.click()
    wait_until(lambda: plugin.controller.backend.owned and plugin.controller.backend.connection is not None, 120,
               "a new backend")
    proc = plugin.controller.backend.process
    wait_until(lambda: "device: cpu" in plugin.dock.backend_label.text(), 10, "the status line")
    t0 = time.perf_counter()
    plugin.unload()
    took = time.perf_counter() - t0
    assert took < 0.5, f"unload blocked the UI thread for {took:.2f} s"
    wait_until(lambda: proc.poll() is not None, 15, "the backend to stop after unload")


def test_screenshot_of_hits_over_the_orthophoto(dock_on_index, iface, shared_data):
    plugin = dock_on_index
    layer, _ = _box_query(plugin, iface, shared_data, "EPSG:32617")
    raster = QgsProject.instance().mapLayersByName("NEON OSBS_029")[0]
    iface.canvas.setExtent(raster.extent().buffered(5))
    render_canvas(iface.canvas)
    QCoreApplication.processEvents()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "qgis_geovec_dock.png"
    image = iface.window.grab().toImage()
    assert image.save(str(path))
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert image.width() >= 1000 and len(colours) > 500  # a rendered orthophoto, not a blank window
    # WHERE the outlines are: the pixels the hit layer changes (the canvas with it vs without it) lie on the
    # hits' edges as the map -> screen transform worked out here (canvas extent and size, not asked of QGIS)
    # puts them, and (labels aside) nowhere else
    deadline = time.monotonic() + 1.2  # let the flash of the best hit (a filled highlight) end
    while time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    canvas = iface.canvas
    render_canvas(canvas)
    with_hits = canvas.grab().toImage()
    layers = canvas.layers()
    canvas.setLayers([lyr for lyr in layers if lyr.id() != layer.id()])
    render_canvas(canvas)
    without = canvas.grab().toImage()
    canvas.setLayers(layers)
    w, h = with_hits.width(), with_hits.height()
    assert (without.width(), without.height()) == (w, h)

    def changed(x: int, y: int) -> bool:
        a, b = with_hits.pixel(x, y), without.pixel(x, y)
        return any(abs(((a >> s) & 255) - ((b >> s) & 255)) > 30 for s in (0, 8, 16))

    edges, centres = _screen_edges(layer, canvas, w, h)
    assert len(edges) >= 4 * layer.featureCount() > 0
    found, samples = _along(edges, w, h, changed)
    assert samples > 40 and found >= 0.9 * samples, (found, samples)
    shifted = [((x0 + 8, y0 + 8), (x1 + 8, y1 + 8)) for (x0, y0), (x1, y1) in edges]
    assert _along(shifted, w, h, changed)[0] < 0.3 * samples  # the check tells a misplaced outline
    drawn = [(x, y) for x in range(0, w, 2) for y in range(0, h, 2) if changed(x, y)]
    stray = [p for p in drawn if min(_to_segment(p, e) for e in edges) > 4
             and not any(abs(p[0] - cx) <= 16 and abs(p[1] - cy) <= 12 for cx, cy in centres)]  # rank labels
    assert len(drawn) > 100 and len(stray) <= 0.02 * len(drawn), (len(stray), len(drawn), stray[:5])


def _screen_edges(layer, canvas, width: int, height: int) -> tuple[list, list]:
    """The layer's polygon edges and centres in canvas pixels: ((x - xmin), (ymax - y)) / map units per pixel."""
    ext = canvas.extent()
    mupp = ext.width() / width
    assert abs(ext.height() / height - mupp) <= 0.01 * mupp  # square pixels
    xform = QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(), QgsProject.instance())

    def px(p) -> tuple[float, float]:
        return (p.x() - ext.xMinimum()) / mupp, (ext.yMaximum() - p.y()) / mupp

    edges, centres = [], []
    for f in layer.getFeatures():
        g = QgsGeometry(f.geometry())
        g.transform(xform)
        for part in g.asMultiPolygon() if g.isMultipart() else [g.asPolygon()]:
            pts = [px(p) for p in part[0]]
            edges += list(zip(pts[:-1], pts[1:], strict=True))
        centres.append(px(g.centroid().asPoint()))
    return edges, centres


def _along(edges: list, w: int, h: int, hit) -> tuple[int, int]:
    """(points where ``hit(x, y)`` holds within 2 px, points sampled) every 4 px along ``edges``, corners left out."""
    found = samples = 0
    for (x0, y0), (x1, y1) in edges:
        n = max(2, int(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5 / 4))
        for i in range(1, n):
            x, y = int(round(x0 + (x1 - x0) * i / n)), int(round(y0 + (y1 - y0) * i / n))
            if 3 <= x < w - 3 and 3 <= y < h - 3:
                samples += 1
                found += any(hit(x + dx, y + dy) for dx in range(-2, 3) for dy in range(-2, 3))
    return found, samples


def _to_segment(p: tuple[int, int], edge) -> float:
    (x0, y0), (x1, y1) = edge
    dx, dy = x1 - x0, y1 - y0
    t = 0.0 if dx == dy == 0 else max(0.0, min(1.0, ((p[0] - x0) * dx + (p[1] - y0) * dy) / (dx * dx + dy * dy)))
    return float(((p[0] - x0 - t * dx) ** 2 + (p[1] - y0 - t * dy) ** 2) ** 0.5)


def test_unload_while_an_index_job_runs_does_not_block(dock_on_index, shared_data, tmp_path):
    from geovec.plugin.params import IndexParams

    plugin = dock_on_index
    ctl = plugin.controller
    ctl.start_index(IndexParams(str(shared_data), str(tmp_path / "idx"), model=None, tile_size=64))
    wait_until(lambda: ctl.index_task is not None and ctl.index_task.job_id, 30, "the job to start")
    task = ctl.index_task
    t0 = time.perf_counter()
    plugin.unload()
    took = time.perf_counter() - t0
    assert took < 0.5, f"unload blocked the UI thread for {took:.2f} s while a job ran"
    assert task.receivers(task.status) == 0 and task.on_done is None  # nothing of the dock left connected
    wait_until(lambda: task.outcome is not None and not task.isActive(), 60, "the cancelled task to end")
    plugin.initGui()  # the fixture unloads it again


def test_a_job_the_backend_already_runs_appears_in_the_dock(plugin, iface, use_server, shared_data, tmp_path):
    from geovec.plugin.client import GeoVecClient
    from geovec.plugin.params import Connection, IndexParams

    conn = Connection(use_server["url"], use_server["token"])
    job = GeoVecClient(conn).start_job(IndexParams(str(shared_data / "neon_osbs"), str(tmp_path / "idx"),
                                                   model=use_server["model"], tile_size=64))
    plugin.open_dock()  # e.g. a job the backend resumed by itself at start
    ctl = plugin.controller
    wait_until(lambda: ctl.index_task is not None, 30, "the dock to follow the running job")
    assert ctl.index_task.job_id == job["job_id"] and plugin.dock.cancel_button.isEnabled()
    wait_until(lambda: ctl.index_task is None, 300, "the job to finish")
    assert "Indexed" in plugin.dock.job_label.text() and str(tmp_path / "idx") in plugin.dock.job_label.text()


def test_index_summary_button(dock_on_index, built_index):
    plugin = dock_on_index
    QTest.mouseClick(plugin.dock.summary_button, Qt.LeftButton)
    wait_until(lambda: "on disk" in plugin.dock.job_label.text(), 60, "the index summary")
    text = plugin.dock.job_label.text()
    assert "scenes" in text and f"{built_index['result']['summary']['tiles']} tiles" in text and "model" in text

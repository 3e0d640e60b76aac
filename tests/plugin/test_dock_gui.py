"""The dock against a real ``geovec serve``: region mode "auto", search in view by tile centre, errors in the
words of the GUI, a failed search clears the map, the model default, the first-run error, the dock's width."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import wait_until
from helpers import add_raster, render_canvas, wait_search
from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QCoreApplication, Qt
from qgis.PyQt.QtTest import QTest

#: what a GUI message must never say: command-line flags and commands
CLI = re.compile(r"(?<![\w-])--[a-z]|geovec (index|serve|search)\b|`")


def _neon(iface, shared_data, crs: str = "EPSG:32617"):
    raster = add_raster(str(shared_data / "neon_osbs" / "OSBS_029.tif"))
    QgsProject.instance().setCrs(QgsCoordinateReferenceSystem(crs))
    xform = QgsCoordinateTransform(raster.crs(), iface.canvas.mapSettings().destinationCrs(), QgsProject.instance())
    iface.canvas.setExtent(xform.transformBoundingBox(raster.extent()))
    render_canvas(iface.canvas)
    return raster


def _search_text(plugin, text: str, ok: bool = True) -> None:
    dock = plugin.dock
    dock.text_edit.clear()
    QTest.keyClicks(dock.text_edit, text)
    QTest.keyClick(dock.text_edit, Qt.Key_Return)
    if ok:
        wait_search(plugin)
    else:
        ctl = plugin.controller
        wait_until(lambda: ctl.tasks, 10, "a search task to start")
        wait_until(lambda: not ctl.tasks, 120, "the search to finish")


def _index_with_the_dock(plugin, folder: str, index: str, model: str, regions: str | None):
    """Run one indexing job through the dock's controller; returns the finished task."""
    from geovec.plugin.params import IndexParams

    ctl = plugin.controller
    ctl.start_index(IndexParams(folder, index, model=model, tile_size=128, regions=regions))
    wait_until(lambda: ctl.index_task is not None, 10, "the index task")
    task = ctl.index_task
    wait_until(lambda: ctl.index_task is None, 600, "the indexing job")
    return task


@pytest.fixture(scope="module")
def neon_folder(tmp_root: Path, shared_data: Path) -> Path:
    """A folder holding only the NEON orthophoto (a link: the raster is read in place)."""
    folder = tmp_root / "neon-only"
    if not folder.exists():
        folder.mkdir()
        (folder / "OSBS_029.tif").symlink_to(shared_data / "neon_osbs" / "OSBS_029.tif")
    return folder


@pytest.fixture(scope="module")
def regions_index(tmp_root: Path, neon_folder: Path, backend_python: str, tiny_model: Path) -> str:
    """The NEON orthophoto indexed with stored regions (128 px tiles), by the backend's CLI."""
    index = tmp_root / "neon-with-regions"
    if not (index / "index.json").exists():
        subprocess.run([backend_python, "-m", "geovec.backend", "index", str(neon_folder), "--index", str(index),
                        "--model", str(tiny_model), "--tile-size", "128", "--regions", "--device", "cpu",
                        "--dtype", "fp32", "--no-progress"], check=True, capture_output=True, timeout=600)
    return str(index)


def test_region_mode_auto_uses_stored_regions_and_reranks_only_without(dock_on_index, iface, shared_data,
                                                                        regions_index, built_index):
    plugin = dock_on_index
    ctl = plugin.controller
    with_regions = regions_index
    _neon(iface, shared_data)
    dock = plugin.dock
    dock.level_combo.setCurrentIndex(dock.level_combo.findData("region"))
    assert dock.rerank_spin.value() == 0  # auto
    dock.index_combo.setEditText(with_regions)
    _search_text(plugin, "a tree crown")
    body = ctl.workflows.query  # the request the search sent
    assert body["level"] == "region" and "rerank" not in body  # the index's own regions, no query-time rerank
    assert ctl.results.region_layer.featureCount() > 0
    # an index without stored regions: auto scores the regions of the top tiles at query time
    dock.index_combo.setEditText(built_index["path"])
    _search_text(plugin, "a tree crown")
    assert ctl.workflows.query["rerank"] == 20 and ctl.results.region_layer.featureCount() > 0
    # a number the user gives is kept
    dock.rerank_spin.setValue(3)
    dock.index_combo.setEditText(with_regions)
    _search_text(plugin, "a tree crown")
    assert ctl.workflows.query["rerank"] == 3


def test_search_in_view_keeps_hits_centred_in_the_view_and_sends_the_centre_rule(dock_on_index, iface, shared_data):
    plugin = dock_on_index
    raster = _neon(iface, shared_data)
    e = raster.extent()
    view = QgsRectangle(e.xMinimum(), e.yMinimum(), e.xMinimum() + 0.45 * e.width(), e.yMaximum())
    iface.canvas.setExtent(view)
    render_canvas(iface.canvas)
    view = iface.canvas.extent()  # what the canvas really shows (its aspect ratio)
    dock = plugin.dock
    dock.k_spin.setValue(20)
    dock.in_view_check.setChecked(True)
    _search_text(plugin, "trees")
    ctl = plugin.controller
    assert ctl.workflows.query["within_mode"] == "centre"
    tiles = list(ctl.results.layer.getFeatures())
    regions = list(ctl.results.region_layer.getFeatures())
    assert tiles
    for f in tiles + regions:  # every tile and region outline drawn is centred in the view
        assert view.contains(f.geometry().boundingBox().center()), f.geometry().boundingBox().toString(1)


def test_backend_errors_name_dock_controls_and_a_failed_search_clears_old_hits(dock_on_index, iface, shared_data,
                                                                                tmp_path):
    plugin = dock_on_index
    ctl = plugin.controller
    _neon(iface, shared_data)
    _search_text(plugin, "water")
    assert ctl.results.layer.featureCount() > 0 and plugin.dock.table.rowCount() > 0
    iface.bar.clearWidgets()
    # a click outside every indexed scene: the backend names --crs / --raster; the dock names its own controls
    ctl.search_point(QgsPointXY(0.0, 0.0), QgsCoordinateReferenceSystem("EPSG:32617"))
    wait_until(lambda: not ctl.tasks and iface.messages(), 60, "the failed search")
    level, text = iface.messages()[0]
    assert level == Qgis.Critical and not CLI.search(text), text
    assert "outside" in text and "imagery" in text and "index" in text
    assert ctl.results.layer.featureCount() == 0 and ctl.results.region_layer.featureCount() == 0
    assert plugin.dock.table.rowCount() == 0  # no stale answer left on the map or in the table
    # not an index: the hint names the dock's 'New index from folder…'
    iface.bar.clearWidgets()
    plugin.dock.index_combo.setEditText(str(tmp_path))
    _search_text(plugin, "water", ok=False)
    level, text = iface.messages()[0]
    assert level == Qgis.Critical and not CLI.search(text) and "New index from folder" in text, text


def test_region_level_on_an_index_without_regions_reads_as_dock_controls(qgis_app):
    """The backend's own error body for --level region without --rerank, worded by the plugin."""
    from geovec.plugin.client import _error_from_body

    bodies = [
        ("bad_input", "index /data/idx stores no regions, so --level region needs --rerank N",
         "add --rerank N (score the candidates of the top N tiles), or re-index with --regions"),
        ("out_of_bounds", "point [1.0, 2.0] in EPSG:4326 lies outside every indexed scene (3 scenes)",
         "check --crs, or give the raster it was drawn on with --raster"),
        ("not_found", "no index at '/data/x' (missing index.json)",
         "build one with: geovec index FOLDER --index DIR --model MODEL"),
        ("index_corrupt", "index /data/x: vectors.hnsw is damaged",
         "rebuild the vector file from SQLite with: geovec index FOLDER --repair --index /data/x"),
        ("bad_input", "the marks need a label to be saved", "pass --label (e.g. the class the good hits show)"),
    ]
    for code, detail, hint in bodies:
        err = _error_from_body(400, json.dumps({"error": code, "detail": detail, "hint": hint}).encode(), "x")
        shown = f"{err.message} — {err.hint}"
        assert not CLI.search(shown), shown
        assert hint in err.details  # the backend's own words go to the log panel
    err = _error_from_body(400, json.dumps({"error": "bad_input", "detail": bodies[0][1],
                                            "hint": bodies[0][2]}).encode(), "x")
    assert "Regions from top tiles" in err.message and "Also index regions inside tiles" in err.hint


def test_a_failed_model_is_not_saved_as_the_default_and_a_missing_folder_is_caught_in_the_dialog(
        dock_on_index, iface, server, tmp_path, neon_folder):
    from geovec.plugin.settings import Setting

    plugin = dock_on_index
    Setting.MODEL.set("vlm2vec-qwen2vl-2b")
    task = _index_with_the_dock(plugin, str(neon_folder), str(tmp_path / "idx-ok"), server["model"], regions=None)
    assert task.outcome.value == "success", iface.messages()
    assert Setting.MODEL.get() == server["model"]  # a model that indexed becomes the default
    # a folder that exists but holds no loadable model: the job fails, the default stays
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    task = _index_with_the_dock(plugin, str(neon_folder), str(tmp_path / "idx"), str(broken), regions=None)
    assert task.outcome.value == "failed"
    level, text = iface.messages()[0]
    assert level == Qgis.Critical and not CLI.search(text), text
    assert Setting.MODEL.get() == server["model"]
    # the dialog refuses a model folder that does not exist, before any job starts
    got = []
    plugin.dock.newIndexRequested.disconnect()
    plugin.dock.newIndexRequested.connect(got.append)
    QTest.mouseClick(plugin.dock.new_index_button, Qt.LeftButton)
    dialog = plugin.dock.index_panel.dialog
    # it opens on the model that indexed (the first-run "not on this computer" warning does not come back)
    assert dialog.model.text() == server["model"] and "not on this computer" not in dialog.model.warning.text()
    dialog.model.edit.setText(str(tmp_path / "no-such-model"))
    assert "does not exist" in dialog.model.warning.text()
    dialog.folder.setFilePath(str(neon_folder))
    dialog.index.setFilePath(str(tmp_path / "idx2"))
    dialog.accept()
    assert dialog.isVisible() and "does not exist" in dialog.error.text() and not got
    dialog.model.edit.setText(server["model"])
    dialog.accept()
    assert not dialog.isVisible() and len(got) == 1 and got[0].model == server["model"]
    assert Setting.MODEL.get() == server["model"]


def test_the_first_run_error_goes_away_once_the_backend_is_there(plugin, iface, use_server, server):
    from geovec.plugin.settings import Setting

    Setting.TOKEN_FILE.set(str(Path(server["token_file"]).with_name("nothing-here.json")))
    plugin.open_dock()
    wait_until(lambda: iface.messages(), 30, "the first-run error")
    assert iface.messages()[0][0] == Qgis.Critical
    Setting.TOKEN_FILE.set(server["token_file"])  # fixed (as Settings or Set up backend would)
    QTest.mouseClick(plugin.dock.reconnect_button, Qt.LeftButton)
    wait_until(lambda: plugin.controller.backend.connection is not None, 30, "the backend")
    QCoreApplication.processEvents()
    assert not [m for m in iface.messages() if m[0] == Qgis.Critical], iface.messages()


def test_the_dock_fits_a_1280_px_window(plugin, iface, clean_settings, tmp_root):
    from geovec.plugin.settings import Setting

    Setting.BACKEND_COMMAND.set(str(tmp_root / "no-such-env"))
    dock = plugin.open_dock()
    body = dock.scroll.widget()
    assert body.minimumSizeHint().width() <= 360  # narrower than that, nothing useful fits
    iface.window.resize(1280, 800)
    iface.window.show()
    QCoreApplication.processEvents()
    assert dock.width() <= 1280 // 3 + 2 and iface.canvas.width() >= 0.6 * 1280
    assert not dock.scroll.horizontalScrollBar().isVisible()


def test_selected_polygon_search_sends_the_centre_rule_and_draws_no_region_outside(plugin, iface, clean_settings,
                                                                                   tmp_root, shared_data):
    """Without a backend: the request, and the outlines the dock draws from a response that holds regions
    centred outside the area (what a backend without the centre rule returns)."""
    from qgis.core import QgsFeature, QgsVectorLayer

    from geovec.plugin.controller import area_of
    from geovec.plugin.settings import Setting

    Setting.BACKEND_COMMAND.set(str(tmp_root / "no-such-env"))
    plugin.open_dock()
    raster = _neon(iface, shared_data)
    ctl = plugin.controller
    sent = []
    ctl.search = sent.append
    poly = QgsVectorLayer("Polygon?crs=EPSG:32617", "area", "memory")
    QgsProject.instance().addMapLayer(poly)
    e = raster.extent()
    area = QgsRectangle(e.xMinimum(), e.yMinimum(), e.center().x(), e.center().y())
    f = QgsFeature()
    f.setGeometry(QgsGeometry.fromRect(area))
    poly.dataProvider().addFeatures([f])
    poly.selectAll()
    iface.canvas.setCurrentLayer(poly)
    plugin.dock.in_view_check.setChecked(True)
    plugin.dock.index_combo.setEditText("/some/index")
    ctl.search_text("water")
    params = sent[-1]
    assert params.to_request()["within_mode"] == "centre"
    # regions: one centred in the area, one across its edge (centre outside), one wholly outside
    xform = QgsCoordinateTransform(raster.crs(), QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance())

    def ring(x0, y0, x1, y1):
        g = QgsGeometry.fromRect(QgsRectangle(x0, y0, x1, y1))
        g.transform(xform)
        return json.loads(g.asJson(12))

    w, h = e.width(), e.height()
    boxes = [(0.1, 0.1, 0.2, 0.2), (0.45, 0.1, 0.7, 0.2), (0.7, 0.7, 0.8, 0.8)]
    regions = [{"rank": i + 1, "score": 0.5 - 0.1 * i, "bbox_image": [0, 0, 9, 9],
                "geometry": ring(e.xMinimum() + a * w, e.yMinimum() + b * h, e.xMinimum() + c * w,
                                 e.yMinimum() + d * h)} for i, (a, b, c, d) in enumerate(boxes)]
    tile = ring(e.xMinimum(), e.yMinimum(), e.xMinimum() + 0.5 * w, e.yMinimum() + 0.5 * h)
    resp = {"type": "FeatureCollection", "crs": "EPSG:4326", "query": {}, "took_ms": 1.0,
            "features": [{"type": "Feature", "geometry": tile,
                          "properties": {"rank": 1, "score": 0.5, "tile_id": "t", "scene_id": "s", "level": "tile",
                                         "source": raster.source(), "regions": regions}}]}
    ctl.results.show(resp, params.label, QgsProject.instance().crs(), within=area_of(params))
    drawn = list(ctl.results.region_layer.getFeatures())
    assert len(drawn) == 1 and QgsGeometry.fromRect(area).contains(drawn[0].geometry().centroid())


def test_refine_and_save_marks_keep_the_region_level(dock_on_index, iface, shared_data, regions_index, tmp_path):
    """Marks on region hits refine over region vectors: the hits stay regions, the saved marks are region boxes."""
    from qgis.core import QgsVectorLayer

    plugin = dock_on_index
    ctl = plugin.controller
    _neon(iface, shared_data)
    dock = plugin.dock
    dock.index_combo.setEditText(regions_index)
    dock.level_combo.setCurrentIndex(dock.level_combo.findData("region"))
    dock.k_spin.setValue(6)
    _search_text(plugin, "a tree crown")
    table, wf = dock.table, ctl.workflows
    assert table.rowCount() >= 3 and {table.item(r, 2).text() for r in range(table.rowCount())} == {"region"}
    row0 = [table.item(r, 0).text() for r in range(table.rowCount())].index("1")
    good_geom = ctl.results._feature(row0)[1].geometry()  # the best region, in the project CRS
    for row, how in ((row0, "good"), ((row0 + 2) % table.rowCount(), "bad")):
        table.selectRow(row)
        wf.mark_selected(how)
    params = wf.refine_params()
    body = params.to_request()
    assert body["level"] == "region" and len(body["good_regions"]) == 1 and len(body["bad_regions"]) == 1
    assert not body["good"] and not body["bad"] and len(body["good_regions"][0]["bbox_image"]) == 4
    wf.refine()
    wait_until(lambda: not ctl.tasks and "refined hits" in dock.status_label.text(), 120,
               f"the refine ({iface.messages()})")
    rows = {table.item(r, 2).text() for r in range(table.rowCount())}
    assert rows == {"region"} and ctl.results.layer.featureCount() == 0  # still regions, not whole tiles
    marks = tmp_path / "marks.geojson"
    wf.refine(save_marks=str(marks))
    wait_until(lambda: not ctl.tasks and marks.exists(), 120, f"the marks ({iface.messages()})")
    layer = QgsVectorLayer(str(marks), "marks", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:4326" and layer.featureCount() == 1
    mark = next(layer.getFeatures())
    assert mark["level"] == "region" and mark["mark"] == "good"
    geom = QgsGeometry(mark.geometry())
    geom.transform(QgsCoordinateTransform(layer.crs(), QgsProject.instance().crs(), QgsProject.instance()))
    # the saved mark is the marked region's box, where the dock drew it (not its whole tile)
    assert abs(geom.area() - good_geom.area()) < 0.02 * good_geom.area()
    assert geom.intersection(good_geom).area() > 0.98 * good_geom.area()

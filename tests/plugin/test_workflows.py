"""The workflows from QGIS against a real ``geovec serve`` (tiny model): Processing algorithms
(classify, few-shot, where is this, ask), the dock's feedback marks + Refine and its ask panel,
and the workflow bodies held to the backend's models."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_until
from helpers import drag_box, to_pixel, wait_backend, wait_search
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)

CRS = "EPSG:32617"
X0, Y1, RES, TILE = 400000.0, 3300000.0, 10.0, 16


def _write_two_class(path: Path) -> Path:
    """128 x 64 px RGB, 10 m: a smooth blue left half, a bright checkered right half (GDAL, no backend)."""
    from osgeo import gdal, osr

    rng = np.random.default_rng(0)
    img = np.zeros((3, 64, 128), dtype=np.uint8)
    img[2, :, :64] = 160 + rng.integers(0, 10, (64, 64))
    img[1, :, :64] = 60
    yy, xx = np.mgrid[0:64, 0:64]
    checker = (((yy // 4) + (xx // 4)) % 2 * 180 + 40).astype(np.uint8)
    img[:, :, 64:] = checker
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 128, 64, 3, gdal.GDT_Byte)
    ds.SetGeoTransform((X0, RES, 0, Y1, 0, -RES))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32617)
    ds.SetProjection(srs.ExportToWkt())
    for b in range(3):
        ds.GetRasterBand(b + 1).WriteArray(img[b])
    ds = None
    return path


def _tile_rect(col: int, row: int, shrink: float = 20.0) -> QgsRectangle:
    x0 = X0 + col * TILE * RES
    y1 = Y1 - row * TILE * RES
    return QgsRectangle(x0 + shrink, y1 - TILE * RES + shrink, x0 + TILE * RES - shrink, y1 - shrink)


@pytest.fixture(scope="module")
def wf_index(server, tmp_root, qgis_app):
    """The two-class raster indexed through the Processing algorithm (16-px tiles: 32 tiles)."""
    import processing
    from qgis.core import QgsSettings

    from geovec.plugin.settings import Setting

    QgsSettings().remove("geovec")
    Setting.TOKEN_FILE.set(server["token_file"])
    Setting.AUTO_START.set(False)
    folder = tmp_root / "wf_rasters"
    folder.mkdir(exist_ok=True)
    raster = _write_two_class(folder / "two.tif")
    from qgis_iface import StandInInterface

    import geovec

    iface = StandInInterface()
    plugin = geovec.classFactory(iface)
    plugin.initGui()  # registers the Processing provider
    try:
        res = processing.run("geovec:index_folder", {"FOLDER": str(folder), "TILE_SIZE": TILE, "OVERLAP": 0.0,
                                                     "MODEL": server["model"], "INDEX": str(tmp_root / "wf_index")})
    finally:
        plugin.unload()
        iface.close()
    assert Path(res["INDEX"], "index.json").is_file()
    return {"index": res["INDEX"], "raster": str(raster)}


def _layer(out) -> QgsVectorLayer:
    return out if isinstance(out, QgsVectorLayer) else QgsProject.instance().mapLayer(out)


def test_processing_classify_writes_tiles_and_class_maps(wf_index, use_server, tmp_path, plugin):
    import processing

    out = processing.run("geovec:classify", {"INDEX": wf_index["index"], "CLASSES": "water, town",
                                             "EXTENT": f"{X0},{X0 + 640},{Y1 - 640},{Y1} [{CRS}]",
                                             "CRS": CRS, "OUTPUT_DIR": str(tmp_path / "maps"), "OUTPUT": "memory:"})
    layer = _layer(out["OUTPUT"])
    feats = list(layer.getFeatures())
    assert len(feats) == 16 and layer.crs().authid() == CRS  # the extent holds the left half's 16 tiles
    assert {f["class"] for f in feats} <= {"water", "town"} and all(f["margin"] >= 0 for f in feats)
    assert all(f.geometry().boundingBox().xMaximum() <= X0 + 640 + 1 for f in feats)
    (path,) = out["CLASS_MAPS"].split(";")
    cm = QgsRasterLayer(path, "map")
    assert cm.isValid() and cm.width() == 128 and cm.height() == 64 and cm.crs().authid() == CRS


def test_processing_classify_bad_classes_is_a_processing_error(wf_index, use_server, plugin):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="only one class"):
        processing.run("geovec:classify", {"INDEX": wf_index["index"], "CLASSES": "water", "OUTPUT": "memory:",
                                           "OUTPUT_DIR": "TEMPORARY_OUTPUT"})
    with pytest.raises(QgsProcessingException, match="stores no regions"):  # LEVEL reaches the backend
        processing.run("geovec:classify", {"INDEX": wf_index["index"], "CLASSES": "water, town", "LEVEL": 1,
                                           "OUTPUT": "memory:", "OUTPUT_DIR": "TEMPORARY_OUTPUT"})


def _labels_layer(crs: str = "EPSG:3857") -> QgsVectorLayer:
    """Polygons over five tiles of each half, in a CRS other than the raster's."""
    from qgis.core import QgsCoordinateTransform

    layer = QgsVectorLayer(f"Polygon?crs={crs}&field=kind:string", "labels", "memory")
    xform = QgsCoordinateTransform(QgsCoordinateReferenceSystem(CRS), QgsCoordinateReferenceSystem(crs),
                                   QgsProject.instance())
    feats = []
    cells = [(0, 0, "water"), (1, 2, "water"), (2, 1, "water"), (3, 3, "water"), (0, 3, "water"),
             (4, 0, "urban"), (5, 2, "urban"), (6, 1, "urban"), (7, 3, "urban"), (7, 0, "urban")]
    for c, r, lab in cells:
        g = QgsGeometry.fromRect(_tile_rect(c, r))
        g.transform(xform)
        f = QgsFeature(layer.fields())
        f.setGeometry(g)
        f.setAttributes([lab])
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    return layer


def test_processing_fewshot_reports_held_out_accuracy(wf_index, use_server, tmp_path, plugin):
    import processing

    log: list[str] = []
    from qgis.core import QgsProcessingFeedback

    class Feedback(QgsProcessingFeedback):
        def pushInfo(self, info):  # noqa: N802
            log.append(info)

    out = processing.run("geovec:fewshot", {"INDEX": wf_index["index"], "LABELS": _labels_layer(),
                                            "LABEL_FIELD": "kind", "BLOCK_KM": 0.32, "CRS": CRS,
                                            "OUTPUT_DIR": str(tmp_path / "fs"), "OUTPUT": "memory:"},
                         feedback=Feedback())
    assert out["ACCURACY"] >= 0.9, log
    assert any(line.startswith("held-out accuracy") for line in log), log
    feats = list(_layer(out["OUTPUT"]).getFeatures())
    assert len(feats) == 32
    right = sum((f["class"] == "water") == (f.geometry().centroid().asPoint().x() < X0 + 640) for f in feats)
    assert right >= 30
    assert Path(out["CLASS_MAPS"]).is_file()


def test_processing_locate_and_ask(wf_index, use_server, plugin):
    import processing

    rect = _tile_rect(1, 1)
    out = processing.run("geovec:locate", {"INDEX": wf_index["index"],
                                           "EXTENT": f"{rect.xMinimum()},{rect.xMaximum()},{rect.yMinimum()},"
                                                     f"{rect.yMaximum()} [{CRS}]",
                                           "K": 20, "RADIUS_KM": 0.3, "OUTPUT": "memory:"})
    feats = list(_layer(out["OUTPUT"]).getFeatures())
    assert feats and [f["rank"] for f in feats] == list(range(1, len(feats) + 1))
    assert sum(f["score"] for f in feats) <= 1.0 + 1e-4 and all(f.geometry().type() == 0 for f in feats)
    out = processing.run("geovec:ask", {"INDEX": wf_index["index"],
                                        "EXTENT": f"{rect.xMinimum()},{rect.xMaximum()},{rect.yMinimum()},"
                                                  f"{rect.yMaximum()} [{CRS}]",
                                        "QUESTION": "what is here?", "ANSWERS": "water, town, forest",
                                        "OUTPUT": "memory:"})
    rows = sorted(_layer(out["OUTPUT"]).getFeatures(), key=lambda f: f["rank"])
    assert [r["answer"] for r in rows][0] == out["BEST"] and len(rows) == 3


def test_dock_marks_refine_and_save_marks(wf_index, plugin, iface, use_server, tmp_path, monkeypatch):
    plugin.open_dock()
    wait_backend(plugin)
    ctl = plugin.controller
    wf = ctl.workflows
    QgsProject.instance().setCrs(QgsCoordinateReferenceSystem(CRS))
    plugin.dock.index_combo.setEditText(wf_index["index"])
    plugin.dock.text_edit.setText("water")
    plugin.dock.k_spin.setValue(8)
    plugin.dock.text_button.click()
    wait_search(plugin)
    layer = ctl.results.layer
    table = plugin.dock.table
    assert not wf.feedback.refine_button.isEnabled()
    # mark left-half hits (and the first) good, the others bad, through the table and the buttons
    for row in range(table.rowCount()):
        table.selectRow(row)
        f = layer.getFeature(table.item(row, 0).data(0x0100))
        left = f.geometry().centroid().asPoint().x() < X0 + 640 or row == 0  # at least one good mark
        (wf.feedback.good_button if left else wf.feedback.bad_button).click()
    good, bad = wf.feedback.good(), wf.feedback.bad()
    assert len(good) + len(bad) == 8 and wf.feedback.refine_button.isEnabled()
    assert table.item(0, 0).background().color() in (wf_colour("good"), wf_colour("bad"))
    wf.feedback.refine_button.click()
    wait_until(lambda: not ctl.tasks and "refined hits" in plugin.dock.status_label.text(), 120, "the refine")
    ids = [f["tile_id"] for f in ctl.results.layer.getFeatures()]
    assert len(ids) == 8 and not set(ids) & set(bad)
    assert wf.vector is not None and len(wf.vector) > 0, "the next round sends the vector back"
    assert wf.feedback.good() == good, "marks survive a round"
    # a second round (by vector), saving the marks as a layer geovec train reads
    out = tmp_path / "marks.geojson"
    monkeypatch.setattr("geovec.plugin.workflows.QFileDialog.getSaveFileName", lambda *a, **k: (str(out), ""))
    wf.feedback.save_button.click()
    wait_until(lambda: (not ctl.tasks and out.exists()) or iface.messages(), 120, "the marks file")
    assert out.exists(), iface.messages()
    body = json.loads(out.read_text())
    assert sorted(f["properties"]["tile_id"] for f in body["features"]) == sorted(good)
    assert {f["properties"]["label"] for f in body["features"]} == {"water"}
    assert any(lyr.source() == str(out) for lyr in QgsProject.instance().mapLayers().values())


def wf_colour(mark: str):
    from geovec.plugin.workflows import COLOURS

    return COLOURS[mark]


def test_dock_ask_panel_draw_box(wf_index, plugin, iface, use_server):
    plugin.open_dock()
    wait_backend(plugin)
    ctl = plugin.controller
    layer = QgsRasterLayer(wf_index["raster"], "two")
    QgsProject.instance().addMapLayer(layer)
    QgsProject.instance().setCrs(layer.crs())
    canvas = ctl.canvas
    canvas.setDestinationCrs(layer.crs())
    canvas.setLayers([layer])
    canvas.setExtent(layer.extent())
    canvas.refresh()
    plugin.dock.index_combo.setEditText(wf_index["index"])
    ask = ctl.workflows.ask
    ask.question_edit.setText("what covers this area?")
    ask.answers_edit.setText("water, buildings")
    ask.draw_button.setChecked(True)
    assert canvas.mapTool() is ctl.workflows.ask_tool
    rect = _tile_rect(1, 1)
    drag_box(canvas, to_pixel(canvas, QgsPointXY(rect.xMinimum(), rect.yMaximum())),
             to_pixel(canvas, QgsPointXY(rect.xMaximum(), rect.yMinimum())))
    wait_until(lambda: "Best answer" in plugin.dock.status_label.text() or iface.messages(), 120, "the answer")
    text = ask.answer_label.text()
    assert text.startswith("1. ") and "water" in text and "buildings" in text, (text, iface.messages())


CHECK = r"""
import json, sys
from geovec.backend import schemas_workflows as s
for name, body in json.load(sys.stdin):
    getattr(s, name).model_validate(body)
print("ok")
"""


def test_workflow_bodies_match_the_backend_models(backend_python):
    from geovec.plugin.workflow_params import (
        Area,
        AskParams,
        ClassifyParams,
        FewShotParams,
        LocateParams,
        RefineParams,
    )

    bodies = [
        ("ClassifyRequest", ClassifyParams("/i", ("a", "b"), area=Area("EPSG:32617", box=(0, 0, 1, 1)),
                                           out_dir="/o").to_request()),
        ("FewShotRequest", FewShotParams("/i", {"type": "FeatureCollection", "features": []}, block_km=1.0,
                                         out_dir="/o").to_request()),
        ("ClassifyRequest", ClassifyParams("/i", ("a", "b"), level="region").to_request()),
        ("FewShotRequest", FewShotParams("/i", {"type": "FeatureCollection", "features": []},
                                         level="region").to_request()),
        ("RefineRequest", RefineParams("/i", ("t1",), ("t2",), query={"index": "/i", "text": "water"}).to_request()),
        ("RefineRequest", RefineParams("/i", ("t1",), (), vector=(0.1, 0.2), save_marks="/m.geojson",
                                       label="water").to_request()),
        ("LocateRequest", LocateParams("/i", {"index": "/i", "box": [0, 0, 1, 1], "crs": "EPSG:4326"},
                                       radius_km=2.0).to_request()),
        ("AskRequest", AskParams("/i", (0, 0, 1, 1), "EPSG:4326", "q?", ("yes", "no"), raster="/r.tif").to_request()),
    ]
    res = subprocess.run([backend_python, "-c", CHECK], input=json.dumps(bodies), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]
    bad = [("AskRequest", {"index": "/i", "box": [0, 0, 1], "crs": "x", "question": "q", "answers": []})]
    res = subprocess.run([backend_python, "-c", CHECK], input=json.dumps(bad), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode != 0

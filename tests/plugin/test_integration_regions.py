"""Region highlights, search in view and compositional queries against a real ``geovec serve``.

These need region-level search in the backend (the ``region_search`` fixture checks its
contract); the README screenshot of highlighted regions over the NEON orthophoto is made here.
"""

from __future__ import annotations

import os
import shutil
import time

from conftest import ARTIFACTS, ROOT
from helpers import add_raster, drag_box, render_canvas, to_pixel, wait_search
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QCoreApplication, Qt
from qgis.PyQt.QtTest import QTest


def _on_neon(plugin, iface, shared_data, crs: str = "EPSG:32617"):
    raster = add_raster(str(shared_data / "neon_osbs" / "OSBS_029.tif"))
    QgsProject.instance().setCrs(QgsCoordinateReferenceSystem(crs))
    xform = QgsCoordinateTransform(raster.crs(), iface.canvas.mapSettings().destinationCrs(), QgsProject.instance())
    iface.canvas.setExtent(xform.transformBoundingBox(raster.extent()))
    render_canvas(iface.canvas)
    return raster, xform


def _type_and_search(dock, text: str) -> None:
    dock.text_edit.clear()
    QTest.keyClicks(dock.text_edit, text)
    QTest.keyClick(dock.text_edit, Qt.Key_Return)


def test_referring_expression_highlights_regions_over_the_orthophoto(dock_on_index, iface, shared_data, region_search):
    plugin = dock_on_index
    raster, _ = _on_neon(plugin, iface, shared_data)
    dock = plugin.dock
    dock.level_combo.setCurrentIndex(dock.level_combo.findData("region"))
    dock.k_spin.setValue(8)
    QTest.mouseClick(dock.in_view_check, Qt.LeftButton)  # the view shows the orthophoto: regions on it only
    _type_and_search(dock, "a tree crown")
    wait_search(plugin)
    regions = plugin.controller.results.region_layer
    feats = sorted(regions.getFeatures(), key=lambda f: f["rank"])
    assert 0 < len(feats) <= 8 and {f["level"] for f in feats} == {"region"}
    assert dock.table.rowCount() == len(feats) and dock.table.item(0, 2).text() == "region"
    assert all(f.geometry().isGeosValid() and f.geometry().area() > 0 for f in feats)
    # every region lies on the orthophoto, inside its tile, smaller than a tile (128 px at 0.1 m)
    assert all(f["source"].endswith("OSBS_029.tif") for f in feats)
    assert all(raster.extent().buffered(1).contains(f.geometry().boundingBox()) for f in feats)
    assert all(f.geometry().area() < (128 * raster.rasterUnitsPerPixelX()) ** 2 + 1 for f in feats)
    # the best region is zoomed to; then show the whole orthophoto with every highlight for the README
    assert iface.canvas.extent().contains(feats[0].geometry().boundingBox())
    iface.canvas.setExtent(raster.extent().buffered(5))
    deadline = time.monotonic() + 1.2  # let the flash of the best region end
    while time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    render_canvas(iface.canvas)
    QCoreApplication.processEvents()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "qgis_geovec_regions.png"
    image = iface.window.grab().toImage()
    assert image.save(str(path))
    canvas = iface.canvas.grab().toImage()  # the highlights are drawn: outline colours on the imagery
    from qgis.PyQt.QtGui import QColor

    from geovec.plugin.style import COLOURS

    outline = {QColor(c).rgb() & 0xFFFFFF for c in COLOURS}
    drawn = sum(1 for x in range(canvas.width()) for y in range(0, canvas.height(), 2)
                if canvas.pixel(x, y) & 0xFFFFFF in outline)
    assert drawn > 50, drawn
    if os.environ.get("GEOVEC_UPDATE_SCREENSHOT"):
        shutil.copy(path, ROOT / "docs" / "screenshot.png")


def test_search_in_view_confines_hits_to_the_map_view(dock_on_index, iface, shared_data, region_search):
    plugin = dock_on_index
    raster, xform = _on_neon(plugin, iface, shared_data, "EPSG:3857")
    e = xform.transformBoundingBox(raster.extent())
    e.scale(0.5)  # the middle of the orthophoto
    iface.canvas.setExtent(e)
    render_canvas(iface.canvas)
    view = QgsGeometry.fromRect(iface.canvas.extent())
    dock = plugin.dock
    QTest.mouseClick(dock.in_view_check, Qt.LeftButton)
    assert dock.in_view_check.isChecked()
    dock.k_spin.setValue(20)
    _type_and_search(dock, "water")
    wait_search(plugin)
    feats = list(plugin.controller.results.layer.getFeatures())
    assert feats and all(f.geometry().intersects(view) for f in feats)


def test_drawn_box_with_typed_text_is_one_compositional_query(dock_on_index, iface, shared_data, region_search):
    plugin = dock_on_index
    raster, xform = _on_neon(plugin, iface, shared_data)
    dock = plugin.dock
    QTest.keyClicks(dock.text_edit, "next to a road")
    dock.box_button.click()
    e = raster.extent()
    a = to_pixel(iface.canvas, xform.transform(QgsPointXY(e.xMinimum() + 0.1 * e.width(),
                                                          e.yMaximum() - 0.1 * e.height())))
    b = to_pixel(iface.canvas, xform.transform(QgsPointXY(e.xMinimum() + 0.3 * e.width(),
                                                          e.yMaximum() - 0.3 * e.height())))
    drag_box(iface.canvas, a, b)
    wait_search(plugin)
    feats = list(plugin.controller.results.layer.getFeatures())
    assert feats and all(f["query"].startswith("box: ") and "+ text: next to a road" in f["query"] for f in feats)


def test_processing_region_search(use_server, built_index, plugin, region_search):
    import processing

    out = processing.run("geovec:search_regions", {"INDEX": built_index["path"], "TEXT": "a tree crown", "K": 4,
                                                    "CRS": "EPSG:32617", "OUTPUT": "memory:"})
    layer = out["OUTPUT"]
    layer = layer if isinstance(layer, QgsVectorLayer) else QgsProject.instance().mapLayer(layer)
    feats = list(layer.getFeatures())
    assert 0 < len(feats) <= 4 and {f["level"] for f in feats} == {"region"}

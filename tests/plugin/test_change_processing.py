"""'Compare dates (change)' in real QGIS: the Processing algorithm against a real backend, its change maps
load with their legend (the .qml beside them), bad input is one clear Processing error."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

MAKE = """
import sys
import numpy as np
from geovec.backend.demo import pattern, write_geotiff
root = sys.argv[1]
before = (pattern("forest", 64, 128, seed=1) * 255).astype("uint8")
after = before.copy()
after[:, :, 64:] = (pattern("urban", 64, 64, seed=2) * 255).astype("uint8")
write_geotiff(root + "/imgs/site_2016-01-05.tif", before)
write_geotiff(root + "/imgs/site_2017-02-10.tif", after)
"""


@pytest.fixture(scope="module")
def dated_index(backend_python: str, tiny_model: Path, tmp_root: Path) -> Path:
    root = tmp_root / "change"
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    subprocess.run([backend_python, "-c", MAKE, str(root)], check=True, capture_output=True, timeout=120)
    subprocess.run([backend_python, "-m", "geovec.backend", "index", str(root / "imgs"), "--index", str(root / "idx"),
                    "--model", str(tiny_model), "--tile-size", "32", "--no-progress", "--device", "cpu"],
                   check=True, capture_output=True, timeout=300)
    return root / "idx"


def test_change_algorithm_writes_styled_maps_and_ranked_polygons(use_server, dated_index, plugin, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsProject, QgsRasterLayer, QgsVectorLayer

    assert any(a.objectName() == "GeoVec Compare dates…" for a in plugin.actions)  # the menu entry
    out = processing.run("geovec:change", {"BEFORE": "2016", "AFTER": "2017-02", "INDEX": str(dated_index),
                                           "OUTPUT_DIR": str(tmp_path / "maps"), "OUTPUT": "memory:"})
    layer = out["OUTPUT"]
    layer = layer if isinstance(layer, QgsVectorLayer) else QgsProject.instance().mapLayer(layer)
    assert layer.featureCount() == 8
    feats = sorted(layer.getFeatures(), key=lambda f: f["rank"])
    assert [f["rank"] for f in feats] == list(range(1, 9))
    assert feats[0]["change"] >= feats[-1]["change"] and feats[0]["before_date"] == "2016-01-05"
    assert feats[0]["after_date"] == "2017-02-10" and feats[-1]["change"] < 1e-3  # unchanged half scores ~0
    (path,) = out["CHANGE_MAPS"].split(";")
    raster = QgsRasterLayer(path, "change")
    assert raster.isValid() and raster.renderer().type() == "singlebandpseudocolor"  # its .qml legend applied
    items = raster.renderer().shader().rasterShaderFunction().colorRampItemList()
    assert len(items) == 5 and "unchanged" in items[0].label and "changed" in items[-1].label
    with pytest.raises(QgsProcessingException, match="same scenes"):
        processing.run("geovec:change", {"BEFORE": str(dated_index), "AFTER": str(dated_index),
                                         "OUTPUT_DIR": str(tmp_path / "no"), "OUTPUT": "memory:"})
    with pytest.raises(QgsProcessingException, match="does not end before"):
        processing.run("geovec:change", {"BEFORE": "2017", "AFTER": "2016", "INDEX": str(dated_index),
                                         "OUTPUT_DIR": str(tmp_path / "no2"), "OUTPUT": "memory:"})


def test_score_map_and_other_dates_algorithms(use_server, dated_index, plugin, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsProject, QgsRasterLayer, QgsVectorLayer

    out = processing.run("geovec:score_map", {"INDEX": str(dated_index), "TEXT": "buildings", "DATE_FROM": "2017",
                                              "OUTPUT_DIR": str(tmp_path / "scores")})
    (path,) = out["SCORE_MAPS"].split(";")  # only the 2017 scene
    raster = QgsRasterLayer(path, "score")
    assert raster.isValid() and raster.renderer().type() == "singlebandpseudocolor"
    assert "most like" in raster.renderer().shader().rasterShaderFunction().colorRampItemList()[-1].label
    out = processing.run("geovec:other_dates", {"INDEX": str(dated_index), "TEXT": "buildings", "K": 3,
                                                "DATE_FROM": "2017", "OUTPUT": "memory:"})
    layer = out["OUTPUT"]
    layer = layer if isinstance(layer, QgsVectorLayer) else QgsProject.instance().mapLayer(layer)
    rows = list(layer.getFeatures())
    assert len(rows) == 3 and {r["hit_date"] for r in rows} == {"2017-02-10"}
    assert {r["acquired"] for r in rows} == {"2016-01-05"} and {r["date_source"] for r in rows} == {"name"}
    with pytest.raises(QgsProcessingException, match="no scene of index"):
        processing.run("geovec:score_map", {"INDEX": str(dated_index), "TEXT": "x", "DATE_FROM": "2030",
                                            "OUTPUT_DIR": str(tmp_path / "none")})


def test_dock_compare_dates_opens_the_change_dialog_on_the_dock_index(use_server, dated_index, plugin, monkeypatch):
    """The dock's ⇄ button opens 'Compare dates (change)' with the dock's index (the modal dialog itself is
    QGIS's; it is recorded here instead of shown)."""
    import processing

    opened: list[tuple[str, dict]] = []
    monkeypatch.setattr(processing, "execAlgorithmDialog", lambda alg, params: opened.append((alg, params)))
    dock = plugin.open_dock()
    panel = dock.index_panel
    panel.set_indexes([str(dated_index)], str(dated_index))
    panel.compare_button.click()
    assert opened == [("geovec:change", {"INDEX": str(dated_index)})]


def test_the_hit_tooltip_shows_the_place_on_the_other_dates(use_server, dated_index, plugin):
    from helpers import wait_backend, wait_search
    from qgis.core import QgsCoordinateReferenceSystem, QgsProject

    QgsProject.instance().setCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    plugin.open_dock()
    wait_backend(plugin)
    plugin.dock.index_combo.setEditText(str(dated_index))
    plugin.dock.text_edit.setText("buildings")
    plugin.dock.k_spin.setValue(4)
    plugin.dock.text_button.click()
    wait_search(plugin)
    results = plugin.controller.results
    assert plugin.controller.tasks == [] and results.table.rowCount() == 4
    for row in range(results.table.rowCount()):
        _, feat = results._feature(row)
        html = results._tooltip(row)
        mine = "2016-01-05" if "2016" in str(feat["source"]) else "2017-02-10"
        other = "2017-02-10" if mine == "2016-01-05" else "2016-01-05"
        # one other date here: its thumbnail (the other scene's pixels at this place), date and score
        assert "Same place, other dates" in html and other in html and mine not in html.split("other dates")[1]
        assert html.count("<img ") == 2 and "score " in html.split("other dates")[1]

"""Processing on its own: the algorithms start the backend, default to the dock's index and the
project CRS, style their output like the dock's, and cover box, point and per-feature search."""

from __future__ import annotations

import pytest
from conftest import wait_until
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)


def _layer(out) -> QgsVectorLayer:
    layer = out["OUTPUT"]
    return layer if isinstance(layer, QgsVectorLayer) else QgsProject.instance().mapLayer(layer)


def _neon_extent(shared_data) -> QgsRectangle:
    raster = QgsRasterLayer(str(shared_data / "neon_osbs" / "OSBS_029.tif"), "neon")
    assert raster.isValid()
    return raster.extent()


class Progress(QgsProcessingFeedback):
    def __init__(self) -> None:
        super().__init__()
        self.values: list[float] = []
        self.progressChanged.connect(self.values.append)


def test_algorithms_start_the_backend_without_the_dock(iface, clean_settings, backend_python, built_index, plugin):
    """No dock was opened: the algorithm starts the backend itself; unload stops it."""
    import processing

    from geovec.plugin import backend_manager
    from geovec.plugin.settings import Setting

    Setting.BACKEND_COMMAND.set(backend_python)
    Setting.DEVICE.set("cpu")
    Setting.LAST_INDEX.set(built_index["path"])  # the dock's current index is the default
    QgsProject.instance().setCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    assert plugin.dock is None
    feedback = Progress()
    out = processing.run("geovec:search_text", {"TEXT": "trees", "K": 3, "OUTPUT": "memory:"}, feedback=feedback)
    layer = _layer(out)
    assert layer.featureCount() == 3 and layer.crs().authid() == "EPSG:3857"  # the project's CRS
    assert feedback.values and feedback.values[-1] == 100
    started = list(backend_manager._started)
    assert len(started) == 1 and started[0].poll() is None
    plugin.unload()
    wait_until(lambda: started[0].poll() is not None, 15, "the backend Processing started to stop on unload")
    plugin.initGui()  # the fixture unloads it again


def test_box_point_and_per_feature_algorithms(use_server, built_index, shared_data, plugin, tmp_path):
    import processing

    e = _neon_extent(shared_data)
    box = f"{e.xMinimum()},{e.xMinimum() + 40},{e.yMinimum()},{e.yMinimum() + 40} [EPSG:32617]"
    out = processing.run("geovec:search_box", {"INDEX": built_index["path"], "BOX": box, "K": 4,
                                               "CRS": "EPSG:32617", "OUTPUT": "memory:"})
    feats = list(_layer(out).getFeatures())
    assert 0 < len(feats) <= 4 and all(f["query"].startswith("box: ") for f in feats)
    query = QgsGeometry.fromRect(QgsRectangle(e.xMinimum(), e.yMinimum(), e.xMinimum() + 40, e.yMinimum() + 40))
    assert not [f for f in feats if f.geometry().intersection(query).area() > 1e-3]  # own tiles excluded
    c = e.center()
    out = processing.run("geovec:search_point", {"INDEX": built_index["path"], "POINT": f"{c.x()},{c.y()} [EPSG:32617]",
                                                 "K": 3, "CRS": "EPSG:4326", "OUTPUT": "memory:"})
    layer = _layer(out)
    assert layer.crs().authid() == "EPSG:4326" and 0 < layer.featureCount() <= 3
    # one search per polygon; every hit carries its query feature
    polys = QgsVectorLayer("Polygon?crs=EPSG:32617&field=name:string", "sites", "memory")
    feats_in = []
    for i, (fx, fy) in enumerate([(0.1, 0.1), (0.6, 0.6)]):
        f = QgsFeature(polys.fields())
        x, y = e.xMinimum() + fx * e.width(), e.yMinimum() + fy * e.height()
        f.setGeometry(QgsGeometry.fromRect(QgsRectangle(x, y, x + 30, y + 30)))
        f.setAttributes([f"site {i}"])
        feats_in.append(f)
    polys.dataProvider().addFeatures(feats_in)
    out = processing.run("geovec:similar_per_feature", {"INDEX": built_index["path"], "LAYER": polys, "K": 2,
                                                        "CRS": "EPSG:32617", "OUTPUT": str(tmp_path / "sim.gpkg")})
    layer = QgsVectorLayer(out["OUTPUT"], "sim", "ogr")
    hits = list(layer.getFeatures())
    assert {h["query_name"] for h in hits} == {"site 0", "site 1"} and len(hits) <= 4
    assert {"query_fid", "rank", "score", "level"} <= set(layer.fields().names())


def test_outputs_loaded_in_the_project_get_the_dock_style(use_server, built_index, plugin):
    import processing

    out = processing.runAndLoadResults("geovec:search_text", {"INDEX": built_index["path"], "TEXT": "water",
                                                              "K": 5, "OUTPUT": "memory:"})
    layer = QgsProject.instance().mapLayer(out["OUTPUT"]) if isinstance(out["OUTPUT"], str) else out["OUTPUT"]
    assert layer is not None and layer.featureCount() == 5
    renderer = layer.renderer()
    assert renderer.type() == "graduatedSymbol" and renderer.classAttribute() == "score"
    assert layer.labelsEnabled()


def test_index_algorithm_refuses_an_empty_folder(use_server, plugin, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(QgsProcessingException, match="No tiles were indexed"):
        processing.run("geovec:index_folder", {"FOLDER": str(empty), "INDEX": str(tmp_path / "idx")})

"""The search and workflow Processing algorithms share one base: grouped, defaulting to the dock's index and
the project CRS; "Find similar to each feature" skips features outside the imagery and says which."""

from __future__ import annotations

from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)

SEARCH = ["search_text", "search_regions", "search_box", "search_point", "similar_per_feature"]
WORKFLOWS = ["classify", "fewshot", "locate", "ask"]


class Said(QgsProcessingFeedback):
    """Keeps what an algorithm reported (infos and errors)."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []
        self.infos: list[str] = []

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803 (QGIS API)
        self.errors.append(error)
        super().reportError(error, fatalError)

    def pushInfo(self, info: str) -> None:  # noqa: N802 (QGIS API)
        self.infos.append(info)
        super().pushInfo(info)


def test_search_and_workflow_algorithms_share_one_base_grouped_with_the_dock_index_default(plugin, clean_settings,
                                                                                           tmp_path):
    from geovec.plugin.settings import Setting

    Setting.LAST_INDEX.set(str(tmp_path / "the-docks-index"))
    registry = QgsApplication.processingRegistry()
    for name in SEARCH + WORKFLOWS:
        alg = registry.createAlgorithmById(f"geovec:{name}")
        assert "GeoVecAlgorithm" in [c.__name__ for c in type(alg).__mro__], name  # one shared base
        assert (alg.groupId(), alg.group()) == (("search", "Search") if name in SEARCH else ("workflows", "Workflows"))
        index = alg.parameterDefinition("INDEX")
        assert index.defaultValue() == str(tmp_path / "the-docks-index") and index.flags() & index.FlagOptional, name
        if name != "ask":  # ask outputs a table of answers: no geometry, no CRS
            crs = alg.parameterDefinition("CRS")
            assert crs is not None and crs.defaultValue() is None and crs.flags() & crs.FlagOptional, name
        assert "--" not in alg.shortHelpString(), name  # help names dock controls, not CLI flags


def test_workflow_algorithms_use_the_dock_index_and_the_project_crs(use_server, built_index, plugin, tmp_path):
    import processing

    from geovec.plugin.settings import Setting

    Setting.LAST_INDEX.set(built_index["path"])
    QgsProject.instance().setCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    out = processing.run("geovec:classify", {"CLASSES": "water, trees", "OUTPUT_DIR": str(tmp_path / "maps"),
                                             "OUTPUT": "memory:"})
    layer = out["OUTPUT"] if isinstance(out["OUTPUT"], QgsVectorLayer) else QgsProject.instance().mapLayer(out["OUTPUT"])
    assert layer.featureCount() > 0 and layer.crs().authid() == "EPSG:3857"  # the project's, not EPSG:4326
    xs = [f.geometry().boundingBox().xMinimum() for f in layer.getFeatures()]
    assert max(abs(x) for x in xs) > 1000  # metres of Web Mercator, not degrees


def test_similar_per_feature_skips_features_outside_the_imagery_with_a_warning_and_a_count(use_server, built_index,
                                                                                          shared_data, plugin,
                                                                                          tmp_path):
    import processing

    e = QgsRasterLayer(str(shared_data / "neon_osbs" / "OSBS_029.tif"), "neon").extent()
    polys = QgsVectorLayer("Polygon?crs=EPSG:32617&field=name:string", "sites", "memory")
    feats = []
    for name, x, y in (("on the orthophoto", e.xMinimum() + 5, e.yMinimum() + 5), ("far away", 100_000, 1_000_000)):
        f = QgsFeature(polys.fields())
        f.setGeometry(QgsGeometry.fromRect(QgsRectangle(x, y, x + 30, y + 30)))
        f.setAttributes([name])
        feats.append(f)
    polys.dataProvider().addFeatures(feats)
    ids = {f["name"]: f.id() for f in polys.getFeatures()}
    said = Said()
    out = processing.run("geovec:similar_per_feature", {"INDEX": built_index["path"], "LAYER": polys, "K": 3,
                                                        "EXCLUDE_OWN": False,
                                                        "CRS": "EPSG:32617", "OUTPUT": str(tmp_path / "sim.gpkg")},
                         feedback=said)
    hits = list(QgsVectorLayer(out["OUTPUT"], "sim", "ogr").getFeatures())
    assert hits and {h["query_name"] for h in hits} == {"on the orthophoto"}, said.errors + said.infos
    outside = [m for m in said.errors if f"feature {ids['far away']} lies outside" in m]
    assert len(outside) == 1, said.errors
    assert any("1 of 2 features" in m and "skipped" in m for m in said.errors), said.errors
    assert out["SKIPPED"] == 1

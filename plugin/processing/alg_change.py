"""Processing algorithm "Compare dates (change)" (geovec:change): change maps + ranked change polygons."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterString,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from .base import GeoVecAlgorithm
from .common import default_index
from .outputs import LEVELS, features, fields_of

CHANGE_FIELDS = (("rank", QVariant.Int), ("change", QVariant.Double), ("toward", QVariant.Double),
                 ("before_date", QVariant.String), ("after_date", QVariant.String),
                 ("before_tile_id", QVariant.String), ("after_tile_id", QVariant.String),
                 ("after_source", QVariant.String))
MAX_POLYGONS = 10_000


class ChangeAlgorithm(GeoVecAlgorithm):
    BEFORE = "BEFORE"
    AFTER = "AFTER"
    TO = "TO"
    LEVEL = "LEVEL"
    LOAD_MAPS = "LOAD_MAPS"
    OUTPUT_DIR = "OUTPUT_DIR"
    CHANGE_MAPS = "CHANGE_MAPS"
    group_id = "time"

    def name(self) -> str:
        return "change"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return "Compare dates (change)"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("What changed between two dates. BEFORE and AFTER are GeoVec index folders, or dates / date "
                "ranges (2016, 2016-01, 2016-01-05, 2016-01/2016-03) of scenes in INDEX. Tiles at the same place "
                "are compared (change = 1 - cosine of their vectors); with TO ('new buildings', 'flooded') they "
                "rank by how much closer the place moved to that description. Writes a change-map GeoTIFF per "
                "scene pair (with its legend) and change.geojson into OUTPUT_DIR, and outputs the ranked change "
                "polygons. LEVEL region compares the regions of indexes built with --regions.")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterString(self.BEFORE, "Before: index folder or date (e.g. 2016-01)"))
        self.addParameter(QgsProcessingParameterString(self.AFTER, "After: index folder or date (e.g. 2017-02)"))
        self.addParameter(QgsProcessingParameterFile(self.INDEX, "Index holding both dates (when dates are given)",
                                                     behavior=QgsProcessingParameterFile.Folder, optional=True,
                                                     defaultValue=default_index() or None))
        self.addParameter(QgsProcessingParameterString(self.TO, "Rank by change toward (text, optional)",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.LEVEL, "Compare tiles, or the regions the indexes store",
                                                     LEVELS, defaultValue=0, optional=True))
        self.addParameter(QgsProcessingParameterBoolean(self.LOAD_MAPS, "Add the change maps to the project",
                                                        defaultValue=True))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_DIR, "Change maps folder"))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Change polygons",
                                                            QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputString(self.CHANGE_MAPS, "Change-map GeoTIFFs (;-separated)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        body = {"before": self.parameterAsString(parameters, self.BEFORE, context).strip(),
                "after": self.parameterAsString(parameters, self.AFTER, context).strip(),
                "out": self.parameterAsString(parameters, self.OUTPUT_DIR, context),
                "level": LEVELS[self.parameterAsEnum(parameters, self.LEVEL, context)], "top": MAX_POLYGONS}
        index = self.parameterAsFile(parameters, self.INDEX, context)
        if index:
            body["index"] = index
        to = self.parameterAsString(parameters, self.TO, context).strip()
        if to:
            body["to"] = to
        resp = self.call("change", body, feedback)
        feedback.pushInfo(f"{resp.get('pairs', 0)} {resp.get('level', 'tile')} pairs compared, "
                          f"{resp.get('unmatched_after', 0)} after tiles with no before tile")
        crs = QgsCoordinateReferenceSystem("EPSG:4326")
        top = {"crs": "EPSG:4326", "features": resp.get("top") or []}
        dest = self.write(parameters, context, fields_of(CHANGE_FIELDS), QgsWkbTypes.Polygon, crs,
                          list(features(top, CHANGE_FIELDS, crs)))
        maps = [m["path"] for m in resp.get("maps") or []]
        if self.parameterAsBoolean(parameters, self.LOAD_MAPS, context):
            for m in resp.get("maps") or []:  # QGIS applies the .qml beside each map (its legend)
                name = f"change {m.get('before_date') or m['before_scene']} -> {m.get('after_date') or m['after_scene']}"
                context.addLayerToLoadOnCompletion(m["path"], QgsProcessingContext.LayerDetails(
                    name, context.project(), self.OUTPUT_DIR))
        return {self.OUTPUT: dest, self.OUTPUT_DIR: body["out"], self.CHANGE_MAPS: ";".join(maps)}

"""Processing algorithms over time: "Score map (heat map)" (geovec:score_map) and "Same place, other dates"
(geovec:other_dates), both answered by ``POST /v1/search``."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..hits import geometry_from_geojson
from .base import GeoVecAlgorithm
from .outputs import fields_of

OTHER_FIELDS = (("hit_rank", QVariant.Int), ("hit_score", QVariant.Double), ("hit_date", QVariant.String),
                ("tile_id", QVariant.String), ("acquired", QVariant.String), ("date_source", QVariant.String),
                ("score", QVariant.Double), ("source", QVariant.String))


class _TimeAlgorithm(GeoVecAlgorithm):
    TEXT = "TEXT"
    DATE_FROM = "DATE_FROM"
    DATE_TO = "DATE_TO"
    group_id = "time"

    def add_query_parameters(self) -> None:
        self.add_index_parameter()
        self.addParameter(QgsProcessingParameterString(self.TEXT, "Search text"))
        self.addParameter(QgsProcessingParameterString(self.DATE_FROM, "Only scenes acquired from (e.g. 2016-01)",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterString(self.DATE_TO, "Only scenes acquired up to (e.g. 2017)",
                                                       optional=True))

    def body(self, parameters, context, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"index": self.index(parameters, context), "text": self.parameterAsString(parameters, self.TEXT, context),
                                **extra}
        for key, name in ((self.DATE_FROM, "date_from"), (self.DATE_TO, "date_to")):
            value = self.parameterAsString(parameters, key, context).strip()
            if value:
                body[name] = value
        return body


class ScoreMapAlgorithm(_TimeAlgorithm):
    LOAD = "LOAD"
    OUTPUT_DIR = "OUTPUT_DIR"
    SCORE_MAPS = "SCORE_MAPS"

    def name(self) -> str:
        return "score_map"

    def displayName(self) -> str:  # noqa: N802
        return "Score map (heat map)"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Paints how similar every tile of the index (of the scenes between the dates, if given) is to "
                "TEXT: one GeoTIFF per scene with its legend (cosine similarity), regions painted where the index "
                "stores them.")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.add_query_parameters()
        self.addParameter(QgsProcessingParameterBoolean(self.LOAD, "Add the maps to the project", defaultValue=True))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_DIR, "Score maps folder"))
        self.addOutput(QgsProcessingOutputString(self.SCORE_MAPS, "Score-map GeoTIFFs (;-separated)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        out = self.parameterAsString(parameters, self.OUTPUT_DIR, context)
        resp = self.call("search", self.body(parameters, context, k=1, score_map=out), feedback)
        maps = (resp.get("query") or {}).get("score_maps") or []
        feedback.pushInfo(f"{len(maps)} score map(s) in {out}")
        if self.parameterAsBoolean(parameters, self.LOAD, context):
            for m in maps:  # QGIS applies the .qml beside each map (its legend)
                context.addLayerToLoadOnCompletion(m["path"], QgsProcessingContext.LayerDetails(
                    f"score {m['scene']}", context.project(), self.OUTPUT_DIR))
        return {self.OUTPUT_DIR: out, self.SCORE_MAPS: ";".join(m["path"] for m in maps)}


class OtherDatesAlgorithm(_TimeAlgorithm):
    K = "K"

    def name(self) -> str:
        return "other_dates"

    def displayName(self) -> str:  # noqa: N802
        return "Same place, other dates"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Searches TEXT and lists, for each of the K best hits, the tiles of the other dates at the same "
                "place with their date and their similarity to TEXT: one polygon per (hit, other date).")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.add_query_parameters()
        self.addParameter(QgsProcessingParameterNumber(self.K, "Number of hits", QgsProcessingParameterNumber.Integer,
                                                       5, False, 1, 200))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Other dates",
                                                            QgsProcessing.TypeVectorPolygon))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        k = self.parameterAsInt(parameters, self.K, context)
        resp = self.call("search", self.body(parameters, context, k=k, other_dates=True), feedback)
        fields = fields_of(OTHER_FIELDS)
        feats: list[QgsFeature] = []
        for feat in resp.get("features") or []:
            p = feat.get("properties") or {}
            geom = geometry_from_geojson(feat.get("geometry") or {})
            for o in p.get("other_dates") or []:
                f = QgsFeature(fields)
                f.setGeometry(geom)
                f.setAttributes([p.get("rank"), p.get("score"), p.get("acquired"), o.get("tile_id"),
                                 o.get("acquired"), o.get("date_source"), o.get("score"), o.get("source")])
                feats.append(f)
        feedback.pushInfo(f"{len(resp.get('features') or [])} hits, {len(feats)} other-date tiles")
        dest = self.write(parameters, context, fields, QgsWkbTypes.Polygon,
                          QgsCoordinateReferenceSystem("EPSG:4326"), feats)
        return {self.OUTPUT: dest}

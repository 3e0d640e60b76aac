"""Shared parameters, backend call and output of the GeoVec search algorithms."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterCrs,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsWkbTypes,
)

from ..client import BackendError, GeoVecClient
from ..hits import crs_to_text, features_from_response, hit_fields, regions_from_response, response_level
from ..params import AUTO_RERANK, SearchParams
from ..style import style_hits
from .common import connection, default_index, output_crs, processing_error

LEVELS = ["tile", "region"]


class StyleHits(QgsProcessingLayerPostProcessorInterface):
    """Gives an algorithm's output layer the dock's hit style once it is loaded."""

    instances: list[StyleHits] = []  # keep the Python side alive until QGIS calls it

    def __init__(self, level: str) -> None:
        super().__init__()
        self.level = level

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802 (QGIS API)
        style_hits(layer, self.level)

    @classmethod
    def create(cls, level: str) -> StyleHits:
        inst = cls(level)
        cls.instances = cls.instances[-20:] + [inst]
        return inst


class SearchAlgorithm(QgsProcessingAlgorithm):
    """INDEX (default: the dock's), K, MIN_SCORE, LEVEL, CRS (default: the project's), OUTPUT."""

    INDEX = "INDEX"
    K = "K"
    MIN_SCORE = "MIN_SCORE"
    LEVEL = "LEVEL"
    RERANK = "RERANK"
    CRS = "CRS"
    OUTPUT = "OUTPUT"
    default_level = 0

    def group(self) -> str:
        return "Search"

    def groupId(self) -> str:  # noqa: N802 (QGIS API)
        return "search"

    def createInstance(self):  # noqa: N802
        return type(self)()

    def add_index_parameter(self) -> None:
        self.addParameter(QgsProcessingParameterFile(self.INDEX, "Index folder (default: the dock's index)",
                                                     behavior=QgsProcessingParameterFile.Folder,
                                                     defaultValue=default_index() or None, optional=True))

    def add_common_parameters(self) -> None:
        self.addParameter(QgsProcessingParameterNumber(self.K, "Number of hits",
                                                       QgsProcessingParameterNumber.Integer, 10, False, 1, 1000))
        self.addParameter(QgsProcessingParameterNumber(self.MIN_SCORE, "Minimum score",
                                                       QgsProcessingParameterNumber.Double, None, True, -1.0, 1.0))
        self.addParameter(QgsProcessingParameterEnum(self.LEVEL, "Rank", ["whole tiles", "regions inside tiles"],
                                                     defaultValue=self.default_level))
        self.addParameter(QgsProcessingParameterNumber(
            self.RERANK, f"Score regions inside the top N tiles (0: {AUTO_RERANK} for regions, else stored only)",
            QgsProcessingParameterNumber.Integer, 0, True, 0, 500))
        # optional: QGIS 3.22 does not fill a CRS parameter's default in for a missing value
        self.addParameter(QgsProcessingParameterCrs(self.CRS, "Output CRS (default: the project's)", None,
                                                    optional=True))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Hits", QgsProcessing.TypeVectorPolygon))

    def index(self, parameters, context) -> str:
        path = self.parameterAsFile(parameters, self.INDEX, context) or default_index()
        if not path:
            raise processing_error(BackendError("No index given", "choose the index folder (or pick one in the "
                                                                  "GeoVec dock first)"))
        return path

    def base_params(self, parameters, context, **kw: Any) -> SearchParams:
        """SearchParams from the common parameters plus ``kw`` (mode, text, box, ...)."""
        min_score = parameters.get(self.MIN_SCORE)
        crs = self.out_crs(parameters, context)
        level = LEVELS[self.parameterAsEnum(parameters, self.LEVEL, context)]
        rerank = self.parameterAsInt(parameters, self.RERANK, context) or (AUTO_RERANK if level == "region" else None)
        return SearchParams(index=self.index(parameters, context), k=self.parameterAsInt(parameters, self.K, context),
                            min_score=None if min_score in (None, "") else
                            self.parameterAsDouble(parameters, self.MIN_SCORE, context),
                            out_crs=crs_to_text(crs), level=level, rerank=rerank, **kw)

    def out_crs(self, parameters, context) -> QgsCoordinateReferenceSystem:
        return output_crs(self.parameterAsCrs(parameters, self.CRS, context), context)

    def search(self, params: SearchParams, feedback) -> dict:
        try:
            return GeoVecClient(connection(feedback), feedback).search(params)
        except BackendError as e:
            raise processing_error(e) from e

    def sink(self, parameters, context, crs, fields=None):
        return self.parameterAsSink(parameters, self.OUTPUT, context, fields or hit_fields(), QgsWkbTypes.Polygon,
                                    crs)

    def features(self, resp: dict, crs, label: str, level: str):
        """The hits to write: the tiles, or every region (ranked over the set) at level=region."""
        if level == "region" or response_level(resp) == "region":
            return regions_from_response(resp, crs, label)
        return features_from_response(resp, crs, label)

    def style_output(self, dest: str, context: QgsProcessingContext, level: str) -> None:
        if context.willLoadLayerOnCompletion(dest):
            context.layerToLoadOnCompletionDetails(dest).setPostProcessor(StyleHits.create(level))

    def run_one(self, parameters, context, feedback, **kw: Any) -> dict:
        """One search written to OUTPUT (styled like the dock's hits)."""
        params = self.base_params(parameters, context, **kw)
        crs = self.out_crs(parameters, context)
        feedback.setProgress(5)
        resp = self.search(params, feedback)
        feedback.setProgress(80)
        sink, dest = self.sink(parameters, context, crs)
        feats = self.features(resp, crs, params.label, params.level)
        for feat in feats:
            sink.addFeature(feat, QgsFeatureSink.FastInsert)
        feedback.pushInfo(f"{len(feats)} {params.level} hits in {resp.get('took_ms', 0):.0f} ms")
        feedback.setProgress(100)
        self.style_output(dest, context, params.level)
        return {self.OUTPUT: dest}

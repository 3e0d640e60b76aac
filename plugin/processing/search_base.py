"""Shared parameters, backend call and output of the GeoVec search algorithms."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsWkbTypes,
)

from ..client import BackendError
from ..hits import crs_to_text, features_from_response, hit_fields, regions_from_response, response_level
from ..params import AUTO_RERANK, SearchParams
from ..style import style_hits
from ..tasks.search import run_search
from .base import GeoVecAlgorithm
from .common import processing_error

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


class SearchAlgorithm(GeoVecAlgorithm):
    """INDEX (default: the dock's), K, MIN_SCORE, LEVEL, RERANK, CRS (default: the project's), OUTPUT."""

    K = "K"
    MIN_SCORE = "MIN_SCORE"
    LEVEL = "LEVEL"
    RERANK = "RERANK"
    default_level = 0
    group_id = "search"

    def add_common_parameters(self) -> None:
        self.addParameter(QgsProcessingParameterNumber(self.K, "Number of hits",
                                                       QgsProcessingParameterNumber.Integer, 10, False, 1, 1000))
        self.addParameter(QgsProcessingParameterNumber(self.MIN_SCORE, "Minimum score",
                                                       QgsProcessingParameterNumber.Double, None, True, -1.0, 1.0))
        self.addParameter(QgsProcessingParameterEnum(self.LEVEL, "Rank", ["whole tiles", "regions inside tiles"],
                                                     defaultValue=self.default_level))
        self.addParameter(QgsProcessingParameterNumber(
            self.RERANK, "Score regions inside the top N tiles (0: the regions the index stores; on an index "
            f"without them, those of the top {AUTO_RERANK} tiles)", QgsProcessingParameterNumber.Integer, 0, True, 0,
            500))
        self.add_crs_parameter()
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Hits", QgsProcessing.TypeVectorPolygon))

    def base_params(self, parameters, context, **kw: Any) -> SearchParams:
        """SearchParams from the common parameters plus ``kw`` (mode, text, box, ...)."""
        min_score = parameters.get(self.MIN_SCORE)
        crs = self.out_crs(parameters, context)
        level = LEVELS[self.parameterAsEnum(parameters, self.LEVEL, context)]
        rerank = self.parameterAsInt(parameters, self.RERANK, context) or None  # auto: resolved by run_search
        return SearchParams(index=self.index(parameters, context), k=self.parameterAsInt(parameters, self.K, context),
                            min_score=None if min_score in (None, "") else
                            self.parameterAsDouble(parameters, self.MIN_SCORE, context),
                            out_crs=crs_to_text(crs), level=level, rerank=rerank, **kw)

    def search(self, params: SearchParams, feedback) -> tuple[SearchParams, dict]:
        """``params`` (region mode "auto" resolved against the index) and the backend's answer."""
        try:
            return run_search(self.client(feedback), params)
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
        params, resp = self.search(params, feedback)
        feedback.setProgress(80)
        sink, dest = self.sink(parameters, context, crs)
        feats = self.features(resp, crs, params.label, params.level)
        for feat in feats:
            sink.addFeature(feat, QgsFeatureSink.FastInsert)
        feedback.pushInfo(f"{len(feats)} {params.level} hits in {resp.get('took_ms', 0):.0f} ms")
        feedback.setProgress(100)
        self.style_output(dest, context, params.level)
        return {self.OUTPUT: dest}

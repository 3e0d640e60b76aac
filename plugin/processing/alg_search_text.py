"""Processing algorithm "Search by text" (geovec:search_text): a vector layer of hits."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeatureSink,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingParameterCrs,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsWkbTypes,
)

from ..client import BackendError, GeoVecClient
from ..hits import crs_to_text, features_from_response, hit_fields
from ..params import SearchParams
from .common import connection, processing_error


class SearchTextAlgorithm(QgsProcessingAlgorithm):
    INDEX = "INDEX"
    TEXT = "TEXT"
    K = "K"
    MIN_SCORE = "MIN_SCORE"
    CRS = "CRS"
    OUTPUT = "OUTPUT"

    def name(self) -> str:
        return "search_text"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return "Search by text"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Finds the K tiles of the GeoVec index INDEX that best match TEXT; outputs their footprints "
                "with rank, score, source and query.")

    def createInstance(self) -> SearchTextAlgorithm:  # noqa: N802
        return SearchTextAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(self.INDEX, "Index folder",
                                                     behavior=QgsProcessingParameterFile.Folder))
        self.addParameter(QgsProcessingParameterString(self.TEXT, "Description to find"))
        self.addParameter(QgsProcessingParameterNumber(self.K, "Number of hits",
                                                       QgsProcessingParameterNumber.Integer, 10, False, 1, 1000))
        self.addParameter(QgsProcessingParameterNumber(self.MIN_SCORE, "Minimum score",
                                                       QgsProcessingParameterNumber.Double, None, True, -1.0, 1.0))
        # optional: QGIS 3.22 does not fill a CRS parameter's default in for a missing value
        self.addParameter(QgsProcessingParameterCrs(self.CRS, "Output CRS (default EPSG:4326)", "EPSG:4326",
                                                    optional=True))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Hits", QgsProcessing.TypeVectorPolygon))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        text = self.parameterAsString(parameters, self.TEXT, context)
        crs = self.parameterAsCrs(parameters, self.CRS, context)
        if not crs.isValid():
            crs = QgsCoordinateReferenceSystem("EPSG:4326")
        min_score = parameters.get(self.MIN_SCORE)
        params = SearchParams(
            index=self.parameterAsFile(parameters, self.INDEX, context), mode="text", text=text,
            k=self.parameterAsInt(parameters, self.K, context),
            min_score=None if min_score in (None, "") else self.parameterAsDouble(parameters, self.MIN_SCORE, context),
            exclude_own=False, out_crs=crs_to_text(crs))
        try:
            resp = GeoVecClient(connection(), feedback).search(params)
        except BackendError as e:
            raise processing_error(e) from e
        sink, dest = self.parameterAsSink(parameters, self.OUTPUT, context, hit_fields(), QgsWkbTypes.Polygon, crs)
        for feat in features_from_response(resp, crs, params.label):
            sink.addFeature(feat, QgsFeatureSink.FastInsert)
        feedback.pushInfo(f"{len(resp.get('features') or [])} hits in {resp.get('took_ms', 0):.0f} ms")
        return {self.OUTPUT: dest}

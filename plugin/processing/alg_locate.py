"""Processing algorithm "Where is this?" (geovec:locate): ranked candidate locations as points."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterNumber,
    QgsProcessingParameterPoint,
    QgsWkbTypes,
)

from ..hits import crs_to_text
from ..workflow_params import LocateParams
from .base import GeoVecAlgorithm
from .outputs import LOCATION_FIELDS, features, fields_of


class LocateAlgorithm(GeoVecAlgorithm):
    POINT = "POINT"
    EXTENT = "EXTENT"
    K = "K"
    RADIUS_KM = "RADIUS_KM"
    MAX_LOCATIONS = "MAX_LOCATIONS"

    def name(self) -> str:
        return "locate"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return "Where is this?"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Finds where else what lies in EXTENT (a box) or at POINT appears: the K best tiles of the index "
                "are clustered by their centres (RADIUS_KM, default three tile diagonals) into ranked candidate "
                "locations, output as points with a score (share of the evidence) and the number of hits.")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.add_index_parameter()
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Box to locate", optional=True))
        self.addParameter(QgsProcessingParameterPoint(self.POINT, "Or a point to locate", optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.K, "Hits to cluster",
                                                       QgsProcessingParameterNumber.Integer, 50, False, 1, 5000))
        self.addParameter(QgsProcessingParameterNumber(self.RADIUS_KM, "Cluster radius (km)",
                                                       QgsProcessingParameterNumber.Double, None, True, 0.0001))
        self.addParameter(QgsProcessingParameterNumber(self.MAX_LOCATIONS, "Locations",
                                                       QgsProcessingParameterNumber.Integer, 10, False, 1, 1000))
        self.add_crs_parameter()
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Candidate locations",
                                                            QgsProcessing.TypeVectorPoint))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        crs = self.out_crs(parameters, context)
        index = self.index(parameters, context)
        if parameters.get(self.EXTENT):
            rect = self.parameterAsExtent(parameters, self.EXTENT, context)
            qcrs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
            query = {"box": [rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()]}
        elif parameters.get(self.POINT):
            pt = self.parameterAsPoint(parameters, self.POINT, context)
            qcrs = self.parameterAsPointCrs(parameters, self.POINT, context)
            query = {"point": [pt.x(), pt.y()]}
        else:
            raise QgsProcessingException("give a box (EXTENT) or a POINT to locate")
        query.update(index=index, crs=self.input_crs(qcrs, context))
        radius = parameters.get(self.RADIUS_KM)
        params = LocateParams(index=index, query=query, k=self.parameterAsInt(parameters, self.K, context),
                              radius_km=None if radius in (None, "") else
                              self.parameterAsDouble(parameters, self.RADIUS_KM, context),
                              max_locations=self.parameterAsInt(parameters, self.MAX_LOCATIONS, context),
                              out_crs=crs_to_text(crs))
        resp = self.call("locate", params.to_request(), feedback)
        feats = features(resp, LOCATION_FIELDS, crs)
        dest = self.write(parameters, context, fields_of(LOCATION_FIELDS), QgsWkbTypes.Point, crs, feats)
        feedback.pushInfo(f"{len(feats)} candidate locations from {(resp.get('query') or {}).get('hits')} hits")
        return {self.OUTPUT: dest}

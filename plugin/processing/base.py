"""GeoVecAlgorithm: what every GeoVec search and workflow algorithm shares.

Parameters INDEX (default: the dock's index) and CRS (default: the project's), the
group, a backend call that turns a backend error into one Processing error, and an
output sink. Subclasses set ``group_name`` / ``group_id`` and add their own parameters.
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsFields,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingParameterCrs,
    QgsProcessingParameterFile,
    QgsWkbTypes,
)

from ..client import BackendError, GeoVecClient
from ..hits import crs_to_text
from .common import connection, default_index, output_crs, processing_error

GROUPS = {"search": "Search", "workflows": "Workflows", "time": "Time and change"}


class GeoVecAlgorithm(QgsProcessingAlgorithm):
    """Base of the search and workflow algorithms: INDEX and CRS parameters, group, backend call, sink."""

    INDEX = "INDEX"
    CRS = "CRS"
    OUTPUT = "OUTPUT"
    group_id = "workflows"

    def group(self) -> str:
        return GROUPS[self.group_id]

    def groupId(self) -> str:  # noqa: N802 (QGIS API)
        return self.group_id

    def createInstance(self):  # noqa: N802 (QGIS API)
        return type(self)()

    # --- shared parameters ----------------------------------------------------------------
    def add_index_parameter(self) -> None:
        """INDEX, optional: the dock's current index when left empty (its default when one is chosen)."""
        self.addParameter(QgsProcessingParameterFile(self.INDEX, "Index folder (default: the dock's index)",
                                                     behavior=QgsProcessingParameterFile.Folder,
                                                     defaultValue=default_index() or None, optional=True))

    def add_crs_parameter(self, label: str = "Output CRS (default: the project's)") -> None:
        # optional: QGIS 3.22 does not fill a CRS parameter's default in for a missing value
        self.addParameter(QgsProcessingParameterCrs(self.CRS, label, None, optional=True))

    def index(self, parameters: dict[str, Any], context: QgsProcessingContext) -> str:
        path = self.parameterAsFile(parameters, self.INDEX, context) or default_index()
        if not path:
            raise processing_error(BackendError("No index given", "choose the index folder (or pick one in the "
                                                                  "GeoVec dock first)"))
        return path

    def out_crs(self, parameters: dict[str, Any], context: QgsProcessingContext) -> QgsCoordinateReferenceSystem:
        """The CRS parameter when given, else the project's CRS, else EPSG:4326."""
        return output_crs(self.parameterAsCrs(parameters, self.CRS, context), context)

    def input_crs(self, crs: QgsCoordinateReferenceSystem, context: QgsProcessingContext) -> str:
        """The CRS of a box or point parameter (the project's when the parameter came without one)."""
        return crs_to_text(output_crs(crs, context))

    # --- backend and outputs --------------------------------------------------------------
    def client(self, feedback) -> GeoVecClient:
        return GeoVecClient(connection(feedback), feedback)

    def call(self, route: str, body: dict[str, Any], feedback) -> dict:
        """POST ``body`` to the workflow ``route``; a backend error becomes one Processing error."""
        try:
            return self.client(feedback).workflow(route, body)
        except BackendError as e:
            raise processing_error(e) from e

    def write(self, parameters: dict[str, Any], context: QgsProcessingContext, fields: QgsFields,
              geometry: QgsWkbTypes.Type, crs: QgsCoordinateReferenceSystem | None,
              feats: list[QgsFeature], key: str | None = None) -> str:
        """``feats`` written to the sink parameter ``key`` (default OUTPUT); returns its destination."""
        key = key or self.OUTPUT
        args = (parameters, key, context, fields, geometry) + ((crs,) if crs is not None else ())
        sink, dest = self.parameterAsSink(*args)
        if sink is None:
            raise QgsProcessingException(f"the output {key} cannot be written: choose another file")
        for feat in feats:
            sink.addFeature(feat, QgsFeatureSink.FastInsert)
        sink.flushBuffer()
        return dest


__all__ = ["GROUPS", "GeoVecAlgorithm"]

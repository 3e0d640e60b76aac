"""Processing algorithm "Ask about a region" (geovec:ask): candidate answers ranked for a box."""

from __future__ import annotations

from qgis.core import (
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingOutputString,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..client import BackendError, GeoVecClient
from ..hits import crs_to_text
from ..workflow_params import AskParams, split_names
from .common import connection, processing_error


class AskAlgorithm(QgsProcessingAlgorithm):
    INDEX = "INDEX"
    EXTENT = "EXTENT"
    QUESTION = "QUESTION"
    ANSWERS = "ANSWERS"
    OUTPUT = "OUTPUT"
    BEST = "BEST"

    def name(self) -> str:
        return "ask"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return "Ask about a region"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Ranks candidate ANSWERS (comma-separated, e.g. a class list) to QUESTION about the box EXTENT, "
                "with the model's VQA instruction; outputs a table of answers with score and rank.")

    def createInstance(self) -> AskAlgorithm:  # noqa: N802
        return AskAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(self.INDEX, "Index folder",
                                                     behavior=QgsProcessingParameterFile.Folder))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Region (box)"))
        self.addParameter(QgsProcessingParameterString(self.QUESTION, "Question", "what covers this area?"))
        self.addParameter(QgsProcessingParameterString(self.ANSWERS, "Candidate answers (comma-separated)"))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Ranked answers",
                                                            QgsProcessing.TypeVector))
        self.addOutput(QgsProcessingOutputString(self.BEST, "Best answer"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        rect = self.parameterAsExtent(parameters, self.EXTENT, context)
        crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
        if not crs.isValid():
            crs = context.project().crs()
        params = AskParams(index=self.parameterAsFile(parameters, self.INDEX, context),
                           box=(rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()),
                           crs=crs_to_text(crs), question=self.parameterAsString(parameters, self.QUESTION, context),
                           answers=tuple(split_names(self.parameterAsString(parameters, self.ANSWERS, context))))
        try:
            resp = GeoVecClient(connection(), feedback).workflow("ask", params.to_request())
        except BackendError as e:
            raise processing_error(e) from e
        fields = QgsFields()
        for name, kind in (("rank", QVariant.Int), ("answer", QVariant.String), ("score", QVariant.Double)):
            fields.append(QgsField(name, kind))
        sink, dest = self.parameterAsSink(parameters, self.OUTPUT, context, fields, QgsWkbTypes.NoGeometry)
        answers = resp.get("answers") or []
        for a in answers:
            f = QgsFeature(fields)
            f.setAttributes([int(a["rank"]), str(a["answer"]), float(a["score"])])
            sink.addFeature(f, QgsFeatureSink.FastInsert)
        best = answers[0]["answer"] if answers else ""
        feedback.pushInfo(f"best answer: {best}")
        return {self.OUTPUT: dest, self.BEST: best}

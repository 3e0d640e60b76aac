"""Processing algorithm "Ask about a region" (geovec:ask): candidate answers ranked for a box."""

from __future__ import annotations

from qgis.core import (
    QgsFeature,
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingOutputString,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterString,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..workflow_params import AskParams, split_names
from .base import GeoVecAlgorithm


class AskAlgorithm(GeoVecAlgorithm):
    EXTENT = "EXTENT"
    QUESTION = "QUESTION"
    ANSWERS = "ANSWERS"
    BEST = "BEST"

    def name(self) -> str:
        return "ask"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return "Ask about a region"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Ranks candidate ANSWERS (comma-separated, e.g. a class list) to QUESTION about the box EXTENT, "
                "with the model's VQA instruction; outputs a table of answers with score and rank.")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.add_index_parameter()
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Region (box)"))
        self.addParameter(QgsProcessingParameterString(self.QUESTION, "Question", "what covers this area?"))
        self.addParameter(QgsProcessingParameterString(self.ANSWERS, "Candidate answers (comma-separated)"))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Ranked answers",
                                                            QgsProcessing.TypeVector))
        self.addOutput(QgsProcessingOutputString(self.BEST, "Best answer"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        rect = self.parameterAsExtent(parameters, self.EXTENT, context)
        crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
        params = AskParams(index=self.index(parameters, context),
                           box=(rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()),
                           crs=self.input_crs(crs, context), question=self.parameterAsString(parameters, self.QUESTION, context),
                           answers=tuple(split_names(self.parameterAsString(parameters, self.ANSWERS, context))))
        resp = self.call("ask", params.to_request(), feedback)
        fields = QgsFields()
        for name, kind in (("rank", QVariant.Int), ("answer", QVariant.String), ("score", QVariant.Double)):
            fields.append(QgsField(name, kind))
        answers = resp.get("answers") or []
        rows = []
        for a in answers:
            f = QgsFeature(fields)
            f.setAttributes([int(a["rank"]), str(a["answer"]), float(a["score"])])
            rows.append(f)
        dest = self.write(parameters, context, fields, QgsWkbTypes.NoGeometry, None, rows)
        best = answers[0]["answer"] if answers else ""
        feedback.pushInfo(f"best answer: {best}")
        return {self.OUTPUT: dest, self.BEST: best}

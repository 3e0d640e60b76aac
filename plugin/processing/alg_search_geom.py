"""Processing algorithms "Search by box", "Search by point", "Find similar to each feature"."""

from __future__ import annotations

from qgis.core import (
    QgsFeature,
    QgsFeatureRequest,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterPoint,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QVariant

from ..client import BackendError
from ..hits import crs_to_text, hit_fields
from ..tasks.search import run_search
from .common import processing_error
from .search_base import SearchAlgorithm


class _GeomSearch(SearchAlgorithm):
    TEXT = "TEXT"
    EXCLUDE = "EXCLUDE_OWN"

    def add_query_options(self) -> None:
        self.addParameter(QgsProcessingParameterString(self.TEXT, "…and this description (optional)",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterBoolean(self.EXCLUDE, "Exclude the query's own tiles", True))

    def query_options(self, parameters, context) -> dict:
        text = (self.parameterAsString(parameters, self.TEXT, context) or "").strip()
        return {"text": text or None, "exclude_own": self.parameterAsBool(parameters, self.EXCLUDE, context)}


class SearchBoxAlgorithm(_GeomSearch):
    BOX = "BOX"

    def name(self) -> str:
        return "search_box"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return "Search by box"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Finds the tiles (or regions) most like the imagery inside BOX; with TEXT as well, one "
                "compositional query ('like this, but next to water').")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.add_index_parameter()
        self.addParameter(QgsProcessingParameterExtent(self.BOX, "Query box"))
        self.add_query_options()
        self.add_common_parameters()

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        rect = self.parameterAsExtent(parameters, self.BOX, context)
        crs = self.parameterAsExtentCrs(parameters, self.BOX, context)
        if rect.isEmpty():
            raise QgsProcessingException(f"The query box {rect.toString()} has no area: draw a larger box")
        box = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
        return self.run_one(parameters, context, feedback, mode="box", box=box, crs=crs_to_text(crs),
                            **self.query_options(parameters, context))


class SearchPointAlgorithm(_GeomSearch):
    POINT = "POINT"

    def name(self) -> str:
        return "search_point"

    def displayName(self) -> str:  # noqa: N802
        return "Search by point"

    def shortHelpString(self) -> str:  # noqa: N802
        return "Finds the tiles (or regions) most like the tile under POINT (optionally with TEXT)."

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.add_index_parameter()
        self.addParameter(QgsProcessingParameterPoint(self.POINT, "Query point"))
        self.add_query_options()
        self.add_common_parameters()

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        point = self.parameterAsPoint(parameters, self.POINT, context)
        crs = self.parameterAsPointCrs(parameters, self.POINT, context)
        return self.run_one(parameters, context, feedback, mode="point", point=(point.x(), point.y()),
                            crs=crs_to_text(crs), **self.query_options(parameters, context))


class SimilarPerFeatureAlgorithm(_GeomSearch):
    """One box search per polygon; each hit carries the id and attributes of its query feature."""

    LAYER = "LAYER"
    SKIPPED = "SKIPPED"

    def name(self) -> str:
        return "similar_per_feature"

    def displayName(self) -> str:  # noqa: N802
        return "Find similar to each feature of a layer"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Runs one box search per feature of LAYER (its bounding box on the imagery) and writes every hit "
                "with the query feature's id and attributes (prefixed 'query_'). A feature outside the indexed "
                "imagery is skipped with a warning naming it; the log ends with how many were skipped.")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.add_index_parameter()
        self.addParameter(QgsProcessingParameterFeatureSource(self.LAYER, "Query features",
                                                              [QgsProcessing.TypeVectorPolygon]))
        self.add_query_options()
        self.add_common_parameters()
        self.addOutput(QgsProcessingOutputNumber(self.SKIPPED, "Features skipped (outside the indexed imagery)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        source = self.parameterAsSource(parameters, self.LAYER, context)
        if source is None:
            raise QgsProcessingException("The query layer could not be read: choose a polygon layer")
        crs = self.out_crs(parameters, context)
        fields = QgsFields(hit_fields())
        fields.append(QgsField("query_fid", QVariant.LongLong))
        for f in source.fields():
            fields.append(QgsField("query_" + f.name(), f.type(), f.typeName(), f.length(), f.precision()))
        sink, dest = self.sink(parameters, context, crs, fields)
        total = max(source.featureCount(), 1)
        level = "tile"
        opts = self.query_options(parameters, context)
        client = self.client(feedback)
        outside: list[int] = []
        for i, feat in enumerate(source.getFeatures(QgsFeatureRequest())):
            if feedback.isCanceled():
                break
            rect = feat.geometry().boundingBox()
            if rect.isEmpty():
                feedback.reportError(f"feature {feat.id()} has no area: skipped")
                continue
            params = self.base_params(parameters, context, mode="box", crs=crs_to_text(source.sourceCrs()),
                                      box=(rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()),
                                      **opts)
            try:
                params, resp = run_search(client, params)
            except BackendError as e:
                if e.code != "out_of_bounds":
                    raise processing_error(e) from e
                outside.append(feat.id())
                feedback.reportError(f"feature {feat.id()} lies outside the indexed imagery: skipped ({e.message})")
                continue
            level = params.level
            found = self.features(resp, crs, params.label, params.level)
            feedback.pushInfo(f"feature {feat.id()}: {len(found)} hits")
            for hit in found:
                out = QgsFeature(fields)
                out.setGeometry(hit.geometry())
                out.setAttributes(list(hit.attributes()) + [feat.id()] + list(feat.attributes()))
                sink.addFeature(out, QgsFeatureSink.FastInsert)
            feedback.setProgress(100.0 * (i + 1) / total)
        sink.flushBuffer()
        del sink  # the file is complete when the algorithm returns (not when the frame is collected)
        if outside:
            feedback.reportError(f"{len(outside)} of {source.featureCount()} features lie outside the indexed "
                                 f"imagery and were skipped (ids {', '.join(map(str, outside[:20]))}"
                                 f"{', …' if len(outside) > 20 else ''})")
        self.style_output(dest, context, level)
        return {self.OUTPUT: dest, self.SKIPPED: len(outside)}


__all__ = ["SearchBoxAlgorithm", "SearchPointAlgorithm", "SimilarPerFeatureAlgorithm"]

"""Processing algorithm "Classify tiles (zero-shot)" (geovec:classify): class per tile + class maps."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterString,
    QgsWkbTypes,
)

from ..hits import crs_to_text
from ..workflow_params import Area, ClassifyParams, split_names
from .base import GeoVecAlgorithm
from .outputs import CLASS_FIELDS, LEVELS, features, fields_of


class ClassifyAlgorithm(GeoVecAlgorithm):
    CLASSES = "CLASSES"
    TEMPLATE = "TEMPLATE"
    EXTENT = "EXTENT"
    LEVEL = "LEVEL"
    OUTPUT_DIR = "OUTPUT_DIR"
    CLASS_MAPS = "CLASS_MAPS"

    def name(self) -> str:
        return "classify"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return "Classify tiles (zero-shot)"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Gives every tile of the GeoVec index INDEX (or those centred in EXTENT) the best of your "
                "CLASSES (comma-separated; at least two), each a text prompt made from TEMPLATE. Outputs the "
                "tiles with class, score and margin to the runner-up, and one class-map GeoTIFF per scene "
                "(on the scene's grid) in OUTPUT_DIR. LEVEL region classifies the regions an index built with "
                "'Also index regions inside tiles' stores instead (one polygon per region box; each class-map pixel takes the best-scoring "
                "region).")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.add_index_parameter()
        self.addParameter(QgsProcessingParameterString(self.CLASSES, "Class names (comma-separated)",
                                                       "water, forest, urban"))
        self.addParameter(QgsProcessingParameterString(self.TEMPLATE, "Prompt template ({label} = class name)",
                                                       "a satellite image of {label}"))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Only tiles in this extent", optional=True))
        self.add_crs_parameter()
        self.addParameter(QgsProcessingParameterEnum(self.LEVEL, "Classify tiles, or the regions the index stores",
                                                     LEVELS, defaultValue=0, optional=True))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_DIR, "Class maps folder"))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Classified tiles",
                                                            QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputString(self.CLASS_MAPS, "Class-map GeoTIFFs (;-separated)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        crs = self.out_crs(parameters, context)
        area = None
        if parameters.get(self.EXTENT):
            rect = self.parameterAsExtent(parameters, self.EXTENT, context)
            ecrs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
            area = Area(crs=self.input_crs(ecrs, context),
                        box=(rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()))
        params = ClassifyParams(
            index=self.index(parameters, context),
            classes=tuple(split_names(self.parameterAsString(parameters, self.CLASSES, context))),
            template=self.parameterAsString(parameters, self.TEMPLATE, context) or "a satellite image of {label}",
            area=area, out_dir=self.parameterAsString(parameters, self.OUTPUT_DIR, context) or None,
            out_crs=crs_to_text(crs),
            level=LEVELS[self.parameterAsEnum(parameters, self.LEVEL, context)])
        resp = self.call("classify", params.to_request(), feedback)
        counts = ", ".join(f"{c} {n}" for c, n in (resp.get("counts") or {}).items())
        feedback.pushInfo(f"{resp.get('tiles', 0)} tiles classified: {counts}")
        dest = self.write(parameters, context, fields_of(CLASS_FIELDS), QgsWkbTypes.Polygon, crs,
                          features(resp, CLASS_FIELDS, crs))
        maps = [m["path"] for m in resp.get("class_maps") or []]
        return {self.OUTPUT: dest, self.OUTPUT_DIR: params.out_dir, self.CLASS_MAPS: ";".join(maps)}

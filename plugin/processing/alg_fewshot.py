"""Processing algorithm "Classify tiles from examples (few-shot)" (geovec:fewshot)."""

from __future__ import annotations

import json

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsWkbTypes,
)

from ..hits import crs_to_text
from ..workflow_params import FewShotParams
from .base import GeoVecAlgorithm
from .outputs import CLASS_FIELDS, LEVELS, features, fields_of

METHODS = ["auto", "prototype", "logistic", "logistic_std", "knn"]
WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")


def labelled_geojson(source, field: str, context) -> dict:
    """The source's features with a value in ``field`` as a GeoJSON FeatureCollection in EPSG:4326."""
    xform = QgsCoordinateTransform(source.sourceCrs(), WGS84, context.transformContext())
    feats = []
    for f in source.getFeatures():
        value = f[field]
        geom = f.geometry()
        if geom is None or geom.isEmpty() or value is None or str(value).strip() in ("", "NULL"):
            continue
        geom.transform(xform)
        feats.append({"type": "Feature", "id": int(f.id()), "geometry": json.loads(geom.asJson()),
                      "properties": {"label": str(value)}})
    return {"type": "FeatureCollection", "features": feats}


class FewShotAlgorithm(GeoVecAlgorithm):
    LABELS = "LABELS"
    LABEL_FIELD = "LABEL_FIELD"
    METHOD = "METHOD"
    BLOCK_KM = "BLOCK_KM"
    LEVEL = "LEVEL"
    OUTPUT_DIR = "OUTPUT_DIR"
    ACCURACY = "ACCURACY"
    CLASS_MAPS = "CLASS_MAPS"

    def name(self) -> str:
        return "fewshot"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return "Classify tiles from examples (few-shot)"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Learns classes from a labelled point or polygon layer (any CRS): the index's tiles under each "
                "feature train a light classifier (prototypes, logistic regression, k-NN; chosen by cross-validation "
                "with whole spatial blocks held out, its accuracy measured by nested cross-validation). The "
                "held-out accuracy is reported before every tile is "
                "classified; outputs the tiles and one class-map GeoTIFF per scene. LEVEL region learns from and "
                "classifies the regions an index built with 'Also index regions inside tiles' stores (those centred in a labelled polygon, "
                "or the smallest one holding a labelled point).")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.add_index_parameter()
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.LABELS, "Labelled examples", [QgsProcessing.TypeVectorPoint, QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterField(self.LABEL_FIELD, "Class field", "label", self.LABELS))
        self.addParameter(QgsProcessingParameterEnum(self.METHOD, "Classifier", METHODS, defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(self.BLOCK_KM, "Spatial block (km) for held-out accuracy",
                                                       QgsProcessingParameterNumber.Double, None, True, 0.001))
        self.add_crs_parameter()
        self.addParameter(QgsProcessingParameterEnum(self.LEVEL, "Classify tiles, or the regions the index stores",
                                                     LEVELS, defaultValue=0, optional=True))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_DIR, "Class maps folder"))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Classified tiles",
                                                            QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber(self.ACCURACY, "Held-out accuracy"))
        self.addOutput(QgsProcessingOutputString(self.CLASS_MAPS, "Class-map GeoTIFFs (;-separated)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        source = self.parameterAsSource(parameters, self.LABELS, context)
        if source is None:
            raise QgsProcessingException("the labelled examples layer cannot be read")
        field = self.parameterAsString(parameters, self.LABEL_FIELD, context) or "label"
        if source.fields().indexFromName(field) < 0:
            raise QgsProcessingException(f"the examples layer has no field {field!r}")
        crs = self.out_crs(parameters, context)
        block = parameters.get(self.BLOCK_KM)
        params = FewShotParams(
            index=self.index(parameters, context),
            geojson=labelled_geojson(source, field, context),
            method=METHODS[self.parameterAsEnum(parameters, self.METHOD, context)],
            block_km=None if block in (None, "") else self.parameterAsDouble(parameters, self.BLOCK_KM, context),
            out_dir=self.parameterAsString(parameters, self.OUTPUT_DIR, context) or None, out_crs=crs_to_text(crs),
            level=LEVELS[self.parameterAsEnum(parameters, self.LEVEL, context)])
        resp = self.call("fewshot", params.to_request(), feedback)
        cv = resp.get("cv") or {}
        nested = cv.get("nested_accuracy")
        acc = nested if nested is not None else (cv.get("accuracy") or {}).get(cv.get("method"))
        accs = ", ".join(f"{m} {a:.3f}" for m, a in (cv.get("accuracy") or {}).items()) or "not measured"
        where = (f"{cv.get('folds')} folds of whole {cv.get('block_km')} km blocks, {cv.get('features')} features, "
                 f"{cv.get('examples')} {resp.get('level', 'tile')}s")
        if nested is not None:
            feedback.pushInfo(f"held-out accuracy of choosing the classifier ({where}; nested CV: inner folds choose, "
                              f"outer folds score): {nested:.3f}")
            feedback.pushInfo(f"per configuration on the same folds (their best is optimistic): {accs}; "
                              f"using {cv.get('method')}")
        else:
            feedback.pushInfo(f"held-out accuracy ({where}): {accs}; using {cv.get('method')}")
        if cv.get("note"):
            feedback.reportError(cv["note"], False)
        dest = self.write(parameters, context, fields_of(CLASS_FIELDS), QgsWkbTypes.Polygon, crs,
                          features(resp, CLASS_FIELDS, crs))
        maps = [m["path"] for m in resp.get("class_maps") or []]
        return {self.OUTPUT: dest, self.OUTPUT_DIR: params.out_dir, self.ACCURACY: acc,
                self.CLASS_MAPS: ";".join(maps)}

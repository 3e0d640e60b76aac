"""Processing algorithm "Index a folder of GeoTIFFs" (geovec:index_folder)."""

from __future__ import annotations

import time

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..client import BackendError, GeoVecClient
from ..params import IndexParams, empty_folder_message, indexed_nothing, parse_bands
from ..tasks.index_job import DONE_STATES, describe
from .common import connection, processing_error


class IndexFolderAlgorithm(QgsProcessingAlgorithm):
    FOLDER = "FOLDER"
    INDEX = "INDEX"
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    MODEL = "MODEL"
    BANDS = "BANDS"
    REGIONS = "REGIONS"
    TILES = "TILES"
    SCENES = "SCENES"

    def name(self) -> str:
        return "index_folder"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return "Index a folder of GeoTIFFs"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Tiles every GeoTIFF in FOLDER, embeds the tiles on the GeoVec backend and adds them to the "
                "index directory INDEX (created if absent; unchanged scenes are skipped).")

    def createInstance(self) -> IndexFolderAlgorithm:  # noqa: N802
        return IndexFolderAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(self.FOLDER, "Folder of GeoTIFFs",
                                                     behavior=QgsProcessingParameterFile.Folder))
        self.addParameter(QgsProcessingParameterNumber(self.TILE_SIZE, "Tile size (pixels)",
                                                       QgsProcessingParameterNumber.Integer, 256, False, 16, 8192))
        self.addParameter(QgsProcessingParameterNumber(self.OVERLAP, "Overlap (fraction of a tile)",
                                                       QgsProcessingParameterNumber.Double, 0.0, False, 0.0, 0.9))
        self.addParameter(QgsProcessingParameterString(self.MODEL, "Model (empty: the backend's)", "",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterString(self.BANDS, "Bands as R,G,B (e.g. 4,3,2; empty: RGB default)",
                                                       "", optional=True))
        self.addParameter(QgsProcessingParameterBoolean(self.REGIONS, "Also index regions inside tiles", False))
        self.addParameter(QgsProcessingParameterFolderDestination(self.INDEX, "Index folder"))
        self.addOutput(QgsProcessingOutputNumber(self.TILES, "Tiles indexed"))
        self.addOutput(QgsProcessingOutputNumber(self.SCENES, "Scenes indexed"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        try:
            bands = parse_bands(self.parameterAsString(parameters, self.BANDS, context))
        except ValueError as e:
            raise QgsProcessingException(str(e)) from e
        params = IndexParams(
            folder=self.parameterAsFile(parameters, self.FOLDER, context),
            index=self.parameterAsString(parameters, self.INDEX, context),
            model=self.parameterAsString(parameters, self.MODEL, context) or None,
            tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context),
            overlap=self.parameterAsDouble(parameters, self.OVERLAP, context),
            bands=bands,
            regions="" if self.parameterAsBool(parameters, self.REGIONS, context) else None,
        )
        client = GeoVecClient(connection(feedback), feedback)
        try:
            job = client.start_job(params)
            cancel_sent = False
            while job.get("state") not in DONE_STATES:
                if feedback.isCanceled() and not cancel_sent:
                    job = client.cancel_job(job["job_id"])
                    cancel_sent = True
                    continue
                time.sleep(0.5)
                job = client.job(job["job_id"])
                if job.get("tiles_total"):
                    feedback.setProgress(100.0 * job.get("tiles_done", 0) / job["tiles_total"])
                feedback.setProgressText(describe(job))
        except BackendError as e:
            raise processing_error(e) from e
        for err in job.get("errors") or []:
            feedback.reportError(f"{err.get('path')}: {err.get('error')}")
        if job.get("state") != "done":
            raise QgsProcessingException(f"indexing job ended {job.get('state')}: {job.get('message', '')}")
        summary = job.get("summary") or {}
        if indexed_nothing(job):
            raise QgsProcessingException(empty_folder_message(params.folder))
        return {self.INDEX: params.index, self.TILES: summary.get("tiles", job.get("tiles_done", 0)),
                self.SCENES: summary.get("scenes", 0)}

"""What the algorithms share: the backend (started when needed), defaults, a clear Processing error."""

from __future__ import annotations

from qgis.core import QgsCoordinateReferenceSystem, QgsFeedback, QgsProcessingException, QgsProject

from ..backend_start import ensure_backend
from ..client import BackendError
from ..params import Connection
from ..settings import Setting


def connection(feedback: QgsFeedback | None = None) -> Connection:
    """The backend connection; starts the backend when auto-start is on (also from ``qgis_process``)."""
    try:
        return ensure_backend(feedback)
    except BackendError as e:
        raise processing_error(e) from e


def processing_error(e: BackendError) -> QgsProcessingException:
    return QgsProcessingException(str(e))


def default_index() -> str:
    """The dock's current index (empty when none was chosen yet)."""
    return Setting.LAST_INDEX.get()


def output_crs(chosen: QgsCoordinateReferenceSystem, context) -> QgsCoordinateReferenceSystem:
    """``chosen`` when valid, else the project's CRS, else EPSG:4326."""
    if chosen.isValid():
        return chosen
    project = context.project() if context is not None and context.project() else QgsProject.instance()
    crs = project.crs() if project is not None else QgsCoordinateReferenceSystem()
    return crs if crs.isValid() else QgsCoordinateReferenceSystem("EPSG:4326")

"""What both algorithms share: the backend connection, or a clear Processing error."""

from __future__ import annotations

from qgis.core import QgsProcessingException

from ..backend_manager import current_connection
from ..client import BackendError
from ..params import Connection


def connection() -> Connection:
    conn = current_connection()
    if conn is None:
        raise QgsProcessingException(
            "No GeoVec backend is running: open the GeoVec dock (it starts one) or run `geovec serve` "
            "(or set the backend URL in GeoVec > Settings)")
    return conn


def processing_error(e: BackendError) -> QgsProcessingException:
    return QgsProcessingException(str(e))

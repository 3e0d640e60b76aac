"""One QgsTask per job type; ``run()`` never raises."""

from .base import GeoVecTask, Outcome
from .index_job import IndexJobTask
from .search import SearchTask
from .setup_backend import SetupBackendTask

__all__ = ["GeoVecTask", "Outcome", "IndexJobTask", "SearchTask", "SetupBackendTask"]

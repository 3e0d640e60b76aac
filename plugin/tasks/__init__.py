"""One QgsTask per job type; ``run()`` never raises."""

from .base import GeoVecTask, Outcome
from .index_job import IndexJobTask
from .index_summary import IndexSummaryTask, describe_summary
from .search import SearchTask
from .setup_backend import SetupBackendTask

__all__ = ["GeoVecTask", "Outcome", "IndexJobTask", "IndexSummaryTask", "SearchTask", "SetupBackendTask",
           "describe_summary"]

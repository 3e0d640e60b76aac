"""SearchTask: one ``POST /v1/search`` off the UI thread."""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import QgsFeedback

from ..client import GeoVecClient
from ..params import Connection, SearchParams
from .base import GeoVecTask


class SearchTask(GeoVecTask):
    """Run one query; ``result`` is the GeoJSON FeatureCollection (SearchResponse)."""

    def __init__(self, conn: Connection, params: SearchParams,
                 on_done: Callable[[GeoVecTask], None] | None = None) -> None:
        super().__init__(f"GeoVec search ({params.mode})", on_done)
        self.conn = conn
        self.params = params
        self._feedback: QgsFeedback | None = None

    def work(self) -> dict:
        self._feedback = QgsFeedback()
        return GeoVecClient(self.conn, self._feedback).search(self.params)

    def cancel(self) -> None:
        if self._feedback is not None:
            self._feedback.cancel()
        super().cancel()

"""WorkflowTask: one workflow call (classify, few-shot, refine, locate, ask) off the UI thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qgis.core import QgsFeedback

from ..client import GeoVecClient
from ..params import Connection
from .base import GeoVecTask


class WorkflowTask(GeoVecTask):
    """``POST`` ``params.to_request()`` to the route ``name``; ``result`` is the decoded reply."""

    def __init__(self, conn: Connection, name: str, params: Any, title: str,
                 on_done: Callable[[GeoVecTask], None] | None = None) -> None:
        super().__init__(title, on_done)
        self.conn = conn
        self.name = name
        self.params = params
        self._feedback: QgsFeedback | None = None

    def work(self) -> dict:
        self._feedback = QgsFeedback()
        return GeoVecClient(self.conn, self._feedback).workflow(self.name, self.params.to_request())

    def cancel(self) -> None:
        if self._feedback is not None:
            self._feedback.cancel()
        super().cancel()

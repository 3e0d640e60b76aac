"""SearchTask: one ``POST /v1/search`` off the UI thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from qgis.core import QgsFeedback

from ..client import GeoVecClient
from ..params import Connection, SearchParams, index_has_regions, resolve_rerank
from .base import GeoVecTask

#: (index path, its sidecar's mtime) -> its ``GET /v1/indexes/info`` body; asked again when the index changes
_INFO: dict[tuple[str, int | None], dict[str, Any]] = {}


def _key(path: str) -> tuple[str, int | None]:
    try:  # the sidecar changes when a job (the dock's, Processing's, the CLI's) rewrites the index
        return path, (Path(path) / "index.json").stat().st_mtime_ns
    except OSError:
        return path, None


def forget_index(path: str) -> None:
    """Ask the backend again what ``path`` holds (it was just indexed)."""
    for key in [k for k in _INFO if k[0] == path]:
        del _INFO[key]


def _info(client: GeoVecClient, path: str) -> dict[str, Any]:
    key = _key(path)
    if key not in _INFO:
        _INFO[key] = client.index_info(path)
    return _INFO[key]


def has_regions(client: GeoVecClient, path: str) -> bool:
    """Whether the index at ``path`` stores regions (``GET /v1/indexes/info``, once per version of the index)."""
    return index_has_regions(_info(client, path))


def dated_scenes(client: GeoVecClient, path: str) -> int:
    """How many scenes of the index at ``path`` carry an acquisition date."""
    dates = (_info(client, path).get("extra") or {}).get("dates") or {}
    return int(dates.get("dated") or 0)


def run_search(client: GeoVecClient, params: SearchParams) -> tuple[SearchParams, dict]:
    """``params`` with region mode "auto" resolved against the index, and the backend's answer.

    On an index holding two or more dates, every hit also brings its place on the other dates (the
    tooltip's strip of other dates).
    """
    if params.level == "region" and params.rerank is None:
        params = resolve_rerank(params, has_regions(client, params.index))
    if "other_dates" not in params.extra and dated_scenes(client, params.index) >= 2:
        params = replace(params, extra={**params.extra, "other_dates": True})
    return params, client.search(params)


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
        self.params, resp = run_search(GeoVecClient(self.conn, self._feedback), self.params)
        return resp

    def cancel(self) -> None:
        if self._feedback is not None:
            self._feedback.cancel()
        super().cancel()

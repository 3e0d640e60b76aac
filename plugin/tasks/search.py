"""SearchTask: one ``POST /v1/search`` off the UI thread."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qgis.core import QgsFeedback

from ..client import GeoVecClient
from ..params import Connection, SearchParams, index_has_regions, resolve_rerank
from .base import GeoVecTask

#: (index path, its sidecar's mtime) -> whether it stores regions; asked again when the index changes
_HAS_REGIONS: dict[tuple[str, int | None], bool] = {}


def _key(path: str) -> tuple[str, int | None]:
    try:  # the sidecar changes when a job (the dock's, Processing's, the CLI's) rewrites the index
        return path, (Path(path) / "index.json").stat().st_mtime_ns
    except OSError:
        return path, None


def forget_index(path: str) -> None:
    """Ask the backend again whether ``path`` stores regions (it was just indexed)."""
    for key in [k for k in _HAS_REGIONS if k[0] == path]:
        del _HAS_REGIONS[key]


def has_regions(client: GeoVecClient, path: str) -> bool:
    """Whether the index at ``path`` stores regions (``GET /v1/indexes/info``, once per version of the index)."""
    key = _key(path)
    if key not in _HAS_REGIONS:
        _HAS_REGIONS[key] = index_has_regions(client.index_info(path))
    return _HAS_REGIONS[key]


def run_search(client: GeoVecClient, params: SearchParams) -> tuple[SearchParams, dict]:
    """``params`` with region mode "auto" resolved against the index, and the backend's answer."""
    if params.level == "region" and params.rerank is None:
        params = resolve_rerank(params, has_regions(client, params.index))
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

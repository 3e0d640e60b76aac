"""IndexSummaryTask: what an index holds (scenes, tiles, model, CRS list, size on disk)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..client import GeoVecClient
from ..params import Connection
from .base import GeoVecTask


def size_on_disk(path: str) -> int:
    """Bytes of every file under ``path`` (0 when it is not a local folder)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                pass
    return total


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def describe_summary(info: dict) -> str:
    """One line: scenes, tiles, model, CRS list, tiling, size on disk."""
    extra = info.get("extra") or {}
    crs = extra.get("crs") or extra.get("crs_list") or info.get("crs") or []
    crs_text = ", ".join(crs) if isinstance(crs, list) else str(crs)
    tiling = info.get("tiling") or {}
    model = info.get("checkpoint") or info.get("preset") or "?"
    parts = [f"{info.get('scenes', '?')} scenes", f"{info.get('count', '?')} tiles", f"model {model}"]
    if crs_text:
        parts.append(f"CRS {crs_text}")
    if tiling.get("tile_size"):
        parts.append(f"{tiling['tile_size']} px tiles, overlap {tiling.get('overlap', 0)}")
    if extra.get("regions") or info.get("regions"):
        parts.append("with regions")
    parts.append(human_size(info.get("size_bytes", 0)) + " on disk")
    return " · ".join(parts)


class IndexSummaryTask(GeoVecTask):
    """``GET /v1/indexes/info`` plus the folder's size on disk; ``result`` is the info dict."""

    def __init__(self, conn: Connection, path: str, on_done: Callable[[GeoVecTask], None] | None = None) -> None:
        super().__init__(f"GeoVec summary of {path}", on_done)
        self.conn = conn
        self.path = path

    def work(self) -> dict:
        info = dict(GeoVecClient(self.conn).index_info(self.path))
        info["size_bytes"] = size_on_disk(self.path)
        return info

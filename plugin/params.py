"""Parameters of each job type: the dock fills these from its widgets, nothing more.

They serialise to the JSON bodies of backend/schemas.py (``IndexRequest``,
``SearchRequest``); derived values are properties.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal

QueryMode = Literal["text", "box", "point"]
Level = Literal["tile", "region"]
WithinMode = Literal["intersects", "centre", "inside"]
#: region candidates scored inside this many top tiles when ranking regions on an index without stored
#: regions and the user left it on auto (an index with stored regions answers from them)
AUTO_RERANK = 20
#: how the dock's "Search in view" / selected polygon confines hits: the tile (region) centre lies in the area
VIEW_WITHIN_MODE: WithinMode = "centre"


@dataclass(frozen=True)
class Connection:
    """Where the backend listens and the Bearer token it expects."""

    url: str
    token: str = ""

    @property
    def base(self) -> str:
        """The URL without a trailing slash or ``/v1``."""
        base = self.url.rstrip("/")
        return base[: -len("/v1")] if base.endswith("/v1") else base


def parse_bands(text: str | None) -> tuple[int, ...] | None:
    """``"4,3,2"`` -> (4, 3, 2); empty -> None; raises ValueError naming the bad text."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        bands = tuple(int(b) for b in text.replace(" ", ",").split(",") if b)
    except ValueError as e:
        raise ValueError(f"bands {text!r} are not numbers: give three 1-based band numbers such as 4,3,2") from e
    if len(bands) != 3 or min(bands) < 1:
        raise ValueError(f"bands {text!r}: give three 1-based band numbers (R,G,B) such as 4,3,2")
    return bands


def indexed_nothing(job: dict[str, Any]) -> bool:
    """A finished job that found no tiles at all (not even unchanged scenes it skipped)."""
    summary = job.get("summary") or {}
    return (job.get("state") == "done" and not summary.get("tiles", job.get("tiles_done", 0))
            and not summary.get("scenes_skipped_unchanged"))


def empty_folder_message(folder: str) -> str:
    return (f"No tiles were indexed: {folder} holds no readable GeoTIFF (.tif/.tiff) with enough valid pixels. "
            "Choose a folder of GeoTIFFs.")


@dataclass(frozen=True)
class IndexParams:
    """Index (or update) a folder of GeoTIFFs into an index directory."""

    folder: str
    index: str
    model: str | None = None
    tile_size: int = 256
    overlap: float = 0.0
    resolution: float | None = None
    min_valid_fraction: float = 0.5
    batch_size: int = 16
    bands: tuple[int, ...] | None = None  # 1-based band numbers; None: the backend's RGB default
    regions: str | None = None  # store region candidates made by this spec ("" = the backend's default grid)

    def to_request(self) -> dict[str, Any]:
        """JSON body of ``POST /v1/jobs`` (IndexRequest)."""
        body: dict[str, Any] = {
            "folder": self.folder,
            "index": self.index,
            "tiling": {
                "tile_size": int(self.tile_size),
                "overlap": float(self.overlap),
                "resolution": self.resolution,
                "min_valid_fraction": float(self.min_valid_fraction),
            },
            "batch_size": int(self.batch_size),
        }
        if self.model:
            body["model"] = self.model
        if self.bands:
            body["tiling"]["bands"] = [int(b) for b in self.bands]
        if self.regions is not None:
            body["regions"] = self.regions
        return body


@dataclass(frozen=True)
class SearchParams:
    """One query: text, a box or a point (a box/point may come with text: one compositional query).

    ``level`` "region" ranks region boxes inside tiles; ``rerank`` scores the regions of the
    top N tiles (None: the regions the index stores; see :func:`resolve_rerank`);
    ``within`` (GeoJSON geometry or WKT in ``within_crs``, hits counted by ``within_mode``)
    and ``scenes`` confine the search. Region fields are sent only when set, so a backend
    without region search still accepts every tile query.
    """

    index: str
    mode: QueryMode
    text: str | None = None
    box: tuple[float, float, float, float] | None = None  # xmin ymin xmax ymax in ``crs``
    point: tuple[float, float] | None = None  # x y in ``crs``
    crs: str = "EPSG:4326"  # authid or WKT of box/point (the canvas CRS)
    raster: str | None = None  # raster the box/point was drawn on
    latlon: tuple[float, float] | None = None  # condition on (lat, lon)
    k: int = 10
    min_score: float | None = None
    exclude_own: bool = True
    out_crs: str = "EPSG:4326"  # authid or WKT of the result layer (the project CRS)
    level: Level = "tile"
    rerank: int | None = None
    within: dict[str, Any] | str | None = None  # GeoJSON geometry (dict or text) or WKT
    within_crs: str | None = None
    within_mode: WithinMode | None = None  # None: the backend's default
    scenes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Short human description of the query, stored in the ``query`` attribute."""
        parts = []
        if self.mode == "box" and self.box:
            parts.append("box: " + ", ".join(repr(float(v)) for v in self.box))  # full precision
        elif self.mode == "point" and self.point:
            parts.append("point: " + ", ".join(repr(float(v)) for v in self.point))
        if self.text:
            parts.append(f"text: {self.text}")
        if self.mode != "text" and parts and self.crs:
            parts[0] += f" ({self.crs if len(self.crs) < 40 else 'canvas CRS'})"
        return " + ".join(parts) or self.mode

    @property
    def short_label(self) -> str:
        """The label for the status line: coordinates rounded to 2 decimals."""
        if self.mode == "text":
            return f"text: {self.text}"
        coords = self.box if self.mode == "box" else self.point
        text = f"{self.mode}: " + ", ".join(f"{v:.2f}" for v in coords or ())
        return text + (f" + text: {self.text}" if self.text else "")

    def to_request(self) -> dict[str, Any]:
        """JSON body of ``POST /v1/search`` (SearchRequest)."""
        body: dict[str, Any] = {
            "index": self.index,
            "k": int(self.k),
            "exclude_overlapping": bool(self.exclude_own),
            "out_crs": self.out_crs,
            "crs": self.crs,
        }
        if self.mode == "text" or self.text:
            body["text"] = self.text or ""
        if self.mode == "box":
            body["box"] = [float(v) for v in (self.box or ())]
        elif self.mode == "point":
            body["point"] = [float(v) for v in (self.point or ())]
        if self.level != "tile":
            body["level"] = self.level
        if self.rerank is not None:
            body["rerank"] = int(self.rerank)
        if self.within is not None:
            body["within"] = self.within if isinstance(self.within, str) else json.dumps(self.within)
            if self.within_crs:
                body["within_crs"] = self.within_crs
            if self.within_mode:
                body["within_mode"] = self.within_mode
        if self.scenes:
            body["scenes"] = list(self.scenes)
        if self.raster:
            body["raster"] = self.raster
        if self.latlon is not None:
            body["latlon"] = [float(self.latlon[0]), float(self.latlon[1])]
        if self.min_score is not None:
            body["min_score"] = float(self.min_score)
        body.update(self.extra)
        return body


def index_has_regions(info: dict[str, Any]) -> bool:
    """Whether an index (its ``GET /v1/indexes/info`` body) stores region candidates."""
    extra = info.get("extra") or {}
    return bool(extra.get("regions") or extra.get("regions_spec") or info.get("regions"))


def resolve_rerank(params: SearchParams, has_regions: bool) -> SearchParams:
    """Region mode "auto": the stored regions when the index has them, else rerank the top tiles.

    Only a region-level query left on auto (``rerank`` None) changes; a number the user
    gave is kept.
    """
    if params.level == "region" and params.rerank is None and not has_regions:
        return replace(params, rerank=AUTO_RERANK)
    return params

"""Parameters of each job type: the dock fills these from its widgets, nothing more.

They serialise to the JSON bodies of backend/schemas.py (``IndexRequest``,
``SearchRequest``); derived values are properties.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

QueryMode = Literal["text", "box", "point"]


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
        return body


@dataclass(frozen=True)
class SearchParams:
    """One query: text, a box or a point, with the dock's options."""

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
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Short human description of the query, stored in the ``query`` attribute."""
        if self.mode == "text":
            return f"text: {self.text}"
        if self.mode == "box" and self.box:
            return "box: " + ", ".join(f"{v:.2f}" for v in self.box)
        if self.point:
            return "point: " + ", ".join(f"{v:.2f}" for v in self.point)
        return self.mode

    def to_request(self) -> dict[str, Any]:
        """JSON body of ``POST /v1/search`` (SearchRequest)."""
        body: dict[str, Any] = {
            "index": self.index,
            "k": int(self.k),
            "exclude_overlapping": bool(self.exclude_own),
            "out_crs": self.out_crs,
            "crs": self.crs,
        }
        if self.mode == "text":
            body["text"] = self.text or ""
        elif self.mode == "box":
            body["box"] = [float(v) for v in (self.box or ())]
        else:
            body["point"] = [float(v) for v in (self.point or ())]
        if self.raster:
            body["raster"] = self.raster
        if self.latlon is not None:
            body["latlon"] = [float(self.latlon[0]), float(self.latlon[1])]
        if self.min_score is not None:
            body["min_score"] = float(self.min_score)
        body.update(self.extra)
        return body

"""Core value types shared by rasters, model, index, pipeline and training.

Plain frozen dataclasses (no pydantic): the HTTP/CLI schemas live in
:mod:`geovec.backend.schemas`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

#: A pixel window in a scene's native grid: (col_off, row_off, width, height).
Window = tuple[int, int, int, int]
#: A box (xmin, ymin, xmax, ymax); meaning of units depends on context.
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class BandRef:
    """One band of one file (``band`` is 1-based, as in GDAL/rasterio)."""

    path: str
    band: int


@dataclass(frozen=True)
class Scene:
    """A georeferenced image made of one multi-band file or a stack of one-band files.

    All sources share one grid (CRS, transform, width, height).
    """

    scene_id: str  # stable: hash of the sorted absolute source paths
    name: str  # human name (common stem)
    sources: tuple[str, ...]  # absolute paths
    bands: tuple[BandRef, ...]  # every band available, in scene band order (1..count)
    rgb: tuple[int, int, int]  # 1-based scene band numbers fed to the model as R, G, B
    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]  # Affine a, b, c, d, e, f
    width: int
    height: int
    dtype: str
    nodata: float | None
    fingerprint: str  # changes when any source's size or mtime changes

    @property
    def count(self) -> int:
        return len(self.bands)


@dataclass(frozen=True)
class Stretch:
    """Per-scene, per-channel linear stretch to uint8, computed once per scene, with the scene's fill.

    ``fill`` is the value that is not imagery: the file's nodata tag (``fill_source`` "tag", masked by
    GDAL already), a ``--nodata`` option ("option": a pixel is fill when any model band holds it), or a
    constant collar found in an untagged scene ("detected": fill when all three model bands hold it).
    ``fill_fraction`` is the share of the scene that is fill (from the decimated stretch sample).
    """

    low: tuple[float, float, float]
    high: tuple[float, float, float]
    method: str = "percentile"  # "percentile" | "identity" (already 8-bit) | "minmax"
    fill: float | None = None
    fill_source: str = "none"  # "tag" | "option" | "detected" | "none"
    fill_fraction: float | None = None

    @property
    def masks_fill(self) -> bool:
        """Whether reads must mask ``fill`` themselves (GDAL masks a tagged nodata already)."""
        return self.fill is not None and self.fill_source in ("option", "detected")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"low": list(self.low), "high": list(self.high), "method": self.method}
        if self.fill_source != "none" or self.fill_fraction is not None:
            out["fill"] = {"value": self.fill, "source": self.fill_source, "fraction": self.fill_fraction}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stretch:
        fill = d.get("fill") or {}
        return cls(tuple(d["low"]), tuple(d["high"]), d.get("method", "percentile"),  # type: ignore[arg-type]
                   fill=None if fill.get("value") is None else float(fill["value"]),
                   fill_source=str(fill.get("source", "none")), fill_fraction=fill.get("fraction"))


@dataclass(frozen=True)
class TilingParams:
    """How scenes are cut into tiles (recorded in the index sidecar)."""

    tile_size: int = 256  # tile edge in output pixels (at ``resolution``)
    overlap: float = 0.0  # fraction of tile_size shared by neighbours, in [0, 0.9]
    resolution: float | None = None  # target ground resolution in metres/pixel; None = native
    min_valid_fraction: float = 0.5  # tiles with fewer valid (non-nodata) pixels are skipped
    bands: tuple[int, int, int] | None = None  # override of the scene's RGB band numbers
    percentiles: tuple[float, float] = (2.0, 98.0)
    #: options of one indexing run (not properties of the index: neither recorded nor compared): a value that
    #: is fill in the scenes indexed now, and whether untagged scenes are searched for a constant fill collar
    nodata: float | None = field(default=None, compare=False)
    fill: str = field(default="auto", compare=False)  # "auto" | "off"

    def to_dict(self) -> dict[str, Any]:
        return {
            "tile_size": self.tile_size,
            "overlap": self.overlap,
            "resolution": self.resolution,
            "min_valid_fraction": self.min_valid_fraction,
            "bands": list(self.bands) if self.bands else None,
            "percentiles": list(self.percentiles),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TilingParams:
        return cls(
            tile_size=int(d.get("tile_size", 256)),
            overlap=float(d.get("overlap", 0.0)),
            resolution=d.get("resolution"),
            min_valid_fraction=float(d.get("min_valid_fraction", 0.5)),
            bands=tuple(d["bands"]) if d.get("bands") else None,  # type: ignore[arg-type]
            percentiles=tuple(d.get("percentiles", (2.0, 98.0))),  # type: ignore[arg-type]
        )

    @classmethod
    def from_options(cls, opts: Any) -> TilingParams:
        """From a request's ``TilingOptions`` (or any object with the same fields)."""
        return cls(
            tile_size=int(opts.tile_size), overlap=float(opts.overlap), resolution=opts.resolution,
            min_valid_fraction=float(opts.min_valid_fraction),
            bands=tuple(opts.bands) if opts.bands else None,  # type: ignore[arg-type]
            nodata=getattr(opts, "nodata", None), fill=str(getattr(opts, "fill", "auto")),
        )


@dataclass(frozen=True)
class TileRecord:
    """Everything the index keeps about one tile (SQLite row; the vector is in hnswlib)."""

    tile_id: str  # stable: hash(scene_id, window)
    scene_id: str
    sources: tuple[str, ...]
    window: Window  # native pixels
    crs_wkt: str  # native CRS
    bounds: Box  # native CRS
    footprint_wgs84: str  # WKT polygon, lon/lat order
    center_lat: float
    center_lon: float
    gsd: float  # metres per pixel of the image the model saw
    valid_fraction: float


@dataclass
class TileImage:
    """A tile read and preprocessed, ready to embed."""

    record: TileRecord
    image: np.ndarray  # (H, W, 3) uint8


@dataclass(frozen=True)
class EmbedInput:
    """One interleaved input to the encoder.

    ``bbox`` is in pixel coordinates of ``image`` (x1, y1, x2, y2); the preset turns
    it into the checkpoint's bbox tokens. ``latlon`` is (lat, lon) in degrees.
    """

    instruction: str = ""
    image: np.ndarray | None = None
    bbox: Box | None = None
    latlon: tuple[float, float] | None = None
    text: str | None = None


@dataclass
class Region:
    """A region inside a hit, in model space and as a polygon."""

    bbox_image: Box  # pixels of the tile image
    score: float
    label: str | None = None
    footprint_wkt: str | None = None  # in the requested CRS


@dataclass
class Hit:
    """One search result."""

    rank: int
    score: float
    record: TileRecord
    regions: list[Region] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # more feature properties (e.g. distance_km)


QueryKind = Literal["text", "box", "point", "image"]

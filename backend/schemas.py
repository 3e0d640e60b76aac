"""Request/response models shared by the HTTP routes and the CLI.

The CLI builds the same model as the server and calls the same service
function, so both validate identically. The committed ``backend/openapi.json``
is generated from the app that uses these models.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .paths import ABSOLUTE_PATH, gate, looks_like_path, shown

#: Text that may hold a file name that is not valid UTF-8: its bytes are kept as ``\xNN`` escapes.
ShownStr = Annotated[str, BeforeValidator(lambda v: shown(v) if isinstance(v, str) else v)]


#: Longest text (query, instruction) a request may carry, in characters; the model reads at most its
#: own context of it (``model.truncate``). Longer text is a 422, so no request holds the model for long.
MAX_TEXT_CHARS = 2000


def _gated(value: str, info: ValidationInfo) -> str:
    """Every path field of a request passes the server's path gate (a no-op outside the server)."""
    return gate(value, info.field_name or "path")


def _gated_within(value: str | None, info: ValidationInfo) -> str | None:
    """``within`` is GeoJSON, WKT or a file: a path (absolute) passes the gate like any path field."""
    return gate(value.strip(), "within file") if value is not None and looks_like_path(value) else value


def _gated_model(value: str, info: ValidationInfo) -> str:
    """``model`` is a preset, a hub id or a local folder: a folder (absolute) passes the gate."""
    return gate(value, "model") if looks_like_path(value) else value


def _gated_spec(value: str | None, info: ValidationInfo) -> str | None:
    """A region spec's ``layer=PATH`` passes the gate (the layer is read, and its path stored in the index)."""
    if value is None:
        return None
    parts = []
    for part in value.split(";"):
        key, sep, arg = part.partition("=")
        if sep and key.strip() == "layer":
            part = f"{key}={gate(arg.strip(), 'region layer')}"
        parts.append(part)
    return ";".join(parts)


#: Marks a field in the OpenAPI document as naming a file or folder on the server: ``path`` (always),
#: ``path-or-text`` (a path when absolute), ``spec`` (``layer=PATH`` inside). Tests enumerate these.
PATH_KEY = "x-geovec-path"

#: A path. The document states that requests carry absolute ones (the server refuses a relative
#: one with a 422 naming it; the CLI and the library resolve relative ones themselves). In the
#: server every value goes through :func:`.paths.gate` (the allowed folders) as it is validated.
AbsPath = Annotated[str, Field(min_length=1, max_length=4096,
                               json_schema_extra={"pattern": ABSOLUTE_PATH + "[^\\u0000]*$", PATH_KEY: "path"}),
                    AfterValidator(_gated)]
#: A model: preset, hub id or (absolute) local folder, gated like a path when it is one.
ModelSpec = Annotated[str, Field(json_schema_extra={PATH_KEY: "path-or-text"}), AfterValidator(_gated_model)]


class StrictModel(BaseModel):
    """Base of every request and response model: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(StrictModel):
    """Body of every 4xx/5xx response."""

    error: str = Field(description="machine-readable code, e.g. bad_input, not_found")
    detail: str = Field(description="what was wrong, naming the bad value")
    hint: str = Field("", description="what to do about it")


class TilingOptions(StrictModel):
    tile_size: int = Field(256, ge=16, le=8192)
    overlap: float = Field(0.0, ge=0.0, le=0.9)
    resolution: float | None = Field(None, gt=0, description="target metres/pixel; null = native")
    min_valid_fraction: float = Field(0.5, ge=0.0, le=1.0)
    bands: list[int] | None = Field(None, min_length=3, max_length=3, description="1-based R,G,B band numbers")
    nodata: float | None = Field(None, description=(
        "a value that is fill, not imagery, in the scenes indexed by this request (wins over a file's nodata tag; "
        "a pixel is fill when any model band holds it); scenes already indexed keep theirs"))
    fill: Literal["auto", "off"] = Field("auto", description=(
        "'auto': in a scene without a nodata tag or mask, a constant collar (an L1 scene's zero border) is found "
        "and treated as fill; 'off': every pixel of such a scene is imagery"))

    @field_validator("nodata")
    @classmethod
    def _finite_nodata(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError(f"nodata must be a finite number, got {v}")
        return v


class IndexRequest(StrictModel):
    """Index (or update) a folder of GeoTIFFs into an index directory."""

    folder: AbsPath = Field(description="folder of rasters (absolute path)")
    index: AbsPath = Field(description="index directory (absolute; created if absent)")
    model: ModelSpec | None = Field(None, description="preset, local path or hub id; default: the loaded model")
    tiling: TilingOptions = Field(default_factory=TilingOptions)
    groups: dict[str, list[AbsPath]] | None = Field(None, description="explicit scene name -> band files")
    batch_size: int = Field(16, ge=1, le=1024)
    batch_tokens: int | None = Field(None, ge=64, le=1 << 22,
                                     description="size batches by token count instead of batch_size (GPUs)")
    force: bool = Field(False, description="add to an index built with another model (same dimension) anyway")
    regions: Annotated[str | None, AfterValidator(_gated_spec)] = Field(None, max_length=4096, json_schema_extra={
        PATH_KEY: "spec"}, description=(
        "store candidate region vectors made by this SPEC ('' = default 'grid=1,2,3,4;overlap=0.25'); "
        "null keeps the index's own"))
    date: str | None = Field(None, max_length=40, description=(
        "acquisition date of every scene in the folder (YYYY-MM-DD[THH:MM:SS]); default: found in metadata or "
        "file names"))
    date_from_name: str | None = Field(None, max_length=200, description=(
        "find each scene's date in its file name with this pattern, e.g. '%Y%m%d' (codes %Y %y %m %d %j %H %M %S)"))


#: (lat, lon) ranges, stated in the document (the validators check the same).
_LATLON: dict[str, Any] = {"prefixItems": [{"type": "number", "minimum": -90, "maximum": 90},
                                           {"type": "number", "minimum": -180, "maximum": 180}]}
#: At least one of text/box/point/image; at most one of box/point/image (text composes with it).
_MODE_TYPES = {"text": "string", "box": "array", "point": "array", "image": "string"}


def _given(*names: str) -> dict[str, Any]:
    return {"required": list(names), "properties": {n: {"type": _MODE_TYPES[n]} for n in names}}


_MODES: dict[str, Any] = {
    "anyOf": [_given(m) for m in _MODE_TYPES],
    "not": {"anyOf": [_given(a, b) for a, b in (("box", "point"), ("box", "image"), ("point", "image"))]},
}


class NearQuery(StrictModel):
    """Location conditioning on the stored tile centres: a radius filter and/or a distance re-rank."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"required": [k], "properties": {k: {"type": "number"}}} for k in ("radius_km", "decay_km")]})

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_km: float | None = Field(None, gt=0, le=20_040, description="keep only tiles centred within this distance")
    decay_km: float | None = Field(None, gt=0, le=20_040,
                                   description="re-rank: a hit loses `weight` of score per `decay_km` of distance")
    weight: float = Field(0.1, ge=0, le=10)

    @model_validator(mode="after")
    def _something(self) -> NearQuery:
        if self.radius_km is None and self.decay_km is None:
            raise ValueError("near needs radius_km (a filter), decay_km (a re-rank) or both")
        return self


#: How an area (``within``, a workflow ``area``, the dock's view or selected polygon) keeps a tile or region.
WithinMode = Literal["centre", "intersects", "inside"]
WITHIN_MODE_DOC = ("which tiles/regions the area keeps: 'centre' (default) those whose centre lies in it, 'intersects' "
                   "those sharing more than a sliver with it, 'inside' those lying wholly in it; region outlines "
                   "follow the same rule")


class SearchRequest(StrictModel):
    """One query: text, box, point or image; text may be combined with one of the others."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_MODES)

    index: AbsPath
    indexes: list[AbsPath] = Field(default_factory=list, max_length=64,
                                   description="more indexes built with the same model, searched together with `index` "
                                               "(hits merged by score; each hit's `index` property names its index)")
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS, json_schema_extra={"pattern": r"\S"},
                             description="a description or referring expression (not blank); with box/point/image: "
                                         "composed into one embedding ('like this, but next to water')")
    image: AbsPath | None = Field(None, description="path of an image file (PNG/JPEG/GeoTIFF) to search with, "
                                  "alone or with text")
    box: list[float] | None = Field(None, min_length=4, max_length=4, description="xmin ymin xmax ymax in `crs`")
    point: list[float] | None = Field(None, min_length=2, max_length=2, description="x y in `crs`")
    crs: str = Field("EPSG:4326", description="CRS of box/point: EPSG code, WKT or PROJ string")
    raster: AbsPath | None = Field(None, description="raster the box/point was drawn on; default: found in the index")
    latlon: list[float] | None = Field(None, min_length=2, max_length=2, description="condition on (lat, lon)",
                                       json_schema_extra=_LATLON)
    k: int = Field(10, ge=1, le=1000)
    min_score: float | None = Field(None, ge=-1.0, le=1.0)
    exclude_overlapping: bool = Field(True, description="drop hits that overlap the query box/point itself")
    out_crs: str = Field("EPSG:4326", description="CRS of the returned footprints")
    force: bool = Field(False, description="search even with a model other than the index's (hits may be meaningless)")
    level: Literal["tile", "region"] = Field("tile", description="rank tiles (with their best regions) or regions")
    rerank: int | None = Field(None, ge=1, le=500, description=(
        "embed the region candidates of the top N tiles at query time (needed for level=region on an index "
        "without stored regions; for a box query, candidates of the box's ground size)"))
    regions_per_hit: int = Field(3, ge=0, le=64, description="best regions (after NMS) attached to each tile hit")
    nms_iou: float = Field(0.5, ge=0.0, le=1.0, description="IoU above which a weaker overlapping region is dropped")
    within: Annotated[str | None, AfterValidator(_gated_within)] = Field(None, max_length=1_000_000, json_schema_extra={
        PATH_KEY: "path-or-text"}, description=(
        "confine hits to this area: GeoJSON geometry/feature/collection, WKT, or a vector file path"))
    within_crs: str = Field("EPSG:4326", description="CRS of `within` (a vector file's own CRS wins)")
    within_mode: WithinMode = Field("centre", description=WITHIN_MODE_DOC)
    scenes: list[str] | None = Field(None, min_length=1, max_length=1000, description="confine hits to these "
                                     "scenes (names or scene ids)")
    near: NearQuery | None = Field(None, description="filter / re-rank hits by distance to a centre")
    date_from: str | None = Field(None, max_length=40, description="confine hits to scenes acquired on or after this "
                                  "date (YYYY, YYYY-MM, YYYY-MM-DD...: from its start)")
    date_to: str | None = Field(None, max_length=40, description="confine hits to scenes acquired up to this date "
                                "(inclusive of its whole period: 2016-01 keeps all of January)")
    other_dates: bool = Field(False, description="attach to each hit the tiles of other dates at the same place "
                              "(`other_dates` property: date, score, tile_id)")
    score_map: AbsPath | None = Field(None, description="also write the query's similarity to every tile as a "
                                      "styled GeoTIFF per scene into this folder (absolute path)")

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("text is empty; type a description such as 'water' or 'storage tanks'")
        return v

    @field_validator("box", "point", "latlon")
    @classmethod
    def _finite(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and not all(math.isfinite(x) for x in v):
            raise ValueError(f"coordinates must be finite numbers, got {v}")
        return v

    @model_validator(mode="after")
    def _one_mode(self) -> SearchRequest:
        modes = [m for m in ("box", "point", "image") if getattr(self, m) is not None]
        if len(modes) > 1 or (not modes and self.text is None):
            raise ValueError(f"give text, box, point or image (text may go with one of the others; got "
                             f"{modes or 'none'})")
        if self.image is not None and not self.image.strip():
            raise ValueError("image is empty; give the path of an image file")
        if self.latlon is not None:
            lat, lon = self.latlon
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError(f"latlon {self.latlon} out of range: lat in [-90, 90], lon in [-180, 180]")
        return self

    @property
    def mode(self) -> Literal["text", "box", "point", "image"]:
        """The query's anchor: box, point or image when given (text then composes with it), else text."""
        if self.box is not None:
            return "box"
        if self.point is not None:
            return "point"
        return "image" if self.image is not None else "text"


class Feature(BaseModel):
    type: Literal["Feature"] = "Feature"
    geometry: dict[str, Any]
    properties: dict[str, Any]


class SearchResponse(BaseModel):
    """GeoJSON FeatureCollection of hits; properties: level ("tile" | "region"), rank, score, tile_id,
    scene_id, source, sources, window, center_lat, center_lon, gsd, valid_fraction, regions (list of
    {rank, score, bbox_image, geometry} after NMS; geometry a GeoJSON polygon in `crs`), and for region
    features bbox_image (the box in tile-image pixels; the feature's geometry is the box)."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[Feature]
    crs: str = Field(description="CRS of the geometries")
    query: dict[str, Any] = Field(default_factory=dict)
    took_ms: float = 0.0
    partial: bool = Field(False, description="true when some indexes of a multi-index search did not answer "
                                             "(a shard restarting on a Ray cluster): the hits come from the others")
    missing: list[str] = Field(default_factory=list, description="the indexes that did not answer (with partial)")


class FileError(BaseModel):
    path: ShownStr
    error: ShownStr


class IndexSummary(BaseModel):
    scenes: int = 0
    scenes_skipped_unchanged: int = 0
    scenes_removed: int = 0
    tiles: int = 0
    tiles_skipped: int = 0  # below min_valid_fraction
    regions: int = 0  # region candidates embedded (indexes with regions)
    errors: list[FileError] = Field(default_factory=list)
    seconds: float = 0.0
    cancelled: bool = False


class IndexInfo(BaseModel):
    """``geovec info`` / ``GET /v1/indexes/info``.

    ``extra["scene_list"]`` holds one dict per scene: scene_id, name, status, tiles, crs (authority code or
    name), crs_wkt, extent (xmin, ymin, xmax, ymax in the scene CRS), extent_wgs84 (lon/lat), size
    ([width, height] pixels), bands_used (R, G, B scene band numbers), dtype, stretch ({low, high, method}),
    nodata (the file's tag or null), fill ({value, source: "tag" | "option" | "detected" | "none",
    fraction: share of the scene that is fill, or null}), tiles_skipped (windows not stored because under
    ``min_valid_fraction`` of their pixels are imagery: mostly fill; null until the scene is complete).
    ``extra["regions"]`` (when the index stores regions) is {count, spec}.
    """

    path: str
    count: int
    dim: int
    space: str
    preset: str
    checkpoint: str
    tiling: dict[str, Any]
    scenes: int
    created: str
    updated: str
    extra: dict[str, Any] = Field(default_factory=dict)


class JobProgress(BaseModel):
    job_id: str
    index: str
    folder: str
    state: Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]
    tiles_done: int = 0
    tiles_total: int = 0
    tiles_per_s: float = 0.0
    eta_s: float | None = None
    current_file: ShownStr | None = None
    errors: list[FileError] = Field(default_factory=list)
    summary: IndexSummary | None = None
    message: ShownStr = ""


class EmbedItem(StrictModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "anyOf": [{"required": ["text"], "properties": {"text": {"type": "string", "pattern": r"\S"}}},
                  {"required": ["image_b64"], "properties": {"image_b64": {"type": "string"}}}],
        "dependentRequired": {"bbox": ["image_b64"]}})

    instruction: str = Field("", max_length=MAX_TEXT_CHARS)
    text: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    image_b64: str | None = Field(None, description="PNG/JPEG bytes, base64")
    bbox: list[float] | None = Field(None, min_length=4, max_length=4)
    latlon: list[float] | None = Field(None, min_length=2, max_length=2, json_schema_extra=_LATLON)


class EmbedRequest(StrictModel):
    inputs: list[EmbedItem] = Field(min_length=1, max_length=256)
    model: str | None = None


class EmbedResponse(BaseModel):
    dim: int
    vectors: list[list[float]]


class ModelInfo(BaseModel):
    name: str
    kind: Literal["preset", "local", "hub"]
    loaded: bool = False
    description: str = ""


class Health(BaseModel):
    """``/v1/health``: without the token only ``status`` and ``version``; the rest needs it."""

    status: Literal["ok"] = "ok"
    version: str
    device: str | None = Field(None, description="with the token only")
    gpu_name: str | None = Field(None, description="with the token only, when a GPU is in use")
    gpu_free_mb: float | None = None
    model_loaded: bool | None = Field(None, description="with the token only")
    model: str | None = Field(None, description="with the token only, when a model is loaded or configured")


# Server-only request bodies (added with the HTTP API; the CLI does not need them).


class ModelLoadRequest(StrictModel):
    """``POST /v1/models/load``."""

    model: ModelSpec = Field(min_length=1, max_length=4096, description="preset, local checkpoint dir or hub id")
    device: Literal["auto", "cuda", "cpu"] | None = None


class IndexCreateRequest(StrictModel):
    """``POST /v1/indexes``: create an empty index for a model."""

    path: AbsPath = Field(description="index directory to create (absolute)")
    model: ModelSpec | None = Field(None, max_length=4096, description="default: the loaded/configured model")
    tiling: TilingOptions = Field(default_factory=TilingOptions)


class IndexOpenRequest(StrictModel):
    """``POST /v1/indexes/open``."""

    path: AbsPath

"""Request/response models of change detection (``geovec change``, ``POST /v1/change``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo

from .paths import gate, looks_like_path
from .schemas import MAX_TEXT_CHARS, PATH_KEY, AbsPath, StrictModel


def _gated_side(value: str, info: ValidationInfo) -> str:
    """A side is an index folder (absolute: it passes the server's path gate) or a date."""
    return gate(value, info.field_name or "index") if looks_like_path(value) else value


#: An index folder (a path when absolute) or a date / date range.
IndexOrDate = Annotated[str, Field(min_length=1, max_length=4096, json_schema_extra={PATH_KEY: "path-or-text"}),
                        AfterValidator(_gated_side)]


class ChangeRequest(StrictModel):
    """Compare two dates: indexes, or dates / date ranges of scenes within one index."""

    before: IndexOrDate = Field(description=(
        "the earlier side: an index directory (absolute path), or a date / range (2016, 2016-01, 2016-01-05, "
        "2016-01/2016-03) of scenes in `index`"))
    after: IndexOrDate = Field(description="the later side, like `before`")
    index: AbsPath | None = Field(None, description="the index holding the dates when before/after are dates")
    out: AbsPath = Field(description="folder for the change maps (GeoTIFF + .qml legend per scene pair) and "
                                     "change.geojson")
    to: str | None = Field(None, max_length=MAX_TEXT_CHARS, json_schema_extra={"pattern": r"\S"},
                           description="rank changes by how much closer the place moved to this description "
                                       "('new buildings', 'flooded')")
    level: Literal["tile", "region"] = Field("tile", description="compare tiles, or the stored regions of "
                                                                  "indexes built with --regions")
    min_overlap: float = Field(0.5, gt=0.0, le=1.0, description="least intersection-over-union for two tiles "
                                                                 "of different grids to count as the same place")
    gpkg: bool = Field(False, description="also write change.gpkg")
    top: int = Field(20, ge=0, le=10_000, description="ranked polygons returned in the response")


class ChangeMap(StrictModel):
    path: str
    style: str
    before_scene: str
    after_scene: str
    before_date: str | None = None
    after_date: str | None = None
    tiles: int
    max: float
    mean: float


class ChangeResponse(StrictModel):
    before: str
    after: str
    level: str
    to: str | None = None
    pairs: int = Field(description="tile (or region) pairs compared")
    unmatched_after: int = Field(description="after tiles with no before tile at the same place")
    before_dates: list[str] = Field(description="earliest and latest acquisition of the before side (if dated)")
    after_dates: list[str]
    geojson: str
    gpkg: str | None = None
    maps: list[ChangeMap]
    top: list[dict[str, Any]] = Field(description="the best-ranked pairs as GeoJSON features")

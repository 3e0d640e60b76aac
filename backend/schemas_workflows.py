"""Request/response models of the analyst workflows (classify, few-shot, refine, locate, ask, vector search).

Like :mod:`geovec.backend.schemas`, the CLI builds the same models as the HTTP
routes and calls the same service functions. Semantic checks that need a clear
one-line message (an empty class list, duplicate names, a question without
answers) are raised as ``InputError`` by the workflow code, so the CLI and the
server word them identically.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .schemas import (
    WITHIN_MODE_DOC,
    AbsPath,
    Feature,
    NearQuery,
    SearchRequest,
    SearchResponse,
    StrictModel,
    WithinMode,
)

__all__ = ["AreaOptions", "AskRequest", "AskResponse", "ClassifyRequest", "ClassifyResponse", "FewShotRequest",
           "LocateRequest", "LocateResponse", "NearQuery", "RefineRequest", "RefineResponse", "VectorSearchRequest"]


def _exactly_one(**kinds: str) -> ConfigDict:
    """Model config whose JSON schema states "exactly one of these fields, non-null" (the validator's rule)."""
    return ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": [name], "properties": {name: {"type": kind}}} for name, kind in kinds.items()]})


def _finite_list(v: list[float] | None) -> list[float] | None:
    if v is not None and not all(math.isfinite(x) for x in v):
        raise ValueError(f"values must be finite numbers, got {v[:8]}")
    return v


class AreaOptions(StrictModel):
    """Limit a workflow to the tiles (regions) in a box or polygon, by ``within_mode``, and/or whose scene's
    date lies in a range (default: the whole index)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"not": {
        "required": ["box", "wkt"], "properties": {"box": {"type": "array"}, "wkt": {"type": "string"}}}})

    box: list[float] | None = Field(None, min_length=4, max_length=4, description="xmin ymin xmax ymax in `crs`")
    wkt: str | None = Field(None, max_length=1_000_000, description="polygon WKT in `crs`")
    crs: str = Field("EPSG:4326", description="CRS of box/wkt")
    date_from: str | None = Field(None, max_length=40, description="only scenes acquired on or after this date")
    date_to: str | None = Field(None, max_length=40, description="only scenes acquired up to this date (inclusive "
                                                                 "of its whole period)")
    within_mode: WithinMode = Field("centre", description=WITHIN_MODE_DOC)

    _fin = field_validator("box")(classmethod(lambda cls, v: _finite_list(v)))

    @model_validator(mode="after")
    def _one(self) -> AreaOptions:
        if self.box is not None and self.wkt is not None:
            raise ValueError("give an area box or a polygon wkt, not both")
        return self


class OutputOptions(StrictModel):
    out_dir: AbsPath | None = Field(None, description="folder for one class-map GeoTIFF per scene (+ tiles.geojson, "
                                                      "or regions.geojson at level region)")
    out_crs: str = Field("EPSG:4326", description="CRS of the returned tile polygons")
    return_features: bool = Field(True, description="include every classified tile in the response")
    level: Literal["tile", "region"] = Field(
        "tile", description="classify tiles, or the regions an index built with --regions stores (one polygon per "
                            "region box; the class map paints the best-scoring region of each pixel)")


class ClassifyRequest(OutputOptions):
    """Zero-shot: every tile of the index (or area) -> the best of the user's class prompts."""

    index: AbsPath
    classes: list[str] = Field(max_length=256, description="class names (at least two, distinct)")
    prompts: dict[str, str] | None = Field(None, description="class -> prompt text; default: template")
    template: str = Field("a satellite image of {label}", max_length=1000,
                          description="prompt of a class without its own prompt; {label} is the class name")
    instruction: str | None = Field(None, max_length=2000,
                                    description="instruction before each prompt; default: the model's `classification`")
    area: AreaOptions | None = None


class FewShotRequest(OutputOptions):
    """Few-shot: labelled points/polygons -> a light classifier over the tiles under them -> every tile."""

    model_config = _exactly_one(labels="string", geojson="object")

    index: AbsPath
    labels: AbsPath | None = Field(None, description="vector layer path (GeoJSON without extras; .shp/.gpkg need fiona)")
    geojson: dict[str, Any] | None = Field(None, description="inline GeoJSON FeatureCollection instead of `labels`")
    geojson_crs: str = Field("EPSG:4326", description="CRS of the inline GeoJSON coordinates")
    label_field: str = Field("label", min_length=1, max_length=200)
    layer: str | None = Field(None, max_length=200)
    method: Literal["auto", "prototype", "logistic", "logistic_std", "knn"] = Field(
        "auto", description="auto = the best configuration of every family by cross-validation over spatial blocks; "
                            "logistic_std (standardised features, C in 0.01..10) and knn (k 1 or 5) choose their "
                            "setting the same way")
    block_km: float | None = Field(None, gt=0, le=10_000,
                                   description="spatial block edge for cross-validation; default 6 tile edges")
    folds: int = Field(5, ge=2, le=20)
    seed: int = 0
    area: AreaOptions | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FewShotRequest:
        if (self.labels is None) == (self.geojson is None):
            raise ValueError("give exactly one of labels (a file) or geojson (inline features)")
        return self


class ClassMap(BaseModel):
    scene_id: str
    scene: str
    path: str


class CrossValidation(BaseModel):
    """Held-out accuracy of each classifier, whole spatial blocks held out per fold."""

    method: str = Field(description="the classifier configuration used for the map")
    accuracy: dict[str, float] = Field(default_factory=dict, description=(
        "configuration -> held-out overall accuracy on the same folds (the best of these is optimistic)"))
    nested_accuracy: float | None = Field(None, description=(
        "held-out accuracy of choosing among several configurations and fitting the choice (nested CV: inner folds "
        "of each outer training set choose, the outer fold scores); the honest figure when there is a choice"))
    outer_choices: list[str] = Field(default_factory=list, description="the configuration each outer fold chose")
    per_class: dict[str, float] = Field(default_factory=dict, description=(
        "class -> held-out accuracy (of the nested procedure when there is a choice, else of the one method)"))
    folds: int = 0
    blocks: int = 0
    block_km: float = 0.0
    examples: int = 0
    features: int = 0
    note: str = ""


class ClassifyResponse(BaseModel):
    """GeoJSON FeatureCollection of tiles (or regions: + level, bbox_image); properties: class, score, margin
    (to the runner-up), tile_id, scene_id."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[Feature] = Field(default_factory=list)
    crs: str
    classes: list[str]
    counts: dict[str, int]
    tiles: int = Field(description="tiles classified (at level region: tiles whose regions were classified)")
    level: Literal["tile", "region"] = "tile"
    regions: int = Field(0, description="regions classified (level region; counts are of regions then)")
    class_maps: list[ClassMap] = Field(default_factory=list)
    geojson_path: str | None = None
    cv: CrossValidation | None = None
    took_ms: float = 0.0


class RegionMark(StrictModel):
    """One marked region hit: its tile and its box in tile-image pixels (a region feature's ``bbox_image``)."""

    tile_id: str = Field(min_length=1, max_length=64)
    bbox_image: list[float] = Field(min_length=4, max_length=4)

    _fin = field_validator("bbox_image")(classmethod(lambda cls, v: _finite_list(v)))


class RefineRequest(StrictModel):
    """Relevance feedback: the original query (or its vector) + good/bad marks -> a refined ranking."""

    model_config = _exactly_one(query="object", vector="array")

    index: AbsPath
    query: SearchRequest | None = Field(None, description="the first round's query (embedded once)")
    vector: list[float] | None = Field(None, max_length=16384, description="the original query vector instead")
    good: list[str] = Field(default_factory=list, max_length=10_000, description="tile ids marked good")
    bad: list[str] = Field(default_factory=list, max_length=10_000, description="tile ids marked bad")
    k: int = Field(10, ge=1, le=1000)
    alpha: float = Field(1.0, ge=0, le=100, description="weight of the original query")
    beta: float = Field(0.75, ge=0, le=100, description="weight of the mean good vector")
    gamma: float = Field(0.25, ge=0, le=100, description="weight of the mean bad vector")
    probe_weight: float = Field(0.2, ge=0, le=100, description="weight of the linear probe's direction")
    exclude_marked: bool = Field(False, description="drop marked tiles from the hits (bad ones are always dropped)")
    out_crs: str = "EPSG:4326"
    save_marks: AbsPath | None = Field(None, description="write the marks as a labelled GeoJSON layer `geovec train` reads")
    label: str | None = Field(None, max_length=200, description="label of good marks; default the query text")
    bad_label: str | None = Field(None, max_length=200, description="label of bad marks; default: not written")
    level: Literal["tile", "region"] = Field("tile", description=(
        "refine tile hits (marks in good/bad) or region hits (marks in good_regions/bad_regions; the index must "
        "store regions; the hits, the vectors and the saved marks are regions)"))
    good_regions: list[RegionMark] = Field(default_factory=list, max_length=10_000,
                                           description="region hits marked good (level region)")
    bad_regions: list[RegionMark] = Field(default_factory=list, max_length=10_000,
                                          description="region hits marked bad (level region)")

    _fin = field_validator("vector")(classmethod(lambda cls, v: _finite_list(v)))

    @model_validator(mode="after")
    def _one_query(self) -> RefineRequest:
        if (self.query is None) == (self.vector is None):
            raise ValueError("give exactly one of query (the original search) or vector")
        if self.level == "tile" and (self.good_regions or self.bad_regions):
            raise ValueError("region marks (good_regions/bad_regions) need level 'region'")
        if self.level == "region" and (self.good or self.bad):
            raise ValueError("at level 'region' mark region hits (good_regions/bad_regions), not tile ids")
        return self


class RefineResponse(SearchResponse):
    """The refined hits, plus the vectors to send back next round."""

    query_vector: list[float] = Field(default_factory=list, description="the original query vector (send it back)")
    refined_vector: list[float] = Field(default_factory=list)
    marks_path: str | None = None


class LocateRequest(StrictModel):
    """Where is this? A box/point query, an image or a vector -> ranked candidate locations."""

    model_config = _exactly_one(query="object", image_b64="string", vector="array")

    index: AbsPath
    query: SearchRequest | None = None
    image_b64: str | None = Field(None, max_length=8_000_000, description="PNG/JPEG bytes, base64")
    vector: list[float] | None = Field(None, max_length=16384)
    k: int = Field(50, ge=1, le=5000, description="hits clustered into locations")
    radius_km: float | None = Field(None, gt=0, le=20_000, description="cluster radius; default 3 tile diagonals")
    max_locations: int = Field(10, ge=1, le=1000)
    out_crs: str = "EPSG:4326"

    _fin = field_validator("vector")(classmethod(lambda cls, v: _finite_list(v)))

    @model_validator(mode="after")
    def _one_query(self) -> LocateRequest:
        given = [n for n in ("query", "image_b64", "vector") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of query, image_b64, vector (got {given or 'none'})")
        return self


class LocateResponse(BaseModel):
    """GeoJSON FeatureCollection of candidate locations (points); properties: rank, score, best_score,
    hits, lat, lon, radius_km, tile_ids."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[Feature]
    crs: str
    query: dict[str, Any] = Field(default_factory=dict)
    took_ms: float = 0.0


class AskRequest(StrictModel):
    """A question about a drawn box, with candidate answers ranked by the model's VQA instruction."""

    index: AbsPath
    box: list[float] = Field(min_length=4, max_length=4, description="xmin ymin xmax ymax in `crs`")
    crs: str = "EPSG:4326"
    raster: AbsPath | None = None
    question: str = Field(max_length=2000)
    answers: list[str] = Field(max_length=256, description="candidate answers (typed, or a class list)")

    _fin = field_validator("box")(classmethod(lambda cls, v: _finite_list(v)))


class Answer(BaseModel):
    answer: str
    score: float
    rank: int


class AskResponse(BaseModel):
    question: str
    answers: list[Answer]
    query: dict[str, Any] = Field(default_factory=dict)
    took_ms: float = 0.0


class VectorSearchRequest(StrictModel):
    """Search an index with an embedding (from ``/v1/embed``, a notebook or a refine round)."""

    index: AbsPath
    vector: list[float] = Field(min_length=1, max_length=16384)
    k: int = Field(10, ge=1, le=1000)
    min_score: float | None = Field(None, ge=-1.0, le=1.0)
    near: NearQuery | None = None
    out_crs: str = "EPSG:4326"

    _fin = field_validator("vector")(classmethod(lambda cls, v: _finite_list(v)))

"""Parameters of the workflow jobs (classify, few-shot, refine, locate, ask) -> JSON bodies.

They serialise to the models of ``backend/schemas_workflows.py``; the contract
test validates them there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def split_names(text: str) -> list[str]:
    """Class names or answers typed as a comma-, semicolon- or newline-separated list."""
    out = []
    for part in text.replace(";", ",").replace("\n", ",").split(","):
        if part.strip():
            out.append(part.strip())
    return out


@dataclass(frozen=True)
class Area:
    """A box (or polygon WKT) in ``crs`` limiting a classification."""

    crs: str
    box: tuple[float, float, float, float] | None = None
    wkt: str | None = None

    def to_request(self) -> dict[str, Any]:
        body: dict[str, Any] = {"crs": self.crs}
        if self.box is not None:
            body["box"] = [float(v) for v in self.box]
        if self.wkt is not None:
            body["wkt"] = self.wkt
        return body


@dataclass(frozen=True)
class ClassifyParams:
    index: str
    classes: tuple[str, ...]
    template: str = "a satellite image of {label}"
    prompts: dict[str, str] = field(default_factory=dict)
    area: Area | None = None
    out_dir: str | None = None
    out_crs: str = "EPSG:4326"
    level: str = "tile"  # or "region": the regions an index built with --regions stores

    def to_request(self) -> dict[str, Any]:
        body: dict[str, Any] = {"index": self.index, "classes": list(self.classes), "template": self.template,
                                "out_crs": self.out_crs, "level": self.level}
        if self.prompts:
            body["prompts"] = dict(self.prompts)
        if self.area is not None:
            body["area"] = self.area.to_request()
        if self.out_dir:
            body["out_dir"] = self.out_dir
        return body


@dataclass(frozen=True)
class FewShotParams:
    index: str
    geojson: dict[str, Any]  # labelled features, EPSG:4326 lon/lat
    label_field: str = "label"
    method: str = "auto"
    block_km: float | None = None
    out_dir: str | None = None
    out_crs: str = "EPSG:4326"
    level: str = "tile"  # or "region"

    def to_request(self) -> dict[str, Any]:
        body: dict[str, Any] = {"index": self.index, "geojson": self.geojson, "geojson_crs": "EPSG:4326",
                                "label_field": self.label_field, "method": self.method, "out_crs": self.out_crs,
                                "level": self.level}
        if self.block_km:
            body["block_km"] = float(self.block_km)
        if self.out_dir:
            body["out_dir"] = self.out_dir
        return body


@dataclass(frozen=True)
class RefineParams:
    """One feedback round: the first query (or the vector the last round returned) plus the marks."""

    index: str
    good: tuple[str, ...] = ()  # tile ids (level tile)
    bad: tuple[str, ...] = ()
    query: dict[str, Any] | None = None  # a SearchRequest body
    vector: tuple[float, ...] | None = None
    k: int = 10
    out_crs: str = "EPSG:4326"
    save_marks: str | None = None
    label: str | None = None
    level: str = "tile"  # "region": the marks are region hits (good_regions / bad_regions), so are the hits
    good_regions: tuple[tuple[str, tuple[float, ...]], ...] = ()  # (tile id, bbox_image) of each region hit
    bad_regions: tuple[tuple[str, tuple[float, ...]], ...] = ()

    def to_request(self) -> dict[str, Any]:
        body: dict[str, Any] = {"index": self.index, "good": list(self.good), "bad": list(self.bad),
                                "k": int(self.k), "out_crs": self.out_crs}
        if self.level == "region":
            body.update(level="region", good=[], bad=[],
                        good_regions=[{"tile_id": t, "bbox_image": list(b)} for t, b in self.good_regions],
                        bad_regions=[{"tile_id": t, "bbox_image": list(b)} for t, b in self.bad_regions])
        if self.vector is not None:
            body["vector"] = [float(v) for v in self.vector]
        else:
            body["query"] = dict(self.query or {})
        if self.save_marks:
            body["save_marks"] = self.save_marks
        if self.label:
            body["label"] = self.label
        return body


@dataclass(frozen=True)
class LocateParams:
    index: str
    query: dict[str, Any]  # a SearchRequest body (box or point)
    k: int = 50
    radius_km: float | None = None
    max_locations: int = 10
    out_crs: str = "EPSG:4326"

    def to_request(self) -> dict[str, Any]:
        body: dict[str, Any] = {"index": self.index, "query": dict(self.query), "k": int(self.k),
                                "max_locations": int(self.max_locations), "out_crs": self.out_crs}
        if self.radius_km:
            body["radius_km"] = float(self.radius_km)
        return body


@dataclass(frozen=True)
class AskParams:
    index: str
    box: tuple[float, float, float, float]
    crs: str
    question: str
    answers: tuple[str, ...]
    raster: str | None = None

    def to_request(self) -> dict[str, Any]:
        body: dict[str, Any] = {"index": self.index, "box": [float(v) for v in self.box], "crs": self.crs,
                                "question": self.question, "answers": list(self.answers)}
        if self.raster:
            body["raster"] = self.raster
        return body

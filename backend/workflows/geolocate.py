"""Where is this? A query's hits clustered by their centres into ranked candidate locations.

The ``k`` best tiles for a box, point, image or vector query are grouped greedily
(best first: a hit joins the first location whose centre is within
``radius_km``, else starts one). A location's score is its share of the hits'
total positive similarity, so the scores sum to 1 over the locations found;
its position is the score-weighted mean of its hits' centres.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..schemas_workflows import LocateResponse
from ..search.location import haversine_km

if TYPE_CHECKING:
    from ..types import Hit

log = logging.getLogger(__name__)


@dataclass
class Location:
    lat: float
    lon: float
    members: list[Hit] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)

    def add(self, hit: Hit, weight: float) -> None:
        self.members.append(hit)
        self.weights.append(weight)
        w = np.asarray(self.weights)
        if w.sum() > 0:
            self.lat = float(np.average([h.record.center_lat for h in self.members], weights=w))
            self.lon = float(np.average([h.record.center_lon for h in self.members], weights=w))


def default_radius_km(hits: list[Hit]) -> float:
    """Three tile diagonals of the median hit tile (at least 50 m)."""
    if not hits:
        return 1.0
    diag = [np.hypot(h.record.window[2], h.record.window[3]) * h.record.gsd / 1000.0 for h in hits]
    return max(0.05, 3.0 * float(np.median(diag)))


def cluster(hits: list[Hit], radius_km: float) -> list[Location]:
    """Greedy clustering of ``hits`` (best first) by centre distance."""
    locs: list[Location] = []
    for h in sorted(hits, key=lambda x: -x.score):
        w = max(h.score, 0.0) + 1e-6
        for loc in locs:
            if float(haversine_km(loc.lat, loc.lon, h.record.center_lat, h.record.center_lon)) <= radius_km:
                loc.add(h, w)
                break
        else:
            loc = Location(h.record.center_lat, h.record.center_lon)
            loc.add(h, w)
            locs.append(loc)
    return locs


def locate(hits: list[Hit], *, radius_km: float | None, max_locations: int, out_crs: str,
           query: dict[str, Any] | None = None, t0: float | None = None) -> LocateResponse:
    """Cluster ``hits`` into at most ``max_locations`` ranked point features."""
    from shapely.geometry import Point, mapping

    from ..raster import geometry

    t0 = time.perf_counter() if t0 is None else t0
    geometry.parse_crs(out_crs)
    radius = radius_km or default_radius_km(hits)
    locs = cluster(hits, radius)
    total = sum(sum(loc.weights) for loc in locs) or 1.0
    locs.sort(key=lambda loc: -sum(loc.weights))
    feats = []
    for rank, loc in enumerate(locs[:max_locations], start=1):
        pt = geometry.reproject_geometry(Point(loc.lon, loc.lat), "EPSG:4326", out_crs)
        feats.append({"type": "Feature", "geometry": mapping(pt), "properties": {
            "rank": rank, "score": round(sum(loc.weights) / total, 6),
            "best_score": round(max(h.score for h in loc.members), 6), "hits": len(loc.members),
            "lat": round(loc.lat, 7), "lon": round(loc.lon, 7), "radius_km": round(radius, 4),
            "tile_ids": [h.record.tile_id for h in loc.members]}})
    return LocateResponse(features=feats, crs=out_crs, query={**(query or {}), "hits": len(hits),  # type: ignore[arg-type]
                                                              "radius_km": round(radius, 4)},
                          took_ms=round((time.perf_counter() - t0) * 1000, 2))

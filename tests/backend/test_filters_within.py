"""``within`` given as a long WKT string (a detailed evaluation area) is WKT, not a file name."""

from __future__ import annotations

import shapely

from geovec.backend.search.filters import parse_within


def test_long_wkt_within_parses() -> None:
    ring = shapely.Point(404300.0, 3285100.0).buffer(50.0, quad_segs=200)  # 800 vertices: > 4096 characters
    text = ring.wkt
    assert len(text) > 5000
    area = parse_within(text, "EPSG:32617")
    assert area.geom_type == "Polygon" and -82.0 < area.centroid.x < -81.9 and 29.6 < area.centroid.y < 29.7

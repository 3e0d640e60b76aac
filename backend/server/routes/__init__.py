"""GeoVec."""

"""End to end on ../shared/data: `geovec model tiny`, `geovec index`, `geovec search --geojson`, `geovec info`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio
from rasterio.warp import transform_bounds
from shapely.geometry import box, shape

RASTERS = {  # every raster in ../shared/data, by scene: the NC one-band files form one stack
    "nc_stack": {f"lsat7_2000_{b}.tif" for b in (10, 20, 30, 40, 50, 70)},
    "nc_labels": {"landsat96_labelled_pixels.tif"},
    "olinda": {"L7_ETMs.tif"},
    "haiti": {"rgbn.tif"},
    "neon": {"OSBS_029.tif"},
}


def geovec(*args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "geovec.backend", *args], capture_output=True, text=True,
                       timeout=900, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.mark.slow
def test_index_and_search_the_real_rasters(shared_data: Path, tmp_path: Path) -> None:
    model, idx, out = tmp_path / "m", tmp_path / "idx", tmp_path / "hits.geojson"
    r = geovec("model", "tiny", str(model))
    assert r.returncode == 0, r.stderr
    r = geovec("index", str(shared_data), "--index", str(idx), "--model", str(model), "--tile-size", "96",
               "--no-progress", "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    summary = json.loads(r.stdout)
    assert summary["errors"] == [] and summary["scenes"] == 5 and summary["tiles"] > 50

    r = geovec("info", "--index", str(idx), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["scenes"] == 5 and info["count"] == summary["tiles"]

    from geovec.backend.index.store import IndexStore

    store = IndexStore.open(idx)
    try:
        groups = sorted({Path(p).name for p in json_list(row["sources"])} for row in store.scenes())
    finally:
        store.close()
    assert sorted(groups, key=sorted) == sorted(RASTERS.values(), key=sorted)

    r = geovec("search", "--index", str(idx), "--text", "water", "--k", "5", "--geojson", str(out))
    assert r.returncode == 0, r.stderr
    gj = json.loads(out.read_text())
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == 5
    for f in gj["features"]:
        geom = shape(f["geometry"])
        assert geom.is_valid and geom.geom_type == "Polygon"
        srcs = f["properties"]["sources"]
        assert srcs and f["properties"]["source"] == srcs[0]
        with rasterio.open(srcs[0]) as src:
            raster = box(*transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21))
        overlap = geom.intersection(raster).area / geom.area
        assert overlap > 0.45, (srcs[0], overlap)  # tiles keep >= 50% valid pixels

    # a box drawn in lat/lon on the NC scene (non-EPSG LCC) finds tiles too
    with rasterio.open(shared_data / "nc_landsat7" / "lsat7_2000_10.tif") as src:
        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    cx, cy = (w + e) / 2, (s + n) / 2
    r = geovec("search", "--index", str(idx), "--box", str(cx - 0.005), str(cy - 0.005), str(cx + 0.005),
               str(cy + 0.005), "--crs", "EPSG:4326", "--k", "3", "--json")
    assert r.returncode == 0, r.stderr
    resp = json.loads(r.stdout)
    assert len(resp["features"]) == 3 and "lsat7" in resp["query"]["scene"]


def json_list(v) -> list[str]:
    return json.loads(v) if isinstance(v, str) else list(v)

"""search() (the search entry point): image / text / box / point queries, CRSs, exclude_overlapping, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from shapely import wkt
from shapely.geometry import box as sbox
from shapely.geometry import shape

from geovec.backend.demo import write_sample_folder, write_scene
from geovec.backend.errors import InputError, OutOfBoundsError
from geovec.backend.indexing import index_folder
from geovec.backend.schemas import SearchRequest
from geovec.backend.search import search
from geovec.backend.types import TilingParams

TILE = 32
PARAMS = TilingParams(tile_size=TILE, min_valid_fraction=0.5)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, tiny_embedder):
    """The demo's sample folder (UTM 8-bit, Albers 16-bit, NC State Plane ftUS) at 96 px: 27 tiles."""
    root = tmp_path_factory.mktemp("search")
    folder = write_sample_folder(root / "rasters", size=96)
    idx = root / "idx"
    s = index_folder(folder, idx, tiny_embedder, params=PARAMS, batch_size=9)
    assert s.tiles == 27 and not s.errors
    from geovec.backend.index.store import IndexStore

    store = IndexStore.open(idx)
    yield store, folder
    store.close()


def _scene(store, path: Path):
    got = store.scene_for_path(path)
    assert got is not None
    return got


def _wgs84_bounds(scene, window=None):
    from geovec.backend.raster import geometry

    return geometry.window_to_geometry(scene, window or (0, 0, scene.width, scene.height), "EPSG:4326")


def test_tile_queried_with_its_own_image_comes_first(indexed, tiny_embedder, tmp_path: Path) -> None:
    from PIL import Image

    from geovec.backend.raster.tiling import read_tile

    store, folder = indexed
    for name in ("lake_utm17n.tif", "forest_albers.tif", "town_ncsp_ftUS.tif"):
        scene, stretch = _scene(store, folder / name)
        for window in [(0, 0, TILE, TILE), (TILE, TILE, TILE, TILE)]:
            image, vf = read_tile(scene, window, stretch, out_size=TILE)
            png = tmp_path / f"{name}_{window[0]}.png"  # PNG is lossless: the query holds the tile's pixels
            Image.fromarray(image).save(png)
            resp = search(store, tiny_embedder, SearchRequest(index="x", image=str(png), k=3))
            top = resp.features[0].properties
            assert top["scene_id"] == scene.scene_id
            assert tuple(top["window"]) == window, (name, window, [f.properties["window"] for f in resp.features])
            assert top["score"] > 0.99


def test_text_query_ranks_and_fields(indexed, tiny_embedder) -> None:
    store, _ = indexed
    resp = search(store, tiny_embedder, SearchRequest(index="x", text="water", k=5))
    assert resp.type == "FeatureCollection" and resp.crs == "EPSG:4326"
    props = [f.properties for f in resp.features]
    assert [p["rank"] for p in props] == [1, 2, 3, 4, 5]
    scores = [p["score"] for p in props]
    assert scores == sorted(scores, reverse=True)
    for f in resp.features:
        p = f.properties
        assert set(p) >= {"tile_id", "scene_id", "source", "sources", "window", "center_lat", "center_lon", "regions"}
        assert p["regions"] == []
        assert shape(f.geometry).contains(sbox(p["center_lon"] - 1e-9, p["center_lat"] - 1e-9,
                                               p["center_lon"] + 1e-9, p["center_lat"] + 1e-9))
    # scores are shown rounded to 6 decimals: a threshold just below the third one keeps it
    some = search(store, tiny_embedder, SearchRequest(index="x", text="water", k=27, min_score=scores[2] - 1e-6))
    assert len(some.features) >= 3 and all(f.properties["score"] >= scores[2] for f in some.features)


def test_box_in_latlon_on_utm_raster_out_crs_and_exclusion(indexed, tiny_embedder) -> None:
    store, folder = indexed
    scene, _ = _scene(store, folder / "lake_utm17n.tif")
    q = _wgs84_bounds(scene, (36, 36, 20, 20)).bounds  # inside the centre tile, in lon/lat
    req = SearchRequest(index="x", box=list(q), crs="EPSG:4326", k=27, out_crs="EPSG:3857")
    resp = search(store, tiny_embedder, req)
    assert resp.crs == "EPSG:3857" and resp.query["kind"] == "box"
    qgeom = sbox(*q)
    excluded = {f.properties["tile_id"] for f in resp.features}
    from geovec.backend.raster import geometry

    for f in resp.features:
        g = shape(f.geometry)
        assert abs(g.bounds[0]) > 180  # metres of web mercator, not degrees
        back = geometry.reproject_geometry(g, "EPSG:3857", "EPSG:4326")
        assert back.intersection(qgeom).area < 1e-6 * qgeom.area
    assert len(resp.features) < 27
    req2 = req.model_copy(update={"exclude_overlapping": False})
    allhits = search(store, tiny_embedder, req2)
    overlapping = {f.properties["tile_id"] for f in allhits.features} - excluded
    assert len(allhits.features) == 27 and overlapping
    for tid in overlapping:
        rec = store.get(tid)
        assert wkt.loads(rec.footprint_wgs84).intersection(qgeom).area > 0


def test_box_and_point_in_nc_lcc_on_state_plane_raster(indexed, tiny_embedder, shared_data: Path) -> None:
    """The NC Landsat LCC CRS (non-EPSG WKT) queried against the NC State Plane ftUS raster."""
    import rasterio
    from pyproj import CRS, Transformer

    with rasterio.open(shared_data / "nc_landsat7" / "lsat7_2000_10.tif") as src:
        lcc_wkt = src.crs.to_wkt()
    store, folder = indexed
    scene, _ = _scene(store, folder / "town_ncsp_ftUS.tif")
    centre = _wgs84_bounds(scene, (40, 40, 16, 16)).centroid
    to_lcc = Transformer.from_crs("EPSG:4326", CRS.from_wkt(lcc_wkt), always_xy=True)
    x, y = to_lcc.transform(centre.x, centre.y)
    req = SearchRequest(index="x", box=[x - 50, y - 50, x + 50, y + 50], crs=lcc_wkt, k=5, out_crs=lcc_wkt)
    resp = search(store, tiny_embedder, req)
    assert len(resp.features) == 5 and resp.query["scene"] == scene.name
    pt = search(store, tiny_embedder, SearchRequest(index="x", point=[x, y], crs=lcc_wkt, k=5, out_crs="EPSG:32617"))
    assert len(pt.features) == 5 and pt.query["kind"] == "point"
    lat, lon = pt.query["latlon"]
    assert abs(lat - centre.y) < 1e-3 and abs(lon - centre.x) < 1e-3
    for f in pt.features:  # footprints in UTM 17N metres
        assert 1e5 < shape(f.geometry).bounds[0] < 1e6


def test_point_query_latlon_with_conditioning(indexed, tiny_embedder) -> None:
    store, folder = indexed
    scene, _ = _scene(store, folder / "forest_albers.tif")
    c = _wgs84_bounds(scene).centroid
    base = SearchRequest(index="x", point=[c.x, c.y], crs="EPSG:4326", k=4)
    plain = search(store, tiny_embedder, base)
    cond = search(store, tiny_embedder, base.model_copy(update={"latlon": [10.0, 20.0]}))
    assert len(plain.features) == len(cond.features) == 4
    assert plain.query["latlon"] != cond.query["latlon"] == [10.0, 20.0]
    assert [f.properties["score"] for f in plain.features] != [f.properties["score"] for f in cond.features]
    window = plain.query["window"]
    qgeom = _wgs84_bounds(scene, tuple(window))
    for f in plain.features:
        assert shape(f.geometry).intersection(qgeom).area < 1e-4 * qgeom.area


def test_explicit_raster_not_in_index(indexed, tiny_embedder, tmp_path: Path) -> None:
    store, _ = indexed
    other = write_scene(tmp_path / "other.tif", "water", size=64, crs="EPSG:32633", origin=(500000, 5000000))
    req = SearchRequest(index="x", box=[500100, 4999700, 500300, 4999900], crs="EPSG:32633", raster=str(other), k=3)
    resp = search(store, tiny_embedder, req)
    assert len(resp.features) == 3


def test_bad_queries(indexed, tiny_embedder) -> None:
    store, folder = indexed
    scene, _ = _scene(store, folder / "lake_utm17n.tif")
    x0, y0 = scene.transform[2], scene.transform[5]
    with pytest.raises(OutOfBoundsError):
        search(store, tiny_embedder, SearchRequest(index="x", box=[0, 0, 1, 1], crs="EPSG:3857"))
    with pytest.raises(OutOfBoundsError):
        search(store, tiny_embedder, SearchRequest(index="x", point=[-120.0, 80.0], crs="EPSG:4326"))
    with pytest.raises(InputError):  # inverted box on a named raster
        search(store, tiny_embedder, SearchRequest(index="x", box=[x0 + 500, y0 - 100, x0 + 100, y0 - 500],
                                                   crs="EPSG:32617", raster=str(folder / "lake_utm17n.tif")))
    with pytest.raises(InputError):
        search(store, tiny_embedder, SearchRequest(index="x", box=[x0 + 100, y0 - 500, x0 + 500, y0 - 100],
                                                   crs="EPSG:99999"))
    with pytest.raises(ValueError):
        SearchRequest(index="x", text="   ")
    with pytest.raises(ValueError):
        SearchRequest(index="x", text="a", latlon=[91.0, 0.0])

"""Area filters mean what analysts mean: a hit counts when its tile (region) centre lies in the area by
default; ``within_mode`` intersects / inside for the rest; region outlines follow the same rule (tiny
model, a real index of the two-class scene: 8 x 4 tiles of 160 m); refine after a region search stays
at region level."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyproj import Transformer
from shapely.geometry import box, shape

from geovec.backend.cli import main
from geovec.backend.indexing import index_folder
from geovec.backend.schemas import SearchRequest
from geovec.backend.schemas_workflows import AreaOptions, ClassifyRequest
from geovec.backend.service import run_search
from geovec.backend.types import TilingParams
from geovec.backend.workflows import service
from tests.backend.wfdata import CRS, ORIGIN, RES, TILE, write_two_class_scene

X0, Y1 = ORIGIN
TILE_M = TILE * RES  # 160 m


def _area(width_m: float) -> str:
    """A box from the scene's left edge, ``width_m`` wide, taller than the scene (UTM)."""
    return box(X0 - 50, Y1 - 4 * TILE_M - 50, X0 + width_m, Y1 + 50).wkt


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_embedder) -> dict:
    root = tmp_path_factory.mktemp("within")
    folder = root / "rasters"
    folder.mkdir()
    write_two_class_scene(folder)
    idx = root / "idx"
    index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=TILE), regions="grid=1,2;overlap=0")
    return {"root": root, "idx": str(idx)}


def _cols(resp) -> set[int]:
    return {int(f.properties["window"][0]) // TILE for f in resp.features}


def _search(world, emb, width_m: float, **kw):
    req = SearchRequest(index=world["idx"], text="water", k=100, within=_area(width_m), within_crs=CRS, **kw)
    return run_search(req, emb)


def test_centre_is_the_default_and_modes_differ(world, tiny_embedder) -> None:
    # 500 m: tile columns 0-2 have their centres (80, 240, 400 m) inside, column 3 (480-640 m) only touches
    default = _search(world, tiny_embedder, 500)
    assert _cols(default) == {0, 1, 2} and len(default.features) == 12
    assert default.query["filter"]["within_mode"] == "centre"
    assert _cols(_search(world, tiny_embedder, 500, within_mode="intersects")) == {0, 1, 2, 3}
    # 470 m: column 2 (320-480 m) has its centre inside but sticks out
    assert _cols(_search(world, tiny_embedder, 470, within_mode="centre")) == {0, 1, 2}
    assert _cols(_search(world, tiny_embedder, 470, within_mode="inside")) == {0, 1}


def test_region_outlines_outside_the_area_are_never_returned(world, tiny_embedder) -> None:
    to_utm = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    area = shape({"type": "Polygon", "coordinates": [list(box(X0 - 50, Y1 - 4 * TILE_M - 50, X0 + 410,
                                                               Y1 + 50).exterior.coords)]})
    for level in ("tile", "region"):
        resp = _search(world, tiny_embedder, 410, level=level, regions_per_hit=4)
        regions = [r for f in resp.features for r in f.properties.get("regions") or []]
        assert regions, level
        for r in regions:  # every region's centre (its outline, in lon/lat) lies in the area
            c = shape(r["geometry"]).centroid
            assert area.contains(shape({"type": "Point", "coordinates": to_utm.transform(c.x, c.y)})), (level, r)
    # with inside, no outline crosses the area's edge
    resp = _search(world, tiny_embedder, 410, level="region", within_mode="inside")
    for f in resp.features:
        ring = [to_utm.transform(x, y) for x, y in f.geometry["coordinates"][0]]
        assert area.buffer(0.5).contains(shape({"type": "Polygon", "coordinates": [ring]}))


def test_cli_and_workflow_area_take_the_mode(world, tiny_embedder, capsys, tmp_path: Path) -> None:
    assert main(["search", "--index", world["idx"], "--text", "water", "--k", "100", "--local", "--json",
                 "--within", _area(500), "--within-crs", CRS, "--within-mode", "intersects"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["features"]) == 16
    req = ClassifyRequest(index=world["idx"], classes=["water", "town"],
                          area=AreaOptions(wkt=_area(500), crs=CRS))
    assert service.run_classify(req, tiny_embedder).tiles == 12
    wide = req.model_copy(update={"area": AreaOptions(wkt=_area(500), crs=CRS, within_mode="intersects")})
    assert service.run_classify(wide, tiny_embedder).tiles == 16


def test_region_refine_stays_at_region_level(world, tiny_embedder, tmp_path: Path) -> None:
    """Refine after a region search returns regions, from region vectors, and saves region marks."""
    import numpy as np

    from geovec.backend.index.store import IndexStore
    from geovec.backend.schemas_workflows import RefineRequest
    from geovec.backend.workflows.feedback import refine_direction

    first = run_search(SearchRequest(index=world["idx"], text="water", k=8, level="region"), tiny_embedder)
    good = [{"tile_id": f.properties["tile_id"], "bbox_image": f.properties["bbox_image"]} for f in first.features[:2]]
    bad = [{"tile_id": f.properties["tile_id"], "bbox_image": f.properties["bbox_image"]} for f in first.features[-1:]]
    req = RefineRequest(index=world["idx"], query=SearchRequest(index=world["idx"], text="water"), level="region",
                        good_regions=good, bad_regions=bad, k=6, save_marks=str(tmp_path / "marks.geojson"),
                        bad_label="other")
    resp = service.run_refine(req, tiny_embedder)
    assert resp.features and all(f.properties["level"] == "region" for f in resp.features)
    assert all(len(f.properties["bbox_image"]) == 4 for f in resp.features)
    bad_key = (bad[0]["tile_id"], tuple(bad[0]["bbox_image"]))
    assert bad_key not in {(f.properties["tile_id"], tuple(f.properties["bbox_image"])) for f in resp.features}
    # the direction is built from the region vectors (the query's referring vector and the marked regions')
    with IndexStore.open(world["idx"]) as store:
        labels = store.tile_labels([m["tile_id"] for m in good + bad])
        rows, vecs = store.regions_of(sorted(set(labels.values())))

        def vec(m: dict) -> np.ndarray:
            (i,) = [i for i, r in enumerate(rows) if r.tile_label == labels[m["tile_id"]]
                    and np.allclose(r.box, m["bbox_image"], atol=1e-3)]
            return vecs[i] / np.linalg.norm(vecs[i])

        d = refine_direction(np.asarray(resp.query_vector, np.float32), np.stack([vec(m) for m in good]),
                             np.stack([vec(m) for m in bad]))
        assert np.allclose(d, resp.refined_vector, atol=1e-5)
        found = store.search_regions(d, 1)[0]
        assert resp.features[0].properties["score"] == pytest.approx(found[1], abs=1e-4)
    import fiona

    with fiona.open(tmp_path / "marks.geojson") as src:  # GDAL reads the marks as lon/lat polygons
        assert src.crs.to_epsg() == 4326 and len(src) == 3
    marks = json.loads((tmp_path / "marks.geojson").read_text())["features"]
    assert [m["properties"]["mark"] for m in marks] == ["good", "good", "bad"]
    assert all(m["properties"]["level"] == "region" and m["geometry"]["type"] == "Polygon" for m in marks)
    # a tile footprint is 160 m across; a saved region mark is smaller (the box, not its tile)
    to_utm = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
    ring = [to_utm.transform(x, y) for x, y in marks[0]["geometry"]["coordinates"][0]]
    assert shape({"type": "Polygon", "coordinates": [ring]}).area < 0.9 * TILE_M ** 2

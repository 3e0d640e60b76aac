"""Region-level search through the CLI and a real ``geovec serve``: levels, rerank, drawn-box scale,
compositional queries, spatial/scene filters and bad input (tiny model, real rasters and indexes)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from serverproc import ServerProc
from shapely.geometry import box as sbox
from shapely.geometry import shape

from geovec.backend.cli import main
from geovec.backend.demo import write_sample_folder
from geovec.backend.index.store import IndexStore
from geovec.backend.indexing import index_folder
from geovec.backend.regions import iou
from geovec.backend.schemas import SearchRequest
from geovec.backend.types import EmbedInput, TilingParams

TILE = 32
SPEC = "grid=1,2;overlap=0.25"
LAKE_BOX = ["400100", "3299700", "400160", "3299760"]  # 60 m x 60 m on the 10 m UTM scene
LAKE_WKT = "POLYGON((-82.04 29.815, -82.02 29.815, -82.02 29.83, -82.04 29.83, -82.04 29.815))"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_embedder, tiny_model_dir: Path):
    root = tmp_path_factory.mktemp("rsearch")
    folder = write_sample_folder(root / "rasters", size=64)
    idx, plain = root / "idx", root / "plain"
    index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=TILE), regions=SPEC)
    index_folder(folder, plain, tiny_embedder, params=TilingParams(tile_size=TILE))
    return {"root": root, "folder": folder, "idx": idx, "plain": plain, "model": tiny_model_dir}


def _search(capsys, *argv: str) -> dict:
    code = main(["search", *argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def _fail(capsys, *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err, (code, err)
    return err


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _digest(path: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(path.iterdir())
                                   if p.name in ("index.json", "vectors.hnsw", "meta.sqlite", "regions.hnsw"))).hexdigest()


def test_tile_hits_carry_their_best_regions(env, capsys, tiny_embedder) -> None:
    resp = _search(capsys, "--index", str(env["idx"]), "--text", "water", "--k", "4", "--out-crs", "EPSG:3857")
    assert resp["query"]["regions_from"] == "index" and resp["query"]["level"] == "tile"
    q = _unit(tiny_embedder.encode([EmbedInput(tiny_embedder.instructions["referring_query"], text="water")])[0])
    with IndexStore.open(env["idx"]) as st:
        for f in resp["features"]:
            p = f["properties"]
            assert p["level"] == "tile" and 1 <= len(p["regions"]) <= 3
            tile = shape(f["geometry"])
            label = st.tile_labels([p["tile_id"]])[p["tile_id"]]
            rows, vecs = st.regions_of([label])
            exact = {r.box: float(s) for r, s in zip(rows, _unit(vecs) @ q, strict=True)}
            scores = [r["score"] for r in p["regions"]]
            assert scores == sorted(scores, reverse=True)
            assert scores[0] == pytest.approx(max(exact.values()), abs=1e-4)  # the best candidate is first
            for r in p["regions"]:
                assert set(r) == {"rank", "score", "bbox_image", "geometry"}
                assert r["score"] == pytest.approx(exact[tuple(r["bbox_image"])], abs=1e-4)
                poly = shape(r["geometry"])
                assert poly.area > 0 and tile.buffer(1.0).contains(poly)  # EPSG:3857 metres, inside its tile
            boxes = [r["bbox_image"] for r in p["regions"]]
            assert all(iou(a, b) <= 0.5 for i, a in enumerate(boxes) for b in boxes[i + 1 :])  # after NMS


def test_region_level_ranks_boxes_like_exact_scoring(env, capsys, tiny_embedder) -> None:
    resp = _search(capsys, "--index", str(env["idx"]), "--text", "water", "--k", "5", "--level", "region",
                   "--geojson", str(env["root"] / "r.geojson"))
    feats = resp["features"]
    assert len(feats) == 5 and all(f["properties"]["level"] == "region" for f in feats)
    scores = [f["properties"]["score"] for f in feats]
    assert scores == sorted(scores, reverse=True)
    q = _unit(tiny_embedder.encode([EmbedInput(tiny_embedder.instructions["referring_query"], text="water")])[0])
    with IndexStore.open(env["idx"]) as st:
        rows, vecs = st.regions_of(range(12))
    assert scores[0] == pytest.approx(float((_unit(vecs) @ q).max()), abs=1e-4)
    for f in feats:
        p = f["properties"]
        assert {"tile_id", "scene_id", "source", "bbox_image"} <= set(p)
        assert p["regions"][0]["bbox_image"] == p["bbox_image"]
    same_tile = {}
    for f in feats:
        same_tile.setdefault(f["properties"]["tile_id"], []).append(f["properties"]["bbox_image"])
    for boxes in same_tile.values():
        assert all(iou(a, b) <= 0.5 for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    # tile level --geojson: tile features plus one feature per region
    _search(capsys, "--index", str(env["idx"]), "--text", "water", "--k", "2", "--geojson", str(env["root"] / "t.geojson"))
    gj = json.loads((env["root"] / "t.geojson").read_text())
    levels = [f["properties"]["level"] for f in gj["features"]]
    assert levels[:2] == ["tile", "tile"] and levels[2:] and set(levels[2:]) == {"region"}


def test_rerank_scores_candidates_of_an_index_without_regions(env, capsys, tiny_embedder) -> None:
    before = _digest(env["plain"])
    err = _fail(capsys, "search", "--index", str(env["plain"]), "--text", "water", "--level", "region")
    assert "stores no regions" in err and "--rerank" in err
    resp = _search(capsys, "--index", str(env["plain"]), "--text", "water", "--level", "region", "--rerank", "3",
                   "--k", "4")
    assert resp["query"]["regions_from"] == "rerank" and len(resp["features"]) == 4
    tiles = _search(capsys, "--index", str(env["plain"]), "--text", "water", "--k", "3")
    assert all(f["properties"]["regions"] == [] for f in tiles["features"])  # no stored regions, no rerank
    top3 = {f["properties"]["tile_id"] for f in tiles["features"]}
    assert {f["properties"]["tile_id"] for f in resp["features"]} <= top3
    # the best reranked box equals encode_regions on that tile (default grid) against the referring query
    from geovec.backend.raster.tiling import read_tile
    from geovec.backend.regions import RegionSpec, grid_boxes

    best = resp["features"][0]["properties"]
    with IndexStore.open(env["plain"]) as st:
        rec = st.get(best["tile_id"])
        scene, stretch = st.scene(rec.scene_id)  # type: ignore[misc]
    image, _ = read_tile(scene, rec.window, stretch, out_size=TILE)
    boxes = grid_boxes(TILE, RegionSpec.parse(None))
    q = _unit(tiny_embedder.encode([EmbedInput(tiny_embedder.instructions["referring_query"], text="water")])[0])
    exact = _unit(tiny_embedder.encode_regions(image, boxes)) @ q
    assert best["score"] == pytest.approx(float(exact.max()), abs=1e-4)
    assert tuple(best["bbox_image"]) == pytest.approx(boxes[int(exact.argmax())], abs=1e-3)
    assert _digest(env["plain"]) == before  # searching never writes


def test_drawn_box_finds_regions_of_its_own_ground_size(env, capsys) -> None:
    resp = _search(capsys, "--index", str(env["idx"]), "--box", *LAKE_BOX, "--crs", "EPSG:32617", "--level",
                   "region", "--rerank", "2", "--k", "6")
    assert resp["query"]["box_ground_size_m"] == pytest.approx(60.0)
    query_box = sbox(*(float(v) for v in LAKE_BOX))
    for f in resp["features"]:
        p = f["properties"]
        x1, y1, x2, y2 = p["bbox_image"]
        side = ((x2 - x1) * (y2 - y1)) ** 0.5 * p["gsd"]
        assert side == pytest.approx(60.0, rel=0.02)  # a 60 m box finds 60 m sites
        if p["scene_id"] == resp["features"][0]["properties"]["scene_id"] and "lake" in p["source"]:
            from geovec.backend.raster.geometry import reproject_geometry

            poly = reproject_geometry(shape(f["geometry"]), "EPSG:4326", "EPSG:32617")
            assert poly.intersection(query_box).area < 0.01 * query_box.area  # never the drawn box itself


def test_compositional_queries_are_one_embedding(env, capsys, tiny_embedder) -> None:
    plain = _search(capsys, "--index", str(env["idx"]), "--box", *LAKE_BOX, "--crs", "EPSG:32617", "--k", "3")
    mixed = _search(capsys, "--index", str(env["idx"]), "--box", *LAKE_BOX, "--crs", "EPSG:32617", "--k", "3",
                    "--text", "next to water")
    assert mixed["query"]["text"] == "next to water" and "text" not in plain["query"]
    assert [f["properties"]["score"] for f in plain["features"]] != [f["properties"]["score"] for f in mixed["features"]]
    # the box+text query vector is one EmbedInput(region_query, image, bbox, text)
    from geovec.backend.search import build_query

    with IndexStore.open(env["idx"]) as st:
        req = SearchRequest(index=str(env["idx"]), box=[float(v) for v in LAKE_BOX], crs="EPSG:32617",
                            text="next to water", k=3)
        q = build_query(st, req)
        vec = tiny_embedder.encode([EmbedInput(tiny_embedder.instructions["region_query"], image=q.image,
                                               bbox=q.bbox, text="next to water")])[0]
        top = st.search(vec, 10)[0]
    first = mixed["features"][0]["properties"]
    assert first["score"] == pytest.approx(next(s for r, s in top if r.tile_id == first["tile_id"]), abs=1e-4)
    # an image file with text, and a point with text
    from PIL import Image

    Image.fromarray(q.image).save(env["root"] / "query.png")
    img = _search(capsys, "--index", str(env["idx"]), "--image", str(env["root"] / "query.png"), "--text", "water")
    assert img["query"]["kind"] == "image" and img["features"]
    pt = _search(capsys, "--index", str(env["idx"]), "--point", "400320", "3299680", "--crs", "EPSG:32617",
                 "--text", "water", "--k", "2")
    assert pt["query"]["kind"] == "point" and pt["query"]["text"] == "water"


def test_within_and_scene_filters(env, capsys, monkeypatch) -> None:
    lake = _search(capsys, "--index", str(env["idx"]), "--text", "water", "--k", "20", "--within", LAKE_WKT)
    assert lake["features"] and all("lake_utm17n" in f["properties"]["source"] for f in lake["features"])
    assert lake["query"]["filter"]["tiles"] == 4
    # the same area as a GeoJSON file in the scene's UTM CRS
    gj = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon", "coordinates": [[[400000, 3299680], [400320, 3299680], [400320, 3300000],
                                            [400000, 3300000], [400000, 3299680]]]}}]}
    (env["root"] / "area.geojson").write_text(json.dumps(gj))
    one = _search(capsys, "--index", str(env["idx"]), "--text", "water", "--k", "20", "--within",
                  json.dumps(gj["features"][0]["geometry"]), "--within-crs", "EPSG:32617", "--level", "region")
    assert {f["properties"]["window"][0] for f in one["features"]} == {0}  # only the top-left lake tile
    assert {tuple(f["properties"]["window"]) for f in one["features"]} == {(0, 0, 32, 32)}
    scenes = _search(capsys, "--index", str(env["idx"]), "--text", "water", "--k", "20", "--scene", "forest_albers",
                     "--scene", "town_ncsp_ftUS")
    assert len(scenes["features"]) == 8
    assert {Path(f["properties"]["source"]).stem for f in scenes["features"]} == {"forest_albers", "town_ncsp_ftUS"}
    # a large filter goes through hnswlib with a filter: same hits as exact scoring
    import geovec.backend.search.filters as filters

    monkeypatch.setattr(filters, "EXACT_MAX", 0)
    via_hnsw = _search(capsys, "--index", str(env["idx"]), "--text", "water", "--k", "20", "--within", LAKE_WKT)
    assert [f["properties"]["tile_id"] for f in via_hnsw["features"]] == [f["properties"]["tile_id"]
                                                                          for f in lake["features"]]


@pytest.mark.parametrize("argv, words", [
    (["--text", "  "], "text is empty"),
    (["--box", "400100", "3299700", "400100", "3299760", "--crs", "EPSG:32617"], "inverted or empty"),
    (["--text", "water", "--within", "POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))"], "covers no indexed scene"),
    (["--text", "water", "--within", "POLYGON((0 0, 1 0, 0 0))"], "no area"),
    (["--text", "water", "--scene", "nope"], "not in index"),
    (["--text", "water", "--rerank", "0"], "--rerank"),
    (["--image", "/nonexistent.png"], "does not exist"),
])
def test_bad_search_input_is_one_line(env, capsys, argv, words) -> None:
    before = _digest(env["idx"])
    assert words in _fail(capsys, "search", "--index", str(env["idx"]), *argv)
    assert _digest(env["idx"]) == before


def test_bad_region_spec_on_index_touches_nothing(env, capsys) -> None:
    before = _digest(env["plain"])
    err = _fail(capsys, "index", str(env["folder"]), "--index", str(env["plain"]), "--regions", "grid=1,2,3,4,5,6")
    assert "past the cap" in err
    err = _fail(capsys, "index", str(env["folder"]), "--index", str(env["idx"]), "--regions", "grid=1,3")
    assert "stores regions made with" in err
    assert _digest(env["plain"]) == before


@pytest.mark.slow
def test_http_and_server_cli_pass_the_region_fields(env, capsys, tiny_embedder, monkeypatch) -> None:
    from geovec.backend.service import run_search

    srv = ServerProc(env["root"] / "srv", model=env["model"], roots=[env["root"], env["model"]]).start()
    try:
        bodies = [
            {"index": str(env["idx"]), "text": "water", "k": 3, "level": "region", "within": LAKE_WKT},
            {"index": str(env["idx"]), "box": [float(v) for v in LAKE_BOX], "crs": "EPSG:32617", "text": "water",
             "k": 2, "regions_per_hit": 2, "scenes": ["lake_utm17n"], "out_crs": "EPSG:32617"},
            {"index": str(env["plain"]), "text": "water", "k": 2, "level": "region", "rerank": 1},
        ]
        with srv.client() as c:
            for body in bodies:
                r = c.post("/v1/search", json=body)
                assert r.status_code == 200, r.text
                got = r.json()
                want = run_search(SearchRequest(**body), tiny_embedder).model_dump()
                assert [f["properties"]["tile_id"] for f in got["features"]] == \
                    [f["properties"]["tile_id"] for f in want["features"]]
                for a, b in zip(got["features"], want["features"], strict=True):
                    assert a["properties"]["level"] == b["properties"]["level"] == body.get("level", "tile")
                    assert [x["bbox_image"] for x in a["properties"]["regions"]] == \
                        [x["bbox_image"] for x in b["properties"]["regions"]]
            r = c.post("/v1/search", json={"index": str(env["plain"]), "text": "water", "level": "region"})
            assert r.status_code == 422 and "stores no regions" in r.json()["detail"]
            r = c.post("/v1/search", json={"index": str(env["idx"]), "text": "water", "within": "/etc/passwd"})
            assert r.status_code == 403 and "outside" in r.json()["detail"]
        monkeypatch.setenv("GEOVEC_TOKEN_FILE", str(srv.token_file))
        via = _search(capsys, "--index", str(env["idx"]), "--text", "water", "--k", "3", "--level", "region",
                      "--within", LAKE_WKT, "--server", srv.url)
        assert via["query"]["level"] == "region" and via["query"]["filter"]["tiles"] == 4
    finally:
        srv.stop()

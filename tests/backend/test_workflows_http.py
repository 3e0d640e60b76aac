"""The workflow routes over real HTTP (a ``geovec serve`` subprocess, tiny model): each answers, bad input
is a 422 ErrorBody naming the problem, and nothing writes to the index."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest

from geovec.backend.indexing import index_folder
from geovec.backend.types import TilingParams
from tests.backend.serverproc import ServerProc
from tests.backend.test_workflows import _digest
from tests.backend.wfdata import CELLS, CRS, TILE, label_layer, tile_box, write_two_class_scene


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_embedder):
    root = tmp_path_factory.mktemp("workflows-http")
    (root / "rasters").mkdir()
    write_two_class_scene(root / "rasters")
    idx = root / "idx"
    index_folder(root / "rasters", idx, tiny_embedder, params=TilingParams(tile_size=TILE), batch_size=16)
    ridx = root / "ridx"  # the same tiles with 5 stored regions each
    index_folder(root / "rasters", ridx, tiny_embedder, params=TilingParams(tile_size=TILE), batch_size=16,
                 regions="grid=1,2;overlap=0.25")
    srv = ServerProc(root / "srv", model=tiny_model_dir, roots=[root, tiny_model_dir]).start()
    with srv.client() as c:
        yield {"root": root, "idx": str(idx), "ridx": str(ridx), "c": c}
    assert srv.stop() == 0


def _ok(r) -> dict:
    assert r.status_code == 200, r.text
    return r.json()


def _bad(r, words: str) -> None:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] and words in body["detail"], body


def test_every_workflow_route_answers(world) -> None:
    c, idx, root = world["c"], world["idx"], world["root"]
    before = _digest(idx)
    got = _ok(c.post("/v1/classify", json={"index": idx, "classes": ["water", "town"], "out_dir": str(root / "maps")}))
    assert got["tiles"] == 32 and len(got["features"]) == 32 and Path(got["class_maps"][0]["path"]).is_file()
    labels = json.loads(label_layer(root / "l.geojson", CELLS, crs="EPSG:4326").read_text())
    got = _ok(c.post("/v1/fewshot", json={"index": idx, "geojson": labels, "block_km": 0.32, "return_features": False}))
    assert got["cv"]["accuracy"][got["cv"]["method"]] >= 0.9 and got["features"] == []
    got = _ok(c.post("/v1/fewshot", json={"index": idx, "labels": str(root / "l.geojson"), "block_km": 0.32}))
    assert got["tiles"] == 32
    first = _ok(c.post("/v1/refine", json={"index": idx, "query": {"index": idx, "text": "water"},
                                           "good": [got["features"][0]["properties"]["tile_id"]], "k": 5}))
    vec = first["query_vector"]
    assert len(first["features"]) == 5 and len(vec) == 64
    again = _ok(c.post("/v1/refine", json={"index": idx, "vector": vec, "k": 5,
                                           "good": [got["features"][0]["properties"]["tile_id"]]}))
    assert [f["properties"]["tile_id"] for f in again["features"]] == \
        [f["properties"]["tile_id"] for f in first["features"]]
    hits = _ok(c.post("/v1/search/vector", json={"index": idx, "vector": vec, "k": 4}))
    assert len(hits["features"]) == 4
    lat, lon = hits["features"][0]["properties"]["center_lat"], hits["features"][0]["properties"]["center_lon"]
    near = _ok(c.post("/v1/search", json={"index": idx, "text": "water", "k": 40,
                                          "near": {"lat": lat, "lon": lon, "radius_km": 0.3}}))
    assert 0 < len(near["features"]) < 32 and all(f["properties"]["distance_km"] <= 0.3 for f in near["features"])
    loc = _ok(c.post("/v1/locate", json={"index": idx, "query": {"index": idx, "box": tile_box(1, 1), "crs": CRS},
                                         "k": 10}))
    assert loc["features"] and loc["features"][0]["geometry"]["type"] == "Point"
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(buf, format="PNG")
    loc = _ok(c.post("/v1/locate", json={"index": idx, "image_b64": base64.b64encode(buf.getvalue()).decode(),
                                         "k": 5}))
    assert loc["query"]["kind"] == "image"
    ans = _ok(c.post("/v1/ask", json={"index": idx, "box": tile_box(1, 1), "crs": CRS, "question": "what is here?",
                                      "answers": ["water", "buildings"]}))
    assert [a["rank"] for a in ans["answers"]] == [1, 2]
    assert _digest(idx) == before


def test_region_level_classification_over_http(world) -> None:
    c, ridx, root = world["c"], world["ridx"], world["root"]
    before = _digest(ridx)
    got = _ok(c.post("/v1/classify", json={"index": ridx, "classes": ["water", "town"], "level": "region",
                                           "out_dir": str(root / "rmaps")}))
    assert got["level"] == "region" and got["regions"] == 32 * 5 == len(got["features"]) and got["tiles"] == 32
    props = [f["properties"] for f in got["features"]]
    assert all(p["level"] == "region" and len(p["bbox_image"]) == 4 and p["class"] in ("water", "town") for p in props)
    assert sum(got["counts"].values()) == 32 * 5 and (root / "rmaps" / "regions.geojson").is_file()
    labels = json.loads(label_layer(root / "rl.geojson", CELLS, crs="EPSG:4326").read_text())
    got = _ok(c.post("/v1/fewshot", json={"index": ridx, "geojson": labels, "block_km": 0.32, "level": "region",
                                          "return_features": False}))
    assert got["level"] == "region" and got["regions"] == 32 * 5 and got["cv"]["examples"] > 32
    assert _digest(ridx) == before  # classifying reads the index, never writes it


def test_workflow_routes_bad_input(world) -> None:
    c, idx = world["c"], world["idx"]
    before = _digest(idx)
    _bad(c.post("/v1/classify", json={"index": idx, "classes": []}), "class list is empty")
    _bad(c.post("/v1/classify", json={"index": idx, "classes": ["a"]}), "only one class")
    _bad(c.post("/v1/classify", json={"index": idx, "classes": ["a", "b", "A"]}), "duplicate class")
    _bad(c.post("/v1/classify", json={"index": idx, "classes": ["a", "b"], "level": "region"}), "stores no regions")
    one = json.loads(label_layer(world["root"] / "one.geojson", CELLS[:3], crs="EPSG:4326").read_text())
    _bad(c.post("/v1/fewshot", json={"index": idx, "geojson": one}), "only one label")
    _bad(c.post("/v1/fewshot", json={"index": idx, "geojson": one, "level": "region"}), "stores no regions")
    _bad(c.post("/v1/fewshot", json={"index": idx, "geojson": {"type": "FeatureCollection", "features": [1]}}),
         "not a list of GeoJSON features")
    _bad(c.post("/v1/ask", json={"index": idx, "box": tile_box(1, 1), "crs": CRS, "question": "q?", "answers": []}),
         "no candidate answers")
    _bad(c.post("/v1/refine", json={"index": idx, "vector": [0.1] * 64}), "no marks")
    _bad(c.post("/v1/locate", json={"index": idx}), "exactly one of query, image_b64, vector")
    r = c.post("/v1/search/vector", json={"index": idx, "vector": [0.5] * 8})
    assert r.status_code == 409 and "8 values" in r.json()["detail"]
    r = c.post("/v1/classify", json={"index": "/etc", "classes": ["a", "b"]})
    assert r.status_code == 403 and "outside the folders" in r.json()["detail"]
    assert _digest(idx) == before

"""Workflows on a real index (tiny model, synthetic two-class GeoTIFF): classify, few-shot, refine,
locate, ask, search by vector, location conditioning, and their bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geovec.backend.errors import InputError, NotFoundError
from geovec.backend.index.store import IndexStore
from geovec.backend.indexing import index_folder
from geovec.backend.schemas import NearQuery, SearchRequest
from geovec.backend.schemas_workflows import (
    AreaOptions,
    AskRequest,
    ClassifyRequest,
    FewShotRequest,
    LocateRequest,
    RefineRequest,
    VectorSearchRequest,
)
from geovec.backend.search.location import haversine_km
from geovec.backend.types import EmbedInput, TilingParams
from geovec.backend.workflows import service
from geovec.backend.workflows.classifiers import CANDIDATES
from geovec.backend.workflows.feedback import refine_direction
from geovec.backend.workflows.tiles import load_tiles
from tests.backend.wfdata import CELLS, CRS, TILE, label_layer, tile_box, write_two_class_scene


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_embedder):
    root = tmp_path_factory.mktemp("workflows")
    folder = root / "rasters"
    folder.mkdir()
    write_two_class_scene(folder)
    idx = root / "idx"
    s = index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=TILE), batch_size=16)
    assert s.tiles == 32 and not s.errors
    return {"root": root, "idx": str(idx), "folder": folder}


def _digest(idx: str) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(idx).iterdir()):
        if p.suffix in (".hnsw", ".json", ".sqlite"):
            h.update(p.read_bytes())
    return h.hexdigest()


def _col(props: dict) -> int:
    return int(props["window"][0]) // TILE


def test_zero_shot_scores_maps_and_area(world, tiny_embedder, tmp_path: Path) -> None:
    before = _digest(world["idx"])
    req = ClassifyRequest(index=world["idx"], classes=["water", "town"], prompts={"town": "a dense town"},
                          out_dir=str(tmp_path / "out"), out_crs=CRS)
    resp = service.run_classify(req, tiny_embedder)
    assert resp.tiles == 32 and sum(resp.counts.values()) == 32 and resp.classes == ["water", "town"]
    # score and margin are the cosine to the class prompts, computed here independently
    instr = tiny_embedder.instructions["classification"]
    prompts = tiny_embedder.encode([EmbedInput(instr, text="a satellite image of water"),
                                    EmbedInput(instr, text="a dense town")])
    with IndexStore.open(world["idx"]) as store:
        for f in resp.features:
            p = f.properties
            v = store.vector(p["tile_id"])
            s = prompts @ (v / np.linalg.norm(v))
            assert p["class"] == ["water", "town"][int(s.argmax())]
            assert p["score"] == pytest.approx(float(s.max()), abs=1e-4)
            assert p["margin"] == pytest.approx(float(abs(s[0] - s[1])), abs=1e-4)
    # one class map on the scene's own grid, values = class ids of the tiles
    (cm,) = resp.class_maps
    with rasterio.open(cm.path) as ds, rasterio.open(world["folder"] / "two.tif") as src:
        assert (ds.width, ds.height, ds.crs, ds.transform) == (src.width, src.height, src.crs, src.transform)
        arr = ds.read(1)
        assert json.loads(ds.tags()["classes"]) == ["water", "town"] and ds.colormap(1)[1][3] == 255
    for f in resp.features:
        c, r, w, h = f.properties["window"]
        assert (arr[r:r + h, c:c + w] == f.properties["class_id"]).all()
    assert json.loads(Path(resp.geojson_path).read_text())["features"]
    # an area limits the tiles (box in the raster's CRS covering the two left columns)
    x0, _, _, y1 = tile_box(0, 0, shrink=0)
    area = AreaOptions(box=[x0, y1 - 4 * TILE * 10, x0 + 2 * TILE * 10, y1], crs=CRS)
    part = service.run_classify(req.model_copy(update={"area": area, "out_dir": None}), tiny_embedder)
    assert part.tiles == 8 and {_col(f.properties) for f in part.features} == {0, 1}
    assert _digest(world["idx"]) == before, "classification must not touch the index"


@pytest.mark.parametrize(("classes", "words"), [([], "empty"), (["water"], "only one class"),
                                                (["water", "Water", "town"], "duplicate"),
                                                (["water", " "], "blank")])
def test_zero_shot_bad_class_lists(world, classes, words) -> None:
    req = ClassifyRequest(index=world["idx"], classes=classes)
    with pytest.raises(InputError, match=words):
        service.run_classify(req, lambda: pytest.fail("the model must not load for bad input"))


def test_fewshot_learns_the_halves_with_held_out_blocks(world, tmp_path: Path) -> None:
    labels = label_layer(tmp_path / "labels.geojson", CELLS, crs="EPSG:3857")  # not the raster's CRS
    req = FewShotRequest(index=world["idx"], labels=str(labels), block_km=0.32, folds=4, out_dir=str(tmp_path / "o"))
    resp = service.run_fewshot(req)
    cv = resp.cv
    assert cv is not None and cv.examples == len(CELLS) and cv.features == len(CELLS) and cv.folds == 4
    assert set(cv.accuracy) == set(CANDIDATES) and cv.method in cv.accuracy and len(cv.outer_choices) == 4
    assert cv.nested_accuracy is not None and cv.nested_accuracy >= 0.9, cv
    wrong = [f.properties for f in resp.features if f.properties["class"] != ("water" if _col(f.properties) < 4
                                                                              else "urban")]
    assert len(wrong) <= 2, wrong
    assert resp.class_maps and resp.tiles == 32
    # points work too (the tile holding each point)
    pts = label_layer(tmp_path / "points.geojson", CELLS, crs="EPSG:4326", points=True)
    got = service.run_fewshot(req.model_copy(update={"labels": str(pts), "out_dir": None, "method": "prototype"}))
    assert got.cv is not None and got.cv.examples == len(CELLS) and got.cv.method == "prototype"
    assert got.cv.nested_accuracy is None and got.cv.accuracy["prototype"] >= 0.9  # no choice: plain CV is honest


def test_fewshot_bad_layers(world, tmp_path: Path) -> None:
    one = label_layer(tmp_path / "one.geojson", [c for c in CELLS if c[2] == "water"])
    with pytest.raises(InputError, match="only one label"):
        service.run_fewshot(FewShotRequest(index=world["idx"], labels=str(one)))
    far = json.loads(label_layer(tmp_path / "far.geojson", CELLS, crs="EPSG:4326").read_text())
    for f in far["features"]:
        f["geometry"]["coordinates"] = [[[x + 40, y] for x, y in f["geometry"]["coordinates"][0]]]
    with pytest.raises(InputError, match="none of the 10 labelled feature"):
        service.run_fewshot(FewShotRequest(index=world["idx"], geojson=far))
    with pytest.raises(InputError, match="no field 'class'"):
        service.run_fewshot(FewShotRequest(index=world["idx"], labels=str(one), label_field="class"))
    with pytest.raises(NotFoundError):
        service.run_fewshot(FewShotRequest(index=world["idx"], labels=str(tmp_path / "none.geojson")))


def test_refine_moves_towards_good_marks_and_saves_a_trainable_layer(world, tiny_embedder, tmp_path: Path) -> None:
    table = load_tiles(IndexStore.open(world["idx"]))
    water = [r.tile_id for r in table.records if r.window[0] // TILE < 4]
    urban = [r.tile_id for r in table.records if r.window[0] // TILE >= 4]
    q = RefineRequest(index=world["idx"], query=SearchRequest(index=world["idx"], text="water"),
                      good=water[:3], bad=urban[:3], k=10, save_marks=str(tmp_path / "marks.geojson"))
    resp = service.run_refine(q, tiny_embedder)
    ids = [f.properties["tile_id"] for f in resp.features]
    assert len(ids) == 10 and not set(ids) & set(urban[:3])
    assert sum(i in water for i in ids) >= 9, "the refined query finds the water half"
    assert len(resp.query_vector) == len(resp.refined_vector) == tiny_embedder.dim
    # the next round sends the vector back: same result without the model
    again = service.run_refine(q.model_copy(update={"query": None, "vector": resp.query_vector, "save_marks": None}),
                               lambda: pytest.fail("no model needed with a vector"))
    assert [f.properties["tile_id"] for f in again.features] == ids
    # the marks layer is what `geovec train` reads
    from geovec.backend.raster.scan import open_scene
    from geovec.training.data.vector_labels import load_features

    feats = load_features(resp.marks_path, open_scene(world["folder"] / "two.tif"), label_field="label")
    assert [f.label for f in feats] == ["water"] * 3
    with pytest.raises(InputError, match="both good and bad"):
        service.run_refine(q.model_copy(update={"bad": water[:1]}), tiny_embedder)
    with pytest.raises(InputError, match="no marks"):
        service.run_refine(q.model_copy(update={"good": [], "bad": []}), tiny_embedder)


def test_refine_direction_rocchio_and_probe() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=64).astype(np.float32)
    good = rng.normal(size=(3, 64)).astype(np.float32) + 3 * np.eye(64, dtype=np.float32)[0]
    bad = rng.normal(size=(3, 64)).astype(np.float32) - 3 * np.eye(64, dtype=np.float32)[0]
    good /= np.linalg.norm(good, axis=1, keepdims=True)
    bad /= np.linalg.norm(bad, axis=1, keepdims=True)
    d = refine_direction(q, good, bad)
    assert abs(np.linalg.norm(d) - 1) < 1e-5 and d[0] > 0.3
    assert (good @ d).min() > (bad @ d).max()
    plain = refine_direction(q, good, bad[:0], probe_weight=0.0)
    assert np.allclose(plain, (q / np.linalg.norm(q) + 0.75 * good.mean(0)) / np.linalg.norm(
        q / np.linalg.norm(q) + 0.75 * good.mean(0)), atol=1e-5)


def test_search_by_vector_and_location_conditioning(world) -> None:
    store = IndexStore.open(world["idx"])
    table = load_tiles(store)
    first = table.records[5]
    vec = [float(v) for v in store.vector(first.tile_id)]
    resp = service.run_vector_search(VectorSearchRequest(index=world["idx"], vector=vec, k=3))
    assert resp.features[0].properties["tile_id"] == first.tile_id
    # radius filter: every hit within the radius, the exact answer (brute force over the tiles in it)
    far = table.records[-1]
    near = NearQuery(lat=far.center_lat, lon=far.center_lon, radius_km=0.25)
    got = service.run_vector_search(VectorSearchRequest(index=world["idx"], vector=vec, k=50, near=near))
    d = haversine_km(far.center_lat, far.center_lon, table.lat, table.lon)
    inside = {table.records[i].tile_id for i in np.flatnonzero(d <= 0.25)}
    assert {f.properties["tile_id"] for f in got.features} == inside and 1 < len(inside) < 32
    assert all(f.properties["distance_km"] <= 0.25 for f in got.features)
    # decay re-rank: ranking score = cosine - 0.1 * d / decay, sorted
    dec = NearQuery(lat=far.center_lat, lon=far.center_lon, decay_km=0.1, weight=0.1)
    got = service.run_vector_search(VectorSearchRequest(index=world["idx"], vector=vec, k=32, near=dec))
    rs = [f.properties["rank_score"] for f in got.features]
    assert rs == sorted(rs, reverse=True) and len(rs) == 32
    for f in got.features:
        p = f.properties
        assert p["rank_score"] == pytest.approx(p["score"] - 0.1 * p["distance_km"] / 0.1, abs=1e-3)
    assert got.features[0].properties["tile_id"] != first.tile_id, "the far tiles win after the penalty"
    with pytest.raises(Exception, match="16-d|values but index"):
        service.run_vector_search(VectorSearchRequest(index=world["idx"], vector=[1.0] * 16))
    store.close()


def test_search_request_near_goes_through_text_search(world, tiny_embedder) -> None:
    from geovec.backend.service import run_search

    table = load_tiles(IndexStore.open(world["idx"]))
    c = table.records[0]
    req = SearchRequest(index=world["idx"], text="water", k=20,
                        near={"lat": c.center_lat, "lon": c.center_lon, "radius_km": 0.2})
    resp = run_search(req, tiny_embedder)
    assert resp.features and all(f.properties["distance_km"] <= 0.2 for f in resp.features)


def test_locate_clusters_hits_into_ranked_points(world, tiny_embedder) -> None:
    box = tile_box(1, 1)
    req = LocateRequest(index=world["idx"], query=SearchRequest(index=world["idx"], box=box, crs=CRS),
                        k=20, radius_km=0.3, out_crs=CRS)
    resp = service.run_locate(req, tiny_embedder)
    scores = [f.properties["score"] for f in resp.features]
    assert resp.features and scores == sorted(scores, reverse=True) and sum(scores) <= 1.0 + 1e-5  # 6-decimal rounding
    assert sum(f.properties["hits"] for f in resp.features) <= 20
    for f in resp.features:  # each location lies within its radius of every member hit
        p = f.properties
        with IndexStore.open(world["idx"]) as store:
            for t in p["tile_ids"]:
                rec = store.get(t)
                assert float(haversine_km(p["lat"], p["lon"], rec.center_lat, rec.center_lon)) <= 2 * 0.3
    with pytest.raises(ValueError, match="exactly one"):
        LocateRequest(index=world["idx"])


def test_ask_ranks_answers_and_refuses_no_answers(world, tiny_embedder) -> None:
    req = AskRequest(index=world["idx"], box=tile_box(1, 1), crs=CRS, question="what covers this area?",
                     answers=["water", "buildings", "forest"])
    resp = service.run_ask(req, tiny_embedder)
    assert sorted(a.answer for a in resp.answers) == ["buildings", "forest", "water"]
    assert [a.rank for a in resp.answers] == [1, 2, 3]
    assert [a.score for a in resp.answers] == sorted((a.score for a in resp.answers), reverse=True)
    # each score recomputed: the question on the box's pixels and each answer, every input embedded alone
    from geovec.backend.search import build_query

    with IndexStore.open(world["idx"]) as store:
        region = build_query(store, SearchRequest(index=world["idx"], box=tile_box(1, 1), crs=CRS))
    template = tiny_embedder.instructions["vqa"]
    assert "{question}" in template
    q = tiny_embedder.encode([EmbedInput(template.replace("{question}", "what covers this area?"),
                                         image=region.image, bbox=region.bbox)], batch_size=1)[0]
    for a in resp.answers:
        v = tiny_embedder.encode([EmbedInput(tiny_embedder.instructions["text_doc"], text=a.answer)], batch_size=1)[0]
        assert a.score == pytest.approx(float(v @ q), abs=1e-4), a.answer
    assert len({a.score for a in resp.answers}) == 3  # distinct scores: the ranking is decided by them
    other = service.run_ask(req.model_copy(update={"box": tile_box(6, 2)}), tiny_embedder)
    assert [a.score for a in other.answers] != [a.score for a in resp.answers]  # the pixels are part of the query
    with pytest.raises(InputError, match="no candidate answers"):
        service.run_ask(req.model_copy(update={"answers": []}), lambda: pytest.fail("no model for bad input"))
    with pytest.raises(InputError, match="question is empty"):
        service.run_ask(req.model_copy(update={"question": "  "}), tiny_embedder)


def _geovec(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "geovec.backend", *args], capture_output=True, text=True, timeout=300)


def test_cli_workflows_run_and_bad_input_is_one_line(world, tiny_model_dir, tmp_path: Path, capsys) -> None:
    from geovec.backend.cli import main

    idx = world["idx"]
    before = _digest(idx)
    # bad input: one line on stderr, non-zero exit, index untouched (one real subprocess, the rest in process)
    res = _geovec("classify", "--index", idx, "--classes", "water")
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [res.stderr.strip()], res.stderr
    assert "only one class" in res.stderr and "Traceback" not in res.stderr
    labels_one = label_layer(tmp_path / "one.geojson", [c for c in CELLS if c[2] == "water"])
    far = label_layer(tmp_path / "far.geojson", [(c + 40, r, lab) for c, r, lab in CELLS])
    bad = [(["classify", "--index", idx, "--classes"], "class list is empty"),
           (["classify", "--index", idx, "--classes", "water"], "only one class"),
           (["classify", "--index", idx, "--classes", "water", "town", "water"], "duplicate class"),
           (["fewshot", "--index", idx, "--labels", str(labels_one)], "only one label"),
           (["fewshot", "--index", idx, "--labels", str(far)], "none of the 10 labelled feature"),
           (["ask", "--index", idx, "--box", *map(str, tile_box(1, 1)), "--crs", CRS, "--question", "what?",
             "--answers"], "no candidate answers")]
    capsys.readouterr()
    for args, words in bad:
        code = main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and len(err) == 1 and words in err[0], (args, err)
    assert _digest(idx) == before
    # the commands (in process: same parser and service functions)
    out = tmp_path / "maps"
    assert main(["classify", "--index", idx, "--classes", "water", "town", "--out", str(out),
                 "--model", str(tiny_model_dir)]) == 0
    assert len(list(out.glob("classmap_*.tif"))) == 1 and (out / "tiles.geojson").is_file()
    labels = label_layer(tmp_path / "labels.geojson", CELLS)
    assert main(["fewshot", "--index", idx, "--labels", str(labels), "--block-km", "0.32", "--json"]) == 0
    vec = tmp_path / "q.json"
    hits = tmp_path / "hits.geojson"
    assert main(["refine", "--index", idx, "--text", "water", "--good", load_tiles(IndexStore.open(idx)).records[0]
                 .tile_id, "--save-vector", str(vec), "--geojson", str(hits), "--model", str(tiny_model_dir)]) == 0
    assert len(json.loads(vec.read_text())["query_vector"]) == 64
    assert main(["search", "--index", idx, "--vector", str(vec), "--k", "3", "--json"]) == 0
    assert main(["search", "--index", idx, "--vector", str(vec), "--near", "29.8", "-81.9", "--radius-km", "5"]) == 0
    assert main(["locate", "--index", idx, "--vector", str(vec), "--k", "10"]) == 0
    assert main(["ask", "--index", idx, "--box", *map(str, tile_box(1, 1)), "--crs", CRS, "--question", "what?",
                 "--answers", "water", "town", "--model", str(tiny_model_dir)]) == 0
    assert main(["search", "--index", idx, "--text", "x", "--radius-km", "3"]) == 2  # needs --near
    assert _digest(idx) == before

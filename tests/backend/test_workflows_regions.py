"""Zero-shot and few-shot classification at region level (tiny model, a synthetic two-class GeoTIFF whose
boundary crosses the middle of a tile column, indexed with stored regions): the items are the stored regions,
never the tiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geovec.backend.errors import InputError
from geovec.backend.index.store import IndexStore
from geovec.backend.indexing import index_folder
from geovec.backend.schemas_workflows import AreaOptions, ClassifyRequest, FewShotRequest
from geovec.backend.types import EmbedInput, TilingParams
from geovec.backend.workflows import service
from geovec.backend.workflows.tiles import load_tiles
from tests.backend.test_workflows import _digest
from tests.backend.wfdata import CELLS, CRS, ORIGIN, RES, TILE, label_layer, tile_box, write_two_class_scene

SPEC = "grid=1,2;overlap=0.25"  # 5 regions per tile: the whole tile and 4 overlapping quarters
PER_TILE = 5
EDGE = 72  # water left of this column, town right of it: tile column 4 (px 64-80) holds both
LABELS = [c for c in CELLS if c[0] != 4]  # examples only from tiles of one class


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_embedder):
    root = tmp_path_factory.mktemp("wf-regions")
    folder = root / "rasters"
    folder.mkdir()
    write_two_class_scene(folder, edge=EDGE)
    idx, plain = root / "idx", root / "plain"
    s = index_folder(folder, idx, tiny_embedder, params=TilingParams(tile_size=TILE), batch_size=16, regions=SPEC)
    assert s.tiles == 32 and not s.errors
    index_folder(folder, plain, tiny_embedder, params=TilingParams(tile_size=TILE), batch_size=16)
    return {"root": root, "idx": str(idx), "plain": str(plain), "folder": folder}


def _stored(idx: str) -> dict[tuple[str, tuple[float, ...]], np.ndarray]:
    """(tile_id, rounded box) -> unit region vector, read from the index directly."""
    with IndexStore.open(idx) as st:
        labels = st.tile_labels([r.tile_id for r in load_tiles(st).records])
        by_label = {v: k for k, v in labels.items()}
        rows, vecs = st.regions_of(list(by_label))
    vecs = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    return {(by_label[r.tile_label], tuple(round(float(v), 3) for v in r.box)): v for r, v in zip(rows, vecs, strict=True)}


def _native_box(props: dict) -> tuple[float, float, float, float]:
    """The region's box in the scene CRS from its window and bbox_image (tile image = TILE px)."""
    c, r, w, h = props["window"]
    x0, y0, x1, y1 = props["bbox_image"]
    s = w / TILE
    return (ORIGIN[0] + (c + x0 * s) * RES, ORIGIN[1] - (r + y1 * s) * RES,
            ORIGIN[0] + (c + x1 * s) * RES, ORIGIN[1] - (r + y0 * s) * RES)


def test_zero_shot_classifies_every_stored_region(world, tiny_embedder, tmp_path: Path) -> None:
    before = _digest(world["idx"])
    req = ClassifyRequest(index=world["idx"], classes=["water", "town"], out_dir=str(tmp_path / "out"), out_crs=CRS,
                          level="region")
    resp = service.run_classify(req, tiny_embedder)
    stored = _stored(world["idx"])
    assert len(stored) == 32 * PER_TILE
    assert resp.level == "region" and resp.regions == len(resp.features) == 32 * PER_TILE and resp.tiles == 32
    assert sum(resp.counts.values()) == 32 * PER_TILE
    instr = tiny_embedder.instructions["classification"]
    prompts = tiny_embedder.encode([EmbedInput(instr, text="a satellite image of water"),
                                    EmbedInput(instr, text="a satellite image of town")])
    seen = set()
    for f in resp.features:
        p = f.properties
        key = (p["tile_id"], tuple(p["bbox_image"]))
        seen.add(key)
        s = prompts @ stored[key]  # the region's own vector, not its tile's
        assert p["level"] == "region" and p["class"] == ["water", "town"][int(s.argmax())]
        assert p["score"] == pytest.approx(float(s.max()), abs=1e-4)
        assert p["margin"] == pytest.approx(float(abs(s[0] - s[1])), abs=1e-4)
        xs = [pt[0] for pt in f.geometry["coordinates"][0]]
        ys = [pt[1] for pt in f.geometry["coordinates"][0]]
        assert (min(xs), min(ys), max(xs), max(ys)) == pytest.approx(_native_box(p), abs=1e-3)
    assert seen == set(stored)
    _check_class_map(resp)
    assert len(json.loads((tmp_path / "out" / "regions.geojson").read_text())["features"]) == 32 * PER_TILE
    # an area keeps the regions whose box centre lies inside it (the two left tile columns)
    x0, _, _, y1 = tile_box(0, 0, shrink=0)
    area = AreaOptions(box=[x0, y1 - 4 * TILE * RES, x0 + 2 * TILE * RES, y1], crs=CRS)
    part = service.run_classify(req.model_copy(update={"area": area, "out_dir": None}), tiny_embedder)
    assert part.regions == 8 * PER_TILE and part.tiles == 8
    assert all(_native_box(f.properties)[2] <= x0 + 2 * TILE * RES + 1e-6 for f in part.features)
    assert _digest(world["idx"]) == before


def _check_class_map(resp) -> None:
    """Each pixel of the class map holds the class of the best-scoring region covering it."""
    (cm,) = resp.class_maps
    with rasterio.open(cm.path) as ds:
        arr = ds.read(1)
    want = np.zeros_like(arr)
    for f in sorted(resp.features, key=lambda f: f.properties["score"]):  # painted in ascending score
        x0, y0, x1, y1 = _native_box(f.properties)
        c0, c1 = round((x0 - ORIGIN[0]) / RES), round((x1 - ORIGIN[0]) / RES)
        r0, r1 = round((ORIGIN[1] - y1) / RES), round((ORIGIN[1] - y0) / RES)
        want[r0:r1, c0:c1] = f.properties["class_id"]
    assert (arr == want).all() and (arr > 0).all()


def test_fewshot_trains_on_regions_under_the_labels(world, tmp_path: Path) -> None:
    labels = label_layer(tmp_path / "labels.geojson", LABELS, crs="EPSG:3857")
    req = FewShotRequest(index=world["idx"], labels=str(labels), block_km=0.32, folds=4, level="region",
                         return_features=True, out_dir=str(tmp_path / "maps"))
    resp = service.run_fewshot(req)
    cv = resp.cv
    # every region of a labelled tile has its box centre inside the (slightly shrunk) tile polygon
    assert cv is not None and cv.examples == len(LABELS) * PER_TILE and cv.features == len(LABELS)
    assert cv.nested_accuracy is not None and cv.nested_accuracy >= 0.9, cv
    assert resp.level == "region" and resp.regions == len(resp.features) == 32 * PER_TILE
    props = [f.properties for f in resp.features]
    wrong = [p for p in props
             if p["class"] != ("water" if (_native_box(p)[0] + _native_box(p)[2]) / 2 < ORIGIN[0] + EDGE * RES
                               else "urban")]
    assert len(wrong) <= 16, wrong
    # the tiles the edge crosses: their left and right quarters differ, so the map is painted per region
    mixed = {p["tile_id"] for p in props if len({q["class"] for q in props if q["tile_id"] == p["tile_id"]}) > 1}
    assert mixed, "no tile whose regions differ in class"
    _check_class_map(resp)
    # a point trains the smallest region containing it: one quarter box per point, not the whole tile
    pts = label_layer(tmp_path / "points.geojson", LABELS, crs="EPSG:4326", points=True)
    got = service.run_fewshot(req.model_copy(update={"labels": str(pts), "method": "prototype", "out_dir": None}))
    assert got.cv is not None and got.cv.examples == len(LABELS) and got.level == "region"


def test_region_level_needs_stored_regions(world, tmp_path: Path, capsys) -> None:
    from geovec.backend.cli import main

    before = _digest(world["plain"])
    with pytest.raises(InputError, match="re-index with --regions"):
        service.run_classify(ClassifyRequest(index=world["plain"], classes=["a", "b"], level="region"),
                             lambda: pytest.fail("the model must not load for bad input"))
    labels = label_layer(tmp_path / "labels.geojson", CELLS)
    with pytest.raises(InputError, match="re-index with --regions"):
        service.run_fewshot(FewShotRequest(index=world["plain"], labels=str(labels), level="region"))
    capsys.readouterr()
    for args in (["classify", "--index", world["plain"], "--classes", "a", "b", "--level", "region"],
                 ["fewshot", "--index", world["plain"], "--labels", str(labels), "--level", "region"]):
        code = main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and len(err) == 1 and "stores no regions" in err[0] and "--regions" in err[0], err
    assert _digest(world["plain"]) == before
    # the CLI at region level on an index with regions
    out = tmp_path / "maps"
    assert main(["fewshot", "--index", world["idx"], "--labels", str(labels), "--block-km", "0.32",
                 "--level", "region", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{32 * PER_TILE} region(s) of 32 tile(s) classified" in printed and (out / "regions.geojson").is_file()

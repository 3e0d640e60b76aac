"""Region candidates, spec parsing, scale-derived boxes, NMS and vector-layer boxes (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geovec.backend.demo import write_sample_folder
from geovec.backend.errors import InputError, NotFoundError
from geovec.backend.raster.scan import open_scene
from geovec.backend.regions import (
    DEFAULT_SPEC,
    HARD_CAP,
    LayerBoxes,
    RegionSpec,
    grid_boxes,
    iou,
    nms,
    scale_boxes,
    tile_candidates,
)


def test_default_spec_is_a_multiscale_grid_of_30() -> None:
    spec = RegionSpec.parse(None)
    assert spec == RegionSpec.parse(DEFAULT_SPEC) == RegionSpec.parse("")
    assert spec.grids == (1, 2, 3, 4) and spec.overlap == 0.25
    boxes = grid_boxes(256, spec)
    assert len(boxes) == 30 == spec.grid_count()
    assert boxes[0] == (0.0, 0.0, 256.0, 256.0)
    for n in (2, 3, 4):  # every grid covers the tile edge to edge, neighbours overlap by 25 %
        level = boxes[sum(g * g for g in range(1, n)) : sum(g * g for g in range(1, n + 1))]
        assert len(level) == n * n
        assert min(b[0] for b in level) == 0 and max(b[2] for b in level) == pytest.approx(256, abs=1e-2)
        w = level[0][2] - level[0][0]
        assert level[1][0] == pytest.approx(w * 0.75, abs=1e-2)


def test_spec_round_trips_and_is_canonical() -> None:
    spec = RegionSpec.parse(" grid=3,1;overlap=0.5 ; max=20;min=2 ")
    assert spec.grids == (1, 3) and spec.overlap == 0.5 and spec.max_candidates == 20 and spec.min_size == 2
    assert RegionSpec.parse(spec.to_text()) == spec
    assert spec.to_text() == "grid=1,3;overlap=0.5;max=20;min=2"


@pytest.mark.parametrize("text, words", [
    ("grid=0", "grid='0'"), ("grid=a", "grid='a'"), ("overlap=0.95", "overlap"), ("max=0", "max"),
    (f"max={HARD_CAP + 1}", "max"), ("colour=red", "unknown region spec key"), ("grid", "not key=value"),
    ("grid=1,2,3,4,5,6", "past the cap"), ("grid=8;max=63", "past the cap"), ("min=0", "min"),
])
def test_bad_specs_are_one_clear_error(text: str, words: str) -> None:
    with pytest.raises(InputError, match="region spec") as e:
        RegionSpec.parse(text)
    assert words in str(e.value)


def test_missing_layer_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="region layer"):
        RegionSpec.parse(f"grid=1;layer={tmp_path / 'nope.gpkg'}")


def test_layer_boxes_past_the_cap_are_dropped_largest_kept() -> None:
    spec = RegionSpec.parse("grid=1,2;max=7")
    layer = [(0, 0, 10, 10), (0, 0, 30, 30), (5, 5, 6, 6), (1, 1, 21, 21), (2, 2, 4, 40)]
    boxes = tile_candidates(64, spec, layer_boxes=layer)
    assert len(boxes) == 7
    assert boxes[5:] == [(0, 0, 30, 30), (1, 1, 21, 21)]  # (5,5,6,6) and (2,2,4,40) are below min=4 on a side


def test_scale_boxes_have_the_asked_size_and_cover_the_tile() -> None:
    boxes = scale_boxes(100, 20, 10)
    assert all(b[2] - b[0] == pytest.approx(20) and b[3] - b[1] == pytest.approx(10) for b in boxes)
    assert max(b[2] for b in boxes) == pytest.approx(100) and max(b[3] for b in boxes) == pytest.approx(100)
    assert min(b[0] for b in boxes) == 0 and min(b[1] for b in boxes) == 0
    capped = scale_boxes(256, 4, 4, cap=30)
    assert 0 < len(capped) <= 30
    assert scale_boxes(64, 500, 500) == [(0.0, 0.0, 64.0, 64.0)]  # larger than the tile: the tile
    with pytest.raises(InputError, match="zero area"):
        scale_boxes(64, 0, 10)


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = [(0, 0, 10, 10), (1, 1, 11, 11), (20, 20, 30, 30), (0, 0, 10, 9)]
    scores = [0.5, 0.9, 0.3, 0.8]
    assert nms(boxes, scores, iou_threshold=0.5) == [1, 2]
    assert nms(boxes, scores, iou_threshold=1.0) == [1, 3, 0, 2]
    assert nms(boxes, scores, iou_threshold=0.5, limit=1) == [1]
    with pytest.raises(InputError):
        nms(boxes, scores[:2])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(1, 30), st.integers(1, 30)),
                min_size=1, max_size=25), st.floats(0.0, 1.0))
def test_nms_properties(raw, thr: float) -> None:
    boxes = [(x, y, x + w, y + h) for x, y, w, h in raw]
    scores = [((i * 7919) % 101) / 101 for i in range(len(boxes))]
    keep = nms(boxes, scores, iou_threshold=thr)
    assert keep and keep[0] == max(range(len(boxes)), key=lambda i: (scores[i], -i))
    assert all(iou(boxes[a], boxes[b]) <= thr for a in keep for b in keep if a != b)
    for i in set(range(len(boxes))) - set(keep):  # every dropped box overlaps a better kept one
        assert any(iou(boxes[i], boxes[j]) > thr and scores[j] >= scores[i] for j in keep)


def _greedy_nms(boxes, scores, thr: float) -> list[int]:
    """The definition, one pair at a time: best score first (ties in input order), drop IoU > thr."""
    keep: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        if all(iou(boxes[i], boxes[j]) <= thr for j in keep):
            keep.append(i)
    return keep


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 50), st.floats(0, 50), st.floats(0, 30), st.floats(0, 30),
                          st.sampled_from([0.1, 0.5, 0.5, 0.9])), min_size=0, max_size=40), st.floats(0.0, 1.0))
def test_vectorised_nms_equals_the_pairwise_definition(raw, thr: float) -> None:
    """Float boxes, zero-area boxes and tied scores: the same indices in the same order as the definition."""
    boxes = [(x, y, x + w, y + h) for x, y, w, h, _ in raw]
    scores = [s for *_, s in raw]
    want = _greedy_nms(boxes, scores, thr)
    assert nms(boxes, scores, iou_threshold=thr) == want
    assert nms(boxes, scores, iou_threshold=thr, limit=2) == want[:2]


def test_nms_of_many_float_boxes_equals_the_definition() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 300, (600, 2))
    boxes = np.hstack([xy, xy + rng.uniform(5, 40, (600, 2))]).tolist()
    scores = np.round(rng.uniform(0, 1, 600), 2).tolist()  # many ties
    for thr in (0.0, 0.3, 0.7):
        assert nms(boxes, scores, iou_threshold=thr) == _greedy_nms(boxes, scores, thr)


def test_layer_boxes_in_another_crs_are_clipped_to_the_tile(tmp_path: Path) -> None:
    folder = write_sample_folder(tmp_path / "r", size=64)
    scene = open_scene(folder / "lake_utm17n.tif")  # UTM 17N, 10 m pixels, origin (400000, 3300000)
    from pyproj import Transformer

    tr = Transformer.from_crs("EPSG:32617", "EPSG:4326", always_xy=True)

    def ring(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
        return [list(tr.transform(x, y)) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]

    feats = [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
        ring(400050, 3299850, 400100, 3299900)]}},  # pixels cols 5..10, rows 10..15
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
            ring(400300, 3299700, 400400, 3299800)]}}]  # cols 30..40, rows 20..30: crosses the tile edge at 32
    path = tmp_path / "boxes.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    layer = LayerBoxes(path)
    got = sorted(layer.boxes(scene, (0, 0, 32, 32), 64))  # 32 native px -> 64 image px
    assert len(got) == 2
    assert got[0] == pytest.approx((10, 20, 20, 30), abs=0.2)
    assert got[1] == pytest.approx((60, 40, 64, 60), abs=0.2)  # clipped at the tile's right edge
    assert layer.boxes(scene, (32, 32, 32, 32), 64) == []

"""Region pairs: boxes on their tiles <-> referring texts, from polygons in any CRS or a pixel-box CSV."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from shapely.geometry import box as shapely_box

from geovec.backend.errors import InputError
from geovec.backend.model.presets import RS_INSTRUCTIONS
from geovec.backend.raster.geometry import pixel_box_to_image_box
from geovec.training.config import Config
from geovec.training.data.dataset import build_train_data
from geovec.training.data.region_pairs import box_iou, grid_boxes

from .synthetic import class_layout, write_labels, write_scene

SIZE = 28


def _data(tmp: Path, labels: Path, **regions: Any) -> Any:
    scene = tmp / "scene.tif"
    if not scene.exists():
        write_scene(scene)
    cfg = Config.from_dict({"data": {
        "raster": [str(scene)], "labels": str(labels), "pair_types": ["region"], "image_size": SIZE,
        "val_per_class": 4, "block_size": 24, "buffer": 2, "seed": 1,
        "regions": {"tile_size": 32, "tiles_per_feature": 3, **regions}}})
    return build_train_data(cfg.data, dict(RS_INSTRUCTIONS), SIZE)


def _truth() -> dict[str, Any]:
    by: dict[str, list[Any]] = {}
    for label, b in class_layout():
        by.setdefault(label, []).append(shapely_box(*b))
    return {k: shapely.union_all(v) for k, v in by.items()}


def test_region_pairs_have_the_search_form_true_labels_and_no_held_out_pixels(tmp_path: Path,
                                                                               tiny_embedder: Any) -> None:
    # polygons in another CRS than the raster's (WGS84 GeoJSON): reprojected to the scene's pixels
    labels = write_labels(tmp_path / "labels.geojson", driver="GeoJSON", crs="EPSG:4326")
    data = _data(tmp_path, labels, match="cover", min_match=0.6, background="background", max_background=0.0)
    pairs = [p for p in data.train_pairs if p.kind == "region"]
    assert len(pairs) == len(data.train_pairs) > 20
    assert "background" in data.classes and {p.label for p in pairs} >= {"background", "water", "forest"}
    truth, union = _truth(), shapely.union_all(list(_truth().values()))
    held_boxes = [shapely_box(*b) for i, (_, b) in enumerate(class_layout()) if i in data.split["val_feature_ids"]]
    blocks = {(int(g.centroid.x // 24), int(g.centroid.y // 24)) for g in held_boxes}
    held = shapely.union_all(held_boxes + [shapely_box(24 * x, 24 * y, 24 * x + 24, 24 * y + 24)
                                           for x, y in blocks]).buffer(1.9)
    for p in pairs:
        # exactly the input the index embeds for a candidate box, and the text a referring query is
        (expected,) = tiny_embedder.region_inputs(p.query.image, [p.query.bbox])
        assert (p.query.instruction, p.query.bbox, p.query.text) == (expected.instruction, expected.bbox, None)
        assert p.query.image.shape == (SIZE, SIZE, 3)
        assert p.doc.instruction == RS_INSTRUCTIONS["referring_query"] and p.doc.text == p.label
        assert p.doc.image is None
        window, native = p.extra["window"], shapely_box(*p.extra["box"])
        assert np.allclose(p.query.bbox, pixel_box_to_image_box(p.extra["box"], window, SIZE), atol=1e-6)
        if p.label == "background":
            assert native.intersection(union).area == 0
        else:
            assert native.intersection(truth[p.label]).area >= 0.6 * native.area - 1e-6
        # no training image shows a held-out feature or any pixel of its split block
        assert not held.intersects(shapely_box(window[0], window[1], window[0] + window[2], window[1] + window[3]))


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_pixel_box_csv_with_iou_matching(tmp_path: Path) -> None:
    rows = [{"image_path": "scene.tif", "xmin": b[0], "ymin": b[1], "xmax": b[2], "ymax": b[3], "label": "patch"}
            for _, b in class_layout()]
    rows.append({"image_path": "another.tif", "xmin": 0, "ymin": 0, "xmax": 5, "ymax": 5, "label": "other"})
    boxes = _write_csv(tmp_path / "boxes.csv", rows)
    data = _data(tmp_path, boxes, match="iou", min_match=0.5, background="bare ground", max_background=0.1,
                 template="a {label} of colour")
    assert data.classes == ["bare ground", "patch"]  # the other image's row is not this raster's
    assert data.split["train_features"] + data.split["val_features"] == len(class_layout())
    truth = [b for _, b in class_layout()]
    texts = {p.label: p.doc.text for p in data.train_pairs}
    assert texts == {"patch": "a patch of colour", "bare ground": "bare ground"}
    for p in data.train_pairs:
        best = max(box_iou(p.extra["box"], tuple(map(float, b))) for b in truth)
        assert best >= 0.5 if p.label == "patch" else best <= 0.1


def test_box_csv_and_region_config_errors(tmp_path: Path) -> None:
    bad = _write_csv(tmp_path / "bad.csv", [{"x0": 1, "ymin": 1, "xmax": 4, "ymax": 4, "label": "a"}])
    with pytest.raises(InputError, match="xmin"):
        _data(tmp_path, bad)
    empty = _write_csv(tmp_path / "empty.csv", [{"xmin": 4, "ymin": 1, "xmax": 4, "ymax": 4, "label": "a"}])
    with pytest.raises(InputError, match="empty box"):
        _data(tmp_path, empty)
    one = _write_csv(tmp_path / "one.csv", [{"xmin": 1, "ymin": 1, "xmax": 9, "ymax": 9, "label": "a"}])
    with pytest.raises(InputError, match="needs >= 2"):  # one class and no background: nothing to contrast
        _data(tmp_path, one)
    with pytest.raises(InputError, match="tile_sise"):
        Config.from_dict({"data": {"regions": {"tile_sise": 3}}})
    with pytest.raises(InputError, match="regions.match"):
        Config.from_dict({"data": {"pair_types": ["region"], "regions": {"match": "area"}}})
    with pytest.raises(InputError, match="grid"):
        Config.from_dict({"data": {"regions": {"grid": [0]}}})


def test_grid_boxes_are_the_index_candidates() -> None:
    boxes = grid_boxes(64, [1, 2, 4], 0.25)
    assert len(boxes) == 1 + 4 + 16 and boxes[0] == (0, 0, 64, 64)
    cell = 64 / (2 - 0.25)
    assert np.allclose(boxes[1], (0, 0, cell, cell)) and np.allclose(boxes[4], (0.75 * cell, 0.75 * cell, 64, 64))
    assert max(b[2] for b in boxes) == 64 and max(b[3] for b in boxes) == 64

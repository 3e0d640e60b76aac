"""Public-format loaders on fixtures written here, spatial splits, YAML config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geovec.backend.errors import InputError, NotFoundError
from geovec.training.config import Config
from geovec.training.data import formats
from geovec.training.data.splits import block_keys, drop_near, spatial_block_split


def _img(path: Path, colour: tuple[int, int, int], size: int = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)
    return path


def test_rsicd_caption_json(tmp_path: Path) -> None:
    data = {"images": [
        {"filename": "a.jpg", "split": "test", "sentences": [{"raw": "many boats in a port ."}, {"raw": " "}]},
        {"filename": "b.jpg", "split": "train", "sentences": [{"raw": "a green field"}]},
    ], "dataset": "rsicd"}
    (tmp_path / "dataset_rsicd.json").write_text(json.dumps(data))
    got = formats.load_caption_json(tmp_path / "dataset_rsicd.json", image_dir=tmp_path / "imgs")
    assert got[0].captions == ("many boats in a port .",) and got[0].path.endswith("imgs/a.jpg")
    assert [s.split for s in formats.load_caption_json(tmp_path / "dataset_rsicd.json", split="train")] == ["train"]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        formats.load_caption_json(tmp_path / "bad.json")


def test_rsvqa_json(tmp_path: Path) -> None:
    (tmp_path / "LR_split_test_questions.json").write_text(json.dumps({"questions": [
        {"id": 0, "img_id": 7, "type": "presence", "question": "Is there a road?", "answers_ids": [0], "active": True},
        {"id": 1, "img_id": 7, "type": "count", "question": "How many buildings?", "answers_ids": [1], "active": True},
        {"id": 2, "img_id": 8, "type": "count", "question": "old", "answers_ids": [2], "active": False}]}))
    (tmp_path / "LR_split_test_answers.json").write_text(json.dumps({"answers": [
        {"id": 0, "question_id": 0, "answer": "yes", "active": True},
        {"id": 1, "question_id": 1, "answer": "12", "active": True},
        {"id": 2, "question_id": 2, "answer": "3", "active": True}]}))
    (tmp_path / "LR_split_test_images.json").write_text(json.dumps({"images": [{"id": 7, "questions_ids": [0, 1], "active": True}]}))
    got = formats.load_rsvqa(tmp_path / "LR_split_test_questions.json", tmp_path / "LR_split_test_answers.json",
                             tmp_path / "LR_split_test_images.json", image_dir=tmp_path / "Images_LR")
    assert [(s.question, s.answer, s.qtype) for s in got] == [("Is there a road?", "yes", "presence"),
                                                              ("How many buildings?", "12", "count")]
    assert got[0].path.endswith("Images_LR/7.tif")


def test_latlon_csv_and_triplets(tmp_path: Path) -> None:
    (tmp_path / "geo.csv").write_text("Image,Latitude,Longitude,text\na.png,35.7,-78.6,raleigh\nb.png,-8.0,-34.9,\n")
    got = formats.load_latlon_csv(tmp_path / "geo.csv")
    assert [(Path(s.path).name, s.lat, s.lon, s.text) for s in got] == [("a.png", 35.7, -78.6, "raleigh"), ("b.png", -8.0, -34.9, "")]
    (tmp_path / "bad.csv").write_text("image,lat,lon\na.png,95,0\n")
    with pytest.raises(InputError, match="out of range"):
        formats.load_latlon_csv(tmp_path / "bad.csv")
    (tmp_path / "nocol.csv").write_text("image,y,x\na.png,1,2\n")
    with pytest.raises(InputError, match="no column"):
        formats.load_latlon_csv(tmp_path / "nocol.csv")
    (tmp_path / "t.json").write_text(json.dumps([{"reference": "a.png", "text": "with a road", "target": "b.png"}]))
    assert formats.load_triplet_json(tmp_path / "t.json")[0].text == "with a road"


def test_spatial_split_keeps_blocks_whole_and_classes_on_both_sides() -> None:
    rng = np.random.default_rng(0)
    xs, ys, labels = [], [], []
    for c in range(4):  # each class in 6 separate clusters
        for _ in range(6):
            cx, cy = rng.uniform(0, 1000, size=2)
            for _ in range(5):
                xs.append(cx + rng.uniform(-3, 3))
                ys.append(cy + rng.uniform(-3, 3))
                labels.append(f"c{c}")
    is_val = spatial_block_split(xs, ys, labels, block_size=100, val_fraction=0.3, seed=1)
    keys = block_keys(np.array(xs), np.array(ys), 100)
    by_block: dict[tuple[int, int], set[bool]] = {}
    for k, v in zip(keys, is_val, strict=True):
        by_block.setdefault(k, set()).add(bool(v))
    assert all(len(v) == 1 for v in by_block.values()), "a block was split between train and validation"
    for c in set(labels):
        sides = {bool(v) for v, lab in zip(is_val, labels, strict=True) if lab == c}
        assert sides == {True, False}, c
    assert 0.15 < is_val.mean() < 0.5
    again = spatial_block_split(xs, ys, labels, block_size=100, val_fraction=0.3, seed=1)
    assert (again == is_val).all()


def test_single_block_class_stays_in_training_and_buffer_drops_neighbours() -> None:
    is_val = spatial_block_split([5, 150, 250, 350], [5, 5, 5, 5], ["a", "b", "b", "b"], block_size=100, val_fraction=0.5)
    assert not is_val[0]
    keep = drop_near(np.array([[0, 0], [10, 0], [30, 0]]), np.array([[0, 5]]), buffer=12)
    assert keep.tolist() == [False, False, True]


def test_config_yaml_round_trip_and_errors(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "model: tiny\noutput_dir: $HOME/x\ndata:\n  raster: [a.tif]\n  labels: l.shp\n  bands: [4, 3, 2]\n"
        "train:\n  steps: 5\n  temperature: 0.05\nlora:\n  enabled: true\n  r: 4\n")
    cfg = Config.from_yaml(tmp_path / "c.yaml")
    assert cfg.data.bands == (4, 3, 2) and cfg.train.steps == 5 and cfg.lora.r == 4 and "$HOME" not in cfg.output_dir
    assert cfg.train.chunk_size == 32 and cfg.data.pair_types == ["scene_class"]
    (tmp_path / "typo.yaml").write_text("train:\n  stepz: 5\n")
    with pytest.raises(InputError, match="stepz"):
        Config.from_yaml(tmp_path / "typo.yaml")
    with pytest.raises(InputError, match="pair_types"):
        Config.from_dict({"data": {"pair_types": ["nope"]}})
    with pytest.raises(NotFoundError):
        Config.from_yaml(tmp_path / "missing.yaml")


def test_three_way_spatial_split_keeps_test_apart(tmp_path: Path) -> None:
    from geovec.backend.model.presets import PRESETS
    from geovec.training.data.dataset import build_train_data

    from .synthetic import write_labels, write_scene

    cfg = Config.from_dict({"data": {
        "raster": [str(write_scene(tmp_path / "s.tif"))], "labels": str(write_labels(tmp_path / "l.gpkg")),
        "chip_size": 8, "image_size": 28, "block_size": 24, "val_per_class": 5, "samples_per_class": 10,
        "val_fraction": 0.25, "test_fraction": 0.25, "buffer": 4}})
    data = build_train_data(cfg.data, dict(PRESETS["tiny"].instructions), 28)
    s = data.split
    val, test = set(s["val_feature_ids"]), set(s["test_feature_ids"])
    assert val and test and not val & test and s["test_features"] == len(test)
    assert data.reported[0] == "test" and {p.fid for p in data.test_points} <= test
    assert not {p.point.fid for p in data.train_pairs} & (val | test)
    assert len(data.test_images) == len(data.test_points) > 0
    two_way = build_train_data(Config.from_dict({"data": {**cfg.to_dict()["data"], "test_fraction": 0.0}}).data,
                               dict(PRESETS["tiny"].instructions), 28)
    assert two_way.reported[0] == "validation" and not two_way.test_points
    with pytest.raises(InputError, match="sum <= 0.8"):
        Config.from_dict({"data": {"val_fraction": 0.5, "test_fraction": 0.4}})

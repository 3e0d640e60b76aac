"""Build the train / validation data of a config: scene, labels, spatial split, pairs."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...backend.errors import InputError
from ...backend.types import Scene, Stretch
from ..config import DataConfig
from .region_pairs import RegionPairBuilder, held_out_area, load_box_csv
from .splits import drop_near, spatial_block_split
from .vector_labels import LabelledPoint, Pair, PairBuilder, load_features, sample_points

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    """Pairs for training, labelled chips for validation (choices) and test (the figure), and the split."""

    scene: Scene
    stretch: Stretch
    builder: PairBuilder
    classes: list[str]
    train_pairs: list[Pair]
    val_points: list[LabelledPoint]
    val_images: list[np.ndarray]
    split: dict[str, object] = field(default_factory=dict)
    test_points: list[LabelledPoint] = field(default_factory=list)
    test_images: list[np.ndarray] = field(default_factory=list)

    @property
    def reported(self) -> tuple[str, list[LabelledPoint], list[np.ndarray]]:
        """(name, points, chips) of the split whose figure is reported: test when there is one."""
        if self.test_points:
            return "test", self.test_points, self.test_images
        return "validation", self.val_points, self.val_images


def _keep_far(points: list[LabelledPoint], held: list[LabelledPoint], buffer: int) -> tuple[list[LabelledPoint], int]:
    keep = drop_near(np.array([[p.col, p.row] for p in points]).reshape(-1, 2),
                     np.array([[p.col, p.row] for p in held]).reshape(-1, 2), buffer)
    return [p for p, k in zip(points, keep, strict=True) if k], int((~keep).sum())


def split_features(features: list[Any], cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """(is_val, is_test) masks over ``features``: the run's spatial split, from its config alone.

    Whole blocks go to test first, then whole blocks of the rest to validation: three
    spatially separate sets. Benchmarks call this to know which features a run held out.
    """
    xs = np.array([f.centroid[0] for f in features])
    ys = np.array([f.centroid[1] for f in features])
    labels = [f.label for f in features]
    areas = [max(f.geometry.area, 1.0) for f in features]
    is_test = np.zeros(len(features), dtype=bool)
    if cfg.test_fraction > 0:
        is_test = spatial_block_split(xs, ys, labels, block_size=cfg.block_size, val_fraction=cfg.test_fraction,
                                      seed=cfg.seed, weights=areas)
    rest = np.flatnonzero(~is_test)
    is_val = np.zeros(len(features), dtype=bool)
    is_val[rest] = spatial_block_split(
        xs[rest], ys[rest], [labels[i] for i in rest], block_size=cfg.block_size,
        val_fraction=cfg.val_fraction / (1.0 - cfg.test_fraction), seed=cfg.seed + (cfg.test_fraction > 0),
        weights=[areas[i] for i in rest],
    )
    return is_val, is_test


def build_train_data(cfg: DataConfig, instructions: dict[str, str], image_size: int) -> TrainData:
    """Read the scene and the vector layer, split features by spatial blocks, build pairs."""
    from ...backend.raster.scan import open_scene
    from ...backend.raster.stretch import compute_stretch

    if not cfg.raster or not cfg.labels:
        raise InputError("data.raster and data.labels are required", "name the GeoTIFF(s) and the vector layer")
    scene = open_scene(cfg.raster, bands=cfg.bands)
    stretch = compute_stretch(scene, percentiles=cfg.percentiles, bands=cfg.bands)
    if str(cfg.labels).lower().endswith(".csv"):
        features = load_box_csv(cfg.labels, scene)
    else:
        features = load_features(cfg.labels, scene, label_field=cfg.label_field, layer=cfg.layer)
    regions = "region" in cfg.pair_types
    classes = sorted({f.label for f in features} | ({cfg.regions.background} if regions and cfg.regions.background
                                                     else set()))
    if len(classes) < 2:
        raise InputError(f"attribute {cfg.label_field!r} has one value {classes}", "contrastive training needs >= 2")
    is_val, is_test = split_features(features, cfg)
    train_f = [f for f, v, t in zip(features, is_val, is_test, strict=True) if not v and not t]
    val_f = [f for f, v in zip(features, is_val, strict=True) if v]
    test_f = [f for f, t in zip(features, is_test, strict=True) if t]
    if not val_f or (cfg.test_fraction > 0 and not test_f):
        raise InputError(
            f"no {'validation' if not val_f else 'test'} block with block_size={cfg.block_size}",
            "use a smaller data.block_size or more features",
        )
    test_pts = sample_points(test_f, cfg.val_per_class, seed=cfg.seed + 2) if test_f else []
    val_pts, dropped_val = _keep_far(sample_points(val_f, cfg.val_per_class, seed=cfg.seed + 1), test_pts, cfg.buffer)
    train_pts, dropped = _keep_far(sample_points(train_f, cfg.samples_per_class, seed=cfg.seed), val_pts + test_pts,
                                   cfg.buffer)
    builder = PairBuilder(
        scene, stretch, instructions, image_size=image_size, chip_size=cfg.chip_size,
        context_size=cfg.context_size, caption_template=cfg.caption_template, bands=cfg.bands,
    )
    train_pairs = builder.pairs(train_pts, train_f, [k for k in cfg.pair_types if k != "region"], seed=cfg.seed)
    if regions:  # boxes on their tiles <-> referring texts; no tile shows a held-out feature
        kept = {f.fid for f in train_f}
        held = held_out_area([f for f in features if f.fid not in kept], cfg.block_size, cfg.buffer)
        train_pairs += RegionPairBuilder(builder, cfg.regions, seed=cfg.seed).pairs(train_f, held)
    split = {
        "block_size": cfg.block_size,
        "train_features": len(train_f),
        "val_features": len(val_f),
        "test_features": len(test_f),
        "train_points": dict(Counter(p.label for p in train_pts)),
        "val_points": dict(Counter(p.label for p in val_pts)),
        "test_points": dict(Counter(p.label for p in test_pts)),
        "train_points_dropped_by_buffer": dropped,
        "val_points_dropped_by_buffer": dropped_val,
        "classes_without_val": sorted(set(classes) - {f.label for f in val_f}),
        "classes_without_test": sorted(set(classes) - {f.label for f in test_f}) if test_f else [],
        "val_feature_ids": sorted(f.fid for f in val_f),
        "test_feature_ids": sorted(f.fid for f in test_f),
    }
    log.info("split: %s", split)
    return TrainData(scene, stretch, builder, classes, train_pairs, val_pts, [builder.chip(p) for p in val_pts], split,
                     test_pts, [builder.chip(p) for p in test_pts])



"""Build the train / validation data of a config: scene, labels, spatial split, pairs."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ...backend.errors import InputError
from ...backend.types import Scene, Stretch
from ..config import DataConfig
from .splits import drop_near, spatial_block_split
from .vector_labels import LabelledPoint, Pair, PairBuilder, load_features, sample_points

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    """Pairs for training, labelled chips for validation, and how they were split."""

    scene: Scene
    stretch: Stretch
    builder: PairBuilder
    classes: list[str]
    train_pairs: list[Pair]
    val_points: list[LabelledPoint]
    val_images: list[np.ndarray]
    split: dict[str, object] = field(default_factory=dict)


def build_train_data(cfg: DataConfig, instructions: dict[str, str], image_size: int) -> TrainData:
    """Read the scene and the vector layer, split features by spatial blocks, build pairs."""
    from ...backend.raster.scan import open_scene
    from ...backend.raster.stretch import compute_stretch

    if not cfg.raster or not cfg.labels:
        raise InputError("data.raster and data.labels are required", "name the GeoTIFF(s) and the vector layer")
    scene = open_scene(cfg.raster, bands=cfg.bands)
    stretch = compute_stretch(scene, percentiles=cfg.percentiles, bands=cfg.bands)
    features = load_features(cfg.labels, scene, label_field=cfg.label_field, layer=cfg.layer)
    classes = sorted({f.label for f in features})
    if len(classes) < 2:
        raise InputError(f"attribute {cfg.label_field!r} has one value {classes}", "contrastive training needs >= 2")
    xs = [f.centroid[0] for f in features]
    ys = [f.centroid[1] for f in features]
    areas = [max(f.geometry.area, 1.0) for f in features]
    is_val = spatial_block_split(
        xs, ys, [f.label for f in features], block_size=cfg.block_size, val_fraction=cfg.val_fraction,
        seed=cfg.seed, weights=areas,
    )
    train_f = [f for f, v in zip(features, is_val, strict=True) if not v]
    val_f = [f for f, v in zip(features, is_val, strict=True) if v]
    if not val_f:
        raise InputError(
            f"no validation block with block_size={cfg.block_size}", "use a smaller data.block_size or more features"
        )
    train_pts = sample_points(train_f, cfg.samples_per_class, seed=cfg.seed)
    val_pts = sample_points(val_f, cfg.val_per_class, seed=cfg.seed + 1)
    keep = drop_near(
        np.array([[p.col, p.row] for p in train_pts]), np.array([[p.col, p.row] for p in val_pts]), cfg.buffer
    )
    dropped = int((~keep).sum())
    train_pts = [p for p, k in zip(train_pts, keep, strict=True) if k]
    builder = PairBuilder(
        scene, stretch, instructions, image_size=image_size, chip_size=cfg.chip_size,
        context_size=cfg.context_size, caption_template=cfg.caption_template, bands=cfg.bands,
    )
    train_pairs = builder.pairs(train_pts, train_f, cfg.pair_types, seed=cfg.seed)
    val_images = [builder.chip(p) for p in val_pts]
    split = {
        "block_size": cfg.block_size,
        "train_features": len(train_f),
        "val_features": len(val_f),
        "train_points": dict(Counter(p.label for p in train_pts)),
        "val_points": dict(Counter(p.label for p in val_pts)),
        "train_points_dropped_by_buffer": dropped,
        "classes_without_val": sorted(set(classes) - {f.label for f in val_f}),
        "val_feature_ids": sorted(f.fid for f in val_f),
    }
    log.info("split: %s", split)
    return TrainData(scene, stretch, builder, classes, train_pairs, val_pts, val_images, split)



"""The real North Carolina Landsat 7 scene + its labelled polygons through the data pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from geovec.training.config import Config
from geovec.training.data.dataset import build_train_data

ROOT = Path(__file__).resolve().parents[2]


def test_nc_config_builds_a_spatial_holdout(shared_data: Path, monkeypatch) -> None:
    from geovec.backend.model.presets import PRESETS

    monkeypatch.setenv("GEOVEC_SHARED_DATA", str(shared_data))
    cfg = Config.from_yaml(ROOT / "training" / "configs" / "nc_landsat7.yaml")
    data = build_train_data(cfg.data, dict(PRESETS["tiny"].instructions), 28)
    assert data.classes == sorted(["water", "forest", "shrubland", "sediment", "herbaceous", "developed", "agriculture"])
    split = data.split
    assert split["train_features"] + split["val_features"] == 33  # of 34 polygons, one lies 186 m off the raster
    assert len(split["val_points"]) >= 5  # classes with a single polygon can only be trained on
    # no held-out polygon contributes training pairs, and no training chip overlaps a held-out chip
    val_fids = set(split["val_feature_ids"])
    assert not any(p.point.fid in val_fids for p in data.train_pairs)
    tr = np.array([[p.point.col, p.point.row] for p in data.train_pairs])
    va = np.array([[p.col, p.row] for p in data.val_points])
    gap = np.abs(tr[:, None, :] - va[None, :, :]).max(-1).min()
    assert gap > cfg.data.chip_size
    # every held-out point lies on a pixel of its class in the rasterised labels
    codes = {"developed": 1, "agriculture": 2, "herbaceous": 3, "shrubland": 4, "forest": 5, "water": 6, "sediment": 7}
    with rasterio.open(shared_data / "nc_landsat7" / "landsat96_labelled_pixels.tif") as r:
        lab = r.read(1)
    agree = np.mean([lab[int(p.row), int(p.col)] == codes[p.label] for p in data.val_points])
    assert agree > 0.9
    assert data.val_images[0].shape == (28, 28, 3) and data.val_images[0].dtype == np.uint8

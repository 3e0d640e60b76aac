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
    # of 34 polygons, one lies 186 m off the raster; the rest go to three spatially separate sets
    assert split["train_features"] + split["val_features"] + split["test_features"] == 33
    val_fids, test_fids = set(split["val_feature_ids"]), set(split["test_feature_ids"])
    assert val_fids and test_fids and not val_fids & test_fids
    assert len(split["test_points"]) >= 5 and len(split["val_points"]) >= 4  # single-polygon classes only train
    assert data.reported[0] == "test" and data.reported[1] == data.test_points
    assert {p.fid for p in data.test_points} <= test_fids and {p.fid for p in data.val_points} <= val_fids
    # no held-out polygon contributes training pairs; no training chip overlaps a validation or test chip,
    # no validation chip overlaps a test chip
    assert not any(p.point.fid in val_fids | test_fids for p in data.train_pairs)
    tr = np.array([[p.point.col, p.point.row] for p in data.train_pairs])
    va = np.array([[p.col, p.row] for p in data.val_points])
    te = np.array([[p.col, p.row] for p in data.test_points])

    def gap(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a[:, None, :] - b[None, :, :]).max(-1).min())

    assert min(gap(tr, va), gap(tr, te), gap(va, te)) > cfg.data.chip_size
    # every held-out point lies on a pixel of its class in the rasterised labels
    codes = {"developed": 1, "agriculture": 2, "herbaceous": 3, "shrubland": 4, "forest": 5, "water": 6, "sediment": 7}
    with rasterio.open(shared_data / "nc_landsat7" / "landsat96_labelled_pixels.tif") as r:
        lab = r.read(1)
    agree = np.mean([lab[int(p.row), int(p.col)] == codes[p.label] for p in data.val_points + data.test_points])
    assert agree > 0.9
    assert data.val_images[0].shape == (28, 28, 3) and data.val_images[0].dtype == np.uint8

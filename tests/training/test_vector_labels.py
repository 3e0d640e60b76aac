"""GeoTIFF + vector layer (GeoPackage / shapefile / GeoJSON, any CRS) -> contrastive pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geovec.backend.errors import InputError, NotFoundError
from geovec.training.data.vector_labels import PairBuilder, feature_pixels, load_features, sample_points

from .synthetic import COLOURS, class_layout, write_labels, write_scene


@pytest.fixture(scope="module")
def scene_and_stretch(tmp_path_factory: pytest.TempPathFactory):
    from geovec.backend.raster.scan import open_scene
    from geovec.backend.raster.stretch import compute_stretch

    path = write_scene(tmp_path_factory.mktemp("scene") / "scene.tif")
    scene = open_scene(path)
    return scene, compute_stretch(scene)


@pytest.mark.parametrize(
    "driver,suffix,crs",
    [("GPKG", ".gpkg", "EPSG:32617"), ("ESRI Shapefile", ".shp", "EPSG:3857"), ("GeoJSON", ".geojson", "EPSG:4326")],
)
def test_features_in_any_format_and_crs_land_on_their_pixels(tmp_path: Path, scene_and_stretch, driver, suffix, crs) -> None:
    scene, _ = scene_and_stretch
    labels = write_labels(tmp_path / f"labels{suffix}", driver=driver, crs=crs)
    feats = load_features(labels, scene, label_field="label")
    layout = class_layout()
    assert [f.label for f in feats] == [lab for lab, _ in layout]
    for f, (_, (c0, r0, c1, r1)) in zip(feats, layout, strict=True):
        x0, y0, x1, y1 = f.geometry.bounds
        assert (x0, y0, x1, y1) == pytest.approx((c0, r0, c1, r1), abs=0.05)
        pts = feature_pixels(f)
        assert len(pts) == pytest.approx((c1 - c0) * (r1 - r0), abs=(c1 - c0) * 2)


def test_bad_attribute_and_missing_file(tmp_path: Path, scene_and_stretch) -> None:
    scene, _ = scene_and_stretch
    labels = write_labels(tmp_path / "l.gpkg")
    with pytest.raises(InputError, match="'klass'"):
        load_features(labels, scene, label_field="klass")
    with pytest.raises(NotFoundError):
        load_features(tmp_path / "none.gpkg", scene, label_field="label")


def test_pairs_of_every_kind(tmp_path: Path, scene_and_stretch) -> None:
    from geovec.backend.model.presets import PRESETS

    scene, stretch = scene_and_stretch
    preset = PRESETS["tiny"]
    feats = load_features(write_labels(tmp_path / "l.geojson", driver="GeoJSON", crs="EPSG:4326"), scene, label_field="label")
    pts = sample_points(feats, 6, seed=0)
    assert {p.label for p in pts} == set(COLOURS) and len(pts) == 6 * len(COLOURS)
    b = PairBuilder(scene, stretch, dict(preset.instructions), image_size=32, chip_size=8, context_size=32)
    pairs = b.pairs(pts, feats[:3], ["scene_class", "image_image", "geo", "region_caption"])
    kinds = {k: [p for p in pairs if p.kind == k] for k in ("scene_class", "image_image", "geo", "region_caption")}
    sc = kinds["scene_class"][0]
    assert sc.query.text == f"a satellite image of {sc.label}" and sc.query.instruction == preset.instructions["text_query"]
    assert sc.doc.image is not None and sc.doc.image.shape == (32, 32, 3) and sc.doc.instruction == preset.instructions["tile"]
    # the chip of a water point is blue-ish: the stretch and band order reach the image
    water = next(p for p in kinds["scene_class"] if p.label == "water")
    assert water.doc.image is not None
    mean = water.doc.image.reshape(-1, 3).mean(0)
    assert mean[2] > mean[0] and mean[2] > mean[1]
    ii = kinds["image_image"]
    assert ii and all(p.query.image is not None and p.doc.image is not None for p in ii)
    geo = kinds["geo"][0]
    lat, lon = geo.extra["latlon"]  # type: ignore[misc]
    assert 29.0 < lat < 30.5 and -82.5 < lon < -80.5  # UTM 17N, northing 3.3e6
    # the query is the image alone and the document the location alone: nothing to copy from one to the other
    assert geo.query.image is not None and geo.query.latlon is None and geo.query.text is None
    assert geo.query.instruction == preset.instructions["tile"] and "{latlon}" not in geo.query.instruction
    assert geo.doc.image is None and geo.doc.text == preset.format_latlon(lat, lon) and geo.label not in geo.doc.text
    rc = kinds["region_caption"]
    assert len(rc) == 3 and rc[0].query.bbox is not None
    assert rc[0].query.instruction == preset.instructions["region_query"]
    assert rc[0].doc.instruction == preset.instructions["referring_query"]  # the text side a region search embeds
    x1, y1, x2, y2 = rc[0].query.bbox
    assert 0 <= x1 < x2 <= 32 and 0 <= y1 < y2 <= 32
    with pytest.raises(InputError, match="unknown pair kind"):
        b.pairs(pts, feats, ["bogus"])


def test_chip_reads_match_raster_values(tmp_path: Path, scene_and_stretch) -> None:
    scene, stretch = scene_and_stretch
    from geovec.backend.model.presets import PRESETS

    b = PairBuilder(scene, stretch, dict(PRESETS["tiny"].instructions), image_size=8, chip_size=8)
    feats = load_features(write_labels(tmp_path / "l.gpkg"), scene, label_field="label")
    forest = next(f for f in feats if f.label == "forest")
    c, r = forest.centroid
    from geovec.training.data.vector_labels import LabelledPoint

    img = b.chip(LabelledPoint(c, r, "forest", forest.fid))
    mean = img.reshape(-1, 3).mean(0)
    assert np.argmax(mean) == 1  # green dominates inside a forest patch

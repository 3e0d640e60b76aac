"""Fill is not imagery: an L1-style scene (16-bit, rotated in an untagged zero collar, built from the real
Olinda Landsat 7 scene) gets its collar detected, left out of the stretch and the valid fraction, its
mostly-fill tiles skipped and counted, and ``geovec info`` reports it; ``--nodata`` / ``--fill off``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from l1data import l1_source, write_l1_scene

from geovec.backend.cli import main
from geovec.backend.indexing import index_folder
from geovec.backend.raster.scan import open_scene, scan_folder
from geovec.backend.raster.stretch import compute_stretch
from geovec.backend.raster.tiling import GridSampler, read_tile
from geovec.backend.types import TilingParams

TILE = 64


@pytest.fixture(scope="module")
def l1(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("l1")
    (root / "scene").mkdir()
    path, fill = write_l1_scene(shared_data, root / "scene" / "LC08_L1TP_olinda.tif")
    return {"root": root, "path": path, "fill": fill}


def _expected_skips(l1: dict, min_valid: float = 0.5) -> int:
    scene = open_scene(l1["path"])
    return sum(1 for c, r, w, h in GridSampler(scene, TilingParams(tile_size=TILE))
               if 1.0 - l1["fill"][r:r + h, c:c + w].mean() < min_valid)


def test_collar_is_detected_and_left_out_of_the_stretch(l1: dict) -> None:
    scene = open_scene(l1["path"])
    assert scene.nodata is None  # untagged, like an L1 product
    st = compute_stretch(scene)
    assert (st.fill, st.fill_source) == (0.0, "detected")
    assert st.fill_fraction == pytest.approx(l1["fill"].mean(), abs=0.02)
    assert min(st.low) >= 1000  # percentiles of imagery only (DN >= 1000), not of the zero collar
    # a tile half in the collar: its valid fraction is the imagery share, and fill pixels are black
    c, r, w, h = 0, 0, TILE, TILE
    img, vf = read_tile(scene, (c, r, w, h), st)
    assert vf == pytest.approx(1.0 - l1["fill"][r:r + h, c:c + w].mean(), abs=1e-6)
    assert (img[l1["fill"][r:r + h, c:c + w]] == 0).all()
    # --fill off: the collar is imagery (the old behaviour, asked for)
    off = compute_stretch(scene, detect_fill=False)
    assert off.fill is None and min(off.low) == 0.0
    assert read_tile(scene, (c, r, w, h), off)[1] == 1.0


def test_no_false_collar(shared_data: Path, tmp_path: Path) -> None:
    """Real scenes, and synthetic ones with 3 px constant streets along their edges, have no collar."""
    from geovec.backend.demo import write_sample_folder, write_scene

    scenes = scan_folder(shared_data).scenes + scan_folder(write_sample_folder(tmp_path / "demo", size=64)).scenes
    scenes += [open_scene(write_scene(tmp_path / f"urban{n}.tif", "urban", size=n)) for n in (24, 64, 200)]
    for scene in scenes:
        st = compute_stretch(scene)
        assert st.fill_source != "detected", (scene.name, st)
    # a collar on one side only (a swath edge) is still found
    import numpy as np
    import rasterio

    with rasterio.open(l1_source(shared_data)) as src:
        img, prof = src.read(), src.profile
    img[:, :, : img.shape[2] // 5] = 0
    prof.update(nodata=None)
    with rasterio.open(tmp_path / "side.tif", "w", **prof) as dst:
        dst.write(img)
    st = compute_stretch(open_scene(tmp_path / "side.tif"))
    assert st.fill_source == "detected" and st.fill_fraction == pytest.approx(0.2, abs=0.01)
    assert np.dtype(prof["dtype"]) == np.uint8 and st.method == "identity"


def test_mostly_fill_tiles_are_skipped_counted_and_reported(l1: dict, tiny_embedder, capsys) -> None:
    idx = l1["root"] / "idx"
    summary = index_folder(l1["root"] / "scene", idx, tiny_embedder, params=TilingParams(tile_size=TILE))
    want = _expected_skips(l1)
    total = len(GridSampler(open_scene(l1["path"]), TilingParams(tile_size=TILE)))
    assert want >= 4 and summary.tiles_skipped == want and summary.tiles == total - want
    assert main(["info", "--index", str(idx), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    (s,) = info["extra"]["scene_list"]
    assert s["fill"]["source"] == "detected" and s["fill"]["value"] == 0.0
    assert s["fill"]["fraction"] == pytest.approx(l1["fill"].mean(), abs=0.02)
    assert s["tiles_skipped"] == want and s["crs"] == "EPSG:31985" and s["bands_used"] == [3, 2, 1]
    assert s["nodata"] is None and s["stretch"]["method"] == "percentile" and min(s["stretch"]["low"]) >= 1000
    assert main(["info", "--index", str(idx)]) == 0
    out = capsys.readouterr().out
    assert "fill 0.0 (detected)" in out and "crs EPSG:31985" in out and f"{want} skipped as mostly fill" in out
    # class maps do not label the collar: fill pixels stay 0 (not classified), imagery is labelled
    import rasterio

    from geovec.backend.schemas_workflows import ClassifyRequest
    from geovec.backend.workflows import service

    resp = service.run_classify(ClassifyRequest(index=str(idx), classes=["water", "city"],
                                                out_dir=str(l1["root"] / "maps")), tiny_embedder)
    with rasterio.open(resp.class_maps[0].path) as ds:
        arr = ds.read(1)
    assert (arr[l1["fill"]] == 0).all() and (arr[~l1["fill"]] > 0).mean() > 0.9


def test_nodata_option_and_fill_off(l1: dict, tiny_embedder, tmp_path: Path) -> None:
    # --nodata names the fill itself, and wins over --fill off
    scene = open_scene(l1["path"])
    st = compute_stretch(scene, nodata=0)
    assert (st.fill, st.fill_source) == (0.0, "option")
    off = index_folder(l1["root"] / "scene", tmp_path / "off", tiny_embedder,
                       params=TilingParams(tile_size=TILE, fill="off"))
    assert off.tiles_skipped == 0  # every window embedded, collar and all
    opt = index_folder(l1["root"] / "scene", tmp_path / "opt", tiny_embedder,
                       params=TilingParams(tile_size=TILE, nodata=0.0, fill="off"))
    assert opt.tiles_skipped == _expected_skips(l1)


def test_nodata_cli_option_is_checked(l1: dict, capsys) -> None:
    code = main(["index", str(l1["root"] / "scene"), "--index", str(l1["root"] / "bad"), "--nodata", "nan"])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "nodata" in err.lower(), err
    assert not (l1["root"] / "bad").exists()


def test_byte_identical_tiles_are_one_hit(tiny_embedder, tmp_path: Path) -> None:
    import numpy as np

    from geovec.backend.demo import pattern, write_geotiff
    from geovec.backend.schemas import SearchRequest
    from geovec.backend.service import run_search

    rgb = (np.concatenate([pattern("water", 64, 64, seed=1), pattern("urban", 64, 64, seed=2)], axis=2) * 255)
    rgb = rgb.astype("uint8")
    same = [(2, 1), (3, 1), (5, 2)]  # three interior 16 px tiles of one constant colour (saturated, say)
    for c, r in same:
        rgb[:, r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] = 120
    (tmp_path / "s").mkdir()
    write_geotiff(tmp_path / "s" / "sat.tif", rgb, crs="EPSG:32617", origin=(400000.0, 3300000.0), res=10.0)
    idx = tmp_path / "idx"
    index_folder(tmp_path / "s", idx, tiny_embedder, params=TilingParams(tile_size=16))
    resp = run_search(SearchRequest(index=str(idx), text="water", k=32), tiny_embedder)
    assert len(resp.features) == 30  # 32 tiles, the three identical ones as one hit
    (dup,) = [f for f in resp.features if f.properties.get("duplicates")]
    assert len(dup.properties["duplicates"]) == 2 and dup.properties["window"][:2] in [[c * 16, r * 16]
                                                                                       for c, r in same]
    assert [f.properties["rank"] for f in resp.features] == list(range(1, 31))
    # k is still honoured with the duplicates folded away
    assert len(run_search(SearchRequest(index=str(idx), text="water", k=5), tiny_embedder).features) == 5

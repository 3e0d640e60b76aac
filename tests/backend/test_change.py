"""``geovec change``: co-located tiles of two dates scored, written as styled GeoTIFFs and ranked polygons.

Real GeoTIFFs written here, real indexes (tiny model, hnswlib, SQLite), the real CLI in a subprocess,
results read back with rasterio and fiona.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from geovec.backend.demo import pattern, write_geotiff
from geovec.backend.indexing import index_folder
from geovec.backend.types import TilingParams

W, H, TILE = 128, 64, 32
ORIGIN = (400000.0, 3300000.0)


def _before() -> np.ndarray:
    return (pattern("forest", H, W, seed=1) * 255).astype("uint8")


def _after() -> np.ndarray:
    """The before image with its right half (tile columns 2 and 3) built over."""
    img = _before().copy()
    img[:, :, W // 2:] = (pattern("urban", H, W // 2, seed=2) * 255).astype("uint8")
    return img


def _changed(window: list[int]) -> bool:
    return window[0] >= W // 2


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_embedder):
    root = tmp_path_factory.mktemp("change")
    params = TilingParams(tile_size=TILE)
    both = root / "both"
    write_geotiff(both / "site_2016-01-05.tif", _before(), origin=ORIGIN)
    write_geotiff(both / "site_2017-02-10.tif", _after(), origin=ORIGIN)
    index_folder(both, root / "idx", tiny_embedder, params=params, regions="grid=1,2;overlap=0")
    for name, img, origin in (("a", _before(), ORIGIN), ("b", _after(), ORIGIN),
                              ("far", _after(), (ORIGIN[0] + 50_000, ORIGIN[1]))):
        write_geotiff(root / name / f"{name}.tif", img, origin=origin)
        index_folder(root / name, root / f"idx_{name}", tiny_embedder, params=params)
    index_folder(root / "b", root / "idx_b16", tiny_embedder, params=TilingParams(tile_size=16))
    from geovec.backend.model.embedder import load_embedder
    from geovec.backend.model.tiny import write_tiny_model

    other = load_embedder(str(write_tiny_model(root / "other-model", seed=1)), device="cpu", dtype="fp32")
    index_folder(root / "b", root / "idx_other", other, params=params)
    return root


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "geovec.backend", "change", *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)


def test_change_between_dates_of_one_index(world: Path) -> None:
    import rasterio

    out = world / "out_dates"
    r = _cli("--index", str(world / "idx"), "--before", "2016-01", "--after", "2017", "--out", str(out), "--gpkg",
             "--json")
    assert r.returncode == 0, r.stderr
    resp = json.loads(r.stdout)
    assert resp["pairs"] == 8 and resp["unmatched_after"] == 0
    assert resp["before_dates"] == ["2016-01-05", "2016-01-05"] and resp["after_dates"][0] == "2017-02-10"
    fc = json.loads((out / "change.geojson").read_text())
    feats = fc["features"]
    assert len(feats) == 8 and [f["properties"]["rank"] for f in feats] == list(range(1, 9))
    scores = [f["properties"]["change"] for f in feats]
    assert scores == sorted(scores, reverse=True)
    changed = [_changed(f["properties"]["after_window"]) for f in feats]
    assert changed == [True] * 4 + [False] * 4, scores  # every built-over tile outranks every untouched one
    assert max(s for s, c in zip(scores, changed, strict=True) if not c) < 1e-3  # same pixels: no change
    assert feats[0]["properties"]["before_date"] == "2016-01-05"
    assert feats[0]["properties"]["after_date"] == "2017-02-10"
    (m,) = resp["maps"]
    with rasterio.open(m["path"]) as ds:
        assert ds.crs.to_epsg() == 32617 and ds.bounds.left == ORIGIN[0] and ds.bounds.top == ORIGIN[1]
        assert (ds.width, ds.height) == (W, H)
        arr = ds.read(1)
        assert "LEGEND" in ds.tags(1) and "change" in ds.tags(1)["LEGEND"]
    assert np.nanmin(arr[:, W // 2:]) > np.nanmax(arr[:, : W // 2])
    assert not np.isnan(arr).any()
    qml = Path(m["style"]).read_text()
    assert "singlebandpseudocolor" in qml and "unchanged" in qml and "changed" in qml
    import fiona

    with fiona.open(out / "change.gpkg") as src:
        rows = list(src)
        assert len(rows) == 8 and rows[0]["properties"]["rank"] == 1


def test_change_between_indexes_and_by_text(world: Path) -> None:
    out = world / "out_idx"
    r = _cli("--before", str(world / "idx_a"), "--after", str(world / "idx_b"), "--out", str(out),
             "--to", "buildings and streets", "--dtype", "fp32", "--json")
    assert r.returncode == 0, r.stderr
    resp = json.loads(r.stdout)
    assert resp["pairs"] == 8 and resp["to"] == "buildings and streets"
    feats = json.loads((out / "change.geojson").read_text())["features"]
    toward = [f["properties"]["toward"] for f in feats]
    assert toward == sorted(toward, reverse=True)
    unchanged = [f["properties"]["toward"] for f in feats if not _changed(f["properties"]["after_window"])]
    assert max(abs(t) for t in unchanged) < 1e-3  # the same pixels did not move toward anything


def test_region_level_change(world: Path) -> None:
    out = world / "out_regions"
    r = _cli("--index", str(world / "idx"), "--before", "2016", "--after", "2017", "--out", str(out),
             "--level", "region", "--json")
    assert r.returncode == 0, r.stderr
    resp = json.loads(r.stdout)
    feats = json.loads((out / "change.geojson").read_text())["features"]
    assert resp["level"] == "region" and resp["pairs"] == len(feats) == 8 * 5  # grid 1 + 2x2 boxes per tile
    assert all(f["properties"]["level"] == "region" for f in feats)
    top = feats[0]["properties"]
    assert _changed(top["after_window"]) and top["change"] > 1e-3
    r = _cli("--before", str(world / "idx_a"), "--after", str(world / "idx_b"), "--out", str(world / "no"),
             "--level", "region")
    assert r.returncode == 1 and "stores no regions" in r.stderr and not (world / "no").exists()


@pytest.mark.parametrize(("args", "words"), [
    (["--before", "{idx}", "--after", "{idx}"], "same scenes"),
    (["--index", "{idx}", "--before", "2017", "--after", "2016"], "does not end before"),
    (["--index", "{idx}", "--before", "2016", "--after", "2016-01-05"], "does not end before"),
    (["--before", "{idx_a}", "--after", "{idx_far}"], "share no place"),
    (["--before", "{idx_a}", "--after", "{idx_b16}"], "tiled differently"),
    (["--before", "{idx_a}", "--after", "{idx_other}"], "different models"),
    (["--index", "{idx}", "--before", "2015", "--after", "2017"], "dated '2015'"),
    (["--before", "2016", "--after", "2017"], "add --index"),
    (["--before", "{root}/nothing", "--after", "2017", "--index", "{idx}"], "is neither an index directory (no index.json) nor a date"),
    (["--index", "{idx}", "--before", "2016", "--after", "2017", "--min-overlap", "0"], "min_overlap"),
])
def test_bad_change_input_one_line_nothing_written(world: Path, args: list[str], words: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The real CLI entry point (in this process: no model is loaded for these)."""
    from geovec.backend.cli import main

    names = {"idx": world / "idx", "idx_a": world / "idx_a", "idx_far": world / "idx_far",
             "idx_b16": world / "idx_b16", "idx_other": world / "idx_other", "root": world}
    out = world / "bad_out"
    rc = main(["change", *[a.format(**names) for a in args], "--out", str(out)])
    err = capsys.readouterr().err
    assert rc in (1, 2)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geovec: error:") and words in lines[0], err
    assert "Traceback" not in err and not out.exists()
